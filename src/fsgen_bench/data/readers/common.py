"""What the readers share: config values, the seen/unseen split, assembling a ClassImages, and the messages
for data that is missing or cannot be downloaded."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from fsgen_bench.data.source import ClassImages, DatasetInfo, standard_split
from fsgen_bench.errors import UserError

LOFGAN_README = "https://github.com/edward3862/LoFGAN-pytorch (README, 'Datasets')"
DAGAN_README = "https://github.com/AntreasAntoniou/DAGAN (README, dataset links)"
ROOT_HINT = "or point data.root / $FSGEN_DATA at the folder that holds the files"


def optional_int(data_cfg: dict, key: str, where: str) -> int | None:
    value = data_cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"{where}: data.{key} must be a whole number or null, got {value!r}")
    return int(value)


def image_size_of(data_cfg: dict, where: str) -> int:
    size = optional_int(data_cfg, "image_size", where)
    if size is None or size < 1:
        raise UserError(f"{where}: data.image_size must be a positive whole number, got {data_cfg.get('image_size')!r}")
    return size


def channels_of(data_cfg: dict, where: str) -> int | None:
    channels = optional_int(data_cfg, "channels", where)
    if channels not in (None, 1, 3):
        raise UserError(f"{where}: data.channels must be 1 (gray), 3 (RGB) or null (as stored), got {channels!r}")
    return channels


def split_classes(num_classes: int, data_cfg: dict, *, where: str) -> tuple[list[int], list[int]]:
    """Seen = the first ``num_seen_classes``; unseen = the next ``num_unseen_classes`` (default: the rest)."""
    if num_classes < 2:
        raise UserError(
            f"{where}: found {num_classes} class(es); a few-shot benchmark needs at least 2 "
            f"(seen classes to train on, unseen classes to evaluate on): add classes to the data"
        )
    num_seen = optional_int(data_cfg, "num_seen_classes", where)
    if num_seen is None:
        # standard_split's default (80%, rounded) leaves no unseen class when there are only 2 classes.
        num_seen = max(1, min(num_classes - 1, int(round(0.8 * num_classes))))
    seen, unseen = standard_split(num_classes, num_seen, where=where)
    num_unseen = optional_int(data_cfg, "num_unseen_classes", where)
    if num_unseen is not None:
        if not 1 <= num_unseen <= len(unseen):
            raise UserError(
                f"{where}: num_unseen_classes={num_unseen} but only {len(unseen)} classes follow the {len(seen)} "
                f"seen ones; set data.num_unseen_classes between 1 and {len(unseen)} (or null for all the rest)"
            )
        unseen = unseen[:num_unseen]
    return seen, unseen


def source_choice(data_cfg: dict, allowed: Sequence[str], where: str) -> str:
    source = data_cfg.get("source") or "auto"
    if source not in ("auto", *allowed):
        raise UserError(f"{where}: data.source={source!r} is not known here; use one of: auto, {', '.join(allowed)}")
    return source


def split_flat(flat: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Per-class views into one contiguous block of images."""
    bounds = np.cumsum([0, *counts])
    return [flat[bounds[i]:bounds[i + 1]] for i in range(len(counts))]


def native_size_of(sizes: set[tuple[int, int]]) -> int | None:
    """The stored side length when every image is square and of one size; otherwise unknown (None)."""
    if len(sizes) == 1:
        h, w = next(iter(sizes))
        if h == w:
            return int(h)
    return None


def assemble(
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


def missing_error(dataset: str, expected: str, looked: Sequence[Path | str], how: str) -> UserError:
    places = ", ".join(str(p) for p in looked)
    return UserError(f"{dataset}: data not found. Expected {expected}. Looked at: {places}. To obtain it: {how}")


def first_existing(paths: Sequence[Path]) -> Path | None:
    return next((path for path in paths if path.is_file()), None)


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def npy_candidates(root: Path, dataset: str, filenames: Sequence[str]) -> list[Path]:
    """Files directly under the data root, or in a sub-folder named after the dataset."""
    return [base / f for f in filenames for base in (root, root / dataset)]


def torchvision_datasets():
    # Imported on use: torchvision.datasets costs a second at import, and listing datasets must stay quick.
    import torchvision.datasets as tvd

    return tvd


def download_error(dataset: str, root: Path, exc: BaseException) -> UserError:
    return UserError(
        f"{dataset}: download into {root} failed ({type(exc).__name__}: {exc}). data.download=true needs a network; "
        f"on an offline machine, copy the files there from a machine that has one"
    )


def path_option(data_cfg: dict, kind: str) -> Path:
    if not data_cfg.get("path"):
        raise UserError(f"the {kind} dataset needs a path: --dataset {kind}:PATH (or --set data.path=PATH)")
    return Path(data_cfg["path"]).expanduser().absolute()
