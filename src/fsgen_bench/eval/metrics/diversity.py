"""Diversity of the images generated for a class, alone and as a ratio to the real images' own diversity.

``diversity/domain``: the mean over classes of the mean pairwise cosine distance (1 - cos) of the domain
backbone's features of a class's generated images (pairs by the protocol's rule). On its own it rewards
images that are off the data (noise is "diverse"), so it is shown but not ranked.
``diversity_ratio/domain``: that mean divided by the same mean for the held-out real images of each class
(the real set's diversity, pairs by the same rule). 1 is the real images' level; below, the generator covers
less of the class than real images do; above, its images vary more than real images of the class.
"""

from __future__ import annotations

import numpy as np

from fsgen_bench.eval.diversity import cosine_distances, mean_over_pairs
from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.metrics.registry import MetricFamily, MetricSpec, Value, register


def compute(inp: MetricInputs) -> list[Value]:
    rule = inp.protocol.lpips_pairs
    gen = np.array([mean_over_pairs(cosine_distances(inp.gen["domain"][c]), rule) for c in inp.class_ids])
    real = np.array([mean_over_pairs(cosine_distances(inp.heldout["domain"][c]), rule) for c in inp.class_ids])
    gen_mean, real_mean = float(np.nanmean(gen)), float(np.nanmean(real))
    extra = {"pairs": rule, "distance": "1 - cosine of domain features", "real_pool_diversity": real_mean}
    out = [Value("diversity", "domain", gen_mean, extra=extra)]
    if np.isfinite(real_mean) and real_mean > 0:
        out.append(Value("diversity_ratio", "domain", gen_mean / real_mean, extra=extra))
    return out


FAMILY = register(MetricFamily(
    name="diversity",
    specs=(
        MetricSpec("diversity_ratio", "coverage", "target", True, "diversity of the generated images over that "
                   "of held-out real images of the same classes (1: as varied as real images)", order=30,
                   target=1.0),
        MetricSpec("diversity", "coverage", "higher", False, "mean feature-space distance between images "
                   "generated for the same class (not ranked: off-data images score high)", order=31),
    ),
    compute=compute,
))
