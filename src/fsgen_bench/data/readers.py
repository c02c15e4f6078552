"""Dataset readers: ``.npy`` arrays, image-folder trees and the named datasets of the F2GAN family.

Registered names (see :data:`fsgen_bench.data.source.DATASETS`):

``npy``          any ``.npy`` in the F2GAN/LoFGAN layout ``[classes, images, H, W, C]`` (``data.path``)
``folder``       an image-folder tree, one sub-folder per class (``data.path``)
``omniglot``     DAGAN's ``omniglot_data.npy`` if present, else the Omniglot PNG tree (torchvision layout)
``emnist``       EMNIST "balanced" through torchvision (train and test pooled)
``flowers``      LoFGAN's ``flower_c8189_s128_data_rgb.npy`` if present, else torchvision's Flowers102
``vggface``      DAGAN/LoFGAN's ``vgg_face_data_rgb.npy`` (or ``vgg_face_data.npy``)
``animalfaces``  LoFGAN's ``animal_128.npy`` if present, else a folder tree ``animalfaces/<class>/``

Every reader returns uint8 ``[n, S, S, C]`` per class (``S = data.image_size``, ``C = data.channels``) and
the field's seen/unseen split: the first ``data.num_seen_classes`` classes in file order are seen, the next
``data.num_unseen_classes`` (default: all the rest) unseen. Classes past that are never read.

Where a named dataset can come from two places, ``data.source`` (``auto`` by default) picks one; ``auto``
prefers the ``.npy`` file, because that array is what the published F2GAN/LoFGAN code sliced its split from.

Decoding thousands of image files is slow, so decoded, resized arrays are cached under the cache directory
(never next to the user's data), keyed by the files' paths, sizes and modification times. Nothing downloads
unless ``data.download`` is true, and then only through torchvision's own download code.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from numpy.lib import format as npy_format

from fsgen_bench.data.source import (
    DATASETS,
    ClassImages,
    DatasetInfo,
    DatasetSpec,
    data_root,
    resize_images,
    standard_split,
    to_uint8_hwc,
)
from fsgen_bench.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Bump when the cached array layout changes, so stale caches are ignored rather than misread.
_CACHE_FORMAT = 2
# Below this many images decoding takes a second or two and a progress bar is only noise.
_PROGRESS_MIN_IMAGES = 500

_LOFGAN_README = "https://github.com/edward3862/LoFGAN-pytorch (README, 'Datasets')"
_DAGAN_README = "https://github.com/AntreasAntoniou/DAGAN (README, dataset links)"
_ROOT_HINT = "or point data.root / $FSGEN_DATA at the folder that holds the files"


# --------------------------------------------------------------------------------------------------------------
# Config values
# --------------------------------------------------------------------------------------------------------------


def _optional_int(data_cfg: dict, key: str, where: str) -> int | None:
    value = data_cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"{where}: data.{key} must be a whole number or null, got {value!r}")
    return int(value)


def _image_size(data_cfg: dict, where: str) -> int:
    size = _optional_int(data_cfg, "image_size", where)
    if size is None or size < 1:
        raise UserError(f"{where}: data.image_size must be a positive whole number, got {data_cfg.get('image_size')!r}")
    return size


def _channels(data_cfg: dict, where: str) -> int | None:
    channels = _optional_int(data_cfg, "channels", where)
    if channels not in (None, 1, 3):
        raise UserError(f"{where}: data.channels must be 1 (gray), 3 (RGB) or null (as stored), got {channels!r}")
    return channels


def _split(num_classes: int, data_cfg: dict, *, where: str) -> tuple[list[int], list[int]]:
    """Seen = the first ``num_seen_classes``; unseen = the next ``num_unseen_classes`` (default: the rest)."""
    if num_classes < 2:
        raise UserError(
            f"{where}: found {num_classes} class(es); a few-shot benchmark needs at least 2 "
            f"(seen classes to train on, unseen classes to evaluate on): add classes to the data"
        )
    num_seen = _optional_int(data_cfg, "num_seen_classes", where)
    if num_seen is None:
        # standard_split's default (80%, rounded) leaves no unseen class when there are only 2 classes.
        num_seen = max(1, min(num_classes - 1, int(round(0.8 * num_classes))))
    seen, unseen = standard_split(num_classes, num_seen, where=where)
    num_unseen = _optional_int(data_cfg, "num_unseen_classes", where)
    if num_unseen is not None:
        if not 1 <= num_unseen <= len(unseen):
            raise UserError(
                f"{where}: num_unseen_classes={num_unseen} but only {len(unseen)} classes follow the {len(seen)} "
                f"seen ones; set data.num_unseen_classes between 1 and {len(unseen)} (or null for all the rest)"
            )
        unseen = unseen[:num_unseen]
    return seen, unseen


def _source_choice(data_cfg: dict, allowed: Sequence[str], where: str) -> str:
    source = data_cfg.get("source") or "auto"
    if source not in ("auto", *allowed):
        raise UserError(f"{where}: data.source={source!r} is not known here; use one of: auto, {', '.join(allowed)}")
    return source


def _split_flat(flat: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Per-class views into one contiguous block of images."""
    bounds = np.cumsum([0, *counts])
    return [flat[bounds[i]:bounds[i + 1]] for i in range(len(counts))]


