"""Decoding image files (PIL) into one uint8 block per dataset, and the cache of decoded, resized arrays.

Decoding thousands of image files is slow, so decoded arrays are cached under the cache directory (never next
to the user's data), keyed by a fingerprint of the files (paths, sizes, modification times), the image size
and the channel count; a damaged cache entry is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from fsgen_bench.atomic import atomic_write
from fsgen_bench.data.readers.common import assemble, native_size_of, split_classes, split_flat
from fsgen_bench.data.source import ClassImages, resize_images
from fsgen_bench.errors import UserError
from fsgen_bench.progress import progress, progress_enabled

# Bump when the cached array layout changes, so stale caches are ignored rather than misread.
_CACHE_FORMAT = 2
# Below this many images decoding takes a second or two and a progress bar is only noise.
_PROGRESS_MIN_IMAGES = 500


@dataclass
class Decoded:
    flat: np.ndarray                # uint8 [total, S, S, C], the classes one after another
    counts: list[int]               # images per class
    names: list[str]
    native_size: int | None

    @property
    def classes(self) -> list[np.ndarray]:
        return split_flat(self.flat, self.counts)


# One image source: a path on disk, or (zip archive path, member name).
Item = Any
Opener = Callable[[Item], Any]


def open_path(item: Path):
    return open(item, "rb")


def decode_progress(total: int, desc: str):
    """A progress bar for decoding: the package's rule (a terminal, not CI), and only for long decodes."""
    return progress(total=total, desc=desc, unit="img", leave=False,
                    disable=total < _PROGRESS_MIN_IMAGES or not progress_enabled())


def pil_to_array(im) -> np.ndarray:
    """A PIL image -> uint8 [H, W, 1] or [H, W, 3] in its own colour kind (alpha dropped)."""
    im = ImageOps.exif_transpose(im)  # camera JPEGs: honour the orientation tag as viewers do
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit gray: PIL's convert("L") clips at 255 instead of scaling.
        a = np.asarray(im, dtype=np.float32)
        a = a / 257.0 if a.max(initial=0) > 255 else a
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)[..., None]
    # np.array, not np.asarray: PIL's buffer is read-only, and torch warns when it wraps one.
    if im.mode in ("1", "L", "LA", "F"):
        return np.array(im.convert("L"), dtype=np.uint8)[..., None]
    return np.array(im.convert("RGB"), dtype=np.uint8)


def decode_one(opener: Opener, item: Item, size: int, channels: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    try:
        with opener(item) as fh, Image.open(fh) as im:
            im.load()
            arr = pil_to_array(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, zipfile.BadZipFile) as exc:
        label = item if isinstance(item, Path) else f"{item[0]}:{item[1]}"
        raise UserError(f"cannot read image {label} ({exc}); remove or replace the file") from None
    native = (arr.shape[0], arr.shape[1])
    return resize_images(arr[None], size, channels or arr.shape[-1]), native


def decode_groups(
    groups: Sequence[tuple[str, Sequence[Item]]],
    *,
    size: int,
    channels: int | None,
    desc: str,
    opener: Opener = open_path,
) -> Decoded:
    """Decode and resize every image, class by class; with channels=None, RGB if any image is colour."""
    counts = [len(items) for _, items in groups]
    # One output block, filled in place: see read_npy on heap fragmentation. With channels=None it holds
    # RGB and is reduced to one channel at the end if every image was gray.
    flat = np.empty((sum(counts), size, size, channels or 3), dtype=np.uint8)
    sizes: set[tuple[int, int]] = set()
    any_colour = False
    pos = 0
    with decode_progress(len(flat), desc) as bar:
        for _, items in groups:
            for item in items:
                image, native = decode_one(opener, item, size, channels)
                flat[pos:pos + 1] = image  # a gray image broadcasts over RGB when channels=None
                any_colour = any_colour or image.shape[-1] == 3
                sizes.add(native)
                pos += 1
                bar.update(1)
    if channels is None and not any_colour:
        flat = np.ascontiguousarray(flat[..., :1])
    return Decoded(flat, counts, [name for name, _ in groups], native_size_of(sizes))


def _cache_file(cache_dir: Path | None, kind: str, fingerprint: str, size: int, channels: int | None) -> Path | None:
    if cache_dir is None:
        return None
    key = f"v{_CACHE_FORMAT}|{fingerprint}|{size}|{channels if channels else 'auto'}"
    return Path(cache_dir) / kind / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def _read_cache(path: Path) -> Decoded | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].item())
            flat = z["images"]
        if len(flat) != sum(meta["counts"]):
            raise ValueError("image count does not match the class counts")
        return Decoded(flat, list(meta["counts"]), list(meta["names"]), meta["native_size"])
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable dataset cache {path} ({exc}); decoding again", stacklevel=2)
        return None


def _write_cache(path: Path, decoded: Decoded) -> None:
    meta = {"counts": decoded.counts, "names": decoded.names, "native_size": decoded.native_size}
    try:
        # Atomic: readers (other ranks, other runs) see either no cache or a complete one.
        with atomic_write(path, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), images=decoded.flat)
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache {path} ({exc}); the next run decodes again", stacklevel=2)


def cached_decode(
    cache_dir: Path | None,
    kind: str,
    fingerprint: str,
    size: int,
    channels: int | None,
    build: Callable[[], Decoded],
) -> Decoded:
    path = _cache_file(cache_dir, kind, fingerprint, size, channels)
    if path is not None:
        cached = _read_cache(path)
        if cached is not None:
            return cached
    decoded = build()
    if path is not None:
        _write_cache(path, decoded)
    return decoded


def finish(
    name: str, decoded: Decoded, data_cfg: dict, *, where: str, size: int, origin: str, extra: dict
) -> ClassImages:
    seen, unseen = split_classes(len(decoded.counts), data_cfg, where=where)
    extra = {**extra, "classes_in_source": len(decoded.counts)}
    return assemble(
        name, decoded.classes, decoded.names, seen=seen, unseen=unseen, image_size=size,
        native_size=decoded.native_size, origin=origin, extra=extra,
    )
