"""DAGAN (baselines/dagan): pair critic, WGAN-GP schedule, one-image conditioning cycled over K."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from helpers import method_defaults

from fsgen_bench.baselines.dagan.model import DAGAN, make_pairs
from fsgen_bench.errors import UserError
from fsgen_bench.data.datamodule import ClassStore, EpisodicDataModule
from fsgen_bench.data.source import ClassImages, DatasetInfo

SIZE = 16


def tiny(**kw) -> DAGAN:
    torch.manual_seed(0)
    args = {**method_defaults("dagan"), **dict(
        image_size=SIZE, channels=1, num_seen_classes=4, k_shot=3, layer_sizes=(4, 4, 8), inner_layers=1,
        dropout=0.0, disc_layer_sizes=(4, 8), disc_inner_layers=1, disc_head_width=8, bn_momentum=0.1)}
    args.update(kw)
    return DAGAN(**args)


def support(b: int, k: int, seed: int = 1, size: int = SIZE, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, k, channels, size, size), generator=g) * 2 - 1


def tiny_datamodule(tmp_path, *, batches: int, k_shot: int = 3) -> EpisodicDataModule:
    """Each class is one distinct constant-per-class pattern, so 'same class' is checkable from pixels."""
    rng = np.random.default_rng(0)
    classes = [(rng.random((1, SIZE, SIZE, 1)) > 0.5).repeat(5, 0).astype(np.uint8) * 255 for _ in range(6)]
    for c, imgs in enumerate(classes):
        imgs[:, 0, 0, 0] = np.arange(5) * 40 + c          # images of a class differ in one pixel
    info = DatasetInfo(name="tiny", channels=1, image_size=SIZE, native_size=SIZE, num_classes=6, num_seen=4,
                       origin="test")
    images = ClassImages(info=info, classes=classes, class_names=[str(i) for i in range(6)], seen=[0, 1, 2, 3],
                         unseen=[4, 5])
    cfg = {"name": "tiny", "k_shot": k_shot, "batch_size": 2, "episodes_per_epoch": 2 * batches, "num_workers": 0,
           "image_size": SIZE, "channels": 1}
    dm = EpisodicDataModule(cfg, cache_dir=tmp_path, seed=0)
    dm.images, dm.seen_store = images, ClassStore(images, images.seen)
    return dm


def fit(model, dm, epochs: int = 1, callbacks=()):
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(model, datamodule=dm)
    return trainer


def test_pairs_are_two_images_of_one_episode():
    s = support(3, 4)
    x, y = make_pairs(s)
    assert torch.equal(x, s[:, 0]) and torch.equal(y, s[:, 1])
    with pytest.raises(UserError, match="k_shot >= 2"):
        make_pairs(support(3, 1))


def test_critic_sees_real_pairs_of_one_class_and_fake_pairs(tmp_path):
    model = tiny()
    seen_inputs: list[torch.Tensor] = []
    model.critic.register_forward_hook(lambda mod, args, out: seen_inputs.append(args[0].detach().clone()))
    batches: list[dict] = []

    class Grab(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            batches.append({k: v.clone() for k, v in batch.items()})

    fit(model, tiny_datamodule(tmp_path, batches=1), callbacks=[Grab()])
    s = batches[0]["support"]
    x = s[:, 0]
    real_pair, fake_pair = seen_inputs[0], seen_inputs[1]
    assert real_pair.shape[1] == 2 * 1, "the critic input must hold the two images of a pair (2*C channels)"
    # Real pair: (x, x') = support[:, 0], support[:, 1], two distinct images of one episode's class.
    assert torch.equal(real_pair, torch.cat([x, s[:, 1]], dim=1))
    assert not torch.equal(s[:, 0], s[:, 1])
    assert (s[:, 0, :, 1:, 1:] == s[:, 1, :, 1:, 1:]).all(), "a real pair mixes classes"
    # Fake pair: the same conditional x, then a generated image.
    assert torch.equal(fake_pair[:, :1], x)
    assert not torch.equal(fake_pair[:, 1:], s[:, 1])


def test_training_needs_two_images_per_episode():
    with pytest.raises(UserError, match="k_shot >= 2"):
        tiny(k_shot=1)


@pytest.mark.parametrize("critic_steps,batches,g_moves", [(2, 2, True), (5, 4, False)])
def test_generator_updates_once_per_critic_steps(tmp_path, critic_steps, batches, g_moves):
    model = tiny(critic_steps=critic_steps)
    g0 = {n: p.detach().clone() for n, p in model.generator.named_parameters()}
    d0 = {n: p.detach().clone() for n, p in model.critic.named_parameters()}
    fit(model, tiny_datamodule(tmp_path, batches=batches))
    assert model.critic_updates == batches
    assert any(not torch.equal(p.detach(), d0[n]) for n, p in model.critic.named_parameters())
    g_changed = any(not torch.equal(p.detach(), g0[n]) for n, p in model.generator.named_parameters())
    assert g_changed == g_moves


def test_generated_image_j_is_conditioned_on_support_j_mod_k():
    model = tiny()
    s = support(1, 3)
    other = s.clone()
    other[:, 1] = -other[:, 1]
    a = model.generate(s, 6, generator=torch.Generator().manual_seed(0))
    b = model.generate(other, 6, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(a[0, j], b[0, j]) for j in range(6)]
    assert same == [True, False, True, True, False, True]


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 1), (64, 3), (96, 3)])
def test_generate_shapes_and_range_for_k_1_to_5(size, channels):
    model = tiny(image_size=size, channels=channels)
    for k in range(1, 6):
        out = model.generate(support(2, k, size=size, channels=channels), 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, channels, size, size)
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
    # Deterministic under a fixed generator, in train mode as well (generate always runs the inference path).
    model.train()
    s = support(2, 3, size=size, channels=channels)
    assert torch.equal(model.generate(s, 2, generator=torch.Generator().manual_seed(3)),
                       model.generate(s, 2, generator=torch.Generator().manual_seed(3)))


# -- mechanism: adversarial signs, the gradient penalty, z maps ------------------------------------------------
def _pair_batch(seed: int = 0):
    s = support(4, 2, seed=seed)
    return s[:, 0], s[:, 1]


def test_critic_step_raises_the_wasserstein_estimate():
    model = tiny(gp_weight=0.0)
    x, real = _pair_batch()
    with torch.no_grad():
        fake = model.generator(x, torch.randn(4, model.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        before = float(model.critic_score(x, real).mean() - model.critic_score(x, fake).mean())
    opt = torch.optim.SGD(model.critic.parameters(), lr=0.01)
    for _ in range(3):
        loss, logs = model.critic_loss(x, real, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(model.critic_score(x, real).mean() - model.critic_score(x, fake).mean())
    assert after > before + 1e-4, (before, after)


def test_generator_step_raises_the_critic_score_of_its_images():
    model = tiny()
    x, _ = _pair_batch()
    z = torch.randn(4, model.z_dim, generator=torch.Generator().manual_seed(0))
    score = lambda: float(model.critic_score(x, model.generator(x, z)).mean())
    with torch.no_grad():
        before = score()
    opt = torch.optim.SGD(model.generator.parameters(), lr=0.01)
    loss = model.generator_loss(x, model.generator(x, z))
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert score() > before


def test_gradient_penalty_reaches_the_critic_gradient_and_has_the_release_form():
    x, real = _pair_batch()
    grads = {}
    for weight in (10.0, 0.0):
        model = tiny(gp_weight=weight)
        with torch.no_grad():
            fake = model.generator(x, torch.randn(4, model.z_dim, generator=torch.Generator().manual_seed(0)))
        torch.manual_seed(0)
        loss, logs = model.critic_loss(x, real, fake)
        grads[weight] = torch.autograd.grad(loss, list(model.critic.parameters()))
        assert torch.isclose(logs["dagan/d_loss"], -logs["dagan/wdist"] + weight * logs["dagan/gp"])
    assert any(not torch.allclose(a, b) for a, b in zip(grads[10.0], grads[0.0]))
    # height (release L184: sum of squares over axis 1 of NHWC) vs sample (WGAN-GP) norms of the same gradient
    model = tiny()
    assert model.gp_norm == "height"
    torch.manual_seed(0)
    eps = torch.rand(4, 1, 1, 1)
    interp = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(model.critic_score(x, interp).sum(), interp)
    torch.manual_seed(0)
    assert torch.isclose(model.gradient_penalty(x, real, fake), ((g.pow(2).sum(2).sqrt() - 1) ** 2).mean(), atol=1e-5)
    model.gp_norm = "sample"
    torch.manual_seed(0)
    assert torch.isclose(model.gradient_penalty(x, real, fake), ((g.flatten(1).norm(dim=1) - 1) ** 2).mean(),
                         atol=1e-5)


def test_z_maps_have_the_release_channels():
    model = DAGAN(image_size=SIZE, channels=1, num_seen_classes=4, k_shot=2,
                  **{**method_defaults("dagan"), "layer_sizes": (4, 4, 8), "inner_layers": 1,
                     "disc_layer_sizes": (4, 8), "disc_inner_layers": 1, "disc_head_width": 8})
    assert model.generator.z_channels == [8, 4, 2]
    sizes = model.generator.stage_sizes
    assert [p.out_features for p in model.generator.z_proj] == [c * sizes[s] ** 2 for s, c in enumerate([8, 4, 2])]


def test_the_critic_separates_real_from_fake_pairs_after_a_few_training_steps(tmp_path):
    """Through the real training_step (Trainer, optimiser toggling): real pairs score above fake pairs."""
    model = tiny(critic_steps=2, lr=1e-3)
    dm = tiny_datamodule(tmp_path, batches=8)
    fit(model, dm)
    s = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)["support"]
    x, real = make_pairs(s)
    with torch.no_grad():
        fake = model.generator(x, torch.randn(x.shape[0], model.z_dim))
        assert model.critic_score(x, real).mean() > model.critic_score(x, fake).mean() + 0.1


def test_bn_statistics_are_recalibrated_at_the_end_of_the_epoch(tmp_path):
    model = tiny()
    bn = model.generator.encoder.first[2]
    seen = []
    original = model._recalibration_forward
    model._recalibration_forward = lambda s: (seen.append(s.shape), original(s))
    fit(model, tiny_datamodule(tmp_path, batches=3))
    assert len(seen) == 3 and bn.num_batches_tracked == 3       # the last 3 batches, one plain average
    assert tiny(bn_recalibration_batches=0).bn_recalibration.batches == 0
