"""The fusion GAN shared by F2GAN and MatchingGAN (src/fsgen_bench/methods/fusion.py): tests that fail when its
mechanism breaks (an adversarial sign flipped, a loss term dropped), for F2GAN's two variants and MatchingGAN."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from helpers import method_defaults
from torch.utils.data import DataLoader

from fsgen_bench.baselines.matchinggan.model import MatchingGAN
from fsgen_bench.errors import UserError
from fsgen_bench.methods.blocks import sample_coefficients
from fsgen_bench.methods.f2gan.model import F2GAN

SIZE, K, CLASSES = 16, 3, 2
TINY_G = dict(layer_sizes=(4, 4, 8), inner_layers=1, bn_momentum=0.1)
TINY_D = dict(disc_base_channels=4, disc_stages=2, disc_max_channels=16, disc_final_blocks=1)

#: the loss terms each method must have, per player; "sim" in D only where the variant fits the regressor
EXPECTED_TERMS = {
    "f2gan-release": {"d": {"adv", "cla"}, "g": {"adv", "cla", "recons", "matching_d", "sim", "mode_seeking"}},
    "f2gan-paper": {"d": {"adv", "cla", "sim"}, "g": {"adv", "cla", "recons", "matching_d", "sim", "mode_seeking"}},
    "matchinggan": {"d": {"adv", "cla"}, "g": {"adv", "cla", "recons", "matching_d"}},
}


def build(kind: str, **over):
    torch.manual_seed(0)
    common = dict(image_size=SIZE, channels=1, num_seen_classes=CLASSES, k_shot=K)
    if kind.startswith("f2gan"):
        params = {**method_defaults("f2gan"), **TINY_G, **TINY_D, "regressor_widths": (8,),
                  "variant": kind.split("-")[1], **over}
        return F2GAN(**common, **params)
    return MatchingGAN(**common, **{**method_defaults("matchinggan"), **TINY_G, **TINY_D, **over})


def toy_support(b: int, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Two classes of K images each: a bright square on the left (class 0) or the right (class 1), jittered."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((b, K, 1, SIZE, SIZE), -1.0)
    for i in range(b):
        for j in range(K):
            dy, dx = (int(v) for v in torch.randint(0, 4, (2,), generator=g))
            left = 1 + dx if labels[i] == 0 else SIZE - 6 - dx
            x[i, j, 0, 4 + dy:10 + dy, left:left + 5] = 1.0
    return x + 0.05 * torch.randn(x.shape, generator=g)


def fixed_step(model, seed: int = 0):
    labels = torch.tensor([0, 1, 1, 0])
    support = toy_support(4, labels, seed)
    a = sample_coefficients(model.generations * 4, K, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)                  # F2GAN's release variant corrupts the inputs with global-RNG noise
    return model.make_step(support, labels, a)


def player_grads(model, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    model.train()
    step = fixed_step(model, seed)
    out = {}
    for player, loss_fn, net in (("d", model.discriminator_loss, model.net_d), ("g", model.generator_loss, model.net_g)):
        loss, _ = loss_fn(step)
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True, retain_graph=True)
        out[player] = {n: (torch.zeros_like(p) if g is None else g) for (n, p), g in zip(named, grads)}
    return out


def _differs(a: dict, b: dict) -> bool:
    return any(not torch.allclose(a[n], b[n], atol=1e-7) for n in a.keys() & b.keys())


@pytest.mark.parametrize("kind", list(EXPECTED_TERMS))
def test_every_loss_term_reaches_its_players_gradient(kind):
    """Zeroing a term's weight changes exactly the gradients of the players whose loss holds that term."""
    base = build(kind)
    state = copy.deepcopy(base.state_dict())   # before any forward: spectral norm's power iteration moves it
    ref = player_grads(base)
    weights = {f"loss_{term}" for terms in EXPECTED_TERMS[kind].values() for term in terms}
    for key in sorted(weights):
        model = build(kind, **{key: 0.0})
        model.load_state_dict(state, strict=False)     # loss_sim 0 also drops the regressor head
        grads = player_grads(model)
        for player in ("d", "g"):
            expected = key[len("loss_"):] in EXPECTED_TERMS[kind][player]
            assert _differs(ref[player], grads[player]) == expected, (
                f"{kind}: zeroing {key} {'did not change' if expected else 'changed'} {player.upper()}'s gradient")


