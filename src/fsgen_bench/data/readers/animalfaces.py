"""``animalfaces``: LoFGAN's ``animal_128.npy`` if present, else a folder tree ``animalfaces/<class>/``."""

from __future__ import annotations

from pathlib import Path

from fsgen_bench.data.readers.common import (LOFGAN_README, ROOT_HINT, first_existing, missing_error, npy_candidates,
                                             source_choice)
from fsgen_bench.data.readers.folder import read_folder
from fsgen_bench.data.readers.npy import read_npy
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetSpec, data_root


_ANIMALS_NPY = ("animal_128.npy",)


def _animal_tree(root: Path) -> Path | None:
    tree = root / "animalfaces"
    if tree.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in tree.iterdir()):
        return tree
    return None


def _load_animalfaces(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    where = f"animalfaces ({root})"
    source = source_choice(data_cfg, ("npy", "folder"), where)
    candidates = npy_candidates(root, "animalfaces", _ANIMALS_NPY)
    npy = first_existing(candidates)
    if npy is not None and source in ("auto", "npy"):
        return read_npy(npy, data_cfg, name="animalfaces")
    tree = _animal_tree(root)
    if tree is not None and source in ("auto", "folder"):
        return read_folder(tree, data_cfg, cache_dir, name="animalfaces", kind="animalfaces")
    looked = ([] if source == "folder" else candidates) + ([] if source == "npy" else [root / "animalfaces"])
    raise missing_error(
        "animalfaces", "LoFGAN's animal_128.npy ([149, 100, 128, 128, 3]) or a folder tree animalfaces/<class>/*.jpg",
        looked,
        f"download animal_128.npy from the LoFGAN README's dataset link ({LOFGAN_README}) and place it at "
        f"{root / 'animal_128.npy'}, or build the FUNIT Animal Faces crops (https://github.com/NVlabs/FUNIT) into "
        f"{root / 'animalfaces'}/<class>/, {ROOT_HINT}",
    )


def _locate_animalfaces(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    source = data_cfg.get("source") or "auto"
    npy = first_existing(npy_candidates(root, "animalfaces", _ANIMALS_NPY))
    if npy is not None and source in ("auto", "npy"):
        return True, str(npy)
    tree = _animal_tree(root)
    if tree is not None and source in ("auto", "folder"):
        return True, str(tree)
    return False, f"{root / _ANIMALS_NPY[0]} or {root / 'animalfaces'}"


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
