"""``omniglot``: DAGAN's ``omniglot_data.npy`` if present, else torchvision's Omniglot files (``omniglot-py/``
``images_background`` + ``images_evaluation``, extracted or as the downloaded zips), characters in a fixed order."""

from __future__ import annotations

import hashlib
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from fsgen_bench.data.readers.common import (DAGAN_README, ROOT_HINT, channels_of, download_error, file_fingerprint,
                                             first_existing, image_size_of, missing_error, npy_candidates,
                                             source_choice, torchvision_datasets)
from fsgen_bench.data.readers.decode import Decoded, Item, Opener, cached_decode, decode_groups, finish, open_path
from fsgen_bench.data.readers.npy import read_npy
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetSpec, data_root
from fsgen_bench.errors import UserError


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
def _zip_reader(paths: Sequence[Path]) -> Iterator[Opener]:
    archives = {p: zipfile.ZipFile(p) for p in paths}
    try:
        yield lambda item: archives[item[0]].open(item[1])
    finally:
        for z in archives.values():
            z.close()


def _omniglot_groups(sources: dict[str, Path], where: str) -> tuple[list[tuple[str, list[Item]]], str]:
    """Characters in a fixed order: background set first, then alphabets and characters sorted by name.

    torchvision lists folders with os.listdir, whose order depends on the file system; sorting makes the
    seen/unseen split the same on every machine.
    """
    groups: list[tuple[str, list[Item]]] = []
    h = hashlib.sha256()
    for s in _OMNIGLOT_SETS:
        src = sources[s]
        by_char: dict[tuple[str, str], list[Item]] = {}
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
            h.update(file_fingerprint(src).encode())
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
        f"place DAGAN's omniglot_data.npy ({DAGAN_README}) at {root / 'omniglot_data.npy'}, {ROOT_HINT}"
    )


def _load_omniglot(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    where = f"omniglot ({root})"
    source = source_choice(data_cfg, ("npy", "torchvision"), where)
    npy = first_existing(npy_candidates(root, "omniglot", _OMNIGLOT_NPY))
    if npy is not None and source in ("auto", "npy"):
        return read_npy(npy, data_cfg, name="omniglot")
    if source == "npy":
        raise missing_error("omniglot", "omniglot_data.npy", npy_candidates(root, "omniglot", _OMNIGLOT_NPY),
                       _omniglot_how(root))
    sources = _omniglot_sources(root)
    if any(v is None for v in sources.values()) and data_cfg.get("download"):
        tvd = torchvision_datasets()
        for background in (True, False):
            try:
                tvd.Omniglot(str(root), background=background, download=True)
            except Exception as exc:  # noqa: BLE001 - network and archive errors of every kind
                raise download_error("omniglot", root, exc) from None
        sources = _omniglot_sources(root)
    missing = [s for s, v in sources.items() if v is None]
    if missing:
        looked = [root / "omniglot-py" / f"{s}{ext}" for s in missing for ext in ("", ".zip")]
        if source == "auto":
            looked = npy_candidates(root, "omniglot", _OMNIGLOT_NPY) + looked
        raise missing_error(
            "omniglot",
            "torchvision's Omniglot files (omniglot-py/images_background and images_evaluation, extracted or as "
            ".zip) or DAGAN's omniglot_data.npy",
            looked, _omniglot_how(root),
        )
    size = image_size_of(data_cfg, where)
    channels = channels_of(data_cfg, where)
    groups, fingerprint = _omniglot_groups(sources, where)  # type: ignore[arg-type]
    zips = [p for p in sources.values() if p is not None and p.is_file()]

    def build() -> Decoded:
        with _zip_reader(zips) as zip_open:
            opener = lambda item: open_path(item) if isinstance(item, Path) else zip_open(item)  # noqa: E731
            return decode_groups(groups, size=size, channels=channels, desc="decoding omniglot", opener=opener)

    decoded = cached_decode(cache_dir, "omniglot", fingerprint, size, channels, build)
    extra = {"source": "torchvision", "path": str((root / "omniglot-py").resolve()), "fingerprint": fingerprint}
    return finish("omniglot", decoded, data_cfg, where=where, size=size,
                   origin=f"torchvision Omniglot at {root / 'omniglot-py'}", extra=extra)


def _locate_omniglot(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    source = data_cfg.get("source") or "auto"
    npy = first_existing(npy_candidates(root, "omniglot", _OMNIGLOT_NPY))
    if npy is not None and source in ("auto", "npy"):
        return True, str(npy)
    sources = _omniglot_sources(root)
    if source != "npy" and all(v is not None for v in sources.values()):
        return True, str(root / "omniglot-py")
    return False, f"{root / 'omniglot_data.npy'} or {root / 'omniglot-py'}"


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
