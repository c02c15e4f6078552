"""Shared network blocks (src/fsgen_bench/methods/blocks.py): shapes at every size, no fixed B or K."""

from __future__ import annotations

import math

import pytest
import torch

from fsgen_bench.methods.blocks import (
    FusionGenerator,
    ResDiscriminatorTrunk,
    UResNetEncoder,
    WeightedSumFusion,
    conv2d,
    init_weights,
    sample_coefficients,
)


@pytest.mark.parametrize("size", [28, 32, 64, 96])
def test_encoder_block_resolutions_use_ceil_division(size):
    enc = UResNetEncoder(3, layer_sizes=(4, 4, 8, 8), inner_layers=2)
    outs = enc(torch.randn(2, 3, size, size))
    assert enc.out_channels == [4, 4, 8, 8]
    for i, out in enumerate(outs):
        side = math.ceil(size / 2 ** (i + 1))
        assert tuple(out.shape) == (2, enc.out_channels[i], side, side)


@pytest.mark.parametrize("size", [28, 32, 96])
def test_discriminator_trunk_shape(size):
    trunk = ResDiscriminatorTrunk(1, base_channels=4, num_stages=4, max_channels=16, final_blocks=1)
    out = trunk(torch.randn(3, 1, size, size))
    side = size
    for _ in range(4):
        side = math.ceil(side / 2)
    assert trunk.out_channels == 16
    assert tuple(out.shape) == (3, 16, side, side)


def test_paper_trunk_gives_6x6x512_at_96px():
    trunk = ResDiscriminatorTrunk(3)       # defaults: 32 -> 64, 128, 256, 512, 2 final blocks
    with torch.no_grad():
        assert tuple(trunk(torch.randn(1, 3, 96, 96)).shape) == (1, 512, 6, 6)


def test_sample_coefficients_normalised_in_range_and_seeded():
    a = sample_coefficients(500, 4, generator=torch.Generator().manual_seed(0))
    assert a.shape == (500, 4)
    assert torch.allclose(a.sum(1), torch.ones(500))
    # u in [1, 10] -> each a_k lies in [1 / (1 + 10 (K-1)), 10 / (10 + (K-1))]
    assert a.min() >= 1 / 31 - 1e-6 and a.max() <= 10 / 13 + 1e-6
    b = sample_coefficients(500, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_coefficients(500, 4, generator=torch.Generator().manual_seed(1)))


def test_init_weights_handles_spectral_norm():
    conv = conv2d(4, 8, sn=True)
    init_weights(conv, std=0.5)
    w = conv.parametrizations.weight.original
    assert 0.3 < float(w.detach().std()) < 0.7
    # the normalised weight has spectral norm ~1 after the refreshed power iteration
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(8, -1), ord=2)
    assert abs(float(sigma) - 1.0) < 0.1


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("batch", [1, 3])
def test_fusion_generator_any_k_any_batch(size, batch):
    gen = FusionGenerator(1, layer_sizes=(4, 4, 8, 8), inner_layers=1).eval()
    with torch.no_grad():
        for k in range(1, 6):
            out = gen(torch.rand(batch, k, 1, size, size) * 2 - 1, sample_coefficients(batch, k))
            assert tuple(out.shape) == (batch, 1, size, size)
            assert out.abs().max() <= 1.0


def test_fusion_generator_rejects_stage_without_encoder_features():
    with pytest.raises(ValueError, match="fusion_stages"):
        FusionGenerator(1, layer_sizes=(4, 4, 8), fusion_stages=(2,))


def test_weighted_sum_fusion():
    enc = torch.randn(2, 3, 5, 4, 4)
    a = sample_coefficients(2, 3)
    fused, attn = WeightedSumFusion(7, 5)(torch.randn(2, 7, 4, 4), enc, a)
    assert attn is None
    assert torch.allclose(fused, (a[:, :, None, None, None] * enc).sum(1), atol=1e-6)


def test_fusion_generator_channels_last_and_no_grad_leak():
    gen = FusionGenerator(1, layer_sizes=(4, 4, 8), inner_layers=1).to(memory_format=torch.channels_last)
    out = gen(torch.rand(2, 3, 1, 32, 32), sample_coefficients(2, 3))
    out.mean().backward()
    assert all(p.grad is not None for p in gen.encoder.parameters() if p.requires_grad)


def test_fusion_generator_returns_the_fused_code_and_attention_in_order():
    gen = FusionGenerator(1, layer_sizes=(4, 4, 8), inner_layers=1).eval()
    support, a = torch.rand(2, 3, 1, 32, 32) * 2 - 1, sample_coefficients(2, 3)
    with torch.no_grad():
        out, code = gen(support, a, return_code=True)
        out2, attention, code2 = gen(support, a, return_attention=True, return_code=True)
        codes = gen.encode(support)[-1]
    assert torch.equal(out, out2) and attention == {}             # WeightedSumFusion has no attention
    assert torch.allclose(code, (a[:, :, None, None, None] * codes).sum(1), atol=1e-6)
    assert torch.equal(code, code2) and torch.equal(out, gen(support, a))
