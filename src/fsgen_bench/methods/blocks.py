"""Network blocks shared by F2GAN, MatchingGAN and DAGAN.

Sources (read for facts, no code copied): the official TF1 releases
``bcmi/F2GAN-Few-Shot-Image-Generation`` @ 8151595 (Hong et al., "F2GAN: Fusing-and-Filling GAN for Few-shot
Image Generation", ACM MM 2020, arXiv 2008.01999), ``bcmi/MatchingGAN-Few-Shot-Image-Generation`` @ 916e424
(Hong et al., ICME 2020) and ``AntreasAntoniou/DAGAN`` @ 6f1a503 (Antoniou et al. 2017). Below, "F2 arch" is
F2GAN's ``dagan_architectures_with_matchingclassifier.py`` at that commit.

* :class:`UResNetEncoder`: DAGAN's "UResNet" encoder (``dagan_architectures.py`` ``UResNetGenerator``), used
  image-by-image by all three.
* :class:`ResDiscriminatorTrunk`: F2GAN's pre-activation ResNet discriminator trunk (F2 arch
  ``Discriminator.feature_extractor``).
* :func:`sample_coefficients`: the fusion coefficients a ~ U(1, 10), normalised to sum 1 (F2 arch L733).
* :class:`FusionGenerator`: the F2GAN/MatchingGAN generator skeleton. One shared encoder runs over all K
  conditional images at once (as a batch of B*K), the bottleneck is fused as sum_k a_k E(x_k), and at chosen
  decoder stages a pluggable *skip fusion* module (NAF for F2GAN, :class:`WeightedSumFusion` for MatchingGAN)
  reads the encoder features of all K images and its output is concatenated to the decoder feature.

Every resolution is derived at run time from the input (stride-2 convs with padding 1 give ceil(H / 2)), so
28, 32, 64, 96 and 128 px all work, and neither the batch size nor K is fixed anywhere.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

#: LeakyReLU slope of the TF releases (tf.nn.leaky_relu default).
LRELU_SLOPE = 0.2


# -- initialisation and layer helpers --------------------------------------------------------------------------
def _refresh_spectral_norm(module: nn.Module) -> None:
    """Re-run the power iteration after the raw weight was re-initialised, so sigma matches the new weight."""
    sn = module.parametrizations.weight[0]
    if hasattr(sn, "_power_method") and hasattr(sn, "_reshape_weight_to_matrix"):
        with torch.no_grad():
            sn._power_method(sn._reshape_weight_to_matrix(module.parametrizations.weight.original), 15)


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """N(0, std) weights and zero biases for every conv/linear (the TF releases' initialiser); BN to (1, 0).

    Spectrally normalised layers get their raw weight re-initialised and their power iteration refreshed.
    Returns ``module`` for chaining.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                if parametrize.is_parametrized(m, "weight"):
                    m.parametrizations.weight.original.normal_(0.0, std)
                    _refresh_spectral_norm(m)
                else:
                    m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()
    return module


def conv2d(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, sn: bool = True, bias: bool = True,
           padding_mode: str = "zeros", init: str = "normal") -> nn.Module:
    """A 'same'-padded conv (odd kernel; stride 2 gives ceil(H / 2)), spectrally normalised when ``sn``.
    ``init`` as for :func:`linear` ("glorot" for per-location dense layers)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=bias, padding_mode=padding_mode)
    _initialise(conv, init)
    return spectral_norm(conv) if sn else conv


def linear(in_features: int, out_features: int, sn: bool = False, bias: bool = True,
           init: str = "normal") -> nn.Module:
    """A dense layer: ``init="normal"`` draws N(0, 0.02) (the releases' conv initialiser); ``"glorot"`` is
    Glorot-uniform, the default of ``tf.layers.dense`` that the releases' dense heads used."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    _initialise(layer, init)
    return spectral_norm(layer) if sn else layer


def _initialise(layer: nn.Module, init: str) -> None:
    """Weights N(0, 0.02) (``"normal"``) or Glorot-uniform (``"glorot"``); bias zero."""
    with torch.no_grad():
        if init == "glorot":
            nn.init.xavier_uniform_(layer.weight)
        else:
            layer.weight.normal_(0.0, 0.02)
        if layer.bias is not None:
            layer.bias.zero_()


class ConvLReLUBN(nn.Sequential):
    """conv -> LeakyReLU(0.2) -> BatchNorm (-> dropout): the layer unit of the TF UResNet (DAGAN
    ``dagan_architectures.py`` ``add_encoder_layer``)."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1, sn: bool = True, dropout: float = 0.0,
                 bn_momentum: float = 0.01) -> None:
        layers: list[nn.Module] = [
            conv2d(in_ch, out_ch, 3, stride, sn=sn),
            nn.LeakyReLU(LRELU_SLOPE),
            # momentum 0.01 = TF's BN decay 0.99 of the releases
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)
        self.out_channels = out_ch


class DenseInnerLayers(nn.Module):
    """``n`` stride-1 :class:`ConvLReLUBN` layers, each fed the concat of the input and all earlier outputs.

    Returns the concat of the input and every inner output (the dense feature the block's last conv reads).
    """

    def __init__(self, in_ch: int, ch: int, n: int, *, sn: bool, bn_momentum: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ConvLReLUBN(in_ch + i * ch, ch, sn=sn, bn_momentum=bn_momentum) for i in range(n)
        )
        self.out_channels = in_ch + n * ch

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1) if len(feats) > 1 else x))
        return torch.cat(feats, dim=1) if len(feats) > 1 else x


# -- encoder ---------------------------------------------------------------------------------------------------
class UResNetEncoder(nn.Module):
    """DAGAN's UResNet encoder, used unchanged by MatchingGAN and F2GAN.

    * block 0: conv3x3 s2 -> LReLU -> BN (the releases hard-code 64 filters; here ``layer_sizes[0]``).
    * block i >= 1: ``inner_layers`` densely connected stride-1 convs reading
      concat[block input, the previous block's *input* downsampled by a stride-2 conv, earlier inner outputs],
      then a stride-2 conv over all of those -> LReLU -> BN -> dropout.

    ``forward`` returns the output of every block, shallow to deep; block i is at ceil(H / 2^(i+1)).
    """

    def __init__(self, in_channels: int, layer_sizes: Sequence[int] = (64, 64, 128, 128), inner_layers: int = 2,
                 dropout: float = 0.0, sn: bool = True, bn_momentum: float = 0.01) -> None:
        super().__init__()
        sizes = [int(s) for s in layer_sizes]
        if not sizes:
            raise ValueError("layer_sizes must name at least one block")
        self.out_channels: list[int] = list(sizes)
        self.first = ConvLReLUBN(in_channels, sizes[0], stride=2, sn=sn, bn_momentum=bn_momentum)
        self.skips = nn.ModuleList()
        self.inners = nn.ModuleList()
        self.downs = nn.ModuleList()
        input_channels = [in_channels] + sizes[:-1]          # the input of block i has input_channels[i]
        for i in range(1, len(sizes)):
            skip_ch = input_channels[i - 1]                  # the previous block's input, downsampled
            self.skips.append(ConvLReLUBN(skip_ch, skip_ch, stride=2, sn=sn, bn_momentum=bn_momentum))
            inner = DenseInnerLayers(sizes[i - 1] + skip_ch, sizes[i], inner_layers, sn=sn, bn_momentum=bn_momentum)
            self.inners.append(inner)
            self.downs.append(ConvLReLUBN(inner.out_channels, sizes[i], stride=2, sn=sn, dropout=dropout,
                                          bn_momentum=bn_momentum))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [self.first(x)]
        block_inputs = [x]
        for skip, inner, down in zip(self.skips, self.inners, self.downs):
            h = outs[-1]
            s = skip(block_inputs[-1])
            block_inputs.append(h)
            outs.append(down(inner(torch.cat([h, s], dim=1))))
        return outs


# -- discriminator trunk ---------------------------------------------------------------------------------------
class PreActResBlock(nn.Module):
    """LReLU -> conv3x3 -> LReLU -> conv3x3, plus a (1x1 conv when channels change) shortcut (F2 arch ``pre_resblock``)."""

    def __init__(self, in_ch: int, out_ch: int, sn: bool = True) -> None:
        super().__init__()
        self.conv1 = conv2d(in_ch, out_ch, 3, sn=sn)
        self.conv2 = conv2d(out_ch, out_ch, 3, sn=sn)
        self.shortcut = conv2d(in_ch, out_ch, 1, sn=sn, bias=False) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.leaky_relu(x, LRELU_SLOPE))
        h = self.conv2(F.leaky_relu(h, LRELU_SLOPE))
        return self.shortcut(x) + h


class ResDiscriminatorTrunk(nn.Module):
    """F2GAN's discriminator feature extractor (F2 arch ``feature_extractor``), spectral norm on every conv, no BN.

    conv7x7 (reflect padding) -> ``num_stages`` x [2 pre-activation ResBlocks, avg-pool 3x3 s2 'same'] with the
    channels doubling from ``2 * base_channels`` (capped at ``max_channels``) -> ``final_blocks`` ResBlocks.
    A 96 px input gives [N, 512, 6, 6] with the defaults. Having no batch statistics, it may see reals and
    fakes in one batch.
    """

    def __init__(self, in_channels: int, base_channels: int = 32, num_stages: int = 4, max_channels: int = 512,
                 final_blocks: int = 2, sn: bool = True) -> None:
        super().__init__()
        self.stem = conv2d(in_channels, base_channels, 7, sn=sn, padding_mode="reflect")
        blocks: list[nn.Module] = []
        ch = base_channels
        for s in range(num_stages):
            out = min(base_channels * 2 ** (s + 1), max_channels)
            blocks += [PreActResBlock(ch, out, sn), PreActResBlock(out, out, sn),
                       nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)]
            ch = out
        blocks += [PreActResBlock(ch, ch, sn) for _ in range(final_blocks)]
        self.body = nn.Sequential(*blocks)
        self.out_channels = ch

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.stem(x))


# -- fusion coefficients ---------------------------------------------------------------------------------------
def sample_coefficients(batch: int, k: int, *, generator: torch.Generator | None = None,
                        device: torch.device | str | None = None, low: float = 1.0, high: float = 10.0) -> Tensor:
    """[batch, k] interpolation coefficients: u ~ U(low, high) normalised to sum 1 per row (F2 arch L733).

    Drawn from ``generator`` (on its own device) when given, so a fixed generator gives fixed coefficients; the
    result is moved to ``device``.
    """
    draw_device = generator.device if generator is not None else (device if device is not None else "cpu")
    u = torch.rand((batch, k), generator=generator, device=draw_device) * (high - low) + low
    a = u / u.sum(dim=1, keepdim=True)
    return a.to(device) if device is not None else a


# -- skip fusion -----------------------------------------------------------------------------------------------
class WeightedSumFusion(nn.Module):
    """MatchingGAN's skip: sum_k a_k xi^k of the encoder features, no parameters (MatchingGAN @ 916e424
    ``dagan_architectures_with_matchingclassifier.py`` ``encoder_layer_attention`` L586-605, concatenated at L738).

    Same call signature as every skip-fusion module: ``(decoder [B,C,h,w], encoder [B,K,C_e,h,w], a [B,K])
    -> (fused [B, out_channels, h, w], attention or None)``.
    """

    def __init__(self, decoder_channels: int, encoder_channels: int) -> None:
        super().__init__()
        self.out_channels = encoder_channels

    def forward(self, decoder: Tensor, encoder: Tensor, coefficients: Tensor, need_weights: bool = False):
        return torch.einsum("bk,bkchw->bchw", coefficients.to(encoder.dtype), encoder), None


#: builds a skip-fusion module from (decoder channels, encoder channels)
FusionFactory = Callable[[int, int], nn.Module]


class FusionGenerator(nn.Module):
    """The F2GAN / MatchingGAN generator skeleton (F2 arch ``UResNetGenerator.__call__``).

    * The shared :class:`UResNetEncoder` encodes the B*K conditional images in one batch.
    * Bottleneck: F = sum_k a_k E(x_k).
    * Decoder: ``len(layer_sizes)`` upsampling stages, deepest first. Stage s: ``inner_layers`` densely connected
      convs with ``layer_sizes[-1 - s]`` channels, then nearest resize to the next encoder resolution (the
      image size after the last) + conv3x3 -> LReLU -> BN -> dropout. After stage s's upscale, if
      ``s in fusion_stages``, the skip-fusion module reads the encoder features of that resolution (block
      ``L - 2 - s``) for all K images, and its output is concatenated to the decoder feature. Stage 0 lands
      at the resolution of encoder block L-2, so the releases' NAF placement (12^2 and 24^2 at 96 px) is
      ``fusion_stages=(0, 1)``; valid stages are 0..L-2.
    * A last stage of inner convs at full resolution, 2 x [conv3x3 -> LReLU -> BN], conv3x3 to the image
      channels (no spectral norm, as in the releases), tanh.
    * No plain U-Net skips: the fusion modules are the only encoder->decoder paths (as in the releases).
    """

    def __init__(self, channels: int, *, layer_sizes: Sequence[int] = (64, 64, 128, 128), inner_layers: int = 2,
                 dropout: float = 0.0, fusion_stages: Sequence[int] = (0, 1),
                 fusion_factory: FusionFactory = WeightedSumFusion, sn: bool = True,
                 bn_momentum: float = 0.01) -> None:
        super().__init__()
        sizes = [int(s) for s in layer_sizes]
        depth = len(sizes)
        stages = sorted({int(s) for s in fusion_stages})
        if any(s < 0 or s > depth - 2 for s in stages):
            raise ValueError(f"fusion_stages must lie in 0..{depth - 2} for {depth} encoder blocks; got {list(fusion_stages)}")
        self.fusion_stages = stages
        self.encoder = UResNetEncoder(channels, sizes, inner_layers, dropout, sn=sn, bn_momentum=bn_momentum)
        self.inners = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.fusions = nn.ModuleDict()
        ch = sizes[-1]
        for s in range(depth):
            stage_ch = sizes[depth - 1 - s]
            inner = DenseInnerLayers(ch, stage_ch, inner_layers, sn=sn, bn_momentum=bn_momentum)
            self.inners.append(inner)
            self.ups.append(ConvLReLUBN(inner.out_channels, stage_ch, sn=sn, dropout=dropout, bn_momentum=bn_momentum))
            ch = stage_ch
            if s in stages:
                fusion = fusion_factory(stage_ch, sizes[depth - 2 - s])
                self.fusions[str(s)] = fusion
                ch += int(fusion.out_channels)
        self.last_inner = DenseInnerLayers(ch, sizes[0], inner_layers, sn=sn, bn_momentum=bn_momentum)
        self.head = nn.Sequential(
            ConvLReLUBN(self.last_inner.out_channels, sizes[0], sn=sn, bn_momentum=bn_momentum),
            ConvLReLUBN(sizes[0], sizes[0], sn=sn, bn_momentum=bn_momentum),
            conv2d(sizes[0], channels, 3, sn=False),
        )

    def encode(self, support: Tensor) -> list[Tensor]:
        """[B, K, C, H, W] -> per block [B, K, C_i, h_i, w_i] (one encoder pass over B*K images)."""
        b, k = support.shape[:2]
        feats = self.encoder(support.reshape(b * k, *support.shape[2:]))
        return [f.reshape(b, k, *f.shape[1:]) for f in feats]

    def forward(self, support: Tensor, coefficients: Tensor, *, return_attention: bool = False,
                encoder_input: Tensor | None = None, return_code: bool = False):
        """``support`` [B, K, C, H, W], ``coefficients`` [B, K] -> image [B, C, H, W] in [-1, 1].

        ``encoder_input`` (same shape as ``support``) replaces what the encoder sees (F2GAN's optional input
        corruption). With ``return_attention`` also returns ``{stage: attention}`` from the fusion modules
        that produce one (NAF: [B, K, N_dec, N_enc]); with ``return_code`` also the fused bottleneck code
        sum_k a_k E(x_k) [B, C_L, h_L, w_L] (MatchingGAN's reconstruction target). Extras follow the image in
        that order.
        """
        feats = self.encode(support if encoder_input is None else encoder_input)
        a = coefficients.to(feats[-1].dtype)
        h = torch.einsum("bk,bkchw->bchw", a, feats[-1])
        code = h
        depth = len(feats)
        attention: dict[int, Tensor] = {}
        image_hw = support.shape[-2:]
        for s in range(depth):
            h = self.inners[s](h)
            target = feats[depth - 2 - s].shape[-2:] if s < depth - 1 else image_hw
            h = self.ups[s](F.interpolate(h, size=tuple(target), mode="nearest"))
            if s in self.fusion_stages:
                fused, attn = self.fusions[str(s)](h, feats[depth - 2 - s], coefficients, need_weights=return_attention)
                if attn is not None:
                    attention[s] = attn
                h = torch.cat([h, fused.to(h.dtype)], dim=1)
        out = torch.tanh(self.head(self.last_inner(h)))
        extras = ([attention] if return_attention else []) + ([code] if return_code else [])
        return (out, *extras) if extras else out
