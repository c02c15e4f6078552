"""F2GAN: NAF attention, coefficient behaviour, the coefficient regressor, variants, generation, losses and figures.
(The training mechanism it shares with MatchingGAN is tested in test_fusion.py.)"""

from __future__ import annotations

import pytest
import torch
from helpers import method_defaults

from fsgen_bench.errors import UserError
from fsgen_bench.methods.blocks import FusionGenerator, sample_coefficients
from fsgen_bench.methods.f2gan.figures import (
    attention_figure,
    interpolation_coefficients,
    interpolation_strip,
    write_method_figures,
)
from fsgen_bench.methods.f2gan.model import (
    F2GAN,
    VARIANTS,
    CoefficientRegressor,
    coefficient_regression_loss,
    mode_seeking_loss,
)
from fsgen_bench.methods.f2gan.naf import NAF
from fsgen_bench.methods.fusion import FusionDiscriminator, pixel_reconstruction

TINY = dict(layer_sizes=(4, 4, 8, 8), inner_layers=1, disc_base_channels=4, disc_stages=3, disc_max_channels=16,
            disc_final_blocks=1, regressor_widths=(8,), bn_momentum=0.1)


def tiny_f2gan(size=32, k=3, **over) -> F2GAN:
    """The paper variant unless ``variant`` is given: its generation is deterministic for fixed coefficients."""
    torch.manual_seed(0)
    params = {**method_defaults("f2gan"), **TINY, "variant": "paper", **over}
    return F2GAN(image_size=size, channels=1, num_seen_classes=5, k_shot=k, **params)


# -- NAF -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["decoder", "encoder"])
@pytest.mark.parametrize("residual", [False, True])
def test_naf_attention_rows_sum_to_one_per_image(query, residual):
    torch.manual_seed(0)
    naf = NAF(6, 5, query=query, residual=residual)
    dec, enc = torch.randn(2, 6, 4, 4), torch.randn(2, 3, 5, 4, 4)
    fused, attn = naf(dec, enc, sample_coefficients(2, 3), need_weights=True)
    assert fused.shape == (2, 5, 4, 4)
    assert attn.shape == (2, 3, 16, 16)                       # [B, K, decoder positions, positions of image k]
    assert torch.allclose(attn.sum(-1), torch.ones(2, 3, 16), atol=1e-5)
    assert (attn >= 0).all()


def test_naf_residual_starts_as_the_weighted_skip():
    """The release's gamma-residual NAF equals MatchingGAN's sum_k a_k xi^k at initialisation (gamma = 0)."""
    naf = NAF(6, 5, query="encoder", residual=True)
    enc = torch.randn(2, 3, 5, 4, 4)
    a = sample_coefficients(2, 3)
    fused, _ = naf(torch.randn(2, 6, 4, 4), enc, a)
    assert torch.allclose(fused, (a[:, :, None, None, None] * enc).sum(1), atol=1e-6)


def test_naf_output_depends_on_every_image_and_on_k_count():
    torch.manual_seed(0)
    naf = NAF(6, 5)
    dec, enc, a = torch.randn(1, 6, 4, 4), torch.randn(1, 3, 5, 4, 4), sample_coefficients(1, 3)
    base, _ = naf(dec, enc, a)
    for k in range(3):
        changed = enc.clone()
        changed[:, k] += 1.0
        assert not torch.allclose(naf(dec, changed, a)[0], base)
    fused5, attn5 = naf(dec, torch.randn(1, 5, 5, 4, 4), sample_coefficients(1, 5), need_weights=True)
    assert fused5.shape == (1, 5, 4, 4) and attn5.shape == (1, 5, 16, 16)


# -- coefficients ----------------------------------------------------------------------------------------------
def test_output_changes_smoothly_with_the_coefficients():
    model = tiny_f2gan().eval()
    support = torch.rand(1, 2, 1, 32, 32) * 2 - 1
    t = torch.linspace(0, 1, 11)
    sweep = model.generate_with_coefficients(support.expand(11, -1, -1, -1, -1), torch.stack([1 - t, t], 1))
    start = model.generate_with_coefficients(support, torch.tensor([[0.5, 0.5]]))
    nudged = model.generate_with_coefficients(support, torch.tensor([[0.501, 0.499]]))
    moved = model.generate_with_coefficients(support, torch.tensor([[0.6, 0.4]]))
    small, large = (nudged - start).abs().mean(), (moved - start).abs().mean()
    assert large > 0
    assert small < 0.05 * large                                  # 100x smaller change -> ~100x smaller effect
    dist = (sweep - sweep[0]).abs().flatten(1).mean(1)           # distance from the t = 0 image along the sweep
    increasing = (dist[1:] >= dist[:-1] - 1e-7).float().mean()
    assert increasing >= 0.8, dist                               # monotone-ish


