"""Novelty and copy rate: are the generated images new, or copies of the images they were conditioned on?

FID cannot tell a copier from a generator: copying the conditioning images sits at the real-vs-real floor.
These two metrics follow the data-copying literature: Meehan, Chaudhuri and Dasgupta (AISTATS 2020, "A
non-parametric test to detect data-copying in generative models") compare generated-to-training distances
with held-out-to-training distances; Alaa et al. (ICML 2022, "How faithful is your synthetic data?") call a
sample unauthentic when it sits closer to a training sample than real data does. Here the "training" set of
an image is its own conditioning set, and distances are Euclidean in the backbone's feature space.

Definitions, per unseen class c with conditional pool features and support sets S_1..S_T (K images each):
* d(x, S) = min over y in S of ||f(x) - f(y)||.
* Reference distances: R_c = { d(h, S_t) : h a held-out real image of c, t = 1..T } (never a conditioning
  image); r_c = median(R_c) and q_c = the ``copy_quantile`` (0.05) quantile of R_c (numpy's linear rule).
* A generated image g conditioned on S_t has d_g = d(g, S_t) and ratio d_g / r_c.
* ``novelty/<backbone>``: the median over classes of each class's median ratio. A copier scores 0; images as
  new as unseen real photos score about 1. Interval: half the width of the 95% percentile-bootstrap interval
  of that median over classes (1000 resamples of the classes, seeded).
* ``copy_rate/<backbone>``: the share of generated images with d_g <= q_c, averaged over classes (interval
  1.96 x std / sqrt(classes)). A copier scores 1; real-like images about ``copy_quantile``.
A generated row without a support set (the ``real`` reference row scores held-out images, which no support set
produced) is measured against every support set, exactly like the reference distances.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.metrics.registry import MetricFamily, MetricSpec, Value, register

BOOTSTRAP = 1000
_PURPOSE = 43


def support_distances(x: torch.Tensor, cond: torch.Tensor, supports: np.ndarray) -> torch.Tensor:
    """[N, T]: distance from each row of ``x`` to the nearest image of each support set (positions in cond)."""
    d = torch.cdist(x.double(), cond.double())                       # [N, P]
    idx = torch.from_numpy(np.asarray(supports, dtype=np.int64))     # [T, K]
    return d[:, idx].amin(dim=2)                                      # [N, T, K] -> [N, T]


def class_ratios(gen: torch.Tensor, gen_support: torch.Tensor, heldout: torch.Tensor, cond: torch.Tensor,
                 supports: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """(ratios d_g / r_c, copied d_g <= q_c) of one class's generated rows (a row with support -1: every set)."""
    ref = support_distances(heldout, cond, supports).flatten().numpy()
    r, q = float(np.median(ref)), float(np.quantile(ref, quantile))
    all_sets = support_distances(gen, cond, supports)                 # [G, T]
    own = gen_support.long()
    mine = own >= 0
    d = [all_sets[mine, own[mine]].numpy(), all_sets[~mine].flatten().numpy()]
    d = np.concatenate(d)
    return d / r if r > 0 else np.full_like(d, np.inf), d <= q


def compute(inp: MetricInputs) -> list[Value]:
    out = []
    q = inp.protocol.copy_quantile
    for b in inp.backbones:
        medians, rates = [], []
        for c in inp.class_ids:
            ratios, copied = class_ratios(inp.gen[b][c], inp.gen_support[c], inp.heldout[b][c], inp.cond[b][c],
                                          inp.plans[c].supports, q)
            medians.append(float(np.median(ratios)))
            rates.append(float(copied.mean()))
        medians, rates = np.asarray(medians), np.asarray(rates)
        boot = inp.rng(_PURPOSE).integers(0, len(medians), size=(BOOTSTRAP, len(medians)))
        lo, hi = np.quantile(np.median(medians[boot], axis=1), [0.025, 0.975])
        extra = {"classes": len(medians), "copy_quantile": q, "distance": "euclidean in the backbone's features"}
        out.append(Value("novelty", b, float(np.median(medians)), ci95=float(hi - lo) / 2,
                         extra={**extra, "ci95_of": f"the median over classes: half the 95% percentile-bootstrap "
                                                    f"interval width ({BOOTSTRAP} class resamples)",
                                "ci95_low": float(lo), "ci95_high": float(hi)}))
        ci = 1.96 * rates.std(ddof=1) / math.sqrt(len(rates)) if len(rates) > 1 else None
        out.append(Value("copy_rate", b, float(rates.mean()), ci95=ci,
                         extra={**extra, "ci95_of": "the mean over classes (1.96 x std / sqrt(classes))"}))
    return out


FAMILY = register(MetricFamily(
    name="novelty",
    specs=(
        MetricSpec("novelty", "novelty", "target", True, "median distance of a generated image to its nearest "
                   "conditioning image, over that of held-out real images (0: copies; 1: as new as real photos)",
                   order=20, needs=frozenset({"features", "conditioning"}), target=1.0),
        # Target, not "lower": images far off the data score 0 (DAGAN and FIGR on glyphs at the quick budget), and
        # new real photos score the protocol's copy_quantile (0.05 in every shipped protocol) by construction.
        MetricSpec("copy_rate", "novelty", "target", True, "share of generated images closer to a conditioning "
                   "image than 95% of held-out real images are (real images: about 0.05; 0: off the data)",
                   order=21, needs=frozenset({"features", "conditioning"}), target=0.05),
    ),
    compute=compute,
))
