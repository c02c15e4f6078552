"""CLIP ViT-L/14@336px as torch-fidelity builds it: the architecture and the shapes its file must hold.

torch-fidelity's ``FeatureExtractorCLIP`` (``torch_fidelity/feature_extractor_clip.py``, 0.4.0) works offline
when it is given ``feature_extractor_weights_path``: it ``torch.jit.load``s OpenAI's TorchScript file, rebuilds
the visual tower from its state dict (``build_model``: fp16-rounded weights run in float32) and in ``forward``
resizes uint8 RGB with its TF1-compatible bilinear resize to the model's resolution and normalises with CLIP's
mean/std; the feature is the projected image embedding (not L2-normalised). ``pretrained.ClipFeatures`` is that
extractor, used as is, so ``fid/clip`` is torch-fidelity's FID with ``feature_extractor="clip-vit-l-14-336px"``.

The variant is CLIP ViT-L/14@336px, the one CMMD (Jayasumana et al., CVPR 2024) embeds with (google-research
``cmmd/embedding.py``: ``_CLIP_MODEL_NAME = 'vit_l14_336px'``). ``build_model`` infers the architecture from
the file, so the file's visual tower is checked against ViT-L/14@336px before use (a ViT-B/32 file would
otherwise load and silently give other numbers under the same name).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