def test_generate_shapes_any_k_size_and_batch():
    for size in (28, 32):
        model = tiny_f2gan(size=size).eval()
        for k in range(2, 6):
            for b in (1, 2):
                out = model.generate(torch.rand(b, k, 1, size, size) * 2 - 1, 3, generator=torch.Generator().manual_seed(0))
                assert out.shape == (b, 3, 1, size, size)
                assert out.abs().max() <= 1.0


def test_generate_is_seeded_chunk_invariant_and_matches_explicit_coefficients():
    model = tiny_f2gan()
    model.train()                                                # generate must switch to eval by itself
    support = torch.rand(2, 3, 1, 32, 32) * 2 - 1
    a = model.generate(support, 4, generator=torch.Generator().manual_seed(7))
    assert model.net_g.training                                  # and restore the mode
    model.max_generate_batch = 3
    b = model.generate(support, 4, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(a, b, atol=1e-6)
    coeffs = sample_coefficients(8, 3, generator=torch.Generator().manual_seed(7))
    episodes = support.unsqueeze(1).expand(2, 4, 3, 1, 32, 32).reshape(8, 3, 1, 32, 32)
    explicit = model.generate_with_coefficients(episodes, coeffs).reshape(2, 4, 1, 32, 32)
    assert torch.allclose(a, explicit, atol=1e-6)
    assert not torch.allclose(a, model.generate(support, 4, generator=torch.Generator().manual_seed(8)))


def test_corruption_option_is_seeded_and_keeps_pixels_with_probability_a_k():
    model = tiny_f2gan(corruption=True).eval()
    support = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    a = model.generate(support, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, model.generate(support, 2, generator=torch.Generator().manual_seed(1)))
    from fsgen_bench.methods.f2gan.model import corrupt_inputs

    big = torch.full((1, 3, 1, 64, 64), 5.0)                     # N(0, 1) noise never equals 5
    coeffs = torch.tensor([[0.1, 0.3, 0.6]])
    kept = (corrupt_inputs(big, coeffs, torch.Generator().manual_seed(0)) == 5.0).float().mean(dim=(2, 3, 4))
    assert torch.allclose(kept, coeffs, atol=0.03)


# -- coefficient regressor -------------------------------------------------------------------------------------
def _blob_pool(n: int, size: int, seed: int) -> torch.Tensor:
    """n random images in [-1, 1], each a few bright Gaussian blobs (distinct, like glyph strokes)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    centres = torch.rand(n, 3, 2, generator=g) * size
    d2 = (yy - centres[..., 0, None, None]) ** 2 + (xx - centres[..., 1, None, None]) ** 2
    img = torch.exp(-d2 / (2 * (size / 8) ** 2)).sum(1).clamp(max=1.0)
    return (img * 2 - 1).unsqueeze(1)                             # [n, 1, size, size]


def _fused_batch(pool: torch.Tensor, batch: int, k: int, g: torch.Generator):
    idx = torch.stack([torch.randperm(len(pool), generator=g)[:k] for _ in range(batch)])
    support = pool[idx]                                          # [B, K, 1, H, W]
    a = sample_coefficients(batch, k, generator=g)
    return support, a, (a[:, :, None, None, None] * support).sum(1)


def test_coefficient_regressor_learns_on_held_out_fused_samples():
    """The regressor head, fitted with the D step's loss, beats predicting uniform 1/K (L1) on unseen images."""
    torch.manual_seed(0)
    k, size, batch = 3, 16, 32
    disc = FusionDiscriminator(1, 5, base_channels=4, num_stages=2, max_channels=16, final_blocks=0,
                               lrelu_before_gap=False, extra_head=CoefficientRegressor(16, k, (32, 16), "lrelu"))
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3, betas=(0.5, 0.9))
    train_pool, test_pool = _blob_pool(64, size, 0), _blob_pool(32, size, 1)
    g = torch.Generator().manual_seed(0)

    def split(maps, n):
        return maps[: n * k].reshape(n, k, *maps.shape[1:]), maps[n * k:]

    for _ in range(300):
        support, a, fused = _fused_batch(train_pool, batch, k, g)
        real, fake = split(disc(torch.cat([support.reshape(-1, 1, size, size), fused])), batch)
        loss = coefficient_regression_loss(disc.regressor, real, fake, a, form="soft_ce")
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        support, a, fused = _fused_batch(test_pool, 256, k, torch.Generator().manual_seed(1))
        real, fake = split(disc(torch.cat([support.reshape(-1, 1, size, size), fused])), 256)
        err = coefficient_regression_loss(disc.regressor, real, fake, a, form="l1")
    uniform_err = (a - 1.0 / k).abs().mean()
    assert err < 0.8 * uniform_err, (float(err), float(uniform_err))


