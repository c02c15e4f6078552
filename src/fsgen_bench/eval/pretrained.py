"""The pretrained feature backbones beyond Inception: one constructor per name, found like the Inception file.

``build_pretrained_extractor(name, eval_cfg, device=...)`` locates the backbone's weight file (option
``eval.<name>_weights``, its environment variable, the torch hub cache), checks it, and returns an extractor
with the interface of ``features.InceptionFeatures`` (``extract``, ``name``, ``num_features``, ``cache_token``,
``weights``, ``standard``) plus ``record_extra()``, the fields a FID/KID record carries. A missing file raises
:class:`~fsgen_bench.eval.weights.WeightsNotFound`: the harness skips the metric with the note; a damaged or
wrong file raises a plain UserError (exit 2).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from fsgen_bench.errors import UserError
from fsgen_bench.eval import clip, dinov2
from fsgen_bench.eval.features import batched_features
from fsgen_bench.eval.weights import WeightsFile, get_spec, load_state_dict_file, locate, verify


class DinoV2Features:
    """FD_DINOv2 features from a local checkpoint, with the interface of ``features.InceptionFeatures``."""

    def __init__(self, weights: WeightsFile, *, name: str = "dinov2", device: torch.device) -> None:
        if name not in dinov2.BACKBONES:
            raise UserError(f"unknown DINOv2 backbone {name!r}; known: {', '.join(dinov2.BACKBONES)}")
        spec = get_spec(name)
        arch = dinov2.ARCHS[dinov2.BACKBONES[name]]
        verdict = verify(spec, weights)          # hash where published, keys and shapes always
        state = load_state_dict_file(weights.path, what=spec.what)
        net = dinov2.DinoV2ViT(arch)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise UserError(f"{weights.path} is not a {spec.what} file ({str(exc).splitlines()[0]}); "
                            f"expected {spec.describe()}") from None
        self.net = net.to(device).eval().requires_grad_(False)
        self.name = name
        self.num_features = arch.embed_dim
        self.arch = arch.label
        self.device = device
        self.weights = weights
        self.sha256 = verdict.sha256[:16]
        self.standard = verdict.standard
        self.cache_token = f"{name}-{self.sha256}-bicubicaa{dinov2.INPUT_SIDE}"
        self._mean = torch.tensor(dinov2.IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(dinov2.IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def preprocess(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = images_u8.to(self.device, non_blocking=True)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x.float(), size=(dinov2.INPUT_SIDE, dinov2.INPUT_SIDE), mode="bicubic", antialias=True)
        return (x / 255.0 - self._mean) / self._std

    @torch.no_grad()
    def extract(self, images_u8: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        return batched_features(images_u8, batch_size, self.device, self.num_features,
                                lambda x: self.net(self.preprocess(x)))

    def record_extra(self) -> dict:
        """What a record should say about these features."""
        return {"arch": self.arch, "input_side": dinov2.INPUT_SIDE, "resize": "bicubic-antialias",
                "weights": str(self.weights.path), "weights_sha256": self.sha256, "standard_weights": self.standard}


class ClipFeatures:
    """CLIP image embeddings from a local TorchScript file, with the interface of ``features.InceptionFeatures``."""

    def __init__(self, weights: WeightsFile, *, name: str = "clip", device: torch.device) -> None:
        from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

        if name not in clip.BACKBONES:
            raise UserError(f"unknown CLIP backbone {name!r}; known: {', '.join(clip.BACKBONES)}")
        spec = get_spec(name)
        arch = clip.ARCHS[clip.BACKBONES[name]]
        verdict = verify(spec, weights)          # the published digest, or keys and shapes for a named file
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice; the file format is TorchScript
                net = FeatureExtractorCLIP(arch.tf_name, ["clip"], feature_extractor_weights_path=str(weights.path),
                                           verbose=False)
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise UserError(f"{weights.path} is not a {spec.what} file ({str(exc).splitlines()[0]}); "
                            f"expected {spec.describe()}") from None
        self.net = net.to(device).eval().requires_grad_(False)
        self.name = name
        self.num_features = arch.embed_dim
        self.arch = arch.label
        self.input_side = int(net.resolution)
        self.device = device
        self.weights = weights
        self.sha256 = verdict.sha256[:16]
        self.standard = verdict.standard
        self.cache_token = f"{name}-{self.sha256}-tf1bilinear{self.input_side}"

    @torch.no_grad()
    def extract(self, images_u8: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        return batched_features(images_u8, batch_size, self.device, self.num_features,
                                lambda x: self.net(x.contiguous())[0])

    def record_extra(self) -> dict:
        """What a record should say about these features."""
        return {"arch": self.arch, "input_side": self.input_side, "resize": "tf1-bilinear",
                "weights": str(self.weights.path), "weights_sha256": self.sha256, "standard_weights": self.standard}


#: backbone name -> constructor ``(WeightsFile, *, name, device) -> extractor``; each name is a registry entry.
PRETRAINED_BACKBONES = {"dinov2": DinoV2Features, "dinov2-s": DinoV2Features, "clip": ClipFeatures}


def build_pretrained_extractor(name: str, eval_cfg: dict, *, device: torch.device):
    """Find, check and load backbone ``name``'s weights; WeightsNotFound when the file is nowhere.

    The extractor checks the file (:func:`~fsgen_bench.eval.weights.verify`) as it loads it, so it is read once.
    """
    spec = get_spec(name)
    weights = locate(spec, (eval_cfg or {}).get(spec.option_field))
    return PRETRAINED_BACKBONES[name](weights, name=name, device=device)
