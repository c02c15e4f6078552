"""MatchingGAN: coefficient-weighted encoder skips reach the decoder; the release's losses; generation.
(The training mechanism it shares with F2GAN is tested in test_fusion.py.)"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import method_defaults
from torch import nn
from torch.utils.data import DataLoader

from fsgen_bench.baselines.matchinggan.model import MatchingGAN
from fsgen_bench.methods.blocks import WeightedSumFusion
from fsgen_bench.methods.f2gan.figures import interpolation_strip

TINY = dict(layer_sizes=(4, 4, 8, 8), inner_layers=1, disc_base_channels=4, disc_stages=3, disc_max_channels=16,
            disc_final_blocks=1, bn_momentum=0.1)


def tiny(size=32, k=3, **over) -> MatchingGAN:
    torch.manual_seed(0)
    return MatchingGAN(image_size=size, channels=1, num_seen_classes=5, k_shot=k,
                       **{**method_defaults("matchinggan"), **TINY, **over})


class _Probe(nn.Module):
    """Wraps a skip-fusion module: records its coefficients, or replaces them / zeroes its output."""

    def __init__(self, inner: nn.Module, *, coefficients: torch.Tensor | None = None, zero: bool = False):
        super().__init__()
        self.inner, self.coefficients, self.zero = inner, coefficients, zero
        self.out_channels = inner.out_channels
        self.seen: list[torch.Tensor] = []

    def forward(self, decoder, encoder, coefficients, need_weights=False):
        self.seen.append(coefficients)
        fused, attn = self.inner(decoder, encoder, self.coefficients if self.coefficients is not None else coefficients)
        return (torch.zeros_like(fused) if self.zero else fused), attn


def test_skips_are_weighted_sums_with_coefficients_summing_to_one():
    model = tiny().eval()
    assert all(isinstance(f, WeightedSumFusion) for f in model.net_g.fusions.values())
    assert sorted(model.net_g.fusions.keys()) == ["0", "1"]
    probe = _Probe(model.net_g.fusions["0"])
    model.net_g.fusions["0"] = probe
    model.generate(torch.rand(2, 3, 1, 32, 32) * 2 - 1, 4, generator=torch.Generator().manual_seed(0))
    (a,) = probe.seen
    assert a.shape == (8, 3) and torch.allclose(a.sum(1), torch.ones(8)) and (a > 0).all()


def test_skip_path_reaches_the_decoder():
    model = tiny().eval()
    support = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    a = torch.tensor([[0.2, 0.3, 0.5]])
    base = model.generate_with_coefficients(support, a)
    for stage in ("0", "1"):
        original = model.net_g.fusions[stage]
        # other coefficients in the skip only (the bottleneck keeps a): the output changes through the skip
        model.net_g.fusions[stage] = _Probe(original, coefficients=torch.tensor([[0.6, 0.3, 0.1]]))
        assert (model.generate_with_coefficients(support, a) - base).abs().max() > 1e-4
        # zeroing the skip changes the output too
        model.net_g.fusions[stage] = _Probe(original, zero=True)
        assert (model.generate_with_coefficients(support, a) - base).abs().max() > 1e-4
        model.net_g.fusions[stage] = original
    assert torch.equal(model.generate_with_coefficients(support, a), base)


def test_losses_and_discriminator_follow_the_release():
    model = tiny()
    assert model.losses.recons == pytest.approx(0.1) and model.losses.matching_d == 1.0
    assert model.losses.recons_form == "feature_mse" and model.losses.hinge_on == "image"
    assert model.generations == 1 and not model.train_classifier_head
    assert model.net_d.regressor is None and model.net_d.lrelu_before_gap
    assert model.attention_maps(torch.rand(1, 3, 1, 32, 32)) == {}
    assert "random fusion coefficients" in MatchingGAN.row_note


def test_reconstruction_is_the_feature_mse_between_the_codes():
    """MatchingGAN @ 916e424 arch L771-774: mean (E(x_gen) - sum_k a_k E(x_k))^2 on the encoder's bottleneck."""
    model = tiny().train()
    support = torch.rand(2, 3, 1, 32, 32) * 2 - 1
    a = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    step = model.make_step(support, torch.tensor([0, 1]), a)
    code_real = model.net_g.encode(support)[-1]                   # [B, K, C, h, w]
    fused = (a[:, :, None, None, None] * code_real).sum(1)
    assert torch.allclose(step.code, fused, atol=1e-5)
    expected = (model.net_g.encoder(step.fake)[-1] - fused).pow(2).mean()
    assert torch.allclose(model.reconstruction_loss(step), expected, atol=1e-5)
    # both codes carry gradient into the generator (no stop-gradient in the release)
    loss = model.reconstruction_loss(step)
    grads = torch.autograd.grad(loss, [step.code, step.fake])
    assert all(g.abs().sum() > 0 for g in grads)


def test_generate_shapes_any_k_and_size():
    for size in (28, 32):
        model = tiny(size=size).eval()
        for k in range(2, 6):
            out = model.generate(torch.rand(2, k, 1, size, size) * 2 - 1, 3, generator=torch.Generator().manual_seed(0))
            assert out.shape == (2, 3, 1, size, size) and out.abs().max() <= 1.0
    assert interpolation_strip(model, torch.rand(2, 1, 32, 32), steps=4).shape == (4, 1, 32, 32)


def test_trains_with_its_own_losses_and_round_trips(tmp_path):
    model = tiny()
    g = torch.Generator().manual_seed(0)
    batches = [{"support": torch.rand(2, 3, 1, 32, 32, generator=g) * 2 - 1, "label": torch.tensor([0, 4]),
                "class_id": torch.tensor([0, 4])} for _ in range(2)]
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(batches, batch_size=None))
    logged = set(trainer.callback_metrics)
    assert {"train/g_recons", "train/g_matching_d", "train/d_cla", "train/g_cla"} <= logged
    assert not {"train/g_mode_seeking", "train/g_sim", "train/d_sim"} & logged
    support = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    model.eval()
    a = model.generate(support, 2, generator=torch.Generator().manual_seed(3))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    reloaded = MatchingGAN.load_from_checkpoint(str(tmp_path / "m.ckpt"), map_location="cpu")
    assert torch.allclose(reloaded.generate(support, 2, generator=torch.Generator().manual_seed(3)), a, atol=1e-6)


def test_presets_build():
    from fsgen_bench.config import resolve
    from fsgen_bench.data.source import DatasetInfo
    from fsgen_bench.runner.build import build_method

    info = DatasetInfo(name="glyphs", channels=1, image_size=32, native_size=None, num_classes=10, num_seen=8,
                       origin="test")
    for preset in ("smoke", "quick", "paper"):
        model = build_method(resolve(method="matchinggan", dataset="glyphs", preset=preset), info)
        assert isinstance(model, MatchingGAN)
