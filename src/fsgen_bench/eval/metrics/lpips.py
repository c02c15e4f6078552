"""LPIPS diversity: the mean LPIPS distance between images generated for the same class.

Computed while the images are generated (a per-class hook: pixels are never kept for all classes), with the
protocol's backbone, resolution, resize, input range and pairs (see :mod:`fsgen_bench.eval.diversity`). Skipped,
with a note, when the backbone's ImageNet weights are not found; ``diversity/domain`` is always reported.
Ranked higher-is-better, the peers' convention for this number; ``diversity_ratio`` says whether it exceeds
what real images of the class show.
"""

from __future__ import annotations

import numpy as np
import torch

from fsgen_bench.eval.diversity import LpipsDistance, mean_over_pairs
from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.metrics.registry import MetricFamily, MetricSpec, Value, register
from fsgen_bench.eval.weights import WeightsNotFound, find_lpips_backbone_weights


def prepare(protocol, eval_cfg: dict, device: torch.device):
    try:
        weights = find_lpips_backbone_weights(protocol.lpips_net, eval_cfg.get("lpips_backbone_weights"))
    except WeightsNotFound as exc:
        return None, f"lpips/{protocol.lpips_net} skipped (diversity/domain is reported instead): {exc}"
    model = LpipsDistance(protocol.lpips_net, weights, device=device, size=protocol.lpips_size,
                          resize=protocol.lpips_resize, input_range=protocol.lpips_range)
    return model, None


def per_class(model: LpipsDistance, images_u8: torch.Tensor, protocol, batch_size: int) -> torch.Tensor:
    d = model.pairwise(images_u8, batch_size)
    return torch.tensor([mean_over_pairs(d, protocol.lpips_pairs)], dtype=torch.float64)


def compute(inp: MetricInputs) -> list[Value]:
    model = inp.family_state.get("lpips")
    values = inp.per_class.get("lpips")
    if model is None or not values:
        return []
    p = inp.protocol
    side = model.input_side(inp.resolution)
    mean = float(np.nanmean([float(values[c][0]) for c in inp.class_ids]))
    return [Value("lpips", p.lpips_net, mean, extra={
        "pairs": p.lpips_pairs, "size": p.lpips_size, "input_side": side, "resize": p.lpips_resize,
        "input_range": list(p.lpips_range), "weights": str(model.weights.path),
        "weights_sha256": model.weights.sha256_prefix()})]


FAMILY = register(MetricFamily(
    name="lpips",
    specs=(MetricSpec("lpips", "coverage", "higher", True, "mean LPIPS distance between images generated for "
                      "the same class (diversity; the peers' convention: higher is better)", order=32,
                      needs=frozenset({"images"})),),
    compute=compute, prepare=prepare, per_class=per_class,
))
