"""``flowers``: LoFGAN's ``flower_c8189_s128_data_rgb.npy`` if present, else torchvision's Flowers102 (all three
splits pooled, grouped by label)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from fsgen_bench.data.readers.common import (LOFGAN_README, ROOT_HINT, channels_of, download_error, first_existing,
                                             image_size_of, missing_error, native_size_of, npy_candidates,
                                             source_choice, torchvision_datasets)
from fsgen_bench.data.readers.decode import Decoded, cached_decode, decode_progress, finish, pil_to_array
from fsgen_bench.data.readers.npy import read_npy
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetSpec, data_root, resize_images
from fsgen_bench.errors import UserError


_FLOWERS_NPY = ("flower_c8189_s128_data_rgb.npy",)
_FLOWERS_TV = ("jpg", "imagelabels.mat", "setid.mat")


def _flowers_tv_present(root: Path) -> bool:
    base = root / "flowers-102"
    return (base / "jpg").is_dir() and all((base / f).is_file() for f in _FLOWERS_TV[1:])


def _flowers_how(root: Path) -> str:
    return (
        f"download flower_c8189_s128_data_rgb.npy from the LoFGAN README's dataset link ({LOFGAN_README}) and "
        f"place it at {root / 'flower_c8189_s128_data_rgb.npy'}, or rerun with --set data.download=true on a "
        f"machine with a network (torchvision's Flowers102, into {root / 'flowers-102'}), {ROOT_HINT}"
    )


def _flowers_fingerprint(root: Path) -> str:
    base = root / "flowers-102"
    h = hashlib.sha256(str(base.resolve()).encode())
    for f in _FLOWERS_TV[1:]:
        p = base / f
        if p.is_file():
            h.update(f"{f}\0{p.stat().st_size}\0{p.stat().st_mtime_ns}\n".encode())
    jpg = base / "jpg"
    if jpg.is_dir():
        # Names and count of the JPEGs (cheap); stat'ing all 8189 files would cost more than it adds.
        h.update(f"{jpg.stat().st_mtime_ns}\0".encode())
        h.update("\n".join(sorted(os.listdir(jpg))).encode())
    return h.hexdigest()[:24]


def _flowers_torchvision(root: Path, data_cfg: dict, cache_dir: Path | None, where: str) -> ClassImages:
    size = image_size_of(data_cfg, where)
    channels = channels_of(data_cfg, where)
    download = bool(data_cfg.get("download"))
    tvd = torchvision_datasets()
    splits = []
    for split in ("train", "val", "test"):
        try:
            splits.append(tvd.Flowers102(str(root), split=split, download=download))
        except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, scipy errors...
            if download and not _flowers_tv_present(root):
                raise download_error("flowers", root, exc) from None
            raise UserError(
                f"{where}: cannot read torchvision's Flowers102 ({type(exc).__name__}: {exc}); the files under "
                f"{root / 'flowers-102'} are corrupt or incomplete: delete that folder and download again"
            ) from None
    class_names = list(getattr(splits[0], "classes", []) or [])

    def build() -> Decoded:
        total = sum(len(ds) for ds in splits)
        flat = np.empty((total, size, size, channels or 3), dtype=np.uint8)  # one block: see read_npy
        labels = np.empty(total, dtype=np.int64)
        sizes: set[tuple[int, int]] = set()
        pos = 0
        with decode_progress(total, "decoding flowers") as bar:
            for ds in splits:  # all three splits pooled, each in torchvision's order
                for i in range(len(ds)):
                    try:
                        image, label = ds[i]
                        arr = pil_to_array(image)
                    except (OSError, ValueError, SyntaxError) as exc:
                        raise UserError(f"{where}: cannot read image {i} of a Flowers102 split ({exc}); "
                                        f"download the dataset again") from None
                    sizes.add((arr.shape[0], arr.shape[1]))
                    flat[pos:pos + 1] = resize_images(arr[None], size, channels or 3)
                    labels[pos] = int(label)
                    pos += 1
                    bar.update(1)
        # Group by label (label order), keeping the pooled order within a class.
        order = np.argsort(labels, kind="stable")
        present, counts = np.unique(labels, return_counts=True)
        names = [class_names[c] if c < len(class_names) else str(c) for c in present.tolist()]
        return Decoded(flat[order], counts.tolist(), names, native_size_of(sizes))

    decoded = cached_decode(cache_dir, "flowers", _flowers_fingerprint(root), size, channels, build)
    extra = {"source": "torchvision", "path": str((root / "flowers-102").resolve()),
             "fingerprint": _flowers_fingerprint(root)}
    return finish("flowers", decoded, data_cfg, where=where, size=size,
                   origin=f"torchvision Flowers102 at {root / 'flowers-102'}", extra=extra)


def _load_flowers(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    where = f"flowers ({root})"
    source = source_choice(data_cfg, ("npy", "torchvision"), where)
    candidates = npy_candidates(root, "flowers", _FLOWERS_NPY)
    npy = first_existing(candidates)
    if npy is not None and source in ("auto", "npy"):
        return read_npy(npy, data_cfg, name="flowers")
    if source != "npy" and (_flowers_tv_present(root) or data_cfg.get("download")):
        return _flowers_torchvision(root, data_cfg, cache_dir, where)
    looked = ([] if source == "torchvision" else candidates) + (
        [] if source == "npy" else [root / "flowers-102" / f for f in _FLOWERS_TV])
    expected = {
        "auto": "LoFGAN's flower_c8189_s128_data_rgb.npy, or torchvision's Flowers102 files "
                "(flowers-102/jpg/, imagelabels.mat, setid.mat)",
        "npy": "LoFGAN's flower_c8189_s128_data_rgb.npy",
        "torchvision": "torchvision's Flowers102 files (flowers-102/jpg/, imagelabels.mat, setid.mat)",
    }[source]
    raise missing_error("flowers", expected, looked, _flowers_how(root))


def _locate_flowers(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    source = data_cfg.get("source") or "auto"
    npy = first_existing(npy_candidates(root, "flowers", _FLOWERS_NPY))
    if npy is not None and source in ("auto", "npy"):
        return True, str(npy)
    if source != "npy" and _flowers_tv_present(root):
        return True, str(root / "flowers-102")
    return False, f"{root / _FLOWERS_NPY[0]} or {root / 'flowers-102'}"


DATASETS.register("flowers", DatasetSpec(
    name="flowers",
    description="Oxford Flowers-102: LoFGAN's .npy (102 x 40, 128 px) or torchvision's Flowers102 (8189 images)",
    channels=3,
    native_size=None,
    standard_split="85 seen / 17 unseen",
    obtain="flower_c8189_s128_data_rgb.npy from the LoFGAN README into data.root, or --set data.download=true",
    load=_load_flowers,
    locate=_locate_flowers,
))
