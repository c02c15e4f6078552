"""Class fidelity: are the generated images recognisably of the class they were conditioned on?

A nearest-prototype classifier over all unseen classes: each class's prototype is the mean of the
L2-normalised features of its held-out real images (never a conditioning image); a generated image is
assigned to the prototype with the highest cosine similarity. ``class_fidelity/<backbone>`` is the share of
generated images assigned to the class they were conditioned on, averaged over classes, with a 95% interval
1.96 x std / sqrt(classes) of the per-class shares. Held-out real images reach the ceiling (the ``real``
reference row scores one half of them against prototypes of the other half); uniform noise lands near 1/N.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.metrics.registry import MetricFamily, MetricSpec, Value, register


def prototype_accuracy(prototypes: torch.Tensor, samples: dict[int, torch.Tensor], order: list[int]) -> np.ndarray:
    """Per class (in ``order``): the share of its samples whose nearest prototype (cosine) is its own."""
    protos = F.normalize(prototypes.double(), dim=1)
    shares = []
    for i, c in enumerate(order):
        pred = (F.normalize(samples[c].double(), dim=1) @ protos.T).argmax(dim=1)
        shares.append(float((pred == i).double().mean()))
    return np.asarray(shares)


def compute(inp: MetricInputs) -> list[Value]:
    out = []
    for b in inp.backbones:
        protos = torch.stack([F.normalize(inp.heldout[b][c].double(), dim=1).mean(0) for c in inp.class_ids])
        shares = prototype_accuracy(protos, inp.gen[b], inp.class_ids)
        ci = 1.96 * shares.std(ddof=1) / math.sqrt(len(shares)) if len(shares) > 1 else None
        out.append(Value("class_fidelity", b, float(shares.mean()), ci95=ci,
                         extra={"classes": len(shares), "chance": 1.0 / len(shares),
                                "ci95_of": "the mean over classes of the per-class share (1.96 x std / sqrt(classes))"}))
    return out


FAMILY = register(MetricFamily(
    name="class_fidelity",
    specs=(MetricSpec("class_fidelity", "fidelity", "higher", True, "share of generated images that a nearest-"
                      "prototype classifier over all unseen classes assigns to their conditioning class", order=12),),
    compute=compute,
))
