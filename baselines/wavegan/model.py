"""WaveGAN: Frequency-aware GAN for High-Fidelity Few-shot Image Generation, as a Lightning module.

Yang, Wang, Chi, Feng, ECCV 2022, arXiv 2207.07288. Official code: kobeshegu/ECCV2022_WaveGAN @ 8ae91f9 (a fork of
LoFGAN; ``networks/lofgan.py`` and ``networks/lofgan_baseindex.py``), read for facts only; nothing copied.
CARD.md beside this file lists every deviation and the release lines they depart from.

WaveGAN is LoFGAN (same discriminator, local fusion, losses and schedule, :mod:`fsgen_bench.baselines.lofgan`)
with a generator that splits encoder features into Haar wavelet bands:

* encoder: after each stage, the Haar analysis of its output; the low band LL is added to the input of the stage
  after next (the "low-frequency skips", release networks/lofgan.py:355-389);
* decoder: the high bands (LH, HL, HH) of the encoder's deeper stages are brought back into the first decoder
  stages (the "high-frequency skips"): by Haar synthesis with a decoder feature as the low band in stages 0-2,
  by plain addition in stage 3 (release networks/lofgan_baseindex.py:524-582);
* ``variant``: whose high bands. ``base`` (WaveGAN-B): the base image's, the image the fusion starts from;
  ``mean`` (WaveGAN-M): the mean over the episode's K images. Both aggregate within one episode only, so an image
  never depends on the other episodes of its batch (CARD.md, "Variants");
* the frequency L1 loss of the paper: L1 between the Haar bands of the generated image and of the base image.

The Haar transform is the orthonormal 2x2 one of the release (filters +-1/2), written as strided slicing instead
of grouped convolutions; :func:`haar_analysis` and :func:`haar_synthesis` are exact inverses.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsgen_bench.baselines.lofgan.model import LocalFusionGAN, LoFGANLosses
from fsgen_bench.baselines.lofgan.networks import (
    ConvBNLReLU,
    Encoded,
    FusionDraw,
    FusionResult,
    LoFGANDiscriminator,
    check_widths,
    local_fusion,
)
from fsgen_bench.methods.blocks import conv2d

VARIANTS = ("base", "mean")
#: decoder stages the release has high-frequency skips for (lofgan_baseindex.py: 4; lofgan.py: the first 3)
MAX_HIGHFREQ_SKIPS = 4


# -- the Haar transform ------------------------------------------------------------------------------------------
def haar_analysis(x: Tensor) -> tuple[Tensor, Tensor]:
    """[N, C, H, W] (H, W even) -> (LL [N, C, H/2, W/2], highs [N, 3, C, H/2, W/2] = LH, HL, HH).

    The release's 2x2 stride-2 filters (networks/lofgan.py:10-46): LL = (a + b + c + d) / 2, LH = (-a + b - c + d) / 2,
    HL = (-a - b + c + d) / 2, HH = (a - b - c + d) / 2 for each 2x2 block [[a, b], [c, d]]."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Haar analysis needs even sizes; got {h}x{w}")
    v = x.reshape(n, c, h // 2, 2, w // 2, 2)
    a, b = v[:, :, :, 0, :, 0], v[:, :, :, 0, :, 1]
    cc, d = v[:, :, :, 1, :, 0], v[:, :, :, 1, :, 1]
    s0, d0, s1, d1 = a + b, b - a, cc + d, d - cc
    ll = (s0 + s1) * 0.5
    highs = torch.stack([(d0 + d1) * 0.5, (s1 - s0) * 0.5, (d1 - d0) * 0.5], dim=1)
    return ll, highs


def haar_synthesis(ll: Tensor, highs: Tensor) -> Tensor:
    """The inverse of :func:`haar_analysis` (the release's transposed convolutions with the same filters, summed:
    ``WaveUnpool(option_unpool='sum')``): (LL [N, C, h, w], highs [N, 3, C, h, w]) -> [N, C, 2h, 2w]."""
    lh, hl, hh = highs.unbind(1)
    p, m = ll + hh, ll - hh            # a = (LL - LH - HL + HH) / 2 ... d = (LL + LH + HL + HH) / 2
    q, r = lh + hl, lh - hl
    a, b, c, d = (p - q) * 0.5, (m + r) * 0.5, (m - r) * 0.5, (p + q) * 0.5
    n, ch, h, w = ll.shape
    top = torch.stack([a, b], dim=-1)
    bottom = torch.stack([c, d], dim=-1)
    return torch.stack([top, bottom], dim=3).reshape(n, ch, 2 * h, 2 * w)


def haar_bands(x: Tensor) -> Tensor:
    """[N, C, H, W] -> [N, 4, C, H/2, W/2]: LL, LH, HL, HH."""
    ll, highs = haar_analysis(x)
    return torch.cat([ll.unsqueeze(1), highs], dim=1)


# -- generator ---------------------------------------------------------------------------------------------------
class WaveEncoder(nn.Module):
    """LoFGAN's encoder with Haar low-frequency skips (release networks/lofgan.py:297-389).

    e_0 = stem(x), e_1 = down_1(e_0), e_j = down_j(e_{j-1} + LL_{j-2}) for j >= 2, where band level i is the Haar
    analysis of e_i with every channel repeated widths[i+1] / widths[i] times (the release's ``WavePool`` maps C to
    2C channels for the 32- and 64-channel stages, ``WavePool2`` keeps C for the 128-channel ones).
    ``forward`` returns the stage outputs and, per band level, its high bands [N, 3, C, h, w].
    """

    def __init__(self, channels: int, widths: Sequence[int], bn_momentum: float) -> None:
        super().__init__()
        ws = check_widths(widths)
        for i in range(len(ws) - 1):
            if ws[i + 1] % ws[i]:
                raise ValueError(f"wavegan: each width must be a multiple of the one before (the Haar bands of stage i "
                                 f"are repeated to stage i+1's width); got {ws}")
        self.repeats = [ws[i + 1] // ws[i] for i in range(len(ws) - 1)]
        self.stem = ConvBNLReLU(channels, ws[0], 5, 1, bn_momentum)
        self.downs = nn.ModuleList(ConvBNLReLU(ws[i - 1], ws[i], 3, 2, bn_momentum) for i in range(1, len(ws)))

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        feats = [self.stem(x)]
        lows: list[Tensor] = []
        highs: list[Tensor] = []
        for j, down in enumerate(self.downs, start=1):
            ll, hi = haar_analysis(feats[-1])                     # band level j-1, from e_{j-1}
            r = self.repeats[j - 1]
            lows.append(ll.repeat_interleave(r, dim=1) if r > 1 else ll)
            highs.append(hi.repeat_interleave(r, dim=2) if r > 1 else hi)
            feats.append(down(feats[-1] if j == 1 else feats[-1] + lows[j - 2]))
        return feats, highs


class WaveDecoder(nn.Module):
    """LoFGAN's decoder with the high-frequency skips (release networks/lofgan_baseindex.py:524-582).

    With h_0 the fused map, u_s the nearest-upsampled input of decoder stage s, conv_s its conv and H_l the chosen
    high bands of band level l (D = number of downsampling stages):
      stage 0: h_1 = conv_0(u_0) + synth(h_0, H_{D-1})
      stage 1: h_2 = conv_1(u_1) + synth(u_0, H_{D-2})
      stage 2: h_3 = conv_2(u_2 + synth(u_1, H_{D-3}))
      stage 3: u_3 = up(h_3 + (h_3 + LH + HL + HH of H_{D-4}))   (the release's ``sumall`` unpool)
    Only the first ``highfreq_skips`` stages have a skip (the release's lofgan.py has stages 0-2).
    """

    def __init__(self, channels: int, widths: Sequence[int], bn_momentum: float, highfreq_skips: int) -> None:
        super().__init__()
        ws = check_widths(widths)
        depth = len(ws) - 1
        self.depth = depth
        self.skips = min(int(highfreq_skips), depth, MAX_HIGHFREQ_SKIPS)
        if int(highfreq_skips) < 0:
            raise ValueError(f"highfreq_skips must be >= 0; got {highfreq_skips}")
        # channel equalities the stage formulas need (the release's 128-128-128 deep widths satisfy them)
        need = {0: [depth, depth - 1], 1: [depth, depth - 1, depth - 2], 2: [depth - 1, depth - 2]}
        for s in range(min(self.skips, 3)):
            if len({ws[i] for i in need[s]}) > 1:
                raise ValueError(f"wavegan: the high-frequency skip of decoder stage {s} adds maps of widths "
                                 f"{[ws[i] for i in need[s]]}; they must be equal (gen_widths={ws})")
        self.ups = nn.ModuleList(ConvBNLReLU(ws[i], ws[i - 1], 3, 1, bn_momentum) for i in range(depth, 0, -1))
        self.head = conv2d(ws[0], channels, 5, 1, sn=False, padding_mode="reflect")

    def forward(self, h: Tensor, highs: list[Tensor], sizes: Sequence[Sequence[int]]) -> Tensor:
        """``highs[s]``: the high bands [n, 3, C, h, w] for stage s's skip (s < ``self.skips``)."""
        h0, prev_u = h, None
        for s, up in enumerate(self.ups):
            if s == 3 and s < self.skips:
                h = h + (h + highs[s].sum(dim=1))
            u = F.interpolate(h, size=tuple(sizes[self.depth - 1 - s]), mode="nearest")
            x = u + haar_synthesis(prev_u, highs[s]) if (s == 2 and s < self.skips) else u
            h = up(x)
            if s == 0 and s < self.skips:
                h = h + haar_synthesis(h0, highs[s])
            elif s == 1 and s < self.skips:
                h = h + haar_synthesis(prev_u, highs[s])
            prev_u = u
        return torch.tanh(self.head(h))


class WaveGANGenerator(nn.Module):
    """Wave encoder over all B*K images, local fusion of the deepest map, wave decoder with the high bands of the
    base image (``base``) or the mean over the episode's images (``mean``)."""

    def __init__(self, channels: int, widths: Sequence[int], rate: float, bn_momentum: float, variant: str,
                 highfreq_skips: int) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"wavegan variant must be one of {VARIANTS}; got {variant!r}")
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"rate (the fraction of base positions replaced) must lie in [0, 1]; got {rate}")
        self.variant = variant
        self.rate = float(rate)
        self.encoder = WaveEncoder(channels, widths, bn_momentum)
        self.decoder = WaveDecoder(channels, widths, bn_momentum, highfreq_skips)

    def latent_size(self, h: int, w: int) -> tuple[int, int]:
        depth = len(self.encoder.downs)
        if h % 2 ** depth or w % 2 ** depth:
            raise ValueError(f"wavegan needs image sizes divisible by 2^{depth} (one Haar level per encoder stage); "
                             f"got {h}x{w}")
        return h >> depth, w >> depth

    def encode(self, support: Tensor) -> Encoded:
        """Encoded tensors: the deepest maps [B, K, C, h, w], then per skipped decoder stage s the high bands of
        band level D-1-s: [B, K, 3, C, h, w] (``base``) or their mean over K [B, 3, C, h, w] (``mean``)."""
        b, k = support.shape[:2]
        self.latent_size(*support.shape[-2:])
        feats, highs = self.encoder(support.flatten(0, 1))
        depth = self.decoder.depth
        skip = []
        for s in range(self.decoder.skips):
            t = highs[depth - 1 - s]
            t = t.reshape(b, k, *t.shape[1:])
            skip.append(t.mean(dim=1) if self.variant == "mean" else t)
        return Encoded([feats[-1].reshape(b, k, *feats[-1].shape[1:])] + skip, [tuple(f.shape[-2:]) for f in feats])

    def decode(self, enc: Encoded, draw: FusionDraw, rows: Tensor | None = None) -> tuple[Tensor, FusionResult]:
        enc = enc.select(rows)
        fusion = local_fusion(enc.tensors[0], draw)
        if self.variant == "base":
            idx = torch.arange(draw.base.shape[0], device=draw.base.device)
            highs = [t[idx, draw.base] for t in enc.tensors[1:]]
        else:
            highs = list(enc.tensors[1:])
        return self.decoder(fusion.fused, highs, enc.sizes), fusion

    def forward(self, support: Tensor, draw: FusionDraw) -> tuple[Tensor, FusionResult]:
        return self.decode(self.encode(support), draw)


