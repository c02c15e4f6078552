"""The pretrained weight files the harness can use: a registry, the offline lookup, and the check before use.

Nothing here downloads (:mod:`fsgen_bench.eval.weights_download` does, only when asked). A weight file is
looked up, in this order, at

1. an explicit path (a config option such as ``eval.inception_weights``),
2. an environment variable (``FSGEN_INCEPTION_WEIGHTS``, ...),
3. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<the file's standard name>`` (where torch-fidelity,
   torchmetrics and torchvision would have put a download, and where ``fsgen-bench weights download`` puts it).

Every file is checked before use (:func:`verify`):

* the registry holds the SHA-256 that can be known offline: the full digest where the publisher's URL embeds
  it (OpenAI CLIP), else the hex prefix a torch hub file name ends with (``...-6726825d.pth``; torch.hub's own
  ``check_hash`` compares exactly that prefix), else nothing (DINOv2: Meta publishes no digest);
* a file in the hub cache under the standard name must match that hash: anything else is a damaged or foreign
  file and a :class:`UserError` that names the file, the expected hash and the fix;
* a file the user named explicitly (option or environment variable) may differ from the standard file (a
  re-export, a fine-tune, a test fixture): it must still have the network's keys and tensor shapes, and it is
  used but flagged, so records carry ``standard_weights: false`` and tables keep it apart;
* where no hash is published the keys and shapes are checked and ``standard_weights`` is ``None`` (unknown);
  the file's own SHA-256 goes into every record.

An explicit path or variable that names a missing file is the user's mistake and raises :class:`UserError`.
When nothing is configured and the hub cache lacks the file, :class:`WeightsNotFound` (also a UserError) says
where it looked and how to provide the file; the harness catches it, prints the note and skips the metric
instead of substituting another backbone under the same name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from fsgen_bench.errors import UserError

HUB = "the torch hub cache"


@dataclass(frozen=True)
class WeightSpec:
    """One backbone weight file: what it is, where it comes from, how it is recognised and who loads it."""

    name: str             # registry key, the NAME of `fsgen-bench weights download NAME`
    file: str             # standard file name in $TORCH_HOME/hub/checkpoints
    url: str
    sha256: str | None    # full digest or a hex prefix of it; None where none is published
    hash_source: str      # where ``sha256`` comes from
    size_mib: float       # approximate, for messages (the hash is the check)
    option_key: str       # the run config option, e.g. eval.inception_weights
    env_var: str
    loader: str           # which code builds the network from the file
    what: str             # a human name for messages
    records: str          # the metric records it enables
    fmt: str = "state_dict"                     # "state_dict" (torch.save) | "torchscript" (torch.jit.save)
    shapes: Callable[[], dict] | None = None    # expected {key: shape}; None: the loader checks strictly
    shapes_exact: bool = True                   # False: the expected keys must be present, others are ignored

    @property
    def option_field(self) -> str:
        """The key inside the ``eval`` config section (``inception_weights``)."""
        return self.option_key.split(".", 1)[1]

    @property
    def hash_text(self) -> str:
        if self.sha256 is None:
            return "no published SHA-256"
        return f"sha256 {self.sha256}" + ("" if len(self.sha256) == 64 else "...")

    def describe(self) -> str:
        return f"{self.file} ({self.hash_text}, from {self.url})"


def _torchvision_shapes(builder: str) -> Callable[[], dict]:
    def shapes() -> dict:
        import torchvision

        with torch.device("meta"):
            net = getattr(torchvision.models, builder)(weights=None)
        return {k: tuple(v.shape) for k, v in net.state_dict().items()}
    return shapes


def _dinov2_shapes(arch: str) -> Callable[[], dict]:
    def shapes() -> dict:
        from fsgen_bench.eval.dinov2 import expected_shapes
        return expected_shapes(arch)
    return shapes


def _clip_shapes(arch: str) -> Callable[[], dict]:
    def shapes() -> dict:
        from fsgen_bench.eval.clip import expected_shapes
        return expected_shapes(arch)
    return shapes


_TV = "https://download.pytorch.org/models/"
_TV_HASH = "the torch hub name's suffix (torchvision/models/{}.py, {} weights URL)"
_DINO = "https://dl.fbaipublicfiles.com/dinov2/"

#: Every backbone weight file the harness can use. Sizes: torchvision's weights meta ``_file_size`` (MiB) for the
#: torchvision files, the published downloads' sizes rounded for the others.
REGISTRY: dict[str, WeightSpec] = {s.name: s for s in [
    WeightSpec(
        name="inception", file="weights-inception-2015-12-05-6726825d.pth",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        sha256="6726825d", hash_source="the torch hub name's suffix (torch_fidelity/feature_extractor_inceptionv3.py "
                                       "URL_INCEPTION_V3, torch-fidelity 0.4.0)",
        size_mib=91.2, option_key="eval.inception_weights", env_var="FSGEN_INCEPTION_WEIGHTS",
        loader="torchmetrics NoTrainInceptionV3 (torch-fidelity inception-v3-compat), strict load",
        what="FID Inception (torch-fidelity's inception-v3-compat)", records="fid/inception, kid/inception"),
    WeightSpec(
        name="lpips-alex", file="alexnet-owt-7be5be79.pth", url=_TV + "alexnet-owt-7be5be79.pth",
        sha256="7be5be79", hash_source=_TV_HASH.format("alexnet", "AlexNet_Weights.IMAGENET1K_V1"),
        size_mib=233.1, option_key="eval.lpips_backbone_weights", env_var="FSGEN_LPIPS_BACKBONE_WEIGHTS",
        loader="lpips 0.1.4 heads + torchvision alexnet", what="torchvision ImageNet alex backbone for LPIPS",
        records="lpips/alex", shapes=_torchvision_shapes("alexnet")),
    WeightSpec(
        name="lpips-vgg", file="vgg16-397923af.pth", url=_TV + "vgg16-397923af.pth",
        sha256="397923af", hash_source=_TV_HASH.format("vgg", "VGG16_Weights.IMAGENET1K_V1"),
        size_mib=527.8, option_key="eval.lpips_backbone_weights", env_var="FSGEN_LPIPS_BACKBONE_WEIGHTS",
        loader="lpips 0.1.4 heads + torchvision vgg16", what="torchvision ImageNet vgg backbone for LPIPS",
        records="lpips/vgg", shapes=_torchvision_shapes("vgg16")),
    WeightSpec(
        name="lpips-squeeze", file="squeezenet1_1-b8a52dc0.pth", url=_TV + "squeezenet1_1-b8a52dc0.pth",
        sha256="b8a52dc0", hash_source=_TV_HASH.format("squeezenet", "SqueezeNet1_1_Weights.IMAGENET1K_V1"),
        size_mib=4.7, option_key="eval.lpips_backbone_weights", env_var="FSGEN_LPIPS_BACKBONE_WEIGHTS",
        loader="lpips 0.1.4 heads + torchvision squeezenet1_1",
        what="torchvision ImageNet squeeze backbone for LPIPS", records="lpips/squeeze",
        shapes=_torchvision_shapes("squeezenet1_1")),
    # FD_DINOv2 (Stein et al., NeurIPS 2023) uses ViT-L/14: layer6ai-labs/dgm-eval dgm_eval/models/dinov2.py
    # (default arch 'vitl14'), as does EDM2's fd_dinov2 (NVlabs/edm2 calculate_metrics.py, DINOv2Detector).
    WeightSpec(
        name="dinov2", file="dinov2_vitl14_pretrain.pth", url=_DINO + "dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        sha256=None, hash_source="none published (facebookresearch/dinov2 hub/backbones.py loads it unchecked); "
                                 "keys and shapes are checked instead",
        size_mib=1161.2, option_key="eval.dinov2_weights", env_var="FSGEN_DINOV2_WEIGHTS",
        loader="fsgen_bench.eval.dinov2 (the official ViT-L/14 layout, strict load)",
        what="DINOv2 ViT-L/14 (LVD-142M)", records="fid/dinov2, kid/dinov2", shapes=_dinov2_shapes("vitl14")),
    # The small one: ~13x fewer multiply-adds than ViT-L/14 at 224 px (22M vs 304M parameters, 12 vs 24 blocks);
    # its records say dinov2-s, never dinov2.
    WeightSpec(
        name="dinov2-s", file="dinov2_vits14_pretrain.pth", url=_DINO + "dinov2_vits14/dinov2_vits14_pretrain.pth",
        sha256=None, hash_source="none published (facebookresearch/dinov2 hub/backbones.py loads it unchecked); "
                                 "keys and shapes are checked instead",
        size_mib=84.2, option_key="eval.dinov2_s_weights", env_var="FSGEN_DINOV2_S_WEIGHTS",
        loader="fsgen_bench.eval.dinov2 (the official ViT-S/14 layout, strict load)",
        what="DINOv2 ViT-S/14 (LVD-142M)", records="fid/dinov2-s, kid/dinov2-s", shapes=_dinov2_shapes("vits14")),
    # CMMD (Jayasumana et al., CVPR 2024) embeds with CLIP ViT-L/14@336px: google-research cmmd/embedding.py
    # _CLIP_MODEL_NAME = 'vit_l14_336px'. The file name is the one torch-fidelity caches it under.
    WeightSpec(
        name="clip",
        file="clip-vit-l-14-336px-3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02.pt",
        url="https://openaipublic.azureedge.net/clip/models/"
            "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
        sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
        hash_source="the full digest in OpenAI's URL (torch_fidelity/feature_extractor_clip.py MODEL_METADATA; "
                    "openai/CLIP clip/clip.py _download checks it)",
        size_mib=850.0, option_key="eval.clip_weights", env_var="FSGEN_CLIP_WEIGHTS",
        loader="torch-fidelity FeatureExtractorCLIP (clip-vit-l-14-336px) from the TorchScript file",
        what="CLIP ViT-L/14@336px (OpenAI)", records="fid/clip, kid/clip", fmt="torchscript",
        shapes=_clip_shapes("vit-l-14-336px"), shapes_exact=False),
]}

# Names kept for the harness and older callers.
INCEPTION_FILE = REGISTRY["inception"].file
INCEPTION_URL = REGISTRY["inception"].url
INCEPTION_ENV = REGISTRY["inception"].env_var
#: torchvision's file for each LPIPS backbone (the names torch hub gives the downloads).
LPIPS_BACKBONE_FILES = {net: REGISTRY[f"lpips-{net}"].file for net in ("alex", "vgg", "squeeze")}
LPIPS_BACKBONE_URL = "https://download.pytorch.org/models/"
LPIPS_ENV = REGISTRY["lpips-alex"].env_var


def get_spec(name: str) -> WeightSpec:
    if name not in REGISTRY:
        raise UserError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


class WeightsNotFound(UserError):
    """No weight file was configured and the hub cache does not hold one."""


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    source: str              # "option" | "env" | "hub"

    def sha256(self) -> str:
        """The file's full SHA-256 (hex), computed once per (path, size, mtime)."""
        return file_sha256(self.path)

    def sha256_prefix(self, chars: int = 8) -> str:
        """The first hex digits of the file's SHA-256 (torch hub file names end with the same digits)."""
        return self.sha256()[:chars]

    def expected_prefix(self, standard_name: str) -> str | None:
        """The hash prefix encoded in a standard torch hub name (``...-6726825d.pth`` -> ``6726825d``)."""
        stem = Path(standard_name).stem
        tail = stem.rsplit("-", 1)[-1]
        return tail if len(tail) >= 6 and all(c in "0123456789abcdef" for c in tail) else None


