"""How generated and real images become the pixels every backbone sees (the protocol decides each step).

1. ``quantize``: the generator's floats in [-1, 1] become uint8, as if saved to PNG: ``round`` (the suite) or
   ``floor``, what torchvision's ``ToPILImage`` does to ``(x + 1) / 2`` (``mul(255).byte()``, LoFGAN's
   utils.py ``unloader``).
2. ``to_side``: generated and real images are brought to the protocol's evaluation resolution (bilinear,
   antialiased when shrinking, rounded back to uint8), like a peer's script that saves PNGs at that size.
3. Each backbone then prepares its own input: the domain backbone resizes back to the size it was trained at,
   FID Inception takes :func:`pytorch_fid_input` or torch-fidelity's own resize, LPIPS
   :func:`cv2_linear_u8` or a float bilinear resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsgen_bench.data.datamodule import to_uint8


def quantize(images: torch.Tensor, mode: str) -> torch.Tensor:
    """float [-1, 1] -> uint8: ``round`` to the nearest level, or ``floor`` like ``ToPILImage((x + 1) / 2)``."""
    if mode == "round":
        return to_uint8(images)
    if mode == "floor":
        return ((images.float().clamp(-1, 1) + 1) / 2).mul(255).to(torch.uint8)   # .byte() truncates
    raise ValueError(f"unknown quantisation {mode!r}")


def to_side(images_u8: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, side, side]: bilinear (antialiased when shrinking), rounded."""
    if images_u8.shape[-1] == side and images_u8.shape[-2] == side:
        return images_u8
    x = F.interpolate(images_u8.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def cv2_linear_u8(images_u8: torch.Tensor, side: int) -> torch.Tensor:
    """``cv2.resize(img, (side, side))`` (INTER_LINEAR) on uint8 images: two-tap bilinear with half-pixel
    centres, no antialiasing, rounded half up to uint8.

    Exact for the sizes LoFGAN's script meets (128 -> 32 and 64 -> 32: every output pixel is the mean of a 2x2
    block, which cv2's fixed-point arithmetic also rounds half up); at other ratios cv2's 11-bit weights can
    differ from float weights by one grey level in rare pixels.
    """
    if images_u8.shape[-1] == side and images_u8.shape[-2] == side:
        return images_u8
    x = F.interpolate(images_u8.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=False)
    return torch.floor(x + 0.5).clamp_(0, 255).to(torch.uint8)


def pytorch_fid_input(images_u8: torch.Tensor) -> torch.Tensor:
    """What pytorch-fid feeds its Inception: [0, 1] floats (PNG / 255), bilinear resize to 299
    (align_corners=False), then 2x - 1 (pytorch_fid/inception.py, InceptionV3.forward, 0.1.1 to 0.3.0)."""
    x = images_u8.float() / 255.0
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1
