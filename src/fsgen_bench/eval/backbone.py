"""The ``domain`` backbone: a compact ResNet classifier trained on the dataset's seen classes.

Why: the standard FID Inception and LPIPS ImageNet weights cannot be downloaded on offline machines, and an
ImageNet network says little about 32-pixel glyphs anyway. A classifier trained on the seen classes gives
features that separate characters/faces/flowers of *this* domain. It serves the few-shot classifier (frozen
features + a linear classifier, as in F2GAN's protocol), a domain FID/KID that works on every dataset offline,
and a feature-space diversity score. Records name it ``domain``; the leaderboard never mixes it with Inception.

Training: every seen class contributes its images, 10% of each class (at least one image when the class has
two or more) held out for a seen-class validation accuracy that is stored with the weights. AdamW with a
one-cycle schedule, label smoothing and a random shift of ~6% of the side (no flips: a mirrored character
is another character). channels-last memory format throughout: ~3x faster convolutions on CPU. Deterministic given the seed on a given device type: the network is
initialised inside ``torch.random.fork_rng`` (the caller's global RNG is untouched) and batches and jitter are
drawn from a private ``torch.Generator``.

Cache: ``cache_dir / "backbones" / <dataset> / <size>px-c<channels>-seed<seed>-<key>.pt`` plus a ``.json`` with
the validation accuracy; the key hashes the architecture version, a fingerprint of the whole data (every byte
of every image of every class, and the split), the image size, channels, seed and the training settings, so a
changed dataset, image or setting never reuses stale weights.
Under DDP rank 0 loads or trains it and broadcasts the weights (other ranks never train: GPU kernels are not
bit-deterministic, and every rank must extract features with the same weights).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from fsgen_bench.atomic import atomic_write, write_text_atomic
from fsgen_bench.eval.distributed import DistContext

ARCH_VERSION = 1            # bump when the network or its training changes: part of the cache key
VAL_FRACTION = 0.1
WORKING_SIZE = 32           # max-pool larger inputs down to this side before the residual stages


def show_progress() -> bool:
    """Progress bars only for a person at a terminal: quiet in CI and in logs."""
    return not os.environ.get("CI") and sys.stderr.isatty()


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class DomainResNet(nn.Module):
    """Stem, three residual stages (width, 2x, 4x; each halves the side), global average pool, linear head.

    ``features`` is the pooled (penultimate) activation, ``4 * width`` wide.
    """

    def __init__(self, *, in_channels: int, num_classes: int, width: int, image_size: int) -> None:
        super().__init__()
        pools = max(0, int(round(math.log2(max(image_size, WORKING_SIZE) / WORKING_SIZE))))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            *[nn.MaxPool2d(2) for _ in range(pools)],
        )
        self.stages = nn.Sequential(
            BasicBlock(width, width, 2), BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 4 * width, 2),
        )
        self.num_features = 4 * width
        self.fc = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _to_input(images_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 [-1, 1] on ``device`` (the suite's generator range), channels-last."""
    x = images_u8.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=_memory_format(device))


def _memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CUDA only. On CPU it gains ~10% and torch 2.14's oneDNN backward of a narrow (width 4)
    channels-last network crashes the process (SIGSEGV/SIGABRT with one thread, seen on an AMD EPYC host)."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


@dataclass
class DomainBackbone:
    """A trained, frozen domain network and what is known about it."""

    net: DomainResNet
    key: str                                   # cache key: identifies the weights in feature-cache keys
    meta: dict = field(default_factory=dict)   # val_acc, train_time_s, sizes, settings
    name: str = "domain"

    @property
    def num_features(self) -> int:
        return self.net.num_features

    @property
    def cache_token(self) -> str:
        return f"domain-{self.key}"

    @torch.no_grad()
    def extract(self, images_u8: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """float32 [N, D] on CPU (GAP features; eval-mode BatchNorm, so independent of the batch size)."""
        device = next(self.net.parameters()).device
        self.net.eval()
        out = []
        with torch.autocast(device_type=device.type, enabled=False):
            for start in range(0, images_u8.shape[0], batch_size):
                out.append(self.net.features(_to_input(images_u8[start:start + batch_size], device)).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, self.num_features))