def _native_size(sizes: set[tuple[int, int]]) -> int | None:
    """The stored side length when every image is square and of one size; otherwise unknown (None)."""
    if len(sizes) == 1:
        h, w = next(iter(sizes))
        if h == w:
            return int(h)
    return None


def _assemble(
    name: str,
    classes: list[np.ndarray],
    names: list[str],
    *,
    seen: list[int],
    unseen: list[int],
    image_size: int,
    native_size: int | None,
    origin: str,
    extra: dict,
) -> ClassImages:
    used = len(seen) + len(unseen)
    classes, names = classes[:used], names[:used]
    info = DatasetInfo(
        name=name,
        channels=int(classes[0].shape[-1]),
        image_size=image_size,
        native_size=native_size,
        num_classes=used,
        num_seen=len(seen),
        origin=origin,
    )
    return ClassImages(info=info, classes=classes, class_names=names, seen=seen, unseen=unseen, extra=extra)


def _missing(dataset: str, expected: str, looked: Sequence[Path | str], how: str) -> UserError:
    places = ", ".join(str(p) for p in looked)
    return UserError(f"{dataset}: data not found. Expected {expected}. Looked at: {places}. To obtain it: {how}")


def _first_existing(paths: Sequence[Path]) -> Path | None:
    return next((path for path in paths if path.is_file()), None)


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------------
# .npy arrays
# --------------------------------------------------------------------------------------------------------------


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


def _read_npy(path: Path, data_cfg: dict, *, name: str) -> ClassImages:
    """Read an F2GAN/LoFGAN array class by class, converting and resizing each class on its own."""
    where = str(path)
    size = _image_size(data_cfg, where)
    want_channels = _channels(data_cfg, where)
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
    seen, unseen = _split(num_classes, data_cfg, where=where)
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
    classes = _split_flat(flat, counts)
    names = [f"class_{i:04d}" for i in range(used)]
    extra = {
        "source": "npy",
        "path": str(path.resolve()),
        "fingerprint": _file_fingerprint(path),
        "classes_in_source": num_classes,
        "stored_dtype": str(header.dtype),
    }
    return _assemble(
        name, classes, names, seen=seen, unseen=unseen, image_size=size, native_size=_native_size(sizes),
        origin=str(path.resolve()), extra=extra,
    )


def _npy_path(data_cfg: dict, kind: str) -> Path:
    if not data_cfg.get("path"):
        raise UserError(f"the {kind} dataset needs a path: --dataset {kind}:PATH (or --set data.path=PATH)")
    return Path(data_cfg["path"]).expanduser().absolute()


def _load_npy(data_cfg: dict, cache_dir: Path) -> ClassImages:
    path = _npy_path(data_cfg, "npy")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise UserError(
            f"npy: {path} is {what}; expected a .npy file [classes, images, H, W, C] (uint8 or floats in [0, 1]). "
            f"Check the path given as --dataset npy:PATH (use folder:PATH for an image-folder tree)"
        )
    return _read_npy(path, data_cfg, name="npy")


def _locate_npy(data_cfg: dict) -> tuple[bool, str]:
    if not data_cfg.get("path"):
        return False, "data.path is not set (use --dataset npy:PATH)"
    path = Path(data_cfg["path"]).expanduser().absolute()
    return path.is_file(), str(path)


# --------------------------------------------------------------------------------------------------------------
# Decoding image files, and the cache of decoded arrays
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Decoded:
    flat: np.ndarray                # uint8 [total, S, S, C], the classes one after another
    counts: list[int]               # images per class
    names: list[str]
    native_size: int | None

    @property
    def classes(self) -> list[np.ndarray]:
        return _split_flat(self.flat, self.counts)


# One image source: a path on disk, or (zip archive path, member name).
_Item = Any
_Opener = Callable[[_Item], Any]


def _open_path(item: Path):
    return open(item, "rb")


