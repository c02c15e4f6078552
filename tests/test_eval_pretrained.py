"""DINOv2 and CLIP feature backbones load test-made files in the official layout and compute real features.

The files hold random values (the numbers are not claimed). DINOv2's network is ours, so it is checked against
references: torch's own ``nn.TransformerEncoderLayer`` for a block (always), and facebookresearch/dinov2's
``DinoVisionTransformer`` fed the same state dict when that code is on this machine (``$FSGEN_DINOV2_REPO``, a
checkout of the repository, or the torch hub cache's ``facebookresearch_dinov2_main``). CLIP is torch-fidelity's
extractor itself, compared with a direct ``FeatureExtractorCLIP`` call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fsgen_bench.errors import UserError
from fsgen_bench.eval import clip as C
from fsgen_bench.eval import dinov2 as D
from fsgen_bench.eval import pretrained as P
from fsgen_bench.eval import weights as W
from fsgen_bench.eval.pretrained import build_pretrained_extractor

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _own_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for spec in W.REGISTRY.values():
        monkeypatch.delenv(spec.env_var, raising=False)


def _random_state(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    # Small weights, layer-scale and norms around 1: activations stay finite through the blocks.
    return {k: (torch.randn(s, generator=g) * (0.05 if len(s) > 1 else 0.5) + (1.0 if len(s) == 1 else 0.0))
            for k, s in shapes.items()}


@pytest.fixture(scope="module")
def vits14_file(tmp_path_factory):
    """dinov2_vits14_pretrain.pth's keys and shapes (88 MB), random values."""
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_pretrain.pth"
    torch.save(_random_state(D.expected_shapes("vits14")), path)
    return path


