"""LoFGAN's networks: the generator (encoder, local fusion module, decoder), the discriminator, the local
reconstruction loss and the weight initialisation.

Gu, Li, Huo, Wang, Gao. "LoFGAN: Fusing Local Representations for Few-shot Image Generation", ICCV 2021.
Official code: edward3862/LoFGAN-pytorch @ c169621 (``networks/lofgan.py``, ``networks/blocks.py``,
``networks/loss.py``, ``trainer.py``), read for facts only; nothing is copied. CARD.md beside this file lists
every deviation with the release line it departs from.

Nothing here fixes the batch size, K or the resolution: the generator works on ``[B, K, C, H, W]`` for any B,
any K >= 1 and any H = W; the encoder's stride-2 convs give ceil(H / 2) and the decoder resizes back to the
encoder's sizes. The random choices of the fusion (base image, fusion weights, selected positions) are inputs
of :meth:`LoFGANGenerator.forward`, drawn by :func:`draw_fusion` from a caller's ``torch.Generator``, so the
same draws give the same image and tests can hold them fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from fsgen_bench.methods.blocks import LRELU_SLOPE, conv2d, linear


# -- initialisation and spectral norm ----------------------------------------------------------------------------
def _spectral_norms(module: nn.Module):
    """(layer, spectral-norm parametrization) for every spectrally normalised weight under ``module``."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations.weight:
                if hasattr(p, "_power_method") and hasattr(p, "_reshape_weight_to_matrix"):
                    yield m, p


@torch.no_grad()
def power_iteration(module: nn.Module, steps: int = 1) -> None:
    """Advance the power iteration of every spectrally normalised layer by ``steps``, as ``steps`` training-mode
    forward passes would, without running them (see LoFGAN's G step for why)."""
    for m, sn in _spectral_norms(module):
        sn._power_method(sn._reshape_weight_to_matrix(m.parametrizations.weight.original), steps)


@torch.no_grad()
def kaiming_init(module: nn.Module) -> nn.Module:
    """The release's ``init: kaiming`` (trainer.py:162-181 with configs/*.yaml ``init: kaiming``): every conv and
    dense weight from N(0, 2 / fan_in), biases zero, BatchNorm left at (1, 0). A spectrally normalised layer
    gets its raw weight re-drawn and its power iteration run to convergence for the new weight."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            sn = parametrize.is_parametrized(m, "weight")
            weight = m.parametrizations.weight.original if sn else m.weight
            nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            if m.bias is not None:
                m.bias.zero_()
    for m, sn in _spectral_norms(module):
        sn._power_method(sn._reshape_weight_to_matrix(m.parametrizations.weight.original), 15)
    return module


class ConvBNLReLU(nn.Sequential):
    """conv (reflect padding, bias) -> BatchNorm -> LeakyReLU(0.2): the release's ``Conv2dBlock(norm='bn',
    activation='lrelu', pad_type='reflect')`` (networks/blocks.py:138-205)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, bn_momentum: float) -> None:
        super().__init__(
            conv2d(in_ch, out_ch, kernel, stride, sn=False, padding_mode="reflect"),
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
            nn.LeakyReLU(LRELU_SLOPE),
        )


def check_widths(widths: Sequence[int]) -> list[int]:
    ws = [int(w) for w in widths]
    if len(ws) < 2 or min(ws) < 1:
        raise ValueError(f"gen_widths needs the stem width and at least one downsampling width, all >= 1; got {list(widths)}")
    return ws