def _progress(total: int, desc: str):
    from tqdm import tqdm

    # Bars in logs and CI output are noise: only on an interactive terminal, only for long decodes.
    show = total >= _PROGRESS_MIN_IMAGES and sys.stderr.isatty() and not os.environ.get("CI")
    return tqdm(total=total, desc=desc, unit="img", disable=not show, leave=False)


def _pil_to_array(im) -> np.ndarray:
    """A PIL image -> uint8 [H, W, 1] or [H, W, 3] in its own colour kind (alpha dropped)."""
    from PIL import ImageOps

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


def _decode_one(opener: _Opener, item: _Item, size: int, channels: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image

    try:
        with opener(item) as fh, Image.open(fh) as im:
            im.load()
            arr = _pil_to_array(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, zipfile.BadZipFile) as exc:
        label = item if isinstance(item, Path) else f"{item[0]}:{item[1]}"
        raise UserError(f"cannot read image {label} ({exc}); remove or replace the file") from None
    native = (arr.shape[0], arr.shape[1])
    return resize_images(arr[None], size, channels or arr.shape[-1]), native


def _decode_groups(
    groups: Sequence[tuple[str, Sequence[_Item]]],
    *,
    size: int,
    channels: int | None,
    desc: str,
    opener: _Opener = _open_path,
) -> _Decoded:
    """Decode and resize every image, class by class; with channels=None, RGB if any image is colour."""
    counts = [len(items) for _, items in groups]
    # One output block, filled in place: see _read_npy on heap fragmentation. With channels=None it holds
    # RGB and is reduced to one channel at the end if every image was gray.
    flat = np.empty((sum(counts), size, size, channels or 3), dtype=np.uint8)
    sizes: set[tuple[int, int]] = set()
    any_colour = False
    pos = 0
    with _progress(len(flat), desc) as bar:
        for _, items in groups:
            for item in items:
                image, native = _decode_one(opener, item, size, channels)
                flat[pos:pos + 1] = image  # a gray image broadcasts over RGB when channels=None
                any_colour = any_colour or image.shape[-1] == 3
                sizes.add(native)
                pos += 1
                bar.update(1)
    if channels is None and not any_colour:
        flat = np.ascontiguousarray(flat[..., :1])
    return _Decoded(flat, counts, [name for name, _ in groups], _native_size(sizes))


def _cache_file(cache_dir: Path | None, kind: str, fingerprint: str, size: int, channels: int | None) -> Path | None:
    if cache_dir is None:
        return None
    key = f"v{_CACHE_FORMAT}|{fingerprint}|{size}|{channels if channels else 'auto'}"
    return Path(cache_dir) / kind / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def _read_cache(path: Path) -> _Decoded | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].item())
            flat = z["images"]
        if len(flat) != sum(meta["counts"]):
            raise ValueError("image count does not match the class counts")
        return _Decoded(flat, list(meta["counts"]), list(meta["names"]), meta["native_size"])
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable dataset cache {path} ({exc}); decoding again", stacklevel=2)
        return None


def _write_cache(path: Path, decoded: _Decoded) -> None:
    meta = {"counts": decoded.counts, "names": decoded.names, "native_size": decoded.native_size}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file in the same folder, then rename: readers (other ranks, other runs) see
        # either no cache or a complete one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), images=decoded.flat)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache {path} ({exc}); the next run decodes again", stacklevel=2)


def _cached_decode(
    cache_dir: Path | None,
    kind: str,
    fingerprint: str,
    size: int,
    channels: int | None,
    build: Callable[[], _Decoded],
) -> _Decoded:
    path = _cache_file(cache_dir, kind, fingerprint, size, channels)
    if path is not None:
        cached = _read_cache(path)
        if cached is not None:
            return cached
    decoded = build()
    if path is not None:
        _write_cache(path, decoded)
    return decoded


def _finish(
    name: str, decoded: _Decoded, data_cfg: dict, *, where: str, size: int, origin: str, extra: dict
) -> ClassImages:
    seen, unseen = _split(len(decoded.counts), data_cfg, where=where)
    extra = {**extra, "classes_in_source": len(decoded.counts)}
    return _assemble(
        name, decoded.classes, decoded.names, seen=seen, unseen=unseen, image_size=size,
        native_size=decoded.native_size, origin=origin, extra=extra,
    )


