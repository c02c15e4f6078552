"""``emnist``: EMNIST "balanced" through torchvision, train and test pooled, characters turned upright."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from fsgen_bench.data.readers.common import (ROOT_HINT, assemble, channels_of, download_error, image_size_of,
                                             missing_error, split_classes, split_flat, torchvision_datasets)
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetSpec, data_root, resize_images
from fsgen_bench.errors import UserError


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
    size = image_size_of(data_cfg, where)
    channels = channels_of(data_cfg, where)
    download = bool(data_cfg.get("download"))
    if not download and not _emnist_present(root):
        raise missing_error(
            "emnist", "torchvision's EMNIST raw files (balanced split, train and test)", _emnist_files(root),
            f"rerun with --set data.download=true on a machine with a network (torchvision downloads EMNIST into "
            f"{root / 'EMNIST'}), or copy {root / 'EMNIST'} from a machine that has it, {ROOT_HINT}",
        )
    tvd = torchvision_datasets()
    images, labels, class_names = [], [], None
    for train in (True, False):
        try:
            ds = tvd.EMNIST(str(root), split="balanced", train=train, download=download)
        except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, AssertionError, URLError...
            if download and not _emnist_present(root):
                raise download_error("emnist", root, exc) from None
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
    seen, unseen = split_classes(num_classes, data_cfg, where=where)
    used = len(seen) + len(unseen)
    counts = np.bincount(targets, minlength=used)[:used]
    if (counts == 0).any():
        c = int(np.flatnonzero(counts == 0)[0])
        raise UserError(f"{where}: class {c} has no images; the EMNIST files are incomplete: download again")
    flat = np.empty((int(counts.sum()), size, size, channels or 1), dtype=np.uint8)  # one block: see read_npy
    pos = 0
    for c in range(used):
        idx = np.flatnonzero(targets == c)  # train images first, then test, each in file order
        flat[pos:pos + len(idx)] = resize_images(data[idx][..., None], size, channels or 1)
        pos += len(idx)
    classes = split_flat(flat, counts.tolist())
    names = [class_names[c] if c < len(class_names or []) else str(c) for c in range(len(classes))]
    extra = {"source": "torchvision", "path": str((root / "EMNIST").resolve()), "classes_in_source": num_classes,
             "fingerprint": hashlib.sha256(str((root / "EMNIST").resolve()).encode()).hexdigest()[:16]}
    return assemble("emnist", classes, names, seen=seen, unseen=unseen, image_size=size,
                     native_size=int(data.shape[1]), origin=f"torchvision EMNIST (balanced) at {root / 'EMNIST'}",
                     extra=extra)


def _locate_emnist(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    return _emnist_present(root), str(root / "EMNIST")


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
