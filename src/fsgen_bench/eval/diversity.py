"""Diversity of the images generated for a class: LPIPS, or the domain backbone's feature distance.

LPIPS (``lpips`` metric, backbone ``alex``/``vgg``/``squeeze``): the ``lpips`` package's learned linear heads
(v0.1, shipped in its wheel) on a torchvision ImageNet backbone whose weights come from a local file
(:mod:`fsgen_bench.eval.weights`). ``lpips.LPIPS(pnet_rand=True)`` builds the network without a download,
then the torchvision ``state_dict`` is loaded into its backbone slices (``model_path`` would only load the
linear heads). All pairs of a class are scored at once: LPIPS between images i and j is, per layer l,
``mean_hw sum_c w_c (f_i - f_j)^2`` with unit-normalised features ``f``, which expands to
``(a_i + a_j - 2 G_ij) / HW`` with ``a_i = sum w f_i^2`` and the Gram matrix ``G = (f w) f^T``. So each image
goes through the backbone once and every pair costs one matrix product, never a network call.

Without the backbone weights the harness reports ``diversity`` on backbone ``domain`` instead: the mean
pairwise cosine distance of the domain backbone's L2-normalised features. It is a different metric with a
different name, never presented as LPIPS.

Pairs follow the protocol: ``all`` (i < j) or ``first10`` (i among the first 10, j > i; F2GAN's script).
The input follows the protocol too: resized to ``lpips_size`` by a float bilinear resize, or like
``cv2.resize`` on uint8 (LoFGAN); then mapped to [-1, 1], or to [-3, 1] as LoFGAN's script feeds it
(``lpips.im2tensor`` already gives [-1, 1], and ``model(a, b, normalize=True)`` maps that again).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
import torch.nn.functional as F

from fsgen_bench.errors import UserError
from fsgen_bench.eval.pixels import cv2_linear_u8
from fsgen_bench.eval.weights import LPIPS_BACKBONE_FILES, WeightsFile, load_state_dict_file


#: Smallest square input each backbone accepts (its pooling stages shrink smaller images to nothing). Smaller
#: images (28-px Omniglot, 16-px tests) are upsampled to this side; the record says which side was used.
MIN_SIDE = {"alex": 31, "vgg": 16, "squeeze": 17}


def pair_mask(n: int, rule: str, device=None) -> torch.Tensor:
    """Boolean [n, n]: which (i, j) pairs a protocol scores."""
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    mask = j > i
    if rule == "first10":
        mask &= i < 10
    elif rule != "all":
        raise ValueError(f"unknown pair rule {rule!r}")
    return mask


def mean_over_pairs(distances: torch.Tensor, rule: str) -> float:
    mask = pair_mask(distances.shape[0], rule, distances.device)
    if not bool(mask.any()):
        return float("nan")
    return float(distances[mask].double().mean())


def cosine_distances(features: torch.Tensor) -> torch.Tensor:
    """[N, N] of 1 - cos between rows (float64)."""
    f = F.normalize(features.double(), dim=1)
    return (1.0 - f @ f.T).clamp_(min=0.0)


class LpipsDistance:
    """Batched all-pairs LPIPS with the ``lpips`` package's heads and a local torchvision backbone."""

    def __init__(self, net: str, weights: WeightsFile, *, device: torch.device, size: int | None,
                 resize: str = "bilinear", input_range: tuple[int, int] = (-1, 1)) -> None:
        import lpips

        if net not in LPIPS_BACKBONE_FILES:
            raise UserError(f"unknown LPIPS backbone {net!r}; known: {', '.join(LPIPS_BACKBONE_FILES)}")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # lpips prints its setup and calls torchvision's deprecated ``pretrained=``; neither concerns a user.
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        state = load_state_dict_file(weights.path, what=f"torchvision {net}")
        load_backbone(model.net, state, net=net, path=str(weights.path))
        self.model = model.to(device).eval().requires_grad_(False)
        if resize not in ("bilinear", "cv2-linear") or tuple(input_range) not in ((-1, 1), (-3, 1)):
            raise ValueError(f"LPIPS input: resize {resize!r}, range {input_range!r}")
        self.net = net
        self.size = size
        self.resize = resize
        self.input_range = tuple(input_range)
        self.device = device
        self.weights = weights
        # Linear head weights, one [C] vector per layer (the 1x1 convolutions have no bias).
        self.head_weights = [lin.model[-1].weight.detach().flatten().to(device) for lin in model.lins]
        self.normalize = lpips.normalize_tensor

    def input_side(self, served: int) -> int:
        """The side the backbone sees for images served at ``served`` pixels."""
        return max(self.size or served, MIN_SIDE[self.net])

    def _prepare(self, images_u8: torch.Tensor) -> torch.Tensor:
        images_u8 = images_u8.to(self.device)
        side = self.input_side(images_u8.shape[-1])
        if self.resize == "cv2-linear":
            images_u8 = cv2_linear_u8(images_u8, side)
        x = images_u8.float().div_(127.5).sub_(1.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != side or x.shape[-2] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        if self.input_range == (-3, 1):
            x = 2 * x - 1      # lpips' normalize=True applied to what is already [-1, 1] (LoFGAN's call)
        return self.model.scaling_layer(x)

    @torch.no_grad()
    def pairwise(self, images_u8: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """[N, N] LPIPS distances (float64) among ``images_u8`` (uint8 [N, C, H, W])."""
        n = images_u8.shape[0]
        with torch.autocast(device_type=self.device.type, enabled=False):
            layers: list[list[torch.Tensor]] = []
            for start in range(0, n, batch_size):
                outs = self.model.net(self._prepare(images_u8[start:start + batch_size]))
                feats = [self.normalize(o.float()) for o in outs]
                if not layers:
                    layers = [[] for _ in feats]
                for store, f in zip(layers, feats):
                    store.append(f)
            total = torch.zeros((n, n), dtype=torch.float64, device=self.device)
            for store, w in zip(layers, self.head_weights):
                f = torch.cat(store)                              # [N, C, h, w]
                hw = f.shape[-1] * f.shape[-2]
                fw = f * w.view(1, -1, 1, 1)
                flat, flat_w = f.flatten(1), fw.flatten(1)
                sq = (flat_w * flat).sum(1, dtype=torch.float64)   # a_i
                gram = torch.zeros((n, n), dtype=torch.float64, device=self.device)
                for s in range(0, flat.shape[1], 1 << 16):      # float64 products, bounded extra memory
                    gram += flat_w[:, s:s + (1 << 16)].double() @ flat[:, s:s + (1 << 16)].double().T
                total += (sq[:, None] + sq[None, :] - 2.0 * gram) / hw
        return total.clamp_(min=0.0)


def load_backbone(pnet: torch.nn.Module, state: dict, *, net: str, path: str) -> None:
    """Load a torchvision ``<net>.state_dict()`` (keys ``features.<i>.<param>``) into lpips' sliced backbone.

    lpips keeps torchvision's ``features[i]`` modules under ``slice<k>.<i>``, so ``slice<k>.<i>.<param>``
    receives ``features.<i>.<param>``. Every backbone parameter must be present with the right shape.
    """
    target = pnet.state_dict()
    mapped = {}
    for key in target:
        _, index, *rest = key.split(".")
        mapped[key] = f"features.{index}." + ".".join(rest)
    missing = [src for src in mapped.values() if src not in state]
    if missing:
        raise UserError(
            f"{path} is not a torchvision {net} state_dict: it lacks {len(missing)} backbone tensors "
            f"(e.g. {missing[0]}); expected {LPIPS_BACKBONE_FILES[net]}"
        )
    bad = [(k, tuple(state[s].shape), tuple(target[k].shape)) for k, s in mapped.items()
           if tuple(state[s].shape) != tuple(target[k].shape)]
    if bad:
        k, got, want = bad[0]
        raise UserError(f"{path}: tensor {mapped[k]} has shape {got}, a torchvision {net} needs {want}")
    pnet.load_state_dict({k: state[s] for k, s in mapped.items()}, strict=True)