# --------------------------------------------------------------------------------------------------------------
# Image-folder trees
# --------------------------------------------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _scan_folder(root: Path, where: str) -> list[tuple[str, list[Path]]]:
    """Class folders sorted by name; each class's images (searched recursively) sorted by relative path."""
    exts = "/".join(f"*{s}" for s in IMAGE_SUFFIXES)
    try:
        class_dirs = sorted(
            (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
        )
    except OSError as exc:
        raise UserError(f"{where}: cannot list {root} ({exc})") from None
    if not class_dirs:
        loose = any(_is_image(p) for p in root.iterdir() if p.is_file())
        detail = "its images lie directly in it" if loose else "it is empty"
        raise UserError(
            f"{where}: {root} has no class sub-folders ({detail}); expected one sub-folder per class, "
            f"e.g. {root}/<class>/<image>.png ({exts})"
        )
    groups, empty = [], []
    for d in class_dirs:
        files = sorted(
            (p for p in d.rglob("*") if _is_image(p) and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(d).parts)),
            key=lambda p: p.relative_to(d).as_posix(),
        )
        if not files:
            empty.append(str(d))
        groups.append((d.name, files))
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise UserError(
            f"{where}: class folder(s) without images: {shown}; every class folder needs at least one image "
            f"({exts}): add images or remove the folder"
        )
    return groups


def _tree_fingerprint(root: Path, groups: Sequence[tuple[str, Sequence[Path]]]) -> str:
    """Changes when any image is added, removed, renamed, rewritten or touched."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for name, files in groups:
        for f in files:
            st = f.stat()
            h.update(f"{name}\0{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _read_folder(root: Path, data_cfg: dict, cache_dir: Path | None, *, name: str, kind: str) -> ClassImages:
    where = f"{name} ({root})"
    size = _image_size(data_cfg, where)
    channels = _channels(data_cfg, where)
    groups = _scan_folder(root, where)
    fingerprint = _tree_fingerprint(root, groups)
    decoded = _cached_decode(
        cache_dir, kind, fingerprint, size, channels,
        lambda: _decode_groups(groups, size=size, channels=channels, desc=f"decoding {name}"),
    )
    extra = {"source": "folder", "path": str(root.resolve()), "fingerprint": fingerprint}
    return _finish(name, decoded, data_cfg, where=where, size=size, origin=str(root.resolve()), extra=extra)


def _load_folder(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = _npy_path(data_cfg, "folder")
    if not root.is_dir():
        what = "a file, not a folder" if root.is_file() else "missing"
        raise UserError(
            f"folder: {root} is {what}; expected a folder with one sub-folder of images per class "
            f"(use npy:PATH for a .npy file)"
        )
    return _read_folder(root, data_cfg, cache_dir, name="folder", kind="folder")


def _locate_folder(data_cfg: dict) -> tuple[bool, str]:
    if not data_cfg.get("path"):
        return False, "data.path is not set (use --dataset folder:PATH)"
    root = Path(data_cfg["path"]).expanduser().absolute()
    return root.is_dir(), str(root)


# --------------------------------------------------------------------------------------------------------------
# Named datasets: shared pieces
# --------------------------------------------------------------------------------------------------------------


def _npy_candidates(root: Path, dataset: str, filenames: Sequence[str]) -> list[Path]:
    """Files directly under the data root, or in a sub-folder named after the dataset."""
    return [base / f for f in filenames for base in (root, root / dataset)]


def _torchvision_datasets():
    # Imported on use: torchvision.datasets costs a second at import, and listing datasets must stay quick.
    import torchvision.datasets as tvd

    return tvd


def _download_error(dataset: str, root: Path, exc: BaseException) -> UserError:
    return UserError(
        f"{dataset}: download into {root} failed ({type(exc).__name__}: {exc}). data.download=true needs a network; "
        f"on an offline machine, copy the files there from a machine that has one"
    )


# --------------------------------------------------------------------------------------------------------------
# Omniglot
# --------------------------------------------------------------------------------------------------------------

_OMNIGLOT_NPY = ("omniglot_data.npy",)
_OMNIGLOT_SETS = ("images_background", "images_evaluation")


def _omniglot_sources(root: Path) -> dict[str, Path | None]:
    """Per Omniglot set: the extracted folder, else torchvision's downloaded zip, else None."""
    base = root / "omniglot-py"
    found: dict[str, Path | None] = {}
    for s in _OMNIGLOT_SETS:
        found[s] = base / s if (base / s).is_dir() else base / f"{s}.zip" if (base / f"{s}.zip").is_file() else None
    return found


@contextmanager
def _zip_reader(paths: Sequence[Path]) -> Iterator[_Opener]:
    archives = {p: zipfile.ZipFile(p) for p in paths}
    try:
        yield lambda item: archives[item[0]].open(item[1])
    finally:
        for z in archives.values():
            z.close()


