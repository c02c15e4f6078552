"""``glyphs``: the embedded default dataset, an Omniglot-like set of characters that needs no download.

A class is one character of one script (``"greek:λ"``, ``"armenian:Ֆ"``); its images are renders of that
character by different "drawers" (font face, pen, distortion: :mod:`.glyph_drawing`).

Split
    Seen and unseen classes are split by SCRIPT, as Omniglot splits alphabets. The class list is fixed and
    committed in ``splits/glyphs.json``, which this module only reads. How it was made (letters that enough
    faces cover, deduplicated by rendered appearance so that no unseen class has a near-identical seen class)
    is in the maintenance module :mod:`fsgen_bench.data.glyph_split`, which regenerates it
    (``python -m fsgen_bench.data.glyph_split``) and which nothing at run time imports.

Cache
    The whole dataset (496 classes x 20 drawers at 32 px) takes about 5 CPU-seconds and is cached atomically
    in ``cache_dir / "glyphs" / f"{key}.npz"``; the key encodes the format version, image size, drawers per
    class, build seed and a fingerprint of the split file, the font files and the versions of the libraries
    that draw (PIL, FreeType, torch).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import features

from fsgen_bench.atomic import atomic_write
from fsgen_bench.data.readers.glyph_drawing import BUILD_SEED, FACES, draw_dataset, font_dir
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetInfo, DatasetSpec, resize_images
from fsgen_bench.errors import UserError

FORMAT_VERSION = 1          # bump when the rendering or distortion changes: it is part of the cache key
SPLIT_FILE = Path(__file__).resolve().parents[1] / "splits" / "glyphs.json"
MIN_SIZE, MAX_SIZE = 16, 128   # the range of data.image_size the renderer accepts


def _fingerprint() -> str:
    """Split file content, font files (names, sizes) and the drawing libraries' versions: a change in any
    of them may change the pixels, so it changes the cache key."""
    h = hashlib.sha256(SPLIT_FILE.read_bytes())
    for face in FACES:
        path = font_dir() / face.file
        h.update(f"{face.file}:{path.stat().st_size if path.is_file() else -1};".encode())
    h.update(f"PIL {PIL.__version__}; freetype {features.version('freetype2')}; torch {torch.__version__}".encode())
    return h.hexdigest()[:12]


def read_split(path: Path = SPLIT_FILE) -> tuple[list[str], list[str], list[int], list[int]]:
    """(class names, scripts per class, seen indices, unseen indices) from the committed split file."""
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
        names, scripts, seen, unseen = [], [], [], []
        for script, entry in split["scripts"].items():
            side = entry["split"]
            if side not in ("seen", "unseen"):
                raise ValueError(f"script {script}: split must be seen or unseen, not {side!r}")
            for ch in entry["characters"]:
                (seen if side == "seen" else unseen).append(len(names))
                names.append(f"{script}:{ch}")
                scripts.append(script)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise RuntimeError(f"glyphs split file {path} is missing or malformed ({err}); it ships with the "
                           f"package; regenerate it with python -m fsgen_bench.data.glyph_split") from err
    if len(set(names)) != len(names) or not seen or not unseen:
        raise RuntimeError(f"glyphs split file {path}: duplicate classes or an empty side")
    return names, scripts, seen, unseen


# -- cache and registry ------------------------------------------------------------------------------------------

def cache_key(size: int, per_class: int) -> str:
    return f"v{FORMAT_VERSION}-s{size}-n{per_class}-seed{BUILD_SEED}-{_fingerprint()}"


def cache_path(cache_dir: Path, size: int, per_class: int) -> Path:
    return Path(cache_dir) / "glyphs" / f"{cache_key(size, per_class)}.npz"


def _load_cached(path: Path, names: list[str], shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
            cached_names = z["class_names"].tolist()
    except Exception:      # a corrupt or foreign file: rebuild rather than fail
        return None
    if cached_names != names or images.shape != shape or images.dtype != np.uint8:
        return None
    return images


def _save_atomic(path: Path, images: np.ndarray, names: list[str]) -> None:
    """An .npz (readable by np.load) written to a temporary file and renamed into place, so a reader never
    sees a partial file. Written by hand rather than with np.savez so that the zip entries carry a fixed
    timestamp: the same build gives the same bytes."""
    # compresslevel 1: the images are mostly background, level 1 already shrinks them ~5x, and fast.
    with atomic_write(path, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED,
                                                          compresslevel=1) as zf:
        for key, arr in (("images", images), ("class_names", np.array(names))):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _validate(data_cfg: dict) -> tuple[int, int, int]:
    try:
        # no fallbacks here: the defaults are configs/defaults.yaml's and configs/datasets/glyphs.yaml's
        size = int(data_cfg.get("image_size"))
        per_class = int(data_cfg.get("glyph_images_per_class"))
        channels = int(data_cfg.get("channels"))
    except (TypeError, ValueError) as err:
        raise UserError(f"glyphs: data.image_size, data.glyph_images_per_class and data.channels must be "
                        f"integers ({err})") from err
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"glyphs: data.image_size={size} is not supported; use a size in {MIN_SIZE}..{MAX_SIZE} "
                        f"(28, 32 and 64 are the usual ones)")
    if not 1 <= per_class <= 1000:
        raise UserError(f"glyphs: data.glyph_images_per_class={per_class}; use 1..1000")
    if channels not in (1, 3):
        raise UserError(f"glyphs: data.channels={channels}; glyphs are grayscale: use 1 (or 3 to replicate)")
    for key in ("num_seen_classes", "num_unseen_classes"):
        if data_cfg.get(key) is not None:
            # An error rather than silently ignoring it: a user who sets it expects a different split and would
            # otherwise get results that do not match what they asked for.
            raise UserError(
                f"glyphs: data.{key}={data_cfg[key]} does not apply: glyphs is split by script (as Omniglot "
                f"splits alphabets), from the committed file {SPLIT_FILE.name}; leave data.{key} null"
            )
    return size, per_class, channels


def load(data_cfg: dict, cache_dir: Path) -> ClassImages:
    """Read (or build and cache) the glyphs dataset at ``data.image_size``."""
    size, per_class, channels = _validate(data_cfg)
    names, scripts, seen, unseen = read_split()
    path = cache_path(cache_dir, size, per_class)
    images = _load_cached(path, names, (len(names), per_class, size, size)) if path.is_file() else None
    if images is None:
        images = draw_dataset(names, size, per_class)
        _save_atomic(path, images, names)
    if channels == 3:
        # one call over all images: per class calls cost ~10x more in per-call overhead
        flat = resize_images(images.reshape(-1, size, size, 1), size, 3)
        images = flat.reshape(len(names), per_class, size, size, 3)
    else:
        images = images[..., None]
    classes = [images[i] for i in range(len(names))]
    info = DatasetInfo(name="glyphs", channels=channels, image_size=size, native_size=None,
                       num_classes=len(names), num_seen=len(seen), origin="embedded (matplotlib fonts)")
    return ClassImages(info=info, classes=classes, class_names=names, seen=seen, unseen=unseen,
                       extra={"scripts": scripts, "cache_path": str(path)})


def locate(data_cfg: dict) -> tuple[bool, str]:
    return True, "embedded"


def _standard_split_text() -> str:
    try:
        _, _, seen, unseen = read_split()
        return f"{len(seen)} seen / {len(unseen)} unseen (by script)"
    except RuntimeError:
        return "seen / unseen by script"


DATASETS.register("glyphs", DatasetSpec(
    name="glyphs",
    description="Omniglot-like characters of 10 scripts rendered from matplotlib's fonts with per-image "
                "pen, affine and elastic distortions; seen/unseen split by script",
    channels=1,
    native_size=None,   # rendered at any size in 16..128
    standard_split=_standard_split_text(),
    obtain="embedded: rendered from the fonts in matplotlib's wheel; nothing to download",
    load=load,
    locate=locate,
))

