"""FID and KID from precomputed features, computed by torchmetrics and torch-fidelity (no Frechet math here).

The harness extracts the features of every image set once (batched, on the model's device), gathers them
across ranks and then calls these functions on every rank with the same full, canonically ordered sets.

* FID: torchmetrics' ``FrechetInceptionDistance`` given an identity "feature extractor", so its float64
  running sums and its ``_compute_fid`` do the statistics. ``sync_on_compute=False``: the features are
  already complete on every rank, and torchmetrics' own all-reduce would count them ``world`` times.
* KID: torch-fidelity's ``kid_features_to_metric`` (polynomial kernel, degree 3, unbiased MMD over random
  subsets). Its subsets come from ``np.random.RandomState(rng_seed)``: deterministic and independent of the
  process's global RNG, unlike torchmetrics' ``KernelInceptionDistance`` (``torch.randperm`` on the global
  generator). The subset size is clamped to the smaller sample count, as few-shot sets are small.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class PrecomputedFeatures(nn.Module):
    """Identity feature extractor: ``FrechetInceptionDistance(feature=PrecomputedFeatures(d))`` takes features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)   # torchmetrics reads this instead of probing with a dummy image

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets ``[N, D]`` and ``[M, D]`` (float64 statistics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected [N, D] and [M, D] features, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("FID needs at least two real and two generated samples")
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), sync_on_compute=False)
    with torch.autocast(device_type="cpu", enabled=False):
        metric.update(real.detach().cpu().double(), real=True)
        metric.update(fake.detach().cpu().double(), real=False)
        return float(metric.compute())


@dataclass(frozen=True)
class KidResult:
    mean: float
    std: float              # standard deviation over subsets
    subset_size: int
    subsets: int


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, *, subset_size: int, subsets: int,
                    seed: int) -> KidResult:
    """KID (mean and std over ``subsets`` random subsets of ``min(subset_size, N, M)`` samples each)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = int(min(subset_size, len(real), len(fake)))
    if size < 2:
        raise ValueError("KID needs at least two real and two generated samples")
    out = kid_features_to_metric(
        real.detach().cpu().double(), fake.detach().cpu().double(),
        kid_subsets=int(subsets), kid_subset_size=size, kid_kernel="poly", kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=int(seed), verbose=False,
    )
    return KidResult(float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]), size, int(subsets))
