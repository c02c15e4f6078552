"""Figures shared by every method: conditional images next to generated ones, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from fsgen_bench.atomic import atomic_path


def support_grid(support: torch.Tensor, fake: torch.Tensor, *, gap: int = 1) -> np.ndarray:
    """One row per class: its K conditional images, a blank column, then the generated images.

    ``support`` is ``[B, K, C, H, W]`` and ``fake`` ``[B, N, C, H, W]``, both in [-1, 1]. Returns uint8 HxWx3.
    """
    b, k, c, h, w = support.shape
    n = fake.shape[1]
    blank = torch.full((b, gap, c, h, w), 1.0)
    rows = torch.cat([support.float().cpu(), blank, fake.float().cpu()], dim=1)   # [B, K+gap+N, C, H, W]
    flat = rows.reshape(b * (k + gap + n), c, h, w)
    grid = make_grid((flat.clamp(-1, 1) + 1) / 2, nrow=k + gap + n, padding=2, pad_value=0.5)
    if grid.shape[0] == 1:
        grid = grid.expand(3, -1, -1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write a uint8 HxW or HxWx3 array as PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)