def test_regressor_is_k_specific_but_generation_is_not():
    model = tiny_f2gan(k=3)
    with pytest.raises(ValueError, match="K=3"):
        model.net_d.regressor(torch.randn(2, 4, 16, 4, 4), torch.randn(2, 16, 4, 4))
    assert model.generate(torch.rand(1, 5, 1, 32, 32), 2).shape == (1, 2, 1, 32, 32)
    assert tiny_f2gan(loss_sim=0.0).net_d.regressor is None
    step = model.make_step(torch.rand(2, 2, 1, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="K=3"):
        model.discriminator_loss(step)


# -- losses ----------------------------------------------------------------------------------------------------
def test_mode_seeking_directions_and_reductions():
    a1, a2 = torch.tensor([[0.2, 0.8]]), torch.tensor([[0.6, 0.4]])
    near, far = torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2)
    base = torch.full((1, 4, 2, 2), 0.5)
    for reduction in ("sample", "batch"):
        # minimising the diversity form pushes the two generations' D features apart; the release's form together
        assert (mode_seeking_loss(base, far, a1, a2, "diversity", reduction)
                < mode_seeking_loss(base, near + 0.45, a1, a2, "diversity", reduction))
        assert (mode_seeking_loss(base, far, a1, a2, "code", reduction)
                > mode_seeking_loss(base, near + 0.45, a1, a2, "code", reduction))
    # per sample (release) = the mean of the per-episode ratios; batch = the ratio of the batch means
    f1, f2 = torch.zeros(2, 1, 1, 1), torch.tensor([1.0, 3.0]).reshape(2, 1, 1, 1)
    b1, b2 = torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([[0.6, 0.4], [0.9, 0.1]])
    per_sample = mode_seeking_loss(f1, f2, b1, b2, "code", "sample")
    batch = mode_seeking_loss(f1, f2, b1, b2, "code", "batch")
    assert torch.isclose(per_sample, torch.tensor((1 / 0.1 + 3 / 0.4) / 2), rtol=1e-3)
    assert torch.isclose(batch, torch.tensor(2 / 0.25), rtol=1e-3)


def test_pixel_reconstruction_forms():
    support = torch.rand(2, 3, 1, 4, 4)
    a = sample_coefficients(2, 3)
    target = (a[:, :, None, None, None] * support).sum(1)
    assert pixel_reconstruction(target, support, a, "fused") < 1e-6
    assert pixel_reconstruction(target, support, a, "per_image") > 0
    expected = (target.unsqueeze(1) - a[:, :, None, None, None] * support).abs().sum(1).mean()
    assert torch.isclose(pixel_reconstruction(target, support, a, "per_image"), expected)


# -- variants --------------------------------------------------------------------------------------------------
def test_variants_set_exactly_their_switches_and_an_explicit_value_wins():
    assert F2GAN.variants == ("release", "paper") and F2GAN.default_variant == method_defaults("f2gan")["variant"]
    for variant, switches in VARIANTS.items():
        model = tiny_f2gan(variant=variant)
        assert model.variant == variant == model.hparams["variant"]
        assert model.variant_switches == switches
        assert model.f2gan_losses.mode_seeking_direction == switches["mode_seeking_direction"]
        assert model.f2gan_losses.mode_seeking_reduction == switches["mode_seeking_reduction"]
        assert model.f2gan_losses.regressor_train == switches["regressor_train"]
        assert model.losses.recons_form == switches["recons_form"] and model.corruption == switches["corruption"]
        naf = model.net_g.fusions["0"]
        assert naf.query == switches["naf_query"]
        has_act = any(isinstance(m, torch.nn.LeakyReLU) for m in model.net_d.regressor.body)
        assert has_act == (switches["regressor_activation"] == "lrelu")
    # a single switch set explicitly wins over the variant; the others stay the variant's
    model = tiny_f2gan(variant="release", mode_seeking_direction="diversity")
    assert model.variant_switches == {**VARIANTS["release"], "mode_seeking_direction": "diversity"}
    with pytest.raises(UserError, match="unknown method.variant"):
        tiny_f2gan(variant="nope")
    with pytest.raises(UserError, match="generations_per_step"):
        tiny_f2gan(generations_per_step=1)


