"""The GPU benchmark script runs end to end (on CPU with the smoke preset here; on a GPU with `-m gpu`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_script_on_cpu(tmp_path, monkeypatch):
    bench = load_bench()
    every = bench.cases
    # The 32-episode 128 px case only repeats the 8-episode one at 4x the CPU cost.
    monkeypatch.setattr(bench, "cases", lambda methods: [c for c in every(methods) if c["name"] != "f2gan-128px-b32"])
    assert bench.main(["--methods", "f2gan", "--preset", "smoke", "--device", "cpu", "--steps", "2", "--warmup", "1",
                       "--no-eval", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert {r["case"] for r in train} == {"f2gan-paper", "f2gan-128px-b8"}
    for r in train:
        assert "error" not in r, r
        assert r["flops_per_iter"] > 0 and r["ms_per_iter"] > 0 and r["device"].startswith("cpu")


def test_peak_table():
    bench = load_bench()
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.0
    assert bench.peak_tflops("NVIDIA H200", None) == 989.0
    assert bench.peak_tflops("Some GPU", 100.0) == 100.0
    assert bench.peak_tflops("Some GPU", None) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_benchmark_on_gpu(tmp_path):
    bench = load_bench()
    assert bench.main(["--methods", "f2gan", "--steps", "10", "--out", str(tmp_path)]) == 0
