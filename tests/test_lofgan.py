"""LoFGAN: the local fusion module, the local reconstruction loss, the schedule, generation and training signs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsgen_bench.baselines.lofgan.model import LoFGAN, lr_factor
from fsgen_bench.baselines.lofgan.networks import (
    FusionDraw,
    LoFGANGenerator,
    draw_fusion,
    local_fusion,
    local_reconstruction_loss,
    power_iteration,
)
from fsgen_bench.config import configs_dir, load_yaml

TINY = dict(gen_widths=[4, 8, 8], rate=0.5, bn_momentum=0.1, disc_base_channels=4, disc_blocks=2,
            disc_max_channels=16, lr_gen=1e-4, lr_dis=1e-4, betas=[0.9, 0.999], weight_decay=1e-4,
            lr_decay_start=0.5, loss_adv_g=1.0, loss_adv_d=1.0, loss_recon=0.5, loss_cls=1.0, loss_gp=10.0,
            bn_recalibration_batches=2, max_generate_batch=5)


def tiny_lofgan(size=16, k=3, **over) -> LoFGAN:
    torch.manual_seed(0)
    return LoFGAN(image_size=size, channels=1, num_seen_classes=4, k_shot=k, **{**TINY, **over})


def a_draw(b=2, k=3, hw=16, m=6, seed=0) -> FusionDraw:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand((b, k), generator=g)
    return FusionDraw(torch.randint(0, k, (b,), generator=g), u / u.sum(1, keepdim=True),
                      torch.rand((b, hw), generator=g).argsort(1)[:, :m])


# -- the local fusion module -----------------------------------------------------------------------------------
def test_local_fusion_equals_the_papers_definition_position_by_position():
    """Selected base position m gets a_base f_base[m] + sum_j a_j f_j[argmax_n cos(f_base[m], f_j[n])]; every other
    position keeps the base feature (checked against a plain loop over episodes, references and positions)."""
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 5, 4, 4)
    draw = a_draw()
    res = local_fusion(feats, draw)
    fused = res.fused.flatten(2)
    for b in range(2):
        flat = feats[b].flatten(2)                          # [K, C, N]
        base = int(draw.base[b])
        refs = [j for j in range(3) if j != base]
        assert res.ref_index[b].tolist() == refs
        expect = flat[base].clone()
        for i, m in enumerate(draw.positions[b].tolist()):
            q = flat[base][:, m]
            value = draw.alpha[b, base] * q
            for jj, j in enumerate(refs):
                cos = F.cosine_similarity(q[:, None], flat[j], dim=0)
                n = int(cos.argmax())
                assert int(res.matches[b, jj, i]) == n
                value = value + draw.alpha[b, j] * flat[j][:, n]
            expect[:, m] = value
        assert torch.allclose(fused[b], expect, atol=1e-6)


def test_fused_map_depends_on_references_exactly_at_the_matched_positions():
    """Scaling a reference's feature vector by a positive factor keeps every cosine similarity, hence the matching:
    the fused map then changes iff that reference position was matched by some selected base position."""
    torch.manual_seed(1)
    feats = torch.randn(1, 3, 6, 4, 4)
    draw = a_draw(b=1, m=5, seed=3)
    res = local_fusion(feats, draw)
    changed, unchanged = 0, 0
    for jj, j in enumerate(res.ref_index[0].tolist()):
        matched = set(res.matches[0, jj].tolist())
        for n in range(16):
            scaled = feats.clone()
            scaled[0, j, :, n // 4, n % 4] *= 3.0
            other = local_fusion(scaled, draw)
            assert torch.equal(other.matches, res.matches)
            moved = not torch.allclose(other.fused, res.fused)
            assert moved == (n in matched), (j, n, matched)
            changed += moved
            unchanged += not moved
    assert changed > 0 and unchanged > 0
    # the base map: unselected positions pass through unchanged
    keep = torch.ones(16, dtype=torch.bool)
    keep[draw.positions[0]] = False
    base = feats[0, int(draw.base[0])].flatten(1)
    assert torch.equal(res.fused[0].flatten(1)[:, keep], base[:, keep])


def test_generator_output_depends_on_the_other_images_only_through_fusion():
    """With rate 0 nothing is fused: the image is the base image's reconstruction whatever the other images are.
    With rate 0.5 changing a non-base image changes the image."""
    torch.manual_seed(0)
    support = torch.rand(2, 3, 1, 16, 16) * 2 - 1
    other = support.clone()
    for rate, should_change in ((0.0, False), (0.5, True)):
        g = LoFGANGenerator(1, [4, 8, 8], rate=rate).eval()
        draw = draw_fusion(2, 3, 4, 4, rate, device="cpu", generator=torch.Generator().manual_seed(0))
        for b in range(2):
            j = (int(draw.base[b]) + 1) % 3
            other[b, j] = torch.rand(1, 16, 16) * 2 - 1
        with torch.no_grad():
            a, b_ = g(support, draw)[0], g(other, draw)[0]
        assert (not torch.allclose(a, b_)) == should_change


def test_any_k_and_batch_and_k1_is_a_deterministic_reconstruction():
    model = tiny_lofgan().eval()
    for k in (1, 2, 5):
        out = model.generate(torch.rand(3, k, 1, 16, 16) * 2 - 1, 4, generator=torch.Generator().manual_seed(0))
        assert out.shape == (3, 4, 1, 16, 16)
    one = model.generate(torch.rand(1, 1, 1, 16, 16), 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(one[0, 0], one[0, 1])


def test_an_image_does_not_depend_on_the_other_episodes_of_its_batch():
    model = tiny_lofgan().eval()
    support = torch.rand(3, 3, 1, 16, 16) * 2 - 1
    draw = a_draw(b=3, hw=4, m=2)
    with torch.no_grad():
        together = model.net_g.decode(model.net_g.encode(support), draw)[0]
        alone = model.net_g.decode(model.net_g.encode(support[1:2]), draw[1:2])[0]
    assert torch.allclose(together[1:2], alone, atol=1e-6)


def test_generate_decodes_each_support_set_once_for_many_draws():
    """generate() encodes the support once and decodes num draws from it: same result as encoding per draw."""
    model = tiny_lofgan(max_generate_batch=3).eval()
    support = torch.rand(2, 3, 1, 16, 16) * 2 - 1
    out = model.generate(support, 4, generator=torch.Generator().manual_seed(7))
    draw = draw_fusion(8, 3, 4, 4, 0.5, device="cpu", generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        direct = model.net_g(support.repeat_interleave(4, dim=0), draw)[0]
    assert torch.allclose(out.reshape(8, 1, 16, 16), direct, atol=1e-6)


# -- the local reconstruction loss -----------------------------------------------------------------------------
def test_local_reconstruction_target_follows_the_matched_reference_pixels():
    """The loss is 0 for an image equal (at the fused map's resolution) to the fusion of the shrunk images with the
    generator's matches, and moves with a reference pixel only where that pixel was matched."""
    torch.manual_seed(0)
    support = torch.rand(1, 3, 1, 16, 16)
    draw = a_draw(b=1, hw=16, m=5, seed=2)
    res = local_fusion(torch.randn(1, 3, 6, 4, 4), draw)
    small = F.interpolate(support[0], size=(4, 4), mode="nearest").flatten(1)   # [K, 16]
    base = int(draw.base[0])
    target = small[base].clone()
    for i, m in enumerate(draw.positions[0].tolist()):
        target[m] = draw.alpha[0, base] * small[base, m] + sum(
            draw.alpha[0, j] * small[j, int(res.matches[0, jj, i])] for jj, j in enumerate(res.ref_index[0].tolist()))
    fake = F.interpolate(target.reshape(1, 1, 4, 4), size=(16, 16), mode="nearest")
    assert float(local_reconstruction_loss(fake, support, draw, res)) < 1e-7
    j = int(res.ref_index[0, 0])
    matched = set(res.matches[0, 0].tolist())
    for n in range(16):
        bumped = support.clone()
        bumped[0, j, 0, (n // 4) * 4, (n % 4) * 4] += 0.5                       # the pixel nearest shrinking keeps
        moved = float(local_reconstruction_loss(fake, bumped, draw, res)) > 1e-7
        assert moved == (n in matched)


# -- schedule and spectral norm --------------------------------------------------------------------------------
def test_lr_schedule_is_the_releases_linear_decay_over_the_second_half():
    total, lr0, lr = 10, 1.0, 1.0
    for it in range(total):                     # release trainer.py:82-85, called before every iteration
        if it > total // 2:
            lr -= lr0 / (total // 2)
        assert lr_factor(it, total, 0.5) == pytest.approx(lr)
    assert lr_factor(3, float("inf"), 0.5) == 1.0


def test_power_iteration_matches_a_discarded_training_forward():
    """The G step replaces the release's discarded D pass over the reals by one power-iteration step: the spectral
    norms' state must then equal what that pass would have left."""
    a, b = tiny_lofgan(), tiny_lofgan()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        a.net_d(torch.rand(2, 1, 16, 16))
    power_iteration(b.net_d, 1)
    for (name, x), (_, y) in zip(a.net_d.named_buffers(), b.net_d.named_buffers()):
        assert torch.allclose(x, y, atol=1e-6), name


# -- training: every loss term is wired with its sign -----------------------------------------------------------
ZERO = dict(loss_adv_g=0.0, loss_adv_d=0.0, loss_recon=0.0, loss_cls=0.0, loss_gp=0.0, weight_decay=0.0,
            lr_gen=2e-3, lr_dis=2e-3)


def _toy_batch():
    g = torch.Generator().manual_seed(0)
    support = torch.rand((4, 3, 1, 16, 16), generator=g) * 2 - 1
    support[:2, :, :, 4:12, 4:12] = 1.0                 # two classes told apart by a bright square
    return support, torch.tensor([0, 0, 1, 1])


def _measure(model, support, labels, quantity: str) -> float:
    """The quantity each loss term should lower, computed from the networks directly (not from the loss code)."""
    draw = draw_fusion(4, 3, 4, 4, 0.5, device="cpu", generator=torch.Generator().manual_seed(5))
    reals, labels_real = support.flatten(0, 1), labels.repeat_interleave(3)
    d = model.net_d.eval()                                  # spectral norms from their stored vectors: no side effect
    try:
        with torch.no_grad():
            fake, fusion = model.net_g(support, draw)
            adv_r, cls_r = d(reals)
            adv_f, _ = d(fake)
        if quantity == "d_adv_gap":                         # D separates reals from fakes: -(real - fake)
            return -float(adv_r.mean() - adv_f.mean())
        if quantity == "d_cls":
            return float(F.cross_entropy(cls_r, labels_real))
        if quantity == "d_grad":                            # the penalised gradient norm
            x = reals.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(d(x)[1].gather(1, labels_real.unsqueeze(1)).mean(), x)
            return float(g.pow(2).sum())
        if quantity == "g_adv":                             # G raises D's adversarial logit on its images
            return -float(adv_f.mean())
        if quantity == "g_recon":
            return float(local_reconstruction_loss(fake, support, draw, fusion))
        raise KeyError(quantity)
    finally:
        d.train()


@pytest.mark.parametrize("weight, quantity", [
    ("loss_adv_d", "d_adv_gap"),
    ("loss_cls", "d_cls"),
    ("loss_gp", "d_grad"),
    ("loss_adv_g", "g_adv"),
    ("loss_recon", "g_recon"),
])
def test_each_loss_term_alone_moves_its_quantity_the_right_way(weight, quantity):
    """Training with one loss weight on lowers what that term penalises, measured on the networks themselves: a
    flipped sign or a dropped term fails here."""
    model = tiny_lofgan(**{**ZERO, weight: 1.0})
    support, labels = _toy_batch()
    opt_g, opt_d = model.configure_optimizers()
    before = _measure(model, support, labels, quantity)
    for _ in range(15):
        model.train_iteration(support, labels, opt_g, opt_d)
    after = _measure(model, support, labels, quantity)
    assert after < before - 0.1 * abs(before), (quantity, before, after)


def test_the_default_config_section_equals_what_the_constructor_needs():
    params = load_yaml(configs_dir() / "methods" / "lofgan.yaml")["method"]
    params.pop("name")
    model = LoFGAN(image_size=16, channels=1, num_seen_classes=3, k_shot=3,
                   **{**params, "gen_widths": [4, 8, 8], "disc_base_channels": 4, "disc_blocks": 1})
    assert model.losses.gp == 10.0 and model.losses.recon == 0.5
