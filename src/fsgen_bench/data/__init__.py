"""Datasets (registered by name on import) and the episodic DataModule."""

from fsgen_bench.data.source import DATASETS, ClassImages, DatasetInfo, DatasetSpec, load_dataset

# Importing these modules registers their readers in DATASETS.
from fsgen_bench.data import glyphs as _glyphs  # noqa: E402,F401
from fsgen_bench.data import readers as _readers  # noqa: E402,F401

__all__ = ["DATASETS", "ClassImages", "DatasetInfo", "DatasetSpec", "load_dataset"]