# -- generator ---------------------------------------------------------------------------------------------------
class LoFGANEncoder(nn.Module):
    """Stem conv5x5 s1, then one conv3x3 s2 per further width (release networks/lofgan.py:181-209:
    32 -> 64 -> 128 -> 128 -> 128 at 128 px gives an 8x8 map). ``forward`` returns every stage's output."""

    def __init__(self, channels: int, widths: Sequence[int], bn_momentum: float) -> None:
        super().__init__()
        ws = check_widths(widths)
        self.stem = ConvBNLReLU(channels, ws[0], 5, 1, bn_momentum)
        self.downs = nn.ModuleList(ConvBNLReLU(ws[i - 1], ws[i], 3, 2, bn_momentum) for i in range(1, len(ws)))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class LoFGANDecoder(nn.Module):
    """Per encoder stage, deepest first: nearest upsampling to the encoder's size there, conv3x3 -> BN -> LReLU to
    that stage's width; then conv5x5 to the image channels and tanh (release networks/lofgan.py:212-243)."""

    def __init__(self, channels: int, widths: Sequence[int], bn_momentum: float) -> None:
        super().__init__()
        ws = check_widths(widths)
        self.ups = nn.ModuleList(ConvBNLReLU(ws[i], ws[i - 1], 3, 1, bn_momentum) for i in range(len(ws) - 1, 0, -1))
        self.head = conv2d(ws[0], channels, 5, 1, sn=False, padding_mode="reflect")

    def forward(self, h: Tensor, sizes: Sequence[Sequence[int]]) -> Tensor:
        """``sizes``: the encoder's spatial sizes, stem first (the decoder walks them back)."""
        for s, up in enumerate(self.ups):
            h = up(F.interpolate(h, size=tuple(sizes[len(sizes) - 2 - s]), mode="nearest"))
        return torch.tanh(self.head(h))


@dataclass
class FusionDraw:
    """The random choices of one fusion per episode (release networks/lofgan.py:167-171, 276-277).

    ``base`` [B]: index of the base image among the K; ``alpha`` [B, K]: fusion weights, u ~ U(0, 1) normalised
    to sum 1; ``positions`` [B, M]: the M = int(rate * h * w) base positions that are replaced (distinct).
    """

    base: Tensor
    alpha: Tensor
    positions: Tensor

    def to(self, device) -> "FusionDraw":
        return FusionDraw(self.base.to(device), self.alpha.to(device), self.positions.to(device))

    def __getitem__(self, index) -> "FusionDraw":
        return FusionDraw(self.base[index], self.alpha[index], self.positions[index])


def num_positions(rate: float, h: int, w: int) -> int:
    return int(rate * h * w)          # release networks/lofgan.py:275 (int() truncates)


def draw_fusion(batch: int, k: int, h: int, w: int, rate: float, *, device, generator: torch.Generator | None = None) -> FusionDraw:
    """Draw base index, weights and positions for ``batch`` episodes, from ``generator`` (on its own device) when
    given, then move them to ``device``."""
    where = generator.device if generator is not None else device
    base = torch.randint(0, k, (batch,), generator=generator, device=where)
    u = torch.rand((batch, k), generator=generator, device=where)
    alpha = u / u.sum(dim=1, keepdim=True)
    m = num_positions(rate, h, w)
    positions = torch.rand((batch, h * w), generator=generator, device=where).argsort(dim=1)[:, :m]
    return FusionDraw(base, alpha, positions).to(device)


@dataclass
class FusionResult:
    """What the local fusion module did: ``fused`` [B, C, h, w]; ``ref_index`` [B, K-1] the image index of each
    reference (the non-base images in order); ``matches`` [B, K-1, M] the position in reference j whose feature
    is most similar (cosine) to selected base position m."""

    fused: Tensor
    ref_index: Tensor
    matches: Tensor


def reference_index(base: Tensor, k: int) -> Tensor:
    """[B, K-1]: the indices 0..K-1 without each episode's base index, in increasing order."""
    j = torch.arange(k - 1, device=base.device).unsqueeze(0)
    return j + (j >= base.unsqueeze(1)).long()


def _take(x: Tensor, index: Tensor) -> Tensor:
    """x [B, ..., N] gathered along the last dim at index [B, ..., M] (broadcast over the middle dims)."""
    return torch.gather(x, -1, index.expand(*x.shape[:-1], index.shape[-1]))


