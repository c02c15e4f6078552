"""Small builders shared by tests (real formats, made on the fly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_npy(path: Path, *, classes: int = 10, images: int = 24, size: int = 28, channels: int = 1,
             dtype=np.uint8, seed: int = 0) -> Path:
    """A [classes, images, H, W, C] array whose classes are distinguishable (class-specific blobs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    data = np.zeros((classes, images, size, size, channels), dtype=np.float32)
    for c in range(classes):
        cy, cx = rng.uniform(0.25, 0.75, 2) * size
        for i in range(images):
            jy, jx = rng.normal(0, 1.5, 2)
            blob = np.exp(-(((yy - cy - jy) ** 2 + (xx - cx - jx) ** 2) / (2 * (size / 8) ** 2)))
            data[c, i] = blob[..., None] * (0.6 + 0.4 * rng.random())
    if dtype == np.uint8:
        out = (data * 255).round().astype(np.uint8)
    else:
        out = data.astype(dtype)
    np.save(path, out)
    return path


def base_data_cfg(**over) -> dict:
    cfg = {
        "name": "glyphs", "path": None, "root": None, "download": False, "image_size": 32, "channels": 1,
        "num_seen_classes": None, "k_shot": 3, "batch_size": 4, "episodes_per_epoch": 16, "num_workers": 0,
        "glyph_images_per_class": 20,
    }
    cfg.update(over)
    return cfg
