"""Feature extractors for FID/KID and the on-disk cache of real-image features.

Every extractor takes uint8 images ``[N, C, H, W]`` (generated images are quantised to uint8 first, as if
saved to PNG, so real and generated images pass through identical preprocessing) and returns float32
features ``[N, D]`` on the CPU, computed in batches on the extractor's device with autocast disabled.

* ``domain``: :class:`~fsgen_bench.eval.backbone.DomainBackbone` (trained on the seen classes).
* ``inception``: torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's ``inception-v3-compat`` network, 2048-d
  pool features) loading the standard FID weights file found by :mod:`fsgen_bench.eval.weights`. Gray images
  are repeated to three channels; the protocol's ``fid_resize`` (F2GAN: 128) is applied first with an
  antialiased bilinear resize, then the network's own resize to 299 (torch-fidelity's TF1-compatible one, or
  torchmetrics' antialiased one when the protocol's ``fid_antialias`` is set).

Real-image features depend only on (dataset, split, protocol, backbone, image size, plan), never on the method,
so they are cached under ``cache_dir / "eval" / <dataset> / ...pt`` (atomic writes) and computed once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from fsgen_bench.errors import UserError
from fsgen_bench.eval.weights import INCEPTION_FILE, WeightsFile

CACHE_FORMAT = 1


def resize_u8(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size], bilinear with antialias (a faithful downscale)."""
    if images_u8.shape[-1] == size and images_u8.shape[-2] == size:
        return images_u8
    x = F.interpolate(images_u8.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)


class InceptionFeatures:
    """The standard FID Inception (2048-d pool3) from a local weights file."""

    name = "inception"
    num_features = 2048

    def __init__(self, weights: WeightsFile, *, antialias: bool, resize: int | None, device: torch.device) -> None:
        from torchmetrics.image.fid import NoTrainInceptionV3

        try:
            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                          feature_extractor_weights_path=str(weights.path), antialias=antialias)
        except (RuntimeError, KeyError, ValueError, EOFError, OSError) as exc:
            raise UserError(
                f"{weights.path} is not the FID Inception weights file ({INCEPTION_FILE}, a state_dict of "
                f"torch-fidelity's FeatureExtractorInceptionV3): {str(exc).splitlines()[0]}"
            ) from None
        self.net.to(device)
        self.device = device
        self.antialias = bool(antialias)
        self.resize = resize
        self.weights = weights
        self.sha256 = weights.sha256_prefix()
        self.standard = self.sha256 == weights.expected_prefix(INCEPTION_FILE)
        self.cache_token = f"inception-{self.sha256}-aa{int(self.antialias)}-r{resize or 0}"

    @torch.no_grad()
    def extract(self, images_u8: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        out = []
        with torch.autocast(device_type=self.device.type, enabled=False):
            for start in range(0, images_u8.shape[0], batch_size):
                x = images_u8[start:start + batch_size].to(self.device, non_blocking=True)
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                if self.resize:
                    x = resize_u8(x, self.resize)
                out.append(self.net(x.contiguous()).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, self.num_features))


# -- the real-feature cache -----------------------------------------------------------------------------------

def real_cache_path(cache_dir: Path, *, dataset: str, protocol, backbone_token: str, image_size: int,
                    plan_fingerprint: str, data_fingerprint: str) -> Path:
    """One file per (dataset, split/data, protocol, backbone, image size, plan)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset)
    proto = hashlib.sha256(protocol.id.encode()).hexdigest()[:8]
    name = (f"{protocol.name}-{proto}-{backbone_token}-{image_size}px-plan{plan_fingerprint}-"
            f"data{data_fingerprint}-f{CACHE_FORMAT}.pt")
    return Path(cache_dir) / "eval" / safe / name


def load_real_cache(path: Path, class_ids: list[int]) -> dict | None:
    """``{"real": {cid: Tensor}, "cond": {cid: Tensor}}`` when the file exists and covers ``class_ids``."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign: recompute and overwrite
        return None
    if not isinstance(data, dict) or sorted(data.get("real", {})) != sorted(class_ids):
        return None
    return data


def save_real_cache(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(data, tmp)
    tmp.replace(path)
