"""Reference rows: methods that need no training and anchor every leaderboard.

* ``copy-support`` returns the conditional images themselves, cycling through them. It shows how good a
  "generator" that only memorises its inputs looks under a protocol: low FID, low diversity.
* ``noise`` returns uniform noise in [-1, 1]. Every real method must beat it on every metric.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fsgen_bench.methods.base import FewShotGenerator


class _ReferenceRow(FewShotGenerator):
    trainable = False

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int) -> None:
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot)
        self.save_hyperparameters()
        # A buffer gives the module a device and dtype; there is nothing to learn.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def training_step(self, batch, batch_idx):  # pragma: no cover - never trained
        return None

    def configure_optimizers(self):  # pragma: no cover - never trained
        return None


class CopySupport(_ReferenceRow):
    stochastic = False          # the same images for every seed

    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        self.check_support(support)
        k = support.shape[1]
        index = torch.arange(num, device=support.device) % k
        return support[:, index].clone()


class Noise(_ReferenceRow):
    uses_support = False        # the support only sets the shape

    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        self.check_support(support)
        b, _, c, h, w = support.shape
        noise = torch.rand((b, num, c, h, w), generator=generator, device="cpu" if generator is None else generator.device)
        return (noise.to(support.device, support.dtype) * 2 - 1)
