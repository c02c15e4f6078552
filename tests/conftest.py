"""Shared test setup: no network logging, a private cache, small thread counts."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# One thread: the tests' tensors are small, and on a busy 2-core machine extra threads cost 10-25x in contention.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own cache dir unless it sets one; wandb is never online in tests."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("FSGEN_CACHE", str(tmp_path_factory.getbasetemp() / "fsgen-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch-home"))
    yield