def local_fusion(feats: Tensor, draw: FusionDraw) -> FusionResult:
    """The local fusion module (release networks/lofgan.py:246-314), vectorised over the batch and the references.

    ``feats`` [B, K, C, h, w]. For every selected base position m (``draw.positions``), local matching picks in
    each reference j the position of highest cosine similarity over channels; local replacement then writes
    alpha_base * f_base[m] + sum_j alpha_j * f_j[match_j(m)] at m. Unselected base positions keep the base feature.
    """
    b, k, c, h, w = feats.shape
    flat = feats.reshape(b, k, c, h * w)
    rows = torch.arange(b, device=feats.device)
    base = flat[rows, draw.base]                                          # [B, C, N]
    pos = draw.positions.unsqueeze(1)                                     # [B, 1, M]
    base_sel = _take(base, pos)                                           # [B, C, M]
    alpha_base = draw.alpha.gather(1, draw.base.unsqueeze(1)).to(feats.dtype)   # [B, 1]
    out = alpha_base.unsqueeze(2) * base_sel
    ref_index = reference_index(draw.base, k)                             # [B, K-1]
    if k > 1:
        refs = flat[rows.unsqueeze(1), ref_index]                         # [B, K-1, C, N]
        query = F.normalize(base_sel, dim=1)                              # cosine similarity over channels
        keys = F.normalize(refs, dim=2)
        sim = torch.einsum("bcm,bjcn->bjmn", query, keys)                 # [B, K-1, M, N]
        matches = sim.argmax(dim=3)                                       # [B, K-1, M]
        ref_sel = _take(refs, matches.unsqueeze(2))                       # [B, K-1, C, M]
        alpha_refs = draw.alpha.gather(1, ref_index).to(feats.dtype)      # [B, K-1]
        out = out + torch.einsum("bj,bjcm->bcm", alpha_refs, ref_sel)
    else:
        matches = torch.zeros((b, 0, pos.shape[-1]), dtype=torch.long, device=feats.device)
    fused = base.scatter(2, pos.expand(b, c, pos.shape[-1]), out)
    return FusionResult(fused.reshape(b, c, h, w), ref_index, matches)


@dataclass
class Encoded:
    """What the generator's decoder needs from the encoder: ``tensors`` (each [B, K, ...]) and the encoder's
    spatial sizes, stem first. ``select(rows)`` picks episodes (one row per image to generate)."""

    tensors: list[Tensor]
    sizes: list[tuple[int, int]]

    def select(self, rows: Tensor | None) -> "Encoded":
        return self if rows is None else Encoded([t[rows] for t in self.tensors], self.sizes)


class LoFGANGenerator(nn.Module):
    """Encoder over all B*K images in one pass, local fusion of the deepest features, decoder.

    ``encode`` and ``decode`` are separate so that ``generate`` encodes each support set once and decodes many
    draws from it (the encoder is deterministic in eval mode)."""

    def __init__(self, channels: int, widths: Sequence[int] = (32, 64, 128, 128, 128), rate: float = 0.5,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"rate (the fraction of base positions replaced) must lie in [0, 1]; got {rate}")
        self.rate = float(rate)
        self.encoder = LoFGANEncoder(channels, widths, bn_momentum)
        self.decoder = LoFGANDecoder(channels, widths, bn_momentum)

    def latent_size(self, h: int, w: int) -> tuple[int, int]:
        """The fused map's size for H x W images (each stride-2 conv gives ceil(size / 2))."""
        for _ in range(len(self.encoder.downs)):
            h, w = -(-h // 2), -(-w // 2)
        return h, w

    def encode(self, support: Tensor) -> Encoded:
        b, k = support.shape[:2]
        feats = self.encoder(support.flatten(0, 1))
        return Encoded([feats[-1].reshape(b, k, *feats[-1].shape[1:])], [tuple(f.shape[-2:]) for f in feats])

    def decode(self, enc: Encoded, draw: FusionDraw, rows: Tensor | None = None) -> tuple[Tensor, FusionResult]:
        """Image [n, C, H, W] for ``n`` draws; ``rows`` [n] names each draw's episode (default: one draw each)."""
        fusion = local_fusion(enc.select(rows).tensors[0], draw)
        return self.decoder(fusion.fused, enc.sizes), fusion

    def forward(self, support: Tensor, draw: FusionDraw) -> tuple[Tensor, FusionResult]:
        return self.decode(self.encode(support), draw)


# -- discriminator -----------------------------------------------------------------------------------------------
class ActFirstResBlock(nn.Module):
    """LReLU -> conv3x3 -> LReLU -> conv3x3 (spectral norm, reflect padding), plus a shortcut that is a 1x1 conv
    without spectral norm or bias when the width changes (release networks/blocks.py:74-97, ``norm='sn'``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = conv2d(in_ch, out_ch, 3, 1, sn=True, padding_mode="reflect")
        self.conv1 = conv2d(out_ch, out_ch, 3, 1, sn=True, padding_mode="reflect")
        self.shortcut = conv2d(in_ch, out_ch, 1, 1, sn=False, bias=False) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        # In place where autograd keeps no copy of the overwritten tensor: a conv's output is not saved for its
        # backward (its input and weight are), and LeakyReLU's backward can use its result.
        h = self.conv1(F.leaky_relu_(self.conv0(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return h.add_(self.shortcut(x) if self.shortcut is not None else x)


class ReflectAvgPool(nn.Module):
    """Reflect-pad 1, then 3x3 average pooling with stride 2 (release networks/lofgan.py:120-121)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=2)


