"""Finding pretrained weight files without a network.

Nothing here downloads. A weight file is looked up, in this order, at

1. an explicit path (a config option such as ``eval.inception_weights``),
2. an environment variable (``FSGEN_INCEPTION_WEIGHTS``, ``FSGEN_LPIPS_BACKBONE_WEIGHTS``),
3. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<the file's standard name>`` (where torch-fidelity,
   torchmetrics and torchvision would have put a download).

An explicit path or variable that names a missing file is the user's mistake and raises :class:`UserError`.
When nothing is configured and the hub cache lacks the file, :class:`WeightsNotFound` (also a UserError) says
where it looked and how to provide the file; the harness catches it, prints the note and skips the metric
instead of substituting another backbone under the same name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fsgen_bench.errors import UserError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
INCEPTION_ENV = "FSGEN_INCEPTION_WEIGHTS"

#: torchvision's file for each LPIPS backbone (the names torch hub gives the downloads).
LPIPS_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
LPIPS_BACKBONE_URL = "https://download.pytorch.org/models/"
LPIPS_ENV = "FSGEN_LPIPS_BACKBONE_WEIGHTS"


class WeightsNotFound(UserError):
    """No weight file was configured and the hub cache does not hold one."""


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    source: str              # "option" | "env" | "hub"

    def sha256_prefix(self, chars: int = 8) -> str:
        """The first hex digits of the file's SHA-256 (torch hub file names end with the same digits)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        return digest.hexdigest()[:chars]

    def expected_prefix(self, standard_name: str) -> str | None:
        """The hash prefix encoded in a standard torch hub name (``...-6726825d.pth`` -> ``6726825d``)."""
        stem = Path(standard_name).stem
        tail = stem.rsplit("-", 1)[-1]
        return tail if len(tail) >= 6 and all(c in "0123456789abcdef" for c in tail) else None


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` as torch itself resolves it (TORCH_HOME, XDG_CACHE_HOME, set_dir)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(standard_name: str, *, option: str | os.PathLike | None, option_key: str, env_var: str,
                 what: str, url: str) -> WeightsFile:
    """Locate ``standard_name``: explicit option, then environment variable, then the hub cache."""
    if option:
        path = Path(option).expanduser()
        if not path.is_file():
            raise UserError(
                f"{option_key}={option} does not exist; point it at the {what} file ({standard_name}, "
                f"from {url}) or remove the option"
            )
        return WeightsFile(path, "option")
    env_value = os.environ.get(env_var)
    if env_value:
        path = Path(env_value).expanduser()
        if not path.is_file():
            raise UserError(
                f"${env_var}={env_value} does not exist; point it at the {what} file ({standard_name}, from {url}) "
                f"or unset it"
            )
        return WeightsFile(path, "env")
    hub = hub_checkpoints_dir() / standard_name
    if hub.is_file():
        return WeightsFile(hub, "hub")
    raise WeightsNotFound(
        f"{what} weights not found. Looked at: {option_key} (not set), ${env_var} (not set), and the torch hub "
        f"cache {hub} (no such file). This machine cannot download them; copy {standard_name} (from {url}) "
        f"to {hub}, or set {option_key}=PATH or ${env_var}=PATH."
    )


def find_inception_weights(option: str | os.PathLike | None) -> WeightsFile:
    return find_weights(INCEPTION_FILE, option=option, option_key="eval.inception_weights", env_var=INCEPTION_ENV,
                        what="FID Inception (torch-fidelity's inception-v3-compat)", url=INCEPTION_URL)


def find_lpips_backbone_weights(net: str, option: str | os.PathLike | None) -> WeightsFile:
    if net not in LPIPS_BACKBONE_FILES:
        raise UserError(f"unknown LPIPS backbone {net!r}; known: {', '.join(LPIPS_BACKBONE_FILES)}")
    name = LPIPS_BACKBONE_FILES[net]
    return find_weights(name, option=option, option_key="eval.lpips_backbone_weights", env_var=LPIPS_ENV,
                        what=f"torchvision ImageNet {net} backbone for LPIPS", url=LPIPS_BACKBONE_URL + name)


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
