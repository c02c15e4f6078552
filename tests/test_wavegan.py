"""WaveGAN: the Haar transform, the high-frequency skips, the two variants, batch independence and training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fsgen_bench.baselines.lofgan.networks import Encoded, FusionDraw, draw_fusion
from fsgen_bench.baselines.wavegan.model import WaveGAN, WaveGANGenerator, frequency_l1, haar_analysis, haar_synthesis

TINY = dict(gen_widths=[4, 8, 8, 8], rate=0.5, bn_momentum=0.1, disc_base_channels=4, disc_blocks=2,
            disc_max_channels=16, lr_gen=1e-4, lr_dis=1e-4, betas=[0.9, 0.999], weight_decay=1e-4, lr_decay_start=0.5,
            loss_adv_g=1.0, loss_adv_d=1.0, loss_recon=0.5, loss_cls=1.0, loss_gp=0.0, loss_freq=1.0,
            bn_recalibration_batches=2, max_generate_batch=5, variant="base", highfreq_skips=4)


def tiny_wavegan(size=16, **over) -> WaveGAN:
    torch.manual_seed(0)
    return WaveGAN(image_size=size, channels=1, num_seen_classes=4, k_shot=3, **{**TINY, **over})


def tiny_generator(variant="base", rate=0.5, skips=4, widths=(4, 8, 16, 16, 16)) -> WaveGANGenerator:
    torch.manual_seed(0)
    return WaveGANGenerator(1, list(widths), rate, 0.1, variant, skips).eval()


# -- the Haar transform ------------------------------------------------------------------------------------------
def test_haar_is_the_releases_filter_bank_and_a_perfect_reconstruction():
    """Analysis = the release's 2x2 stride-2 filters L^T L, L^T H, H^T L, H^T H with L = [1, 1] / sqrt 2 and
    H = [-1, 1] / sqrt 2 (networks/lofgan.py:10-46); synthesis (transposed convolutions with the same filters,
    summed) inverts it exactly, and the transform keeps the energy (orthonormal)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6)
    low, high = torch.tensor([1.0, 1.0]) / math.sqrt(2), torch.tensor([-1.0, 1.0]) / math.sqrt(2)
    filters = torch.stack([torch.outer(a, b) for a, b in ((low, low), (low, high), (high, low), (high, high))])
    ref = F.conv2d(x.reshape(6, 1, 8, 6), filters.unsqueeze(1), stride=2).reshape(2, 3, 4, 4, 3)
    ll, highs = haar_analysis(x)
    assert torch.allclose(ll, ref[:, :, 0], atol=1e-6)
    assert torch.allclose(highs, ref[:, :, 1:].transpose(1, 2), atol=1e-6)
    back = F.conv_transpose2d(ref.reshape(6, 4, 4, 3), filters.unsqueeze(1), stride=2).reshape(2, 3, 8, 6)
    assert torch.allclose(haar_synthesis(ll, highs), back, atol=1e-6)
    assert torch.allclose(back, x, atol=1e-5)
    assert torch.allclose(ll.pow(2).sum() + highs.pow(2).sum(), x.pow(2).sum(), rtol=1e-5)


def test_synthesis_puts_the_high_bands_into_the_decoder_feature_exactly():
    """What the skip adds is recoverable: the Haar analysis of synth(LL, H) gives back LL and H. A feature made
    from a low band alone (H = 0) has no high-frequency content at all."""
    torch.manual_seed(0)
    ll, highs = torch.randn(2, 4, 3, 3), torch.randn(2, 3, 4, 3, 3)
    ll2, highs2 = haar_analysis(haar_synthesis(ll, highs))
    assert torch.allclose(ll2, ll, atol=1e-6) and torch.allclose(highs2, highs, atol=1e-6)
    assert haar_analysis(haar_synthesis(ll, torch.zeros_like(highs)))[1].abs().max() < 1e-6


# -- the high-frequency skips and the variants -------------------------------------------------------------------
def _pair(support, base, j, rate, variant, skips, seed=0):
    """Output for ``support`` and for the same with non-base image j replaced (same draw, eval mode)."""
    g = tiny_generator(variant, rate, skips)
    draw = draw_fusion(1, 3, 2, 2, rate, device="cpu", generator=torch.Generator().manual_seed(seed))
    draw = FusionDraw(torch.tensor([base]), draw.alpha, draw.positions)
    other = support.clone()
    other[0, j] = torch.rand(1, 32, 32) * 2 - 1
    with torch.no_grad():
        return g(support, draw)[0], g(other, draw)[0]


@pytest.mark.parametrize("variant, skips, depends", [
    ("base", 4, False),     # WaveGAN-B: only the base image's bands; no fusion at rate 0 -> other images unused
    ("mean", 4, True),      # WaveGAN-M: the mean of the K images' bands carries the other images into the output
    ("mean", 0, False),     # no high-frequency skip: nothing of the other images reaches the decoder
])
def test_high_bands_of_the_other_images_reach_the_output_only_through_the_mean_skip(variant, skips, depends):
    torch.manual_seed(1)
    support = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    a, b = _pair(support, base=0, j=2, rate=0.0, variant=variant, skips=skips)
    assert (not torch.allclose(a, b, atol=1e-6)) == depends