class LoFGANDiscriminator(nn.Module):
    """Release networks/lofgan.py:105-150: conv5x5 (SN) -> ``blocks`` x [ActFirstResBlock doubling the width
    (capped at ``max_channels``), reflect-pad + avg-pool 3x3 s2] -> one more ActFirstResBlock -> global average
    pool -> two dense heads: the adversarial logit and the seen-class logits. No batch statistics, so reals and
    fakes may share a pass."""

    def __init__(self, channels: int, num_classes: int, base_channels: int = 64, blocks: int = 4,
                 max_channels: int = 1024) -> None:
        super().__init__()
        nf = int(base_channels)
        layers: list[nn.Module] = [conv2d(channels, nf, 5, 1, sn=True, padding_mode="reflect")]
        for _ in range(int(blocks)):
            out = min(nf * 2, int(max_channels))
            layers += [ActFirstResBlock(nf, out), ReflectAvgPool()]
            nf = out
        out = min(nf * 2, int(max_channels))
        layers.append(ActFirstResBlock(nf, out))
        self.trunk = nn.Sequential(*layers)
        self.adv = linear(out, 1)                   # the release's 1x1 convs on the pooled map
        self.cls = linear(out, max(1, int(num_classes)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[N, C, H, W] -> (adversarial logit [N], class logits [N, classes])."""
        pooled = self.trunk(x).mean(dim=(2, 3))
        return self.adv(pooled).squeeze(1), self.cls(pooled)


# -- losses ------------------------------------------------------------------------------------------------------
def local_reconstruction_loss(fake: Tensor, support: Tensor, draw: FusionDraw, fusion: FusionResult) -> Tensor:
    """The local reconstruction loss (release networks/loss.py:64-115): the same fusion applied to the images
    shrunk (nearest) to the fused map's size, L1 to the shrunk generated image. The release shrinks to a fixed
    8x8 (``s=8``, networks/lofgan.py:29), which matches the positions only at 128 px; here it is the map's size."""
    b, k, c = support.shape[:3]
    h, w = fusion.fused.shape[-2:]
    small = F.interpolate(support.flatten(0, 1).float(), size=(h, w), mode="nearest").reshape(b, k, c, h * w)
    rows = torch.arange(b, device=support.device)
    base = small[rows, draw.base]                                         # [B, C, N]
    pos = draw.positions.unsqueeze(1)
    target_sel = draw.alpha.gather(1, draw.base.unsqueeze(1)).unsqueeze(2) * _take(base, pos)
    if k > 1:
        refs = small[rows.unsqueeze(1), fusion.ref_index]                 # [B, K-1, C, N]
        ref_sel = _take(refs, fusion.matches.unsqueeze(2))                # [B, K-1, C, M]
        target_sel = target_sel + torch.einsum("bj,bjcm->bcm", draw.alpha.gather(1, fusion.ref_index), ref_sel)
    target = base.scatter(2, pos.expand(b, c, pos.shape[-1]), target_sel)
    shrunk = F.interpolate(fake.float(), size=(h, w), mode="nearest").reshape(b, c, h * w)
    return (target - shrunk).abs().mean()


__all__ = [
    "ActFirstResBlock", "ConvBNLReLU", "Encoded", "FusionDraw", "FusionResult", "LoFGANDecoder", "LoFGANDiscriminator",
    "LoFGANEncoder", "LoFGANGenerator", "draw_fusion", "kaiming_init", "local_fusion", "local_reconstruction_loss",
    "num_positions", "power_iteration", "reference_index",
]
