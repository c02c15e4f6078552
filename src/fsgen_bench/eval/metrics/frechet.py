"""FID and KID between the generated and the real set of every feature backbone (all classes pooled)."""

from __future__ import annotations

import math

from fsgen_bench.eval.fid import frechet_distance, kernel_distance
from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.metrics.registry import MetricFamily, MetricSpec, Value, register

#: What KID's interval is an interval of (the record says it).
KID_CI_OF = ("the mean over the random subsets: 1.96 x std of the subset estimates / sqrt(subsets). The "
             "subsets are independent draws from these images, so this is the Monte-Carlo error of KID for these "
             "exact image sets; it does not cover drawing other images or another seed (the seed spread does)")


def compute(inp: MetricInputs) -> list[Value]:
    out = []
    for b in inp.backbones:
        real, fake = inp.pooled(inp.real[b]), inp.pooled(inp.gen[b])
        extra = {"real_images": int(real.shape[0]), "generated_images": int(fake.shape[0]), **inp.backbone_extra[b]}
        out.append(Value("fid", b, frechet_distance(real, fake), extra=extra))
        kid = kernel_distance(real, fake, subset_size=inp.protocol.kid_subset_size, subsets=inp.protocol.kid_subsets,
                              seed=inp.protocol.seed)
        out.append(Value("kid", b, kid.mean, ci95=1.96 * kid.std / math.sqrt(kid.subsets),
                         extra={**extra, "kid_std": kid.std, "kid_subset_size": kid.subset_size,
                                "kid_subsets": kid.subsets, "ci95_of": KID_CI_OF}))
    return out


FAMILY = register(MetricFamily(
    name="frechet",
    specs=(
        MetricSpec("fid", "fidelity", "lower", True, "Fréchet distance between features of generated and real "
                   "unseen-class images, all classes pooled", order=10),
        MetricSpec("kid", "fidelity", "lower", True, "kernel (MMD, cubic polynomial) distance between the same sets; "
                   "unbiased at small sample sizes", order=11),
    ),
    compute=compute,
))
