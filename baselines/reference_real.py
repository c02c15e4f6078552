"""The ``real`` reference row: held-out real images of each class, scored as if they were generated.

It anchors every column with what new real photographs of the class score: the ceiling of class fidelity
and few-shot gain, novelty about 1, copy rate about the novelty quantile, diversity ratio about 1, and the
real-vs-real floor of FID/KID at this sample size.

The evaluation harness recognises ``scores_held_out_real`` and never calls ``generate``: for each unseen class
it halves the class's held-out images (never a conditioning image; ``ClassPlan.reference_split``), scores the
first half as the "generated" images and lets the second half play the real set. So no image is compared with
itself, and its FID/KID compare two disjoint halves (fewer images than a method's 128 per class: read them as
the real-vs-real floor, not as a competitor). Outside the harness (the contract test, ``fsgen-bench sample``)
``generate`` returns the conditioning images, like ``copy-support``: there is no held-out image to return
without the evaluation plan.
"""

from __future__ import annotations

from fsgen_bench.baselines.reference import CopySupport


class HeldOutReal(CopySupport):
    """Needs no training; ``generate`` (outside the harness only) is copy-support's."""

    scores_held_out_real = True