def _images(n=3, c=3, side=20, seed=0):
    return torch.randint(0, 256, (n, c, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_dinov2_small_extracts_features_from_an_official_layout_file(vits14_file):
    ext = P.DinoV2Features(W.WeightsFile(vits14_file, "option"), name="dinov2-s", device=CPU)
    rgb = _images()
    feats = ext.extract(rgb, batch_size=2)
    assert feats.shape == (3, 384) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    # Gray images are the same image repeated on three channels.
    gray = rgb[:, :1]
    assert torch.equal(ext.extract(gray), ext.extract(gray.expand(-1, 3, -1, -1)))
    # The batch size does not change the features; the weights do not decide the token name on their own.
    assert torch.allclose(ext.extract(rgb, batch_size=3), feats, atol=1e-6)
    assert ext.standard is None and ext.num_features == 384 and ext.name == "dinov2-s"
    assert ext.sha256 in ext.cache_token and "bicubicaa224" in ext.cache_token
    extra = ext.record_extra()
    assert extra["arch"] == "ViT-S/14" and extra["standard_weights"] is None and extra["weights_sha256"] == ext.sha256


def test_dinov2_preprocessing_is_224_px_imagenet_normalised(vits14_file):
    ext = P.DinoV2Features(W.WeightsFile(vits14_file, "option"), name="dinov2-s", device=CPU)
    flat = torch.tensor([10, 128, 250], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 30, 30)
    x = ext.preprocess(flat)                     # a resize keeps a flat image flat: only the normalisation shows
    want = (torch.tensor([10, 128, 250]) / 255.0 - torch.tensor(D.IMAGENET_MEAN)) / torch.tensor(D.IMAGENET_STD)
    assert x.shape == (2, 3, 224, 224) and torch.allclose(x, want.view(1, 3, 1, 1).expand_as(x), atol=1e-5)


def test_dinov2_block_equals_torch_transformer_layer_with_layer_scale_folded_in():
    torch.manual_seed(0)
    dim, heads = 32, 4
    block = D._Block(dim, heads, 4 * dim).eval()
    for p in block.parameters():
        nn.init.normal_(p, std=0.3)
    ref = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", layer_norm_eps=1e-6,
                                     batch_first=True, norm_first=True).eval()
    g1, g2 = block.ls1.gamma.detach(), block.ls2.gamma.detach()
    with torch.no_grad():
        ref.norm1.load_state_dict(block.norm1.state_dict())
        ref.norm2.load_state_dict(block.norm2.state_dict())
        ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)        # rows: q, k, v (MultiheadAttention's order)
        ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(g1[:, None] * block.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(g1 * block.attn.proj.bias)
        ref.linear1.load_state_dict(block.mlp.fc1.state_dict())
        ref.linear2.weight.copy_(g2[:, None] * block.mlp.fc2.weight)
        ref.linear2.bias.copy_(g2 * block.mlp.fc2.bias)
        x = torch.randn(2, 7, dim)
        assert torch.allclose(block(x), ref(x), atol=1e-5)


def test_dinov2_position_grid_keeps_a_constant_embedding_constant():
    net = D.DinoV2ViT(dataclasses.replace(D.ARCHS["vits14"], depth=0))
    with torch.no_grad():
        net.pos_embed.copy_(torch.arange(384.0).expand(1, 1370, 384))     # bicubic weights sum to one
    assert torch.equal(net.position_embedding(518, 518), net.pos_embed)   # the checkpoint's own grid: untouched
    pos = net.position_embedding(224, 224)
    assert pos.shape == (1, 257, 384) and torch.allclose(pos, torch.arange(384.0).expand(1, 257, 384), atol=1e-3)


def test_dinov2_feature_is_the_final_norm_of_the_class_token():
    """Blocks that add nothing leave CLS + its position, then the final LayerNorm (eps 1e-6, DINOv2's)."""
    net = D.DinoV2ViT(dataclasses.replace(D.ARCHS["vits14"], depth=2)).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(std=0.02)
        for block in net.blocks:                 # residual branches end in zero: x + 0
            block.ls1.gamma.zero_()
            block.ls2.gamma.zero_()
        cls = 1e-3 * torch.randn(384)            # a low-variance token: the epsilon matters
        net.cls_token.copy_(cls.view(1, 1, -1) - net.pos_embed[:, :1])
        want = F.layer_norm(cls, (384,), net.norm.weight, net.norm.bias, eps=1e-6)
        got = net(torch.randn(2, 3, 224, 224))
    assert torch.allclose(got, want.expand(2, -1), rtol=0, atol=1e-4)


def _official_dinov2_repo() -> Path | None:
    candidates = [os.environ.get("FSGEN_DINOV2_REPO"),
                  os.path.expanduser("~/.cache/torch/hub/facebookresearch_dinov2_main")]
    for c in candidates:
        if c and (Path(c) / "dinov2" / "models" / "vision_transformer.py").is_file():
            return Path(c)
    return None


@pytest.mark.skipif(_official_dinov2_repo() is None,
                    reason="facebookresearch/dinov2 code not on this machine (set FSGEN_DINOV2_REPO to a checkout)")
def test_dinov2_equals_the_official_implementation(vits14_file, monkeypatch):
    monkeypatch.setenv("XFORMERS_DISABLED", "1")
    monkeypatch.syspath_prepend(str(_official_dinov2_repo()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dinov2.hub.backbones import dinov2_vits14
        ref = dinov2_vits14(pretrained=False).eval()
    state = torch.load(vits14_file, weights_only=True)
    ref.load_state_dict(state, strict=True)
    ext = P.DinoV2Features(W.WeightsFile(vits14_file, "option"), name="dinov2-s", device=CPU)
    x = ext.preprocess(_images(side=37))                # 224 px: the 37 x 37 position grid resized to 16 x 16
    with torch.no_grad():
        assert torch.allclose(ext.net(x), ref(x), rtol=0, atol=1e-5)
    # The checkpoint's own grid (no resize), on a 4 x 4-grid model to keep it fast.
    from dinov2.hub.backbones import _make_dinov2_model
    small = dataclasses.replace(D.ARCHS["vits14"], depth=2, img_size=56)
    ref = _make_dinov2_model(arch_name="vit_small", img_size=56, pretrained=False).eval()
    ref.blocks = ref.blocks[:2]                          # vit_small fixes depth 12; two blocks are enough here
    state = _random_state({k: tuple(v.shape) for k, v in D.DinoV2ViT(small).state_dict().items()}, seed=1)
    ref.load_state_dict(state, strict=True)
    mine = D.DinoV2ViT(small).eval()
    mine.load_state_dict(state, strict=True)
    with torch.no_grad():
        for side in (56, 98):
            y = torch.randn(2, 3, side, side)
            assert torch.allclose(mine(y), ref(y), rtol=0, atol=1e-5)
    sys.modules.pop("dinov2", None)


def test_dinov2_rejects_a_wrong_or_truncated_file(vits14_file, tmp_path):
    state = torch.load(vits14_file, weights_only=True)
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"][:-1]
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(UserError, match=r"blocks.0.attn.qkv.weight has shape .*dinov2_vits14_pretrain.pth"):
        P.DinoV2Features(W.WeightsFile(wrong, "option"), name="dinov2-s", device=CPU)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(vits14_file.read_bytes()[: 10_000_000])
    with pytest.raises(UserError, match="not a loadable DINOv2 ViT-S/14.*no published SHA-256"):
        P.DinoV2Features(W.WeightsFile(truncated, "hub"), name="dinov2-s", device=CPU)


def test_pretrained_backbones_are_found_like_inception(vits14_file, monkeypatch):
    with pytest.raises(W.WeightsNotFound, match="eval.dinov2_s_weights.*FSGEN_DINOV2_S_WEIGHTS.*weights download"):
        build_pretrained_extractor("dinov2-s", {}, device=CPU)
    ext = build_pretrained_extractor("dinov2-s", {"dinov2_s_weights": str(vits14_file)}, device=CPU)
    assert ext.weights.source == "option"
    hub = W.hub_checkpoints_dir()
    hub.mkdir(parents=True)
    (hub / vits14_file.name).symlink_to(vits14_file)
    assert build_pretrained_extractor("dinov2-s", {}, device=CPU).weights.source == "hub"


# -- CLIP ----------------------------------------------------------------------------------------------------

TINY_CLIP = C.ClipArch(embed_dim=16, image_resolution=28, layers=2, width=64, patch_size=14, text_width=32,
                       label="tiny", tf_name="clip-vit-l-14-336px")


class _TinyOpenAIClip(nn.Module):
    """OpenAI's CLIP TorchScript layout (``visual.*``, text tower keys) at a tiny size."""

    def __init__(self, arch: C.ClipArch) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_clip import CLIPVisual

        self.visual = CLIPVisual(arch.embed_dim, arch.image_resolution, arch.layers, arch.width,
                                 arch.patch_size).visual
        self.text_projection = nn.Parameter(torch.randn(arch.text_width, arch.embed_dim))
        self.positional_embedding = nn.Parameter(torch.randn(77, arch.text_width))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tiny-clip.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_TinyOpenAIClip(TINY_CLIP)).save(str(path))
    return path


def test_clip_features_are_torch_fidelitys(tiny_clip_file, monkeypatch):
    from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

    monkeypatch.setitem(C.ARCHS, "vit-l-14-336px", TINY_CLIP)
    ext = P.ClipFeatures(W.WeightsFile(tiny_clip_file, "option"), device=CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FeatureExtractorCLIP("clip-vit-l-14-336px", ["clip"], feature_extractor_weights_path=str(tiny_clip_file),
                                   verbose=False).eval()
    rgb = _images(n=4, side=40)
    feats = ext.extract(rgb, batch_size=4)
    with torch.no_grad():
        assert torch.equal(feats, ref(rgb)[0])
        gray = rgb[:, :1]
        assert torch.equal(ext.extract(gray), ref(gray.repeat(1, 3, 1, 1))[0])
    assert torch.allclose(ext.extract(rgb, batch_size=3), feats, atol=1e-5)
    assert feats.shape == (4, 16) and feats.dtype == torch.float32
    assert ext.standard is False and ext.input_side == 28 and "tf1bilinear28" in ext.cache_token


def test_clip_rejects_another_architecture_and_a_damaged_cache_file(tiny_clip_file):
    # Not patched: the tiny file is not ViT-L/14@336px, and torch-fidelity would have built it anyway.
    with pytest.raises(UserError, match=r"not a CLIP ViT-L/14@336px \(OpenAI\) file: it lacks .*sha256 3035c92b3509"):
        P.ClipFeatures(W.WeightsFile(tiny_clip_file, "env"), device=CPU)
    hub = W.hub_checkpoints_dir()
    hub.mkdir(parents=True)
    (hub / W.REGISTRY["clip"].file).write_bytes(tiny_clip_file.read_bytes())
    with pytest.raises(UserError, match=r"damaged or not the standard CLIP.*expected sha256 3035c92b3509.*weights "
                                        r"download clip"):
        build_pretrained_extractor("clip", {}, device=CPU)


def test_clip_file_with_the_published_hash_is_standard(tiny_clip_file, monkeypatch):
    monkeypatch.setitem(C.ARCHS, "vit-l-14-336px", TINY_CLIP)
    digest = hashlib.sha256(tiny_clip_file.read_bytes()).hexdigest()
    monkeypatch.setitem(W.REGISTRY, "clip", dataclasses.replace(W.REGISTRY["clip"], sha256=digest))
    hub = W.hub_checkpoints_dir()
    hub.mkdir(parents=True)
    (hub / W.REGISTRY["clip"].file).symlink_to(tiny_clip_file)
    ext = build_pretrained_extractor("clip", {}, device=CPU)
    assert ext.standard is True and ext.record_extra()["standard_weights"] is True


@pytest.mark.slow
def test_a_run_with_every_weights_file_reports_each_backbone_in_its_own_column(tmp_path, monkeypatch):
    """Issue 16: with the files present (test-made: right keys and shapes, random values) the harness reports
    fid/inception, lpips/alex and fid/dinov2 beside the domain metrics, and the leaderboard gives each its column.

    ViT-L/14 at full size would cost a 1.2 GB file; the registry's shape check and the extractor both read
    ``dinov2.ARCHS`` when called, so a one-block ViT-S stands in for ViT-L under the name ``dinov2``.
    """
    import torchvision

    from fsgen_bench.eval.harness import evaluate
    from fsgen_bench.leaderboard import compute_tables
    from test_eval_support import RUN_META, TINY_EVAL_CFG, copy_support, tiny_datamodule, tiny_protocol, \
        write_random_inception

    monkeypatch.setitem(D.ARCHS, "vitl14", dataclasses.replace(D.ARCHS["vits14"], depth=1))
    dino = tmp_path / "dinov2_vitl14_pretrain.pth"
    torch.save(_random_state(D.expected_shapes("vitl14")), dino)
    alex = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alex)
    monkeypatch.setenv("FSGEN_INCEPTION_WEIGHTS", str(write_random_inception(tmp_path / "inception.pth")))
    cfg = {**TINY_EVAL_CFG, "backbones": ["domain", "inception", "dinov2"], "fewshot": False, "lowdata": False,
           "dinov2_weights": str(dino), "lpips_backbone_weights": str(alex)}
    records = evaluate(copy_support(), tiny_datamodule(tmp_path / "cache"), protocol=tiny_protocol(), eval_cfg=cfg,
                       cache_dir=tmp_path / "cache", run_meta=RUN_META, log=lambda *a: None)
    keys = {r.key for r in records}
    assert {"fid/domain", "fid/inception", "fid/dinov2", "kid/dinov2", "lpips/alex"} <= keys
    dino_fid = next(r for r in records if r.key == "fid/dinov2")
    assert dino_fid.extra["weights"] == str(dino) and dino_fid.extra["input_side"] == D.INPUT_SIDE
    (table,) = compute_tables(records)
    columns = [c.key for c in table.columns]
    assert {"fid/domain", "fid/inception", "fid/dinov2", "lpips/alex"} <= set(columns)
    assert len(columns) == len(set(columns))
