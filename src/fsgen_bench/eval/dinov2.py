"""DINOv2 features (FD_DINOv2) from the official checkpoint, without torch hub code and without a network.

torch-fidelity's DINOv2 extractor (``torch_fidelity/feature_extractor_dinov2.py``, 0.4.0) builds the network with
``torch.hub.load("facebookresearch/dinov2", ...)``, which needs the hub repository's code (a network call on
first use) and raises ``NotImplementedError`` when given a weights path, so it cannot run offline. This module
holds the inference path of DINOv2's ViT with the parameter names and shapes of the official checkpoints
(facebookresearch/dinov2 at b8931f7, ``dinov2/models/vision_transformer.py`` and ``dinov2/layers/``), so
``dinov2_vit{s,l}14_pretrain.pth`` loads strictly and nothing else is needed. The hub models are built with
``img_size=518, patch_size=14, init_values=1.0, ffn_layer="mlp", block_chunks=0, num_register_tokens=0,
interpolate_antialias=False, interpolate_offset=0.1`` (``dinov2/hub/backbones.py``, ``_make_dinov2_model``),
and ``forward`` returns the final-norm CLS token (``x_norm_clstoken``; the head is ``nn.Identity``).

Preprocessing follows FD_DINOv2 as EDM2 computes it (NVlabs/edm2 ``calculate_metrics.py``, ``DINOv2Detector``,
``resize_mode='torch'``, itself modelled on Stein et al.'s dgm-eval): uint8 RGB -> bicubic antialiased resize to
224 x 224 -> /255 -> ImageNet mean/std (``pretrained.DinoV2Features`` does it). Gray images are repeated to three
channels. Features: 1024-d (ViT-L/14, backbone ``dinov2``) or 384-d (ViT-S/14, backbone ``dinov2-s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


INPUT_SIDE = 224                               # EDM2 / dgm-eval resize every image to 224 x 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DinoArch:
    embed_dim: int
    depth: int
    num_heads: int
    label: str
    patch_size: int = 14
    img_size: int = 518          # the checkpoints' position grid: 518 / 14 = 37 x 37 patches
    mlp_ratio: float = 4.0
    interpolate_offset: float = 0.1


#: dinov2/models/vision_transformer.py: vit_small (384, 12, 6), vit_large (1024, 24, 16).
ARCHS = {
    "vits14": DinoArch(embed_dim=384, depth=12, num_heads=6, label="ViT-S/14"),
    "vitl14": DinoArch(embed_dim=1024, depth=24, num_heads=16, label="ViT-L/14"),
}
#: backbone name (record name ``fid/<backbone>``) -> architecture; the registry entry has the same name.
BACKBONES = {"dinov2": "vitl14", "dinov2-s": "vits14"}


class _LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, hidden)
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2ViT(nn.Module):
    """DINOv2's ViT at inference: normalised images [B, 3, H, W] (H, W multiples of 14) -> CLS features [B, D]."""

    def __init__(self, arch: DinoArch) -> None:
        super().__init__()
        d, grid = arch.embed_dim, arch.img_size // arch.patch_size
        self.arch = arch
        self.patch_embed = _PatchEmbed(arch.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))      # training-time masking; in the file, unused here
        self.blocks = nn.ModuleList(_Block(d, arch.num_heads, int(d * arch.mlp_ratio)) for _ in range(arch.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The checkpoint's 37 x 37 grid resized to the input's patch grid exactly as DinoVisionTransformer does:
        bicubic with scale factors ``(grid + 0.1) / 37`` (``interpolate_offset``), no antialias, in float32."""
        key = (h, w, self.pos_embed.device, self.pos_embed.dtype)
        if key in self._pos_cache:
            return self._pos_cache[key]
        pos = self.pos_embed.float()
        n = pos.shape[1] - 1
        h0, w0 = h // self.arch.patch_size, w // self.arch.patch_size
        if n == h0 * w0 and h == w:
            out = self.pos_embed
        else:
            m = int(math.sqrt(n))
            off = self.arch.interpolate_offset
            grid = F.interpolate(pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2), mode="bicubic",
                                 antialias=False, scale_factor=((h0 + off) / m, (w0 + off) / m))
            if tuple(grid.shape[-2:]) != (h0, w0):
                raise RuntimeError(f"position grid {tuple(grid.shape[-2:])} != {(h0, w0)}")
            out = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)], dim=1)
            out = out.to(self.pos_embed.dtype)
        self._pos_cache[key] = out
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def expected_shapes(arch: str) -> dict:
    """{key: shape} of the official checkpoint for ``arch`` (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        net = DinoV2ViT(ARCHS[arch])
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}
