"""``folder``: an image-folder tree, one sub-folder of images per class (``--dataset folder:PATH``), and the
tree reader Animal Faces uses (``read_folder``). Class folders are sorted by name, images by relative path."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from fsgen_bench.data.readers.common import channels_of, image_size_of, path_option
from fsgen_bench.data.readers.decode import cached_decode, decode_groups, finish
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetSpec
from fsgen_bench.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


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


def read_folder(root: Path, data_cfg: dict, cache_dir: Path | None, *, name: str, kind: str) -> ClassImages:
    where = f"{name} ({root})"
    size = image_size_of(data_cfg, where)
    channels = channels_of(data_cfg, where)
    groups = _scan_folder(root, where)
    fingerprint = _tree_fingerprint(root, groups)
    decoded = cached_decode(
        cache_dir, kind, fingerprint, size, channels,
        lambda: decode_groups(groups, size=size, channels=channels, desc=f"decoding {name}"),
    )
    extra = {"source": "folder", "path": str(root.resolve()), "fingerprint": fingerprint}
    return finish(name, decoded, data_cfg, where=where, size=size, origin=str(root.resolve()), extra=extra)


def _load_folder(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = path_option(data_cfg, "folder")
    if not root.is_dir():
        what = "a file, not a folder" if root.is_file() else "missing"
        raise UserError(
            f"folder: {root} is {what}; expected a folder with one sub-folder of images per class "
            f"(use npy:PATH for a .npy file)"
        )
    return read_folder(root, data_cfg, cache_dir, name="folder", kind="folder")


def _locate_folder(data_cfg: dict) -> tuple[bool, str]:
    if not data_cfg.get("path"):
        return False, "data.path is not set (use --dataset folder:PATH)"
    root = Path(data_cfg["path"]).expanduser().absolute()
    return root.is_dir(), str(root)


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