def _omniglot_groups(sources: dict[str, Path], where: str) -> tuple[list[tuple[str, list[_Item]]], str]:
    """Characters in a fixed order: background set first, then alphabets and characters sorted by name.

    torchvision lists folders with os.listdir, whose order depends on the file system; sorting makes the
    seen/unseen split the same on every machine.
    """
    groups: list[tuple[str, list[_Item]]] = []
    h = hashlib.sha256()
    for s in _OMNIGLOT_SETS:
        src = sources[s]
        by_char: dict[tuple[str, str], list[_Item]] = {}
        if src.is_dir():
            for alphabet in sorted(p for p in src.iterdir() if p.is_dir()):
                for char in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                    files = sorted(p for p in char.iterdir() if p.suffix.lower() == ".png")
                    by_char[(alphabet.name, char.name)] = list(files)
                    for f in files:
                        st = f.stat()
                        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        else:
            try:
                with zipfile.ZipFile(src) as z:
                    members = z.namelist()
            except (OSError, zipfile.BadZipFile) as exc:
                raise UserError(f"{where}: {src} is not a readable zip ({exc}); download it again") from None
            for m in members:
                parts = m.split("/")
                if len(parts) == 4 and parts[0] == s and parts[3].lower().endswith(".png"):
                    by_char.setdefault((parts[1], parts[2]), []).append((src, m))
            for items in by_char.values():
                items.sort(key=lambda it: it[1])
            h.update(_file_fingerprint(src).encode())
        if not by_char:
            raise UserError(
                f"{where}: {src} holds no characters; expected {s}/<alphabet>/<character>/*.png as in "
                f"torchvision's Omniglot: delete it and download again"
            )
        groups.extend((f"{a}/{c}", by_char[(a, c)]) for a, c in sorted(by_char))
    empty = [n for n, items in groups if not items]
    if empty:
        raise UserError(f"{where}: character folder(s) without .png images: {', '.join(empty[:5])}")
    return groups, h.hexdigest()[:24]


def _omniglot_how(root: Path) -> str:
    return (
        f"rerun with --set data.download=true on a machine with a network (torchvision downloads "
        f"images_background.zip and images_evaluation.zip into {root / 'omniglot-py'}), or copy both zips (or "
        f"their extracted folders) from https://github.com/brendenlake/omniglot/tree/master/python there, or "
        f"place DAGAN's omniglot_data.npy ({_DAGAN_README}) at {root / 'omniglot_data.npy'}, {_ROOT_HINT}"
    )


