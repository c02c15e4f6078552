"""One progress-bar helper for every long loop (suite cells, evaluation, feature extraction).

Bars are for people watching a terminal. In CI logs or when stderr is redirected to a file they only add
noise (a line per refresh), so they switch themselves off there. Everything else is plain tqdm: the ETA
comes from tqdm's smoothed rate.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """True when a person is likely watching: stderr is a terminal and the CI variable is not set."""
    if os.environ.get("CI"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream (pytest capture, daemons)
        return False


def progress(iterable: Iterable[T] | None = None, desc: str | None = None, total: int | None = None, **kwargs) -> tqdm:
    """A tqdm over ``iterable`` that is disabled in CI and when stderr is not a terminal.

    Extra keyword arguments go to tqdm (e.g. ``initial=`` for work already done, ``unit="cell"``); pass
    ``disable=`` explicitly to override the automatic choice.
    """
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, total=total, **kwargs)