def test_zeroing_the_high_bands_of_the_skips_changes_the_outputs_high_frequencies():
    """The skips carry the encoder's high bands: the same generator decoding the same fused map with those bands
    set to zero gives an image whose Haar high bands differ by more than half their size."""
    torch.manual_seed(2)
    support = torch.rand(2, 3, 1, 32, 32) * 2 - 1
    g = tiny_generator("base", 0.5, 4).train()                  # batch statistics: untrained running ones are (0, 1)
    draw = draw_fusion(2, 3, 2, 2, 0.5, device="cpu", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc = g.encode(support)
        zeroed = Encoded(enc.tensors[:1] + [torch.zeros_like(t) for t in enc.tensors[1:]], enc.sizes)
        a, b = g.decode(enc, draw)[0], g.decode(zeroed, draw)[0]
    diff = haar_analysis(a)[1] - haar_analysis(b)[1]
    assert diff.abs().mean() > 0.5 * haar_analysis(b)[1].abs().mean()


def test_an_image_does_not_depend_on_the_other_episodes_of_its_batch_in_either_variant():
    torch.manual_seed(3)
    support = torch.rand(3, 3, 1, 32, 32) * 2 - 1
    for variant in ("base", "mean"):
        g = tiny_generator(variant)
        draw = draw_fusion(3, 3, 2, 2, 0.5, device="cpu", generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            together = g(support, draw)[0]
            alone = g(support[2:3], draw[2:3])[0]
            changed = support.clone()
            changed[0] = torch.rand(3, 1, 32, 32)
            neighbours = g(changed, draw)[0]
        assert torch.allclose(together[2:3], alone, atol=1e-6), variant
        assert torch.allclose(together[1:], neighbours[1:], atol=1e-6), variant


def test_sizes_and_widths_are_checked():
    with pytest.raises(ValueError, match="divisible"):
        tiny_wavegan(size=20)
    with pytest.raises(ValueError, match="multiple"):
        tiny_wavegan(gen_widths=[4, 6, 12, 12])
    with pytest.raises(ValueError, match="must be equal"):
        tiny_wavegan(gen_widths=[4, 8, 16, 32])
    with pytest.raises(ValueError, match="variant"):
        tiny_wavegan(variant="median")


def test_generate_any_k_and_batch():
    model = tiny_wavegan(size=16).eval()
    for k in (1, 2, 4):
        out = model.generate(torch.rand(2, k, 1, 16, 16) * 2 - 1, 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, 1, 16, 16) and out.abs().max() <= 1


# -- losses and training -----------------------------------------------------------------------------------------
def test_frequency_l1_is_the_sum_of_the_four_band_means():
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    (lx, hx), (ly, hy) = haar_analysis(x), haar_analysis(y)
    expect = (lx - ly).abs().mean() + sum((hx[:, i] - hy[:, i]).abs().mean() for i in range(3))
    assert torch.allclose(frequency_l1(x, y), expect)
    assert float(frequency_l1(x, x)) == 0.0


def test_no_gradient_penalty_by_default_as_in_the_release():
    from fsgen_bench.config import configs_dir, load_yaml

    assert load_yaml(configs_dir() / "methods" / "wavegan.yaml")["method"]["loss_gp"] == 0.0
    model = tiny_wavegan()
    opt_g, opt_d = model.configure_optimizers()
    logs = model.train_iteration(torch.rand(2, 3, 1, 16, 16) * 2 - 1, torch.tensor([0, 1]), opt_g, opt_d)
    assert "train/d_gp" not in logs and "train/g_freq" in logs


def test_the_frequency_loss_alone_decreases_in_training():
    zero = dict(loss_adv_g=0.0, loss_adv_d=0.0, loss_recon=0.0, loss_cls=0.0, weight_decay=0.0, lr_gen=2e-3)
    model = tiny_wavegan(**zero)
    g = torch.Generator().manual_seed(0)
    support, labels = torch.rand((4, 3, 1, 16, 16), generator=g) * 2 - 1, torch.tensor([0, 0, 1, 1])
    draw = draw_fusion(4, 3, 2, 2, 0.5, device="cpu", generator=torch.Generator().manual_seed(5))

    def measure():                                  # computed here, not by the loss code
        with torch.no_grad():
            fake = model.net_g(support, draw)[0]
        base = support[torch.arange(4), draw.base]
        (lf, hf), (lb, hb) = haar_analysis(fake), haar_analysis(base)
        return float((lf - lb).abs().mean() + (hf - hb).abs().mean(dim=(0, 2, 3, 4)).sum())

    opt_g, opt_d = model.configure_optimizers()
    before = measure()
    for _ in range(15):
        model.train_iteration(support, labels, opt_g, opt_d)
    assert measure() < 0.9 * before