def _load_omniglot(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    where = f"omniglot ({root})"
    source = _source_choice(data_cfg, ("npy", "torchvision"), where)
    npy = _first_existing(_npy_candidates(root, "omniglot", _OMNIGLOT_NPY))
    if npy is not None and source in ("auto", "npy"):
        return _read_npy(npy, data_cfg, name="omniglot")
    if source == "npy":
        raise _missing("omniglot", "omniglot_data.npy", _npy_candidates(root, "omniglot", _OMNIGLOT_NPY),
                       _omniglot_how(root))
    sources = _omniglot_sources(root)
    if any(v is None for v in sources.values()) and data_cfg.get("download"):
        tvd = _torchvision_datasets()
        for background in (True, False):
            try:
                tvd.Omniglot(str(root), background=background, download=True)
            except Exception as exc:  # noqa: BLE001 - network and archive errors of every kind
                raise _download_error("omniglot", root, exc) from None
        sources = _omniglot_sources(root)
    missing = [s for s, v in sources.items() if v is None]
    if missing:
        looked = [root / "omniglot-py" / f"{s}{ext}" for s in missing for ext in ("", ".zip")]
        if source == "auto":
            looked = _npy_candidates(root, "omniglot", _OMNIGLOT_NPY) + looked
        raise _missing(
            "omniglot",
            "torchvision's Omniglot files (omniglot-py/images_background and images_evaluation, extracted or as "
            ".zip) or DAGAN's omniglot_data.npy",
            looked, _omniglot_how(root),
        )
    size = _image_size(data_cfg, where)
    channels = _channels(data_cfg, where)
    groups, fingerprint = _omniglot_groups(sources, where)  # type: ignore[arg-type]
    zips = [p for p in sources.values() if p is not None and p.is_file()]

    def build() -> _Decoded:
        with _zip_reader(zips) as zip_open:
            opener = lambda item: _open_path(item) if isinstance(item, Path) else zip_open(item)  # noqa: E731
            return _decode_groups(groups, size=size, channels=channels, desc="decoding omniglot", opener=opener)

    decoded = _cached_decode(cache_dir, "omniglot", fingerprint, size, channels, build)
    extra = {"source": "torchvision", "path": str((root / "omniglot-py").resolve()), "fingerprint": fingerprint}
    return _finish("omniglot", decoded, data_cfg, where=where, size=size,
                   origin=f"torchvision Omniglot at {root / 'omniglot-py'}", extra=extra)


def _locate_omniglot(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    source = data_cfg.get("source") or "auto"
    npy = _first_existing(_npy_candidates(root, "omniglot", _OMNIGLOT_NPY))
    if npy is not None and source in ("auto", "npy"):
        return True, str(npy)
    sources = _omniglot_sources(root)
    if source != "npy" and all(v is not None for v in sources.values()):
        return True, str(root / "omniglot-py")
    return False, f"{root / 'omniglot_data.npy'} or {root / 'omniglot-py'}"


# --------------------------------------------------------------------------------------------------------------
# EMNIST
# --------------------------------------------------------------------------------------------------------------


def _emnist_files(root: Path) -> list[Path]:
    raw = root / "EMNIST" / "raw"
    return [raw / f"emnist-balanced-{part}-{kind}" for part in ("train", "test")
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]


def _emnist_present(root: Path) -> bool:
    legacy = root / "EMNIST" / "processed"
    return all(p.is_file() for p in _emnist_files(root)) or all(
        (legacy / f).is_file() for f in ("training_balanced.pt", "test_balanced.pt"))


def _load_emnist(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    where = f"emnist ({root})"
    size = _image_size(data_cfg, where)
    channels = _channels(data_cfg, where)
    download = bool(data_cfg.get("download"))
    if not download and not _emnist_present(root):
        raise _missing(
            "emnist", "torchvision's EMNIST raw files (balanced split, train and test)", _emnist_files(root),
            f"rerun with --set data.download=true on a machine with a network (torchvision downloads EMNIST into "
            f"{root / 'EMNIST'}), or copy {root / 'EMNIST'} from a machine that has it, {_ROOT_HINT}",
        )
    tvd = _torchvision_datasets()
    images, labels, class_names = [], [], None
    for train in (True, False):
        try:
            ds = tvd.EMNIST(str(root), split="balanced", train=train, download=download)
        except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, AssertionError, URLError...
            if download and not _emnist_present(root):
                raise _download_error("emnist", root, exc) from None
            raise UserError(
                f"{where}: cannot read EMNIST ({type(exc).__name__}: {exc}); the files under {root / 'EMNIST'} "
                f"are corrupt or incomplete: delete that folder and download again"
            ) from None
        # torchvision stores EMNIST transposed (the NIST files are column-major); swap H and W so that the
        # characters stand upright, as in the F2GAN figures.
        images.append(np.asarray(ds.data).transpose(0, 2, 1))
        labels.append(np.asarray(ds.targets).astype(np.int64))
        class_names = class_names or list(getattr(ds, "classes", []) or [])
    data = np.concatenate(images)
    targets = np.concatenate(labels)
    num_classes = max(len(class_names or []), int(targets.max(initial=-1)) + 1)
    seen, unseen = _split(num_classes, data_cfg, where=where)
    used = len(seen) + len(unseen)
    counts = np.bincount(targets, minlength=used)[:used]
    if (counts == 0).any():
        c = int(np.flatnonzero(counts == 0)[0])
        raise UserError(f"{where}: class {c} has no images; the EMNIST files are incomplete: download again")
    flat = np.empty((int(counts.sum()), size, size, channels or 1), dtype=np.uint8)  # one block: see _read_npy
    pos = 0
    for c in range(used):
        idx = np.flatnonzero(targets == c)  # train images first, then test, each in file order
        flat[pos:pos + len(idx)] = resize_images(data[idx][..., None], size, channels or 1)
        pos += len(idx)
    classes = _split_flat(flat, counts.tolist())
    names = [class_names[c] if c < len(class_names or []) else str(c) for c in range(len(classes))]
    extra = {"source": "torchvision", "path": str((root / "EMNIST").resolve()), "classes_in_source": num_classes,
             "fingerprint": hashlib.sha256(str((root / "EMNIST").resolve()).encode()).hexdigest()[:16]}
    return _assemble("emnist", classes, names, seen=seen, unseen=unseen, image_size=size,
                     native_size=int(data.shape[1]), origin=f"torchvision EMNIST (balanced) at {root / 'EMNIST'}",
                     extra=extra)


def _locate_emnist(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    return _emnist_present(root), str(root / "EMNIST")


# --------------------------------------------------------------------------------------------------------------
# Flowers
# --------------------------------------------------------------------------------------------------------------

_FLOWERS_NPY = ("flower_c8189_s128_data_rgb.npy",)
_FLOWERS_TV = ("jpg", "imagelabels.mat", "setid.mat")


def _flowers_tv_present(root: Path) -> bool:
    base = root / "flowers-102"
    return (base / "jpg").is_dir() and all((base / f).is_file() for f in _FLOWERS_TV[1:])


def _flowers_how(root: Path) -> str:
    return (
        f"download flower_c8189_s128_data_rgb.npy from the LoFGAN README's dataset link ({_LOFGAN_README}) and "
        f"place it at {root / 'flower_c8189_s128_data_rgb.npy'}, or rerun with --set data.download=true on a "
        f"machine with a network (torchvision's Flowers102, into {root / 'flowers-102'}), {_ROOT_HINT}"
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
    size = _image_size(data_cfg, where)
    channels = _channels(data_cfg, where)
    download = bool(data_cfg.get("download"))
    tvd = _torchvision_datasets()
    splits = []
    for split in ("train", "val", "test"):
        try:
            splits.append(tvd.Flowers102(str(root), split=split, download=download))
        except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, scipy errors...
            if download and not _flowers_tv_present(root):
                raise _download_error("flowers", root, exc) from None
            raise UserError(
                f"{where}: cannot read torchvision's Flowers102 ({type(exc).__name__}: {exc}); the files under "
                f"{root / 'flowers-102'} are corrupt or incomplete: delete that folder and download again"
            ) from None
    class_names = list(getattr(splits[0], "classes", []) or [])

    def build() -> _Decoded:
        total = sum(len(ds) for ds in splits)
        flat = np.empty((total, size, size, channels or 3), dtype=np.uint8)  # one block: see _read_npy
        labels = np.empty(total, dtype=np.int64)
        sizes: set[tuple[int, int]] = set()
        pos = 0
        with _progress(total, "decoding flowers") as bar:
            for ds in splits:  # all three splits pooled, each in torchvision's order
                for i in range(len(ds)):
                    try:
                        image, label = ds[i]
                        arr = _pil_to_array(image)
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
        return _Decoded(flat[order], counts.tolist(), names, _native_size(sizes))

    decoded = _cached_decode(cache_dir, "flowers", _flowers_fingerprint(root), size, channels, build)
    extra = {"source": "torchvision", "path": str((root / "flowers-102").resolve()),
             "fingerprint": _flowers_fingerprint(root)}
    return _finish("flowers", decoded, data_cfg, where=where, size=size,
                   origin=f"torchvision Flowers102 at {root / 'flowers-102'}", extra=extra)


def _load_flowers(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    where = f"flowers ({root})"
    source = _source_choice(data_cfg, ("npy", "torchvision"), where)
    candidates = _npy_candidates(root, "flowers", _FLOWERS_NPY)
    npy = _first_existing(candidates)
    if npy is not None and source in ("auto", "npy"):
        return _read_npy(npy, data_cfg, name="flowers")
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
    raise _missing("flowers", expected, looked, _flowers_how(root))


def _locate_flowers(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    source = data_cfg.get("source") or "auto"
    npy = _first_existing(_npy_candidates(root, "flowers", _FLOWERS_NPY))
    if npy is not None and source in ("auto", "npy"):
        return True, str(npy)
    if source != "npy" and _flowers_tv_present(root):
        return True, str(root / "flowers-102")
    return False, f"{root / _FLOWERS_NPY[0]} or {root / 'flowers-102'}"


# --------------------------------------------------------------------------------------------------------------
# VGGFace
# --------------------------------------------------------------------------------------------------------------

# LoFGAN's RGB file first: the "_rgb" re-export exists because DAGAN's original is stored in another channel
# order (we do not swap channels of the original; prefer the _rgb file when you have both).
_VGGFACE_NPY = ("vgg_face_data_rgb.npy", "vgg_face_data.npy")


def _load_vggface(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    candidates = _npy_candidates(root, "vggface", _VGGFACE_NPY)
    npy = _first_existing(candidates)
    if npy is None:
        raise _missing(
            "vggface", "vgg_face_data_rgb.npy (LoFGAN) or vgg_face_data.npy (DAGAN), [classes, 100, 64, 64, 3]",
            candidates,
            f"download vgg_face_data_rgb.npy from the LoFGAN README's dataset link ({_LOFGAN_README}) and place it "
            f"at {root / 'vgg_face_data_rgb.npy'}, {_ROOT_HINT}",
        )
    return _read_npy(npy, data_cfg, name="vggface")


def _locate_vggface(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    npy = _first_existing(_npy_candidates(root, "vggface", _VGGFACE_NPY))
    return (True, str(npy)) if npy else (False, str(root / _VGGFACE_NPY[0]))


# --------------------------------------------------------------------------------------------------------------
# Animal Faces
# --------------------------------------------------------------------------------------------------------------

_ANIMALS_NPY = ("animal_128.npy",)


def _animal_tree(root: Path) -> Path | None:
    tree = root / "animalfaces"
    if tree.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in tree.iterdir()):
        return tree
    return None


def _load_animalfaces(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    where = f"animalfaces ({root})"
    source = _source_choice(data_cfg, ("npy", "folder"), where)
    candidates = _npy_candidates(root, "animalfaces", _ANIMALS_NPY)
    npy = _first_existing(candidates)
    if npy is not None and source in ("auto", "npy"):
        return _read_npy(npy, data_cfg, name="animalfaces")
    tree = _animal_tree(root)
    if tree is not None and source in ("auto", "folder"):
        return _read_folder(tree, data_cfg, cache_dir, name="animalfaces", kind="animalfaces")
    looked = ([] if source == "folder" else candidates) + ([] if source == "npy" else [root / "animalfaces"])
    raise _missing(
        "animalfaces", "LoFGAN's animal_128.npy ([149, 100, 128, 128, 3]) or a folder tree animalfaces/<class>/*.jpg",
        looked,
        f"download animal_128.npy from the LoFGAN README's dataset link ({_LOFGAN_README}) and place it at "
        f"{root / 'animal_128.npy'}, or build the FUNIT Animal Faces crops (https://github.com/NVlabs/FUNIT) into "
        f"{root / 'animalfaces'}/<class>/, {_ROOT_HINT}",
    )


def _locate_animalfaces(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    source = data_cfg.get("source") or "auto"
    npy = _first_existing(_npy_candidates(root, "animalfaces", _ANIMALS_NPY))
    if npy is not None and source in ("auto", "npy"):
        return True, str(npy)
    tree = _animal_tree(root)
    if tree is not None and source in ("auto", "folder"):
        return True, str(tree)
    return False, f"{root / _ANIMALS_NPY[0]} or {root / 'animalfaces'}"


# --------------------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------------------

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
DATASETS.register("folder", DatasetSpec(
    name="folder",
    description="an image-folder tree, one sub-folder of images per class (--dataset folder:PATH)",
    channels=3,
    native_size=None,
    standard_split="first 80% seen (data.num_seen_classes)",
    obtain="your own images: PATH/<class>/*.png|jpg|jpeg|bmp|webp",
    load=_load_folder,
    locate=_locate_folder,
))
DATASETS.register("omniglot", DatasetSpec(
    name="omniglot",
    description="Omniglot handwritten characters (1623 x 20), torchvision layout or DAGAN's omniglot_data.npy",
    channels=1,
    native_size=105,
    standard_split="1200 seen / 212 unseen",
    obtain="--set data.download=true (torchvision), or omniglot-py/ or DAGAN's omniglot_data.npy in data.root",
    load=_load_omniglot,
    locate=_locate_omniglot,
))
DATASETS.register("emnist", DatasetSpec(
    name="emnist",
    description="EMNIST balanced via torchvision, first 38 classes, train and test pooled, upright",
    channels=1,
    native_size=28,
    standard_split="28 seen / 10 unseen",
    obtain="--set data.download=true (torchvision), or copy EMNIST/raw into data.root",
    load=_load_emnist,
    locate=_locate_emnist,
))
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
DATASETS.register("vggface", DatasetSpec(
    name="vggface",
    description="VGGFace faces as DAGAN/LoFGAN's .npy ([classes, 100, 64, 64, 3], floats in [0, 1])",
    channels=3,
    native_size=64,
    standard_split="1802 seen / the rest unseen",
    obtain="vgg_face_data_rgb.npy from the LoFGAN README into data.root",
    load=_load_vggface,
    locate=_locate_vggface,
))
DATASETS.register("animalfaces", DatasetSpec(
    name="animalfaces",
    description="Animal Faces (FUNIT subset): LoFGAN's animal_128.npy (149 x 100, 128 px) or animalfaces/<class>/",
    channels=3,
    native_size=128,
    standard_split="119 seen / 30 unseen",
    obtain="animal_128.npy from the LoFGAN README into data.root, or an animalfaces/<class>/ tree there",
    load=_load_animalfaces,
    locate=_locate_animalfaces,
))
