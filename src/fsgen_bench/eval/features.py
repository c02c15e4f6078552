"""Feature extractors for FID/KID and the on-disk cache of real-image features.

Every extractor takes uint8 images ``[N, C, H, W]`` (generated images are quantised to uint8 first, as if
saved to PNG, so real and generated images pass through identical preprocessing) and returns float32
features ``[N, D]`` on the CPU, computed in batches on the extractor's device with autocast disabled.

* ``domain``: :class:`~fsgen_bench.eval.backbone.DomainBackbone` (trained on the seen classes).
* ``inception``: torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's ``inception-v3-compat`` network, 2048-d
  pool features) loading the standard FID weights file found by :mod:`fsgen_bench.eval.weights`. Gray images
  are repeated to three channels. The input follows the protocol's ``fid_input``: ``torch-fidelity`` (the
  network's own TF1-compatible resize to 299 and ``(x - 128) / 128``, or torchmetrics' antialiased resize when
  ``fid_antialias`` is set), or ``pytorch-fid`` (:func:`~fsgen_bench.eval.pixels.pytorch_fid_input`, then the
  same layers). pytorch-fid's FID Inception (``fid_inception_v3``) and torch-fidelity's network port the same
  TF graph with the same parameter names and shapes, so one weights file serves both inputs
  (tests/test_eval_peer_parity.py loads one state dict into both and compares their features).

Real-image features depend only on (dataset, split, protocol, backbone, resolution, plan), never on the
method, so they are cached under ``cache_dir / "eval" / <dataset> / ...pt`` (atomic writes) and computed once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from fsgen_bench.atomic import atomic_write
from fsgen_bench.errors import UserError
from fsgen_bench.eval.pixels import pytorch_fid_input, to_side
from fsgen_bench.eval.weights import INCEPTION_FILE, WeightsFile

CACHE_FORMAT = 2   # 2: resolution in the key, conditional-pool features for every backbone


def batched_features(images_u8: torch.Tensor, batch_size: int, device: torch.device, num_features: int,
                     forward) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 ``[N, D]`` on the CPU: ``forward`` on each batch moved to ``device`` (gray
    repeated to three channels), autocast off. The one loop every extractor's ``extract`` runs."""
    out = []
    with torch.autocast(device_type=device.type, enabled=False):
        for start in range(0, images_u8.shape[0], batch_size):
            x = images_u8[start:start + batch_size].to(device, non_blocking=True)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            out.append(forward(x).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, num_features))


class InceptionFeatures:
    """The standard FID Inception (2048-d pool3) from a local weights file."""

    name = "inception"
    num_features = 2048

    def __init__(self, weights: WeightsFile, *, fid_input: str, antialias: bool, device: torch.device) -> None:
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
        if fid_input not in ("torch-fidelity", "pytorch-fid"):
            raise ValueError(f"unknown FID input {fid_input!r}")
        self.fid_input = fid_input
        self.antialias = bool(antialias) and fid_input == "torch-fidelity"
        self.weights = weights
        self.sha256 = weights.sha256_prefix()
        self.standard = self.sha256 == weights.expected_prefix(INCEPTION_FILE)
        self.cache_token = f"inception-{self.sha256}-{fid_input}-aa{int(self.antialias)}"

    @torch.no_grad()
    def extract(self, images_u8: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        if self.fid_input == "pytorch-fid":
            forward = lambda x: self.pool3(pytorch_fid_input(x))  # noqa: E731
        else:
            forward = lambda x: self.net(x.contiguous())  # noqa: E731
        return batched_features(images_u8, batch_size, self.device, self.num_features, forward)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048-d pool features of an already prepared [-1, 1] input at 299 px (the network's layers, in
        the order of torch-fidelity's FeatureExtractorInceptionV3.forward, without its resize)."""
        n = self.net
        x = x.to(next(n.parameters()).dtype)
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.MaxPool_1, n.Conv2d_3b_1x1,
                      n.Conv2d_4a_3x3, n.MaxPool_2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b,
                      n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, n.AvgPool):
            x = layer(x)
        return torch.flatten(x, 1)


class AtSide:
    """A feature extractor fed at its own input side: images at the evaluation resolution are resized to
    ``side`` first (the domain backbone sees the size it was trained at)."""

    def __init__(self, extractor, side: int) -> None:
        self.extractor = extractor
        self.side = int(side)
        self.name = extractor.name
        self.num_features = extractor.num_features
        self.cache_token = extractor.cache_token

    def extract(self, images_u8: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        return self.extractor.extract(to_side(images_u8, self.side), batch_size)


# -- the real-feature cache -----------------------------------------------------------------------------------

def real_cache_path(cache_dir: Path, *, dataset: str, protocol, backbone_token: str, image_size: int,
                    resolution: int, plan_fingerprint: str, data_fingerprint: str) -> Path:
    """One file per (dataset, data, protocol, backbone, served size, evaluation resolution, plan)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset)
    proto = hashlib.sha256(protocol.id.encode()).hexdigest()[:8]
    name = (f"{protocol.name}-{proto}-{backbone_token}-{image_size}px-at{resolution}px-plan{plan_fingerprint}-"
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
    if not isinstance(data, dict) or any(sorted(data.get(k, {})) != sorted(class_ids) for k in ("real", "cond")):
        return None
    return data


def save_real_cache(path: Path, data: dict) -> None:
    with atomic_write(path, "wb") as fh:
        torch.save(data, fh)