def data_fingerprint(images) -> str:
    """Content fingerprint of a dataset: its name, the seen/unseen split, and every byte of every image of every
    class (blake2b, about 1 GB/s: a few seconds for VGGFace's 2.9 GB, milliseconds for glyphs)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{images.info.name}|seen={list(images.seen)}|unseen={list(images.unseen)}".encode())
    for c, arr in enumerate(images.classes):
        digest.update(f"{c}:{arr.shape}:{arr.dtype}".encode())
        digest.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return digest.hexdigest()


def _settings(cfg: dict) -> dict:
    return {"epochs": int(cfg.get("epochs", 6)), "width": int(cfg.get("width", 32)),
            "batch_size": int(cfg.get("batch_size", 128)), "lr": float(cfg.get("lr", 0.002))}


def backbone_paths(cache_dir: Path, dataset: str, images, *, seed: int, cfg: dict,
                   data_fp: str | None = None) -> tuple[Path, Path, str]:
    """(weights path, json path, key) for this dataset, its data, image size, seed and training settings."""
    info = images.info
    payload = {"arch": ARCH_VERSION, "dataset": info.name, "data": data_fp or data_fingerprint(images),
               "size": info.image_size, "channels": info.channels, "seed": int(seed), "train": _settings(cfg)}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in info.name)
    stem = f"{info.image_size}px-c{info.channels}-seed{seed}-{key}"
    folder = Path(cache_dir) / "backbones" / safe
    return folder / f"{stem}.pt", folder / f"{stem}.json", key


def split_seen(images, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train/validation split of the seen classes: (x_train u8 [N,C,H,W], y_train, x_val, y_val)."""
    xs_tr, ys_tr, xs_va, ys_va = [], [], [], []
    for label, c in enumerate(images.seen):
        arr = images.classes[c]
        n = len(arr)
        order = np.random.default_rng([seed, c, 7]).permutation(n)
        n_val = max(1, int(round(VAL_FRACTION * n))) if n >= 2 else 0
        xs_va.append(arr[order[:n_val]])
        xs_tr.append(arr[order[n_val:]])
        ys_va.append(np.full(n_val, label))
        ys_tr.append(np.full(n - n_val, label))

    def stack(xs, ys):
        x = torch.from_numpy(np.ascontiguousarray(np.concatenate(xs).transpose(0, 3, 1, 2)))
        return x, torch.from_numpy(np.concatenate(ys).astype(np.int64))

    return (*stack(xs_tr, ys_tr), *stack(xs_va, ys_va))


