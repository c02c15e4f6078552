"""F2GAN: NAF attention, coefficient behaviour, the coefficient regressor, generation, losses and figures."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fsgen_bench.methods.blocks import FusionGenerator, sample_coefficients
from fsgen_bench.methods.f2gan.figures import attention_figure, interpolation_strip, write_method_figures
from fsgen_bench.methods.f2gan.model import (
    F2GAN,
    FusionDiscriminator,
    coefficient_regression_loss,
    mode_seeking_loss,
    weighted_l1,
)
from fsgen_bench.methods.f2gan.naf import NAF

TINY = dict(layer_sizes=(4, 4, 8, 8), inner_layers=1, disc_base_channels=4, disc_stages=3, disc_max_channels=16,
            disc_final_blocks=1, regressor_widths=(8,), bn_momentum=0.1)


def tiny_f2gan(size=32, k=3, **over) -> F2GAN:
    torch.manual_seed(0)
    return F2GAN(image_size=size, channels=1, num_seen_classes=5, k_shot=k, **{**TINY, **over})


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
        for k in range(1, 6):
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


def test_corruption_option_is_seeded():
    model = tiny_f2gan(corruption=True).eval()
    support = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    a = model.generate(support, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, model.generate(support, 2, generator=torch.Generator().manual_seed(1)))


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
    disc = FusionDiscriminator(1, 5, k, base_channels=4, num_stages=2, max_channels=16, final_blocks=0,
                               regressor_widths=(32, 16))
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


# -- losses ----------------------------------------------------------------------------------------------------
def test_mode_seeking_directions():
    a1, a2 = torch.tensor([[0.2, 0.8]]), torch.tensor([[0.6, 0.4]])
    near, far = torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2)
    base = torch.full((1, 4, 2, 2), 0.5)
    # minimising the default loss pushes the two generations' D features apart (more diversity)
    assert mode_seeking_loss(base, far, a1, a2) < mode_seeking_loss(base, near + 0.45, a1, a2)
    assert mode_seeking_loss(base, far, a1, a2, "code") > mode_seeking_loss(base, near + 0.45, a1, a2, "code")


def test_weighted_l1_forms():
    support = torch.rand(2, 3, 1, 4, 4)
    a = sample_coefficients(2, 3)
    target = (a[:, :, None, None, None] * support).sum(1)
    assert weighted_l1(target, support, a, "fused") < 1e-6
    assert weighted_l1(target, support, a, "per_image") > 0


# -- training --------------------------------------------------------------------------------------------------
def _random_batches(n: int, b: int, k: int, size: int = 32):
    g = torch.Generator().manual_seed(0)
    return [{"support": torch.rand(b, k, 1, size, size, generator=g) * 2 - 1, "label": torch.randint(0, 5, (b,), generator=g),
             "class_id": torch.zeros(b, dtype=torch.long)} for _ in range(n)]


@pytest.mark.parametrize("options", [
    {},
    dict(naf_query="encoder", naf_residual=True, recons_form="per_image", mode_seeking_direction="code",
         regressor_train="none", corruption=True),
])
def test_training_steps_update_both_players_and_log_finite_losses(options):
    model = tiny_f2gan(**options)
    before_g = [p.detach().clone() for p in model.net_g.parameters()]
    before_d = [p.detach().clone() for p in model.net_d.parameters()]
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(_random_batches(2, 2, 3), batch_size=None))
    assert trainer.global_step == 4                              # two optimiser steps per batch
    metrics = trainer.callback_metrics
    for name in ("train/loss_d", "train/loss_g", "train/d_adv", "train/g_recons", "train/g_mode_seeking"):
        assert torch.isfinite(metrics[name]), name
    assert ("train/d_sim" in metrics) == (options.get("regressor_train", "fake") == "fake")
    assert any(not torch.equal(a, p) for a, p in zip(before_g, model.net_g.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(before_d, model.net_d.parameters()))
    assert all(p.requires_grad for p in model.parameters())      # untoggled after the step


def test_training_rejects_a_k_the_regressor_was_not_built_for():
    model = tiny_f2gan(k=3)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="K=3"):
        trainer.fit(model, DataLoader(_random_batches(1, 2, 2), batch_size=None))


# -- figures and configs ---------------------------------------------------------------------------------------
def test_figures(tmp_path):
    model = tiny_f2gan().eval()
    support = torch.rand(3, 1, 32, 32) * 2 - 1
    strip = interpolation_strip(model, support[:2], steps=5)
    assert strip.shape == (5, 1, 32, 32)
    ends = model.generate_with_coefficients(support[:2].unsqueeze(0).expand(2, -1, -1, -1, -1),
                                            torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
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
    assert list(model.hparams.layer_sizes) == [64, 64, 128, 128]


def test_naf_stages_follow_config():
    gen = tiny_f2gan(naf_stages=[0, 1, 2]).net_g
    assert isinstance(gen, FusionGenerator) and sorted(gen.fusions.keys()) == ["0", "1", "2"]


def test_bn_recalibration_uses_plain_batch_statistics():
    model = tiny_f2gan()
    support = torch.rand(3, 3, 1, 32, 32) * 2 - 1
    first_bn = model.net_g.encoder.first[2]
    momentum = first_bn.momentum
    model.recalibrate_batch_norm([support])
    with torch.no_grad():
        pre = model.net_g.encoder.first[1](model.net_g.encoder.first[0](support.reshape(9, 1, 32, 32)))
    # the generator ran on [support; support] (2B episodes), whose mean equals the mean over the 9 images
    assert torch.allclose(first_bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    assert first_bn.momentum == momentum and first_bn.num_batches_tracked == 1