@pytest.mark.parametrize("kind", list(EXPECTED_TERMS))
def test_logged_terms_are_the_expected_ones(kind):
    model = build(kind)
    step = fixed_step(model)
    for player, fn in (("d", model.discriminator_loss), ("g", model.generator_loss)):
        total, logs = fn(step)
        terms = {n[len(f"train/{player}_"):] for n in logs if n.startswith(f"train/{player}_")}
        assert terms == EXPECTED_TERMS[kind][player], (kind, player, terms)
        assert torch.equal(logs[f"train/loss_{player}"], total)


def _adv_only(kind: str, **over):
    zero = {f"loss_{t}": 0.0 for terms in EXPECTED_TERMS[kind].values() for t in terms if t != "adv"}
    return build(kind, **zero, **over)


def _d_scores(model, images: torch.Tensor) -> torch.Tensor:
    """D's adversarial logits in eval mode (no power-iteration update of spectral norm while measuring)."""
    model.net_d.eval()
    try:
        with torch.no_grad():
            return model.net_d.heads(model.net_d(images))[0]
    finally:
        model.net_d.train()


@pytest.mark.parametrize("kind", list(EXPECTED_TERMS))
def test_discriminator_step_raises_real_over_fake(kind):
    """A few D steps on its own loss (adversarial term only) raise mean D(real) - mean D(fake)."""
    model = _adv_only(kind)
    step = fixed_step(model)
    reals = step.support.reshape(-1, 1, SIZE, SIZE)
    margin = lambda: float(_d_scores(model, reals).mean() - _d_scores(model, step.fake.detach()).mean())
    before = margin()
    opt = torch.optim.Adam([p for p in model.net_d.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        loss, _ = model.discriminator_loss(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert margin() > before + 0.5, (kind, before, margin())


@pytest.mark.parametrize("kind", list(EXPECTED_TERMS))
def test_generator_step_raises_the_critic_score_of_its_fakes(kind):
    """Two G steps on its own loss (adversarial term only), D fixed, raise D's score of the regenerated fakes."""
    model = _adv_only(kind)
    model.train()
    labels = torch.tensor([0, 1, 1, 0])
    support = toy_support(4, labels, 0)
    a = sample_coefficients(model.generations * 4, K, generator=torch.Generator().manual_seed(0))

    def regenerate():
        torch.manual_seed(0)                 # the same corruption noise (release variant) every time
        return model.make_step(support, labels, a)

    with torch.no_grad():
        before = float(_d_scores(model, regenerate().fake).mean())
    opt = torch.optim.Adam(model.net_g.parameters(), lr=1e-3)
    for _ in range(2):
        loss, _ = model.generator_loss(regenerate())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(_d_scores(model, regenerate().fake).mean())
    assert after > before + 1e-3, (kind, before, after)


def _toy_batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        labels = torch.randint(0, CLASSES, (4,), generator=g)
        out.append({"support": toy_support(4, labels, seed * 1000 + i), "label": labels,
                    "class_id": labels.clone()})
    return out


@pytest.mark.parametrize("kind", list(EXPECTED_TERMS))
def test_the_critic_separates_real_from_fake_after_a_few_training_steps(kind):
    """Through the real training_step (Trainer, optimiser toggling): on a two-class toy set the critic scores
    held-out real images above the generator's images after a few steps; a flipped hinge inverts that."""
    model = build(kind, lr=1e-3)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(_toy_batches(8), batch_size=None))
    held_out = _toy_batches(1, seed=7)[0]
    model.train()
    with torch.no_grad():
        step = model.make_step(held_out["support"], held_out["label"])
        real, _ = model.net_d.heads(model.net_d(held_out["support"].reshape(-1, 1, SIZE, SIZE)))
        fake, _ = model.net_d.heads(model.net_d(step.fake))
    assert real.mean() > fake.mean() + 0.1, (kind, float(real.mean()), float(fake.mean()))


@pytest.mark.parametrize("kind", list(EXPECTED_TERMS))
def test_training_updates_each_player_with_its_own_optimiser(kind):
    model = build(kind)
    before_g = [p.detach().clone() for p in model.net_g.parameters()]
    before_d = {n: p.detach().clone() for n, p in model.net_d.named_parameters()}
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(_toy_batches(2), batch_size=None))
    assert trainer.global_step == 4                              # two optimiser steps per batch
    for name in ("train/loss_d", "train/loss_g"):
        assert torch.isfinite(trainer.callback_metrics[name]), name
    assert any(not torch.equal(a, p) for a, p in zip(before_g, model.net_g.parameters()))
    changed = {n for n, p in model.net_d.named_parameters() if not torch.equal(before_d[n], p)}
    assert any(n.startswith("trunk.") for n in changed)
    # MatchingGAN's release never trains its classifier head (its optimiser never runs); F2GAN's D trains it
    assert any(n.startswith("classifier.") for n in changed) == model.train_classifier_head
    untoggled = [p.requires_grad for n, p in model.named_parameters() if not n.startswith("net_d.classifier.")]
    assert all(untoggled)                                        # untoggled after the step


def test_generations_per_step_and_hinge_forms():
    release = build("f2gan-release")
    assert release.generations == 2 and release.losses.hinge_on == "episode"
    mg = build("matchinggan")
    assert mg.generations == 1 and mg.losses.hinge_on == "image" and not mg.train_classifier_head
    assert fixed_step(release).fake.shape[0] == 8 and fixed_step(mg).fake.shape[0] == 4
    # with the reals of each episode scored (3, -1, 0) and the fake 0: per image, mean relu(1 - x) = (0 + 2 + 1) / 3
    # plus relu(1 + 0) = 1; averaged per episode first, relu(1 - 2/3) = 1/3 plus 1
    step = fixed_step(mg)
    logits = torch.tensor([3.0, -1.0, 0.0] * 4 + [0.0] * 4)
    for hinge_on, expected in (("image", 1 + 1), ("episode", 1 / 3 + 1)):
        model = build("matchinggan", hinge_on=hinge_on, loss_cla=0.0)
        model.net_d.heads = lambda maps: (logits, torch.zeros(len(logits), CLASSES))
        loss, _ = model.discriminator_loss(step)
        assert abs(float(loss) - expected) < 1e-5, (hinge_on, float(loss))


def test_k_1_is_refused_with_the_fix():
    with pytest.raises(UserError, match="data.k_shot >= 2"):
        F2GAN(image_size=SIZE, channels=1, num_seen_classes=CLASSES, k_shot=1,
              **{**method_defaults("f2gan"), **TINY_G, **TINY_D})
    model = build("matchinggan")
    with pytest.raises(UserError, match="K = 1"):
        model.generate(torch.rand(2, 1, 1, SIZE, SIZE), 2)


def test_bn_recalibration_uses_plain_batch_statistics():
    model = build("f2gan-paper")
    support = torch.rand(3, K, 1, SIZE, SIZE) * 2 - 1
    first_bn = model.net_g.encoder.first[2]
    momentum = first_bn.momentum
    model.recalibrate_batch_norm([support])
    with torch.no_grad():
        pre = model.net_g.encoder.first[1](model.net_g.encoder.first[0](support.reshape(9, 1, SIZE, SIZE)))
    # the generator ran on the support repeated for each generation, whose mean equals the mean over the 9 images
    assert torch.allclose(first_bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    assert first_bn.momentum == momentum and first_bn.num_batches_tracked == 1
