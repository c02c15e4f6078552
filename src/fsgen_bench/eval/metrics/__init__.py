"""The metric registry and every registered metric (one module per family).

``METRICS`` (name -> :class:`~.registry.MetricSpec`) is what the leaderboard renders from; ``FAMILIES``
(name -> :class:`~.registry.MetricFamily`) is what the harness computes from. Importing this package
registers them all, in column order.
"""

from __future__ import annotations

from fsgen_bench.eval.metrics import class_fidelity, diversity, fewshot, frechet, lpips, novelty, prdc  # noqa: F401
from fsgen_bench.eval.metrics.registry import (FAMILIES, METRICS, QUESTION_TEXT, QUESTIONS, MetricFamily, MetricSpec,
                                               Value, spec_of)

__all__ = ["FAMILIES", "METRICS", "QUESTIONS", "QUESTION_TEXT", "MetricFamily", "MetricSpec", "Value", "spec_of"]