def test_release_regressor_head_stays_at_its_initialisation():
    """release: L_a is only in G's loss, so D's optimiser never moves the regressor head (net L287 @ 8151595)."""
    import lightning as L
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(0)
    batches = [{"support": torch.rand(2, 3, 1, 32, 32, generator=g) * 2 - 1, "label": torch.tensor([0, 1]),
                "class_id": torch.tensor([0, 1])} for _ in range(2)]
    for variant, moves in (("release", False), ("paper", True)):
        model = tiny_f2gan(variant=variant)
        before = [p.detach().clone() for p in model.net_d.regressor.parameters()]
        L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(model, DataLoader(batches, batch_size=None))
        moved = any(not torch.equal(a, p) for a, p in zip(before, model.net_d.regressor.parameters()))
        assert moved == moves, variant


# -- figures and configs ---------------------------------------------------------------------------------------
def test_figures(tmp_path):
    model = tiny_f2gan().eval()
    support = torch.rand(3, 1, 32, 32) * 2 - 1
    strip = interpolation_strip(model, support[:2], steps=5)
    assert strip.shape == (5, 1, 32, 32)
    # the sweep stays inside the coefficients training draws: a_1 from 10/11 to 1/11 for u ~ U(1, 10)
    coeffs = interpolation_coefficients(model, 5)
    assert torch.allclose(coeffs[[0, -1]], torch.tensor([[10 / 11, 1 / 11], [1 / 11, 10 / 11]]))
    drawn = sample_coefficients(20000, 2, generator=torch.Generator().manual_seed(0))
    assert 1 / 11 <= drawn.min() < 1 / 11 + 0.01 and 10 / 11 - 0.01 < drawn.max() <= 10 / 11
    ends = model.generate_with_coefficients(support[:2].unsqueeze(0).expand(2, -1, -1, -1, -1), coeffs[[0, -1]])
    assert torch.allclose(strip[[0, -1]], ends, atol=1e-6)
    maps = model.attention_maps(support.unsqueeze(0))
    assert sorted(maps) == [0, 1] and maps[0].shape == (1, 3, 4, 4, 4, 4) and maps[1].shape == (1, 3, 8, 8, 8, 8)
    heat = attention_figure(model, support, (1, 2))
    assert heat.shape == (3, 4, 4) and torch.allclose(heat.sum((1, 2)), torch.ones(3), atol=1e-5)
    paths = write_method_figures(model, support, tmp_path)
    assert [p.name for p in paths] == ["interpolation.png", "attention.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_presets_build():
    from fsgen_bench.config import resolve
    from fsgen_bench.data.source import DatasetInfo
    from fsgen_bench.runner.build import build_method

    info = DatasetInfo(name="glyphs", channels=1, image_size=32, native_size=None, num_classes=10, num_seen=8,
                       origin="test")
    for preset in ("smoke", "quick", "paper"):
        cfg = resolve(method="f2gan", dataset="glyphs", preset=preset)
        model = build_method(cfg, info)
        assert isinstance(model, F2GAN) and model.hparams.k_shot == cfg["data"]["k_shot"]
        assert model.variant == F2GAN.default_variant
    assert list(model.hparams.layer_sizes) == [64, 64, 128, 128]
    # --set method.variant=... selects the bundle; --set of one switch wins over it
    cfg = resolve(method="f2gan", dataset="glyphs", preset="smoke",
                  overrides=["method.variant=paper", "method.corruption=true"])
    model = build_method(cfg, info)
    assert model.variant == "paper" and model.corruption and model.losses.recons_form == "fused"


def test_naf_stages_follow_config():
    gen = tiny_f2gan(naf_stages=[0, 1, 2]).net_g
    assert isinstance(gen, FusionGenerator) and sorted(gen.fusions.keys()) == ["0", "1", "2"]
