"""What every metric family receives: the gathered, canonically ordered features of one evaluation.

Every tensor is on the CPU and complete on every rank (the harness gathers across ranks first), so a family
is a plain function of its inputs: N ranks give one rank's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fsgen_bench.data.evalplan import ClassPlan
from fsgen_bench.eval.distributed import DistContext
from fsgen_bench.eval.protocol_spec import Protocol


@dataclass
class MetricInputs:
    protocol: Protocol
    plans: dict[int, ClassPlan]                       # per class id: the pools this evaluation used
    class_ids: list[int]                              # sorted unseen class ids
    resolution: int                                   # evaluation side in px (what every image was brought to)
    backbones: list[str]                              # feature backbones reported (FID, novelty, ... columns)
    real: dict[str, dict[int, torch.Tensor]]          # backbone -> class -> [R, D], rows in ClassPlan.real order
    heldout: dict[str, dict[int, torch.Tensor]]       # backbone -> class -> [H, D], ClassPlan.heldout() order
    cond: dict[str, dict[int, torch.Tensor]]          # backbone -> class -> [P, D], ClassPlan.cond order
    gen: dict[str, dict[int, torch.Tensor]]           # backbone -> class -> [G, D] generated images
    gen_support: dict[int, torch.Tensor]              # class -> [G] support set of each generated row (-1: all)
    fewshot_gen: dict[int, torch.Tensor] = field(default_factory=dict)            # class -> [T, M, D] (domain)
    lowdata_gen: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)  # n -> class -> [M, D]
    lowdata_ns: list[int] = field(default_factory=list)
    per_class: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)  # family -> class -> value
    family_state: dict[str, Any] = field(default_factory=dict)                   # family -> prepared state
    backbone_extra: dict[str, dict] = field(default_factory=dict)                # backbone -> record metadata
    plan_seed: int = 0
    ctx: DistContext = field(default_factory=DistContext)

    def pooled(self, table: dict[int, torch.Tensor]) -> torch.Tensor:
        """Rows of every class, concatenated in class order."""
        return torch.cat([table[c] for c in self.class_ids])

    def rng(self, *purpose: int) -> np.random.Generator:
        """A generator seeded from (plan seed, protocol seed, purpose): identical on every rank."""
        return np.random.default_rng([self.plan_seed, self.protocol.seed, *purpose])
