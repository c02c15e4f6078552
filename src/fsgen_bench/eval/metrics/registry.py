"""The metric registry: every metric the harness computes and the leaderboard shows is registered here once.

A :class:`MetricSpec` says what a metric is: its name, which of the reader's questions it answers, its
direction (lower / higher is better, or closest to a target value), whether it is ranked, a one-line
description, its column order and what it needs from the harness. A :class:`MetricFamily` is the unit that
computes: one function that turns the gathered :class:`~fsgen_bench.eval.metrics.inputs.MetricInputs` into
:class:`Value` s for one or more metrics (FID and KID share features; few-shot accuracies share episodes),
plus, for a metric that needs the generated pixels (LPIPS), a per-class hook run while images are generated.

The harness asks the registry what to generate and extract (``needs``) and calls each family once; the
leaderboard reads order, direction, ranking and descriptions from the same specs. Nothing else lists metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

#: The questions a table answers, in column order.
QUESTIONS = ("fidelity", "novelty", "coverage", "downstream")
QUESTION_TEXT = {
    "fidelity": "are the images of the right class",
    "novelty": "are they new (not copies of the conditioning images)",
    "coverage": "do they cover the class",
    "downstream": "what are they worth to a classifier",
}

#: What a metric may need from the harness.
NEEDS = frozenset({
    "features",       # per-backbone features of generated and real images
    "conditioning",   # features of each class's conditional pool
    "images",         # the generated pixels of each class (streamed per class, never all kept)
    "fewshot",        # images generated from the few-shot shot sets
    "lowdata",        # images generated from the low-data training images
})


@dataclass(frozen=True)
class MetricSpec:
    name: str
    question: str
    direction: str                 # "lower" | "higher" | "target" (closest to `target` is best)
    ranked: bool                   # False: shown, never bold (e.g. accuracy with real images only)
    description: str               # one line, for the legend
    order: int                     # column order within the table (then backbone, then setting)
    needs: frozenset[str] = frozenset({"features"})
    target: float | None = None

    def __post_init__(self) -> None:
        if self.question not in QUESTIONS:
            raise ValueError(f"{self.name}: question {self.question!r} is not one of {QUESTIONS}")
        if self.direction not in ("lower", "higher", "target") or (self.direction == "target") != (self.target is not None):
            raise ValueError(f"{self.name}: direction {self.direction!r} / target {self.target!r}")
        if not self.needs <= NEEDS:
            raise ValueError(f"{self.name}: unknown needs {sorted(self.needs - NEEDS)}")

    @property
    def arrow(self) -> str:
        if self.direction == "target":
            return f"→{self.target:g}"
        return "↓" if self.direction == "lower" else "↑"

    @property
    def direction_text(self) -> str:
        if self.direction == "target":
            return f"closest to {self.target:g} is best"
        return f"{self.direction} is better"

    def badness(self, value: float) -> float:
        """Smaller is better: what ranking compares (|log(value / target)| for a target direction)."""
        if not math.isfinite(value):
            return math.inf
        if self.direction == "lower":
            return value
        if self.direction == "higher":
            return -value
        return abs(math.log(value / self.target)) if value > 0 else math.inf


@dataclass(frozen=True)
class Value:
    """One number a family computed: becomes one MetricRecord."""

    metric: str
    backbone: str
    value: float
    setting: str = ""
    ci95: float | None = None      # half-width of a 95% interval; `extra["ci95_of"]` says of what
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricFamily:
    name: str
    specs: tuple[MetricSpec, ...]
    compute: Callable[..., list[Value]]                 # (MetricInputs) -> values
    # For pixel metrics: prepare(protocol, eval_cfg, device) -> (state or None, note when skipped), then
    # per_class(state, images_u8 [G, C, H, W], protocol) -> Tensor, gathered into inputs.per_class[name].
    prepare: Callable[..., tuple[Any, str | None]] | None = None
    per_class: Callable[..., Any] | None = None

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(s.needs for s in self.specs))


FAMILIES: dict[str, MetricFamily] = {}
METRICS: dict[str, MetricSpec] = {}


def register(family: MetricFamily) -> MetricFamily:
    """Register a family and its metrics; a metric name is registered once."""
    if family.name in FAMILIES:
        raise ValueError(f"metric family {family.name!r} registered twice")
    for spec in family.specs:
        if spec.name in METRICS:
            raise ValueError(f"metric {spec.name!r} registered twice")
    FAMILIES[family.name] = family
    for spec in family.specs:
        METRICS[spec.name] = spec
    return family


def spec_of(name: str) -> MetricSpec | None:
    return METRICS.get(name)