def file_sha256(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime, so a replaced file is hashed again; a 1.2 GB file takes a few seconds.
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` as torch itself resolves it (TORCH_HOME, XDG_CACHE_HOME, set_dir)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _how_to_get(spec: WeightSpec, hub: Path) -> str:
    return (f"On a machine with a network run `fsgen-bench weights download {spec.name}`; offline, copy "
            f"{spec.describe()} to {hub}, or set {spec.option_key}=PATH or ${spec.env_var}=PATH.")


def locate(spec: WeightSpec, option: str | os.PathLike | None) -> WeightsFile:
    """Where ``spec``'s file is: explicit option, then environment variable, then the hub cache (no check)."""
    if option:
        path = Path(option).expanduser()
        if not path.is_file():
            raise UserError(f"{spec.option_key}={option} does not exist; point it at the {spec.what} file "
                            f"({spec.describe()}) or remove the option")
        return WeightsFile(path, "option")
    env_value = os.environ.get(spec.env_var)
    if env_value:
        path = Path(env_value).expanduser()
        if not path.is_file():
            raise UserError(f"${spec.env_var}={env_value} does not exist; point it at the {spec.what} file "
                            f"({spec.describe()}) or unset it")
        return WeightsFile(path, "env")
    hub = hub_checkpoints_dir() / spec.file
    if hub.is_file():
        return WeightsFile(hub, "hub")
    raise WeightsNotFound(
        f"{spec.what} weights not found. Looked at: {spec.option_key} (not set), ${spec.env_var} (not set), "
        f"and {HUB} {hub} (no such file). {_how_to_get(spec, hub.parent)}")


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify`: the file's digest and whether it is the standard file."""

    sha256: str              # the file's full SHA-256
    status: str              # "match" | "nonstandard" | "unpublished"

    @property
    def standard(self) -> bool | None:
        """True: the published file. False: another file with the right structure. None: cannot be known."""
        return {"match": True, "nonstandard": False, "unpublished": None}[self.status]


def verify(spec: WeightSpec, found: WeightsFile, *, structure: bool = True) -> Verdict:
    """Check ``found`` against ``spec`` (see the module docstring); a bad file is a UserError naming the hash.

    ``structure=False`` skips the keys-and-shapes check for callers that load the file strictly themselves.
    """
    digest = found.sha256()
    if spec.sha256 is not None and digest.startswith(spec.sha256):
        return Verdict(digest, "match")
    if spec.sha256 is not None and found.source == "hub":
        raise UserError(
            f"{found.path} is damaged or not the standard {spec.what} file: its SHA-256 is {digest[:16]}..., "
            f"expected {spec.hash_text}. Delete it and run `fsgen-bench weights download {spec.name}`, or copy "
            f"{spec.describe()} there; a different file must be named explicitly ({spec.option_key}=PATH or "
            f"${spec.env_var}=PATH) and is then reported with standard_weights: false.")
    if structure:
        check_structure(spec, found.path)
    return Verdict(digest, "nonstandard" if spec.sha256 is not None else "unpublished")


def read_tensor_shapes(spec: WeightSpec, path: Path) -> dict:
    """{key: shape} of the tensors in ``path`` without building the network (memory-mapped where possible)."""
    if spec.fmt == "torchscript":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # torch.jit.load is deprecated in torch 2.x; the file format is not
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        mmap = zipfile.is_zipfile(path)         # the legacy (pre-1.6) format cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("it does not hold a mapping of parameter names to tensors")
    return {k: tuple(v.shape) for k, v in state.items()}


def check_structure(spec: WeightSpec, path: Path) -> None:
    """``path`` must load and, where the registry knows them, hold exactly the network's keys and shapes."""
    try:
        got = read_tensor_shapes(spec, path)
    except Exception as exc:  # truncated, not a checkpoint, foreign pickle, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a loadable {spec.what} file ({first}); expected {spec.describe()}") from None
    if spec.shapes is None:
        return
    want = spec.shapes()
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want] if spec.shapes_exact else []
    wrong = [(k, got[k], want[k]) for k in want if k in got and tuple(got[k]) != tuple(want[k])]
    problem = (f"it lacks {len(missing)} tensors (e.g. {missing[0]})" if missing else
               f"it has {len(extra)} unexpected tensors (e.g. {extra[0]})" if extra else
               f"tensor {wrong[0][0]} has shape {wrong[0][1]}, the network needs {wrong[0][2]}" if wrong else None)
    if problem:
        raise UserError(f"{path} is not a {spec.what} file: {problem}; expected {spec.describe()}")


def find(name: str, option: str | os.PathLike | None) -> WeightsFile:
    """Locate and verify registry entry ``name``; :class:`WeightsNotFound` when it is nowhere."""
    spec = get_spec(name)
    found = locate(spec, option)
    verify(spec, found)
    return found


def find_inception_weights(option: str | os.PathLike | None) -> WeightsFile:
    return find("inception", option)


def find_lpips_backbone_weights(net: str, option: str | os.PathLike | None) -> WeightsFile:
    if net not in LPIPS_BACKBONE_FILES:
        raise UserError(f"unknown LPIPS backbone {net!r}; known: {', '.join(LPIPS_BACKBONE_FILES)}")
    return find(f"lpips-{net}", option)


def load_state_dict_file(path: Path, *, what: str) -> dict:
    """A ``state_dict`` saved with ``torch.save``; a file that is not one is a UserError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with foreign classes, ...
        raise UserError(f"{path} is not a loadable {what} state_dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a {what} state_dict (a mapping of parameter names to tensors)")
    return state
