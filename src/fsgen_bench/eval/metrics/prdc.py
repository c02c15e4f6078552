"""Precision, recall (Kynkäänniemi et al., NeurIPS 2019), density and coverage (Naeem et al., ICML 2020).

All four on the pooled features of every backbone, with the real set's distinct images (no duplicate from
sampling with replacement, which would give zero-radius balls). Naeem et al. compare equal numbers of real and
generated samples; so each class contributes as many generated images as it has real ones (a seeded subset,
spread over its support sets), and the k-NN radii of both sets are on the same scale.

* precision / recall: torch-fidelity's ``prc_features_to_metric`` (metric_prc.py, torch-fidelity 0.4.0) on
  the given features, neighbourhood ``prc_k`` (3, the paper's and torch-fidelity's default): the share of
  generated samples inside some real sample's k-NN ball, and of real samples inside some generated one's.
* density / coverage, k = ``dc_k`` (5, the paper's): with r_i the distance from real sample i to its k-th
  nearest other real sample, density = 1/(k M) sum_j sum_i [d(x_i, y_j) < r_i] and coverage = 1/N sum_i
  [min_j d(x_i, y_j) < r_i] (strict inequalities, as in the authors' prdc package).
"""

from __future__ import annotations

import numpy as np
import torch

from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.metrics.registry import MetricFamily, MetricSpec, Value, register

_PURPOSE = 41   # seed purpose of the generated subset


_CHUNK = 2048   # rows per distance block: memory is O(chunk x set size), never O(N x M)


def kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (float64)."""
    x = x.double()
    # the smallest distance of a row is to itself (0): the (k + 1)-th smallest is the k-th other row
    return torch.cat([torch.cdist(part, x).kthvalue(k + 1, dim=1).values for part in x.split(_CHUNK)])


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    """Naeem et al. 2020, eq. (3) and (4)."""
    if len(real) <= k:
        raise ValueError(f"density/coverage with k={k} needs more than {k} real samples (got {len(real)})")
    radii = kth_neighbour_radius(real, k)                        # [N]
    real, fake = real.double(), fake.double()
    inside_total, covered = 0, 0
    for part, r in zip(real.split(_CHUNK), radii.split(_CHUNK)):
        inside = torch.cdist(part, fake) < r[:, None]           # [chunk, M]
        inside_total += int(inside.sum())
        covered += int(inside.any(dim=1).sum())
    return inside_total / (k * fake.shape[0]), covered / real.shape[0]


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    # features_1 is the generated set (torch-fidelity's convention); blockwise distances (save_cpu_ram)
    out = prc_features_to_metric(fake.double(), real.double(), prc_neighborhood=int(k), prc_batch_size=_CHUNK,
                                 save_cpu_ram=True, verbose=False)
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])


def balanced_sets(inp: MetricInputs, backbone: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, generated): per class its distinct real images and as many generated ones (seeded subset)."""
    reals, fakes = [], []
    for c in inp.class_ids:
        cp = inp.plans[c]
        _, first = np.unique(cp.real, return_index=True)
        real = inp.real[backbone][c][torch.from_numpy(np.sort(first))]
        gen = inp.gen[backbone][c]
        n = min(len(real), len(gen))
        pick = np.sort(inp.rng(c, _PURPOSE).choice(len(gen), size=n, replace=False))
        reals.append(real)
        fakes.append(gen[torch.from_numpy(pick)])
    return torch.cat(reals), torch.cat(fakes)


def compute(inp: MetricInputs) -> list[Value]:
    out = []
    p = inp.protocol
    for b in inp.backbones:
        real, fake = balanced_sets(inp, b)
        extra = {"real_images": int(real.shape[0]), "generated_images": int(fake.shape[0]),
                 "generated_subset": "per class as many as its distinct real images, seeded"}
        precision, recall = precision_recall(real, fake, p.prc_k)
        out += [Value("precision", b, precision, extra={**extra, "k": p.prc_k}),
                Value("recall", b, recall, extra={**extra, "k": p.prc_k})]
        if len(real) > p.dc_k:
            density, coverage = density_coverage(real, fake, p.dc_k)
            out += [Value("density", b, density, extra={**extra, "k": p.dc_k}),
                    Value("coverage", b, coverage, extra={**extra, "k": p.dc_k})]
    return out


FAMILY = register(MetricFamily(
    name="prdc",
    specs=(
        MetricSpec("precision", "fidelity", "higher", True, "share of generated images inside the real images' "
                   "k-NN balls (Kynkäänniemi et al. 2019, k = 3)", order=13),
        MetricSpec("density", "fidelity", "target", True, "how many real k-NN balls contain a generated image, "
                   "over k (Naeem et al. 2020, k = 5); real images score about 1", order=14, target=1.0),
        MetricSpec("recall", "coverage", "higher", True, "share of real images inside the generated images' "
                   "k-NN balls (Kynkäänniemi et al. 2019, k = 3)", order=33),
        MetricSpec("coverage", "coverage", "higher", True, "share of real images whose k-NN ball holds a "
                   "generated image (Naeem et al. 2020, k = 5)", order=34),
    ),
    compute=compute,
))
