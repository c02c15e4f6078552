"""Shared test setup: no network logging, a private cache, small thread counts."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own cache dir unless it sets one; wandb is never online in tests."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("FSGEN_CACHE", str(tmp_path_factory.getbasetemp() / "fsgen-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch-home"))
    yield
