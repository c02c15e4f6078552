"""CLIP image features (FD/KID in CLIP space) with torch-fidelity's extractor, from a local file.

torch-fidelity's ``FeatureExtractorCLIP`` (``torch_fidelity/feature_extractor_clip.py``, 0.4.0) works offline
when it is given ``feature_extractor_weights_path``: it ``torch.jit.load``s OpenAI's TorchScript file, rebuilds
the visual tower from its state dict (``build_model``: fp16-rounded weights run in float32) and in ``forward``
resizes uint8 RGB with its TF1-compatible bilinear resize to the model's resolution and normalises with CLIP's
mean/std; the feature is the projected image embedding (not L2-normalised). This class is that extractor, used
as is, so ``fid/clip`` is torch-fidelity's FID with ``feature_extractor="clip-vit-l-14-336px"``.

The variant is CLIP ViT-L/14@336px, the one CMMD (Jayasumana et al., CVPR 2024) embeds with (google-research
``cmmd/embedding.py``: ``_CLIP_MODEL_NAME = 'vit_l14_336px'``). ``build_model`` infers the architecture from
the file, so the file's visual tower is checked against ViT-L/14@336px before use (a ViT-B/32 file would
otherwise load and silently give other numbers under the same name).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from fsgen_bench.errors import UserError
from fsgen_bench.eval.weights import WeightsFile, get_spec, verify


@dataclass(frozen=True)
class ClipArch:
    embed_dim: int          # projected embedding (the feature)
    image_resolution: int
    layers: int
    width: int
    patch_size: int
    text_width: int         # rows of text_projection, which build_model reads the embedding size from
    label: str
    tf_name: str            # torch-fidelity's name for it


#: OpenAI CLIP ViT-L/14@336px: 24 layers of width 1024, patch 14, 336 px, 768-d embedding, text width 768.
ARCHS = {"vit-l-14-336px": ClipArch(embed_dim=768, image_resolution=336, layers=24, width=1024, patch_size=14,
                                    text_width=768, label="ViT-L/14@336px", tf_name="clip-vit-l-14-336px")}
#: backbone name (record name ``fid/<backbone>``) -> architecture; the registry entry has the same name.
BACKBONES = {"clip": "vit-l-14-336px"}


def expected_shapes(arch: str) -> dict:
    """{key: shape} the file must hold for ``arch``: the whole visual tower and ``text_projection``."""
    from torch_fidelity.feature_extractor_clip import CLIPVisual

    a = ARCHS[arch]
    with torch.device("meta"):
        visual = CLIPVisual(a.embed_dim, a.image_resolution, a.layers, a.width, a.patch_size)
    shapes = {k: tuple(v.shape) for k, v in visual.state_dict().items()}
    shapes["text_projection"] = (a.text_width, a.embed_dim)
    return shapes


class ClipFeatures:
    """CLIP image embeddings from a local TorchScript file, with the interface of ``features.InceptionFeatures``."""

    def __init__(self, weights: WeightsFile, *, name: str = "clip", device: torch.device) -> None:
        from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

        if name not in BACKBONES:
            raise UserError(f"unknown CLIP backbone {name!r}; known: {', '.join(BACKBONES)}")
        spec = get_spec(name)
        arch = ARCHS[BACKBONES[name]]
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
        out = []
        with torch.autocast(device_type=self.device.type, enabled=False):
            for start in range(0, images_u8.shape[0], batch_size):
                x = images_u8[start:start + batch_size].to(self.device, non_blocking=True)
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                out.append(self.net(x.contiguous())[0].float().cpu())
        return torch.cat(out) if out else torch.zeros((0, self.num_features))

    def record_extra(self) -> dict:
        """What a record should say about these features."""
        return {"arch": self.arch, "input_side": self.input_side, "resize": "tf1-bilinear",
                "weights": str(self.weights.path), "weights_sha256": self.sha256, "standard_weights": self.standard}
