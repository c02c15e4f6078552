"""``npy``: any ``.npy`` array in the F2GAN/LoFGAN layout ``[classes, images, H, W, C]`` (``--dataset npy:PATH``),
and the array reader the named datasets stored as ``.npy`` use (``read_npy``).

The file is memory-mapped and read class by class (a VGGFace file does not fit in memory twice); ragged
object arrays (one entry per class) are accepted, and floats in [0, 1] or [0, 255] are converted with one
scale for the whole file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from fsgen_bench.data.readers.common import (assemble, channels_of, file_fingerprint, image_size_of, native_size_of,
                                             path_option, split_classes, split_flat)
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetSpec, resize_images, to_uint8_hwc
from fsgen_bench.errors import UserError


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int


def _read_npy_header(path: Path) -> _NpyHeader:
    """Parse the header only, so that a file's shape and dtype are known before any data is read."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) == b"PK\x03\x04":
                raise UserError(
                    f"{path} is a zip archive (.npz?), not a .npy file; extract the array with "
                    f"np.load(path)[key] and save it with np.save"
                )
            fh.seek(0)
            version = npy_format.read_magic(fh)
            # Version 3.0 differs from 2.0 only in allowing utf-8 field names, irrelevant for image arrays.
            read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _fortran, dtype = read(fh)
            return _NpyHeader(tuple(int(s) for s in shape), np.dtype(dtype), fh.tell())
    except UserError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise UserError(
            f"{path} is not a readable .npy file ({exc}); the file is corrupt or of another format: "
            f"download or export it again (np.save(path, array))"
        ) from None


def _open_npy(path: Path) -> tuple[np.ndarray, _NpyHeader]:
    """Memory-map a plain array (so huge files are read once, class by class); fully load object arrays."""
    header = _read_npy_header(path)
    if header.dtype.hasobject:
        # Ragged files are object arrays, which numpy stores with pickle; unpickling executes code from the
        # file, so allow_pickle is used only when the header says so. Only load .npy files you trust.
        try:
            arr = np.load(path, allow_pickle=True)
        except Exception as exc:  # noqa: BLE001 - unpickling corrupt data can raise almost anything
            raise UserError(
                f"{path}: cannot read this object (ragged) .npy array ({type(exc).__name__}: {exc}); the file is "
                f"truncated or corrupt: download or export it again"
            ) from None
        return arr, header
    if header.dtype.kind not in "uif":
        raise UserError(
            f"{path}: unsupported element type {header.dtype}; expected uint8 images or floats in [0, 1]"
        )
    expected = header.data_offset + int(np.prod(header.shape, dtype=np.int64)) * header.dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise UserError(
            f"{path} is truncated: its header promises an array of shape {header.shape} ({expected:,} bytes) "
            f"but the file holds {actual:,} bytes; the download or copy was interrupted: fetch the file again"
        )
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot read the array ({exc}); download or export the file again") from None
    return arr, header


class _FloatScale:
    """Converts float images to uint8 with ONE scale for the whole file.

    ``to_uint8_hwc`` picks [0, 1] or [0, 255] per call; decided per class, a very dark class of a [0, 255] file
    would be read as [0, 1]. The first float chunk decides for the file; every later chunk is checked against it.
    """

    def __init__(self) -> None:
        self.scale: float | None = None

    def __call__(self, x: np.ndarray, where: str) -> np.ndarray:
        if not np.issubdtype(x.dtype, np.floating):
            return to_uint8_hwc(x, where=where)
        if x.size == 0:
            return np.zeros(x.shape, np.uint8)
        lo, hi = float(np.min(x)), float(np.max(x))
        if np.isnan(lo) or np.isnan(hi):
            raise UserError(f"{where}: the images contain NaN values; the file is corrupt: export it again")
        if lo < -1e-3:
            raise UserError(
                f"{where}: float images must lie in [0, 1] (or [0, 255]); found values down to {lo:.3g}. "
                f"If they are normalised to [-1, 1], save (x + 1) / 2 instead"
            )
        if self.scale is None:
            self.scale = 255.0 if hi <= 1.0 + 1e-6 else 1.0
        limit = 1.0 if self.scale == 255.0 else 255.0
        if hi > limit + 1e-3:
            span = "[0, 1] (decided from the first class)" if limit == 1.0 else "[0, 255]"
            raise UserError(
                f"{where}: float images must lie in {span}; found values up to {hi:.4g}. Save the whole file "
                f"either as floats in [0, 1] or as uint8"
            )
        y = np.multiply(x, self.scale, dtype=np.float32)
        np.rint(y, out=y)
        np.clip(y, 0, 255, out=y)
        return y.astype(np.uint8)


def _check_channels_last(shape: tuple[int, ...], where: str) -> None:
    c = shape[-1]
    if c not in (1, 3, 4):
        hint = ""
        if len(shape) >= 3 and shape[-3] in (1, 3, 4):
            hint = " It looks channels-first; move the channel axis last with np.moveaxis(x, -3, -1)."
        raise UserError(f"{where}: the last axis has size {c}, expected channels-last images (C = 1, 3 or 4).{hint}")


