"""Datasets (registered by name when :mod:`fsgen_bench.data.readers` is imported, which this package does) and
the episodic DataModule."""

from fsgen_bench.data import readers  # noqa: F401  (registers every reader in DATASETS)
from fsgen_bench.data.source import DATASETS, ClassImages, DatasetInfo, DatasetSpec, load_dataset

__all__ = ["DATASETS", "ClassImages", "DatasetInfo", "DatasetSpec", "load_dataset"]
