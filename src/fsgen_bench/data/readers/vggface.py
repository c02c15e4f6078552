"""``vggface``: DAGAN/LoFGAN's ``vgg_face_data_rgb.npy`` (or ``vgg_face_data.npy``), floats in [0, 1]."""

from __future__ import annotations

from pathlib import Path

from fsgen_bench.data.readers.common import LOFGAN_README, ROOT_HINT, first_existing, missing_error, npy_candidates
from fsgen_bench.data.readers.npy import read_npy
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetSpec, data_root


# LoFGAN's RGB file first: the "_rgb" re-export exists because DAGAN's original is stored in another channel
# order (we do not swap channels of the original; prefer the _rgb file when you have both).
_VGGFACE_NPY = ("vgg_face_data_rgb.npy", "vgg_face_data.npy")


def _load_vggface(data_cfg: dict, cache_dir: Path) -> ClassImages:
    root = data_root(data_cfg)
    candidates = npy_candidates(root, "vggface", _VGGFACE_NPY)
    npy = first_existing(candidates)
    if npy is None:
        raise missing_error(
            "vggface", "vgg_face_data_rgb.npy (LoFGAN) or vgg_face_data.npy (DAGAN), [classes, 100, 64, 64, 3]",
            candidates,
            f"download vgg_face_data_rgb.npy from the LoFGAN README's dataset link ({LOFGAN_README}) and place it "
            f"at {root / 'vgg_face_data_rgb.npy'}, {ROOT_HINT}",
        )
    return read_npy(npy, data_cfg, name="vggface")


def _locate_vggface(data_cfg: dict) -> tuple[bool, str]:
    root = data_root(data_cfg)
    npy = first_existing(npy_candidates(root, "vggface", _VGGFACE_NPY))
    return (True, str(npy)) if npy else (False, str(root / _VGGFACE_NPY[0]))


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