def _class_chunks(elem: Any, where: str) -> list[np.ndarray]:
    """One class of a ragged array: an array [n, H, W, C] / [n, H, W], or a list of images [H, W, C] / [H, W]."""
    if isinstance(elem, np.ndarray) and elem.dtype != object:
        x = elem[..., None] if elem.ndim == 3 else elem
        if x.ndim != 4:
            raise UserError(f"{where}: expected images [n, H, W, C] or [n, H, W]; got shape {elem.shape}")
        _check_channels_last(x.shape, where)
        return [x]
    if isinstance(elem, (list, tuple)) or (isinstance(elem, np.ndarray) and elem.ndim == 1):
        chunks = []
        for j, image in enumerate(elem):
            im = np.asarray(image)
            if im.dtype == object or im.ndim not in (2, 3):
                raise UserError(f"{where}, image {j}: expected an image [H, W, C] or [H, W]; got {im.dtype} {im.shape}")
            im = im[..., None] if im.ndim == 2 else im
            _check_channels_last(im.shape, f"{where}, image {j}")
            chunks.append(im[None])
        return chunks
    raise UserError(f"{where}: expected an array of images, got {type(elem).__name__}")


def read_npy(path: Path, data_cfg: dict, *, name: str) -> ClassImages:
    """Read an F2GAN/LoFGAN array class by class, converting and resizing each class on its own."""
    where = str(path)
    size = image_size_of(data_cfg, where)
    want_channels = channels_of(data_cfg, where)
    arr, header = _open_npy(path)
    ragged = arr.dtype == object

    if ragged:
        if arr.ndim == 0 or arr.ndim > 2:
            raise UserError(
                f"{where}: an object array must hold one entry per class (shape [classes]); got shape {arr.shape}"
            )
    else:
        if arr.ndim == 4:
            if arr.shape[-1] in (3, 4) and arr.shape[-2] > 4:
                raise UserError(
                    f"{where}: a 4-D array is read as grayscale [classes, images, H, W], but its last axis has size "
                    f"{arr.shape[-1]}, which looks like colour channels of one class [images, H, W, C]; save the data "
                    f"as [classes, images, H, W, C]"
                )
        elif arr.ndim == 5:
            _check_channels_last(arr.shape, where)
        else:
            raise UserError(
                f"{where}: expected an array [classes, images, H, W, C] (or [classes, images, H, W] for gray); "
                f"got shape {arr.shape}"
            )
        if arr.shape[1] == 0:
            raise UserError(f"{where}: the array has 0 images per class (shape {arr.shape})")

    num_classes = int(arr.shape[0])
    seen, unseen = split_classes(num_classes, data_cfg, where=where)
    used = len(seen) + len(unseen)
    # First the per-class views (no pixel is read yet for a memory map), so that the whole output can be
    # allocated as ONE block: many small long-lived arrays interleaved with the large temporaries of
    # resizing fragment the heap, which then grows by megabytes per class (gigabytes for VGGFace).
    per_class: list[list[np.ndarray]] = []
    for i in range(used):
        cwhere = f"{where}, class {i}"
        if ragged:
            chunks = _class_chunks(arr[i], cwhere)
        else:
            chunks = [arr[i][..., None] if arr.ndim == 4 else arr[i]]
        if sum(len(chunk) for chunk in chunks) == 0:
            raise UserError(f"{cwhere}: the class has no images; remove it from the array")
        per_class.append(chunks)
    target = want_channels
    if target is None:
        c = per_class[0][0].shape[-1]
        target = 3 if c == 4 else c  # alpha is dropped (resize_images reads RGBA as RGB)
    counts = [sum(len(chunk) for chunk in chunks) for chunks in per_class]
    flat = np.empty((sum(counts), size, size, target), dtype=np.uint8)
    to_u8 = _FloatScale()
    sizes: set[tuple[int, int]] = set()
    pos = 0
    for i, chunks in enumerate(per_class):
        for chunk in chunks:
            sizes.add((int(chunk.shape[1]), int(chunk.shape[2])))
            with warnings.catch_warnings():
                # torch warns when it wraps the read-only memory map; resize_images only reads it.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                # Only this class's bytes of a memory map are read here, once.
                flat[pos:pos + len(chunk)] = resize_images(to_u8(chunk, f"{where}, class {i}"), size, target)
            pos += len(chunk)
    del per_class
    classes = split_flat(flat, counts)
    names = [f"class_{i:04d}" for i in range(used)]
    extra = {
        "source": "npy",
        "path": str(path.resolve()),
        "fingerprint": file_fingerprint(path),
        "classes_in_source": num_classes,
        "stored_dtype": str(header.dtype),
    }
    return assemble(
        name, classes, names, seen=seen, unseen=unseen, image_size=size, native_size=native_size_of(sizes),
        origin=str(path.resolve()), extra=extra,
    )


def _load_npy(data_cfg: dict, cache_dir: Path) -> ClassImages:
    path = path_option(data_cfg, "npy")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise UserError(
            f"npy: {path} is {what}; expected a .npy file [classes, images, H, W, C] (uint8 or floats in [0, 1]). "
            f"Check the path given as --dataset npy:PATH (use folder:PATH for an image-folder tree)"
        )
    return read_npy(path, data_cfg, name="npy")


def _locate_npy(data_cfg: dict) -> tuple[bool, str]:
    if not data_cfg.get("path"):
        return False, "data.path is not set (use --dataset npy:PATH)"
    path = Path(data_cfg["path"]).expanduser().absolute()
    return path.is_file(), str(path)


DATASETS.register("npy", DatasetSpec(
    name="npy",
    description="any .npy in the F2GAN/LoFGAN layout [classes, images, H, W, C] (--dataset npy:PATH)",
    channels=0,  # 0: as stored in the file
    native_size=None,
    standard_split="first 80% seen (data.num_seen_classes)",
    obtain="your own file: np.save(PATH, uint8 or [0, 1] float array [classes, images, H, W, C])",
    load=_load_npy,
    locate=_locate_npy,
))