def _jitter(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random integer shift of up to ``max_shift`` pixels per image (edge-replicated), as one gather.

    Cheaper than an affine ``grid_sample`` on CPU, and enough to stop the network keying on exact positions.
    """
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (b, 1), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (b, 1), generator=gen).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols].contiguous(memory_format=_memory_format(x.device))


@torch.no_grad()
def _accuracy(net: DomainResNet, x_u8: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int) -> float:
    if len(y) == 0:
        return float("nan")
    net.eval()
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = net(_to_input(x_u8[start:start + batch_size], device))
        correct += int((logits.argmax(1).cpu() == y[start:start + batch_size]).sum())
    return correct / len(y)


def train_domain_backbone(images, *, cfg: dict, seed: int, device: torch.device,
                          log=print) -> tuple[dict, dict]:
    """Train on the seen classes; returns (state_dict on CPU, meta with the seen-class val accuracy)."""
    s = _settings(cfg)
    info = images.info
    x_tr, y_tr, x_va, y_va = split_seen(images, seed)
    n = len(y_tr)
    batch = min(s["batch_size"], n)
    steps_per_epoch = max(1, n // batch)
    total = s["epochs"] * steps_per_epoch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DomainResNet(in_channels=info.channels, num_classes=len(images.seen), width=s["width"],
                           image_size=info.image_size)
    net = net.to(device, memory_format=_memory_format(device))
    if device.type == "cuda" and x_tr.numel() < (1 << 31):
        x_tr = x_tr.to(device)   # avoid a host->device copy per batch when the set fits easily
    gen = torch.Generator().manual_seed(seed)
    shift = max(1, round(info.image_size / 16))    # ~6% of the side
    opt = torch.optim.AdamW(net.parameters(), lr=s["lr"], weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s["lr"], total_steps=max(total, 1), pct_start=0.15)
    log(f"training the domain backbone on {len(images.seen)} seen classes ({n} images, {len(y_va)} held out), "
        f"{s['epochs']} epochs of {steps_per_epoch} steps on {device.type}")
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="domain backbone", disable=not show_progress(), leave=False)
    net.train()
    with torch.autocast(device_type=device.type, enabled=False):
        for _ in range(s["epochs"]):
            perm = torch.randperm(n, generator=gen)
            for step in range(steps_per_epoch):
                idx = perm[step * batch:(step + 1) * batch]
                xb = _jitter(_to_input(x_tr[idx.to(x_tr.device)], device), gen, shift)
                loss = F.cross_entropy(net(xb), y_tr[idx].to(device), label_smoothing=0.1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    train_s = time.perf_counter() - t0
    val_acc = _accuracy(net, x_va, y_va, device, 512)
    meta = {"val_acc": val_acc, "train_time_s": round(train_s, 2), "train_images": n, "val_images": len(y_va),
            "seen_classes": len(images.seen), "arch_version": ARCH_VERSION, "device": device.type,
            "num_features": net.num_features, **s}
    log(f"domain backbone: seen-class validation accuracy {val_acc:.3f} after {train_s:.1f}s")
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}, meta


def obtain_domain_backbone(images, *, cfg: dict, cache_dir: Path, seed: int, device: torch.device,
                           ctx: DistContext | None = None, log=print, data_fp: str | None = None) -> DomainBackbone:
    """Load the cached backbone for (dataset, split, size, seed, settings) or train and cache it.

    Under DDP, rank 0 loads or trains and broadcasts the weights; every rank returns the same network.
    """
    ctx = ctx or DistContext.current()
    weights_path, json_path, key = backbone_paths(cache_dir, images.info.name, images, seed=seed, cfg=cfg,
                                                  data_fp=data_fp)
    payload = None
    if ctx.is_main:
        if weights_path.is_file() and json_path.is_file():
            try:
                state = torch.load(weights_path, map_location="cpu", weights_only=True)
                meta = json.loads(json_path.read_text())
                payload = (state, {**meta, "cached": True})
            except Exception as exc:  # a truncated or foreign file: retrain and overwrite
                log(f"ignoring unreadable cached backbone {weights_path} ({type(exc).__name__}); retraining")
        if payload is None:
            state, meta = train_domain_backbone(images, cfg=cfg, seed=seed, device=device, log=log)
            with atomic_write(weights_path, "wb") as fh:
                torch.save(state, fh)
            write_text_atomic(json_path, json.dumps({**meta, "key": key}, indent=2, sort_keys=True))
            payload = (state, {**meta, "cached": False})
    state, meta = ctx.broadcast_object(payload)
    s = _settings(cfg)
    net = DomainResNet(in_channels=images.info.channels, num_classes=len(images.seen), width=s["width"],
                       image_size=images.info.image_size)
    net.load_state_dict(state)
    net.to(device, memory_format=_memory_format(device)).eval().requires_grad_(False)
    return DomainBackbone(net=net, key=key, meta={**meta, "path": str(weights_path)})
