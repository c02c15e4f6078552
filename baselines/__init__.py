"""Baselines and reference rows, importable as ``fsgen_bench.baselines`` (see pyproject's package-dir)."""