def frequency_l1(fake: Tensor, target: Tensor) -> Tensor:
    """Sum over the four Haar bands of the mean absolute difference (release lofgan_baseindex.py:219, the paper's
    frequency L1 loss)."""
    return (haar_bands(fake.float()) - haar_bands(target.float())).abs().mean(dim=(0, 2, 3, 4)).sum()


class WaveGAN(LocalFusionGAN):
    """WaveGAN (Yang et al., ECCV 2022). Keyword arguments = ``method:`` keys of configs/methods/wavegan.yaml (all
    required: that file is the one place their defaults live)."""

    variants = VARIANTS
    default_variant = "base"       # WaveGAN-B, the paper's headline variant; method.variant: mean is WaveGAN-M

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int, variant: str,
                 highfreq_skips: int, gen_widths: Sequence[int], rate: float, bn_momentum: float,
                 disc_base_channels: int, disc_blocks: int, disc_max_channels: int, lr_gen: float, lr_dis: float,
                 betas: Sequence[float], weight_decay: float, lr_decay_start: float, loss_adv_g: float,
                 loss_adv_d: float, loss_recon: float, loss_cls: float, loss_gp: float, loss_freq: float,
                 bn_recalibration_batches: int, max_generate_batch: int) -> None:
        generator = WaveGANGenerator(channels, gen_widths, rate, bn_momentum, variant, highfreq_skips)
        generator.latent_size(int(image_size), int(image_size))          # fail early on an unusable size
        super().__init__(
            image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot,
            generator=generator,
            discriminator=LoFGANDiscriminator(channels, num_seen_classes, disc_base_channels, disc_blocks,
                                              disc_max_channels),
            losses=LoFGANLosses(adv_g=loss_adv_g, adv_d=loss_adv_d, recon=loss_recon, cls=loss_cls, gp=loss_gp),
            lr_gen=lr_gen, lr_dis=lr_dis, betas=betas, weight_decay=weight_decay, lr_decay_start=lr_decay_start,
            bn_recalibration_batches=bn_recalibration_batches, max_generate_batch=max_generate_batch,
        )
        self.variant = variant
        self.loss_freq = float(loss_freq)
        self.save_hyperparameters()

    def generator_extra_loss(self, fake: Tensor, support: Tensor, draw: FusionDraw) -> dict[str, tuple[float, Tensor]]:
        if self.loss_freq <= 0:
            return {}
        base = support[torch.arange(support.shape[0], device=support.device), draw.base]
        return {"g_freq": (self.loss_freq, frequency_l1(fake, base))}


__all__ = ["WaveGAN", "WaveGANGenerator", "WaveDecoder", "WaveEncoder", "frequency_l1", "haar_analysis",
           "haar_bands", "haar_synthesis", "VARIANTS"]
