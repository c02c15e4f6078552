"""Scale and fault tolerance, end to end through the CLI in subprocesses (as a user runs it).

* ddp: a short F2GAN training run under DDP (2 gloo processes on CPU) completes, and its evaluation equals the
  one-process evaluation of the same checkpoint.
* slow: a run killed with SIGKILL mid-training resumes from its last checkpoint and finishes; nothing is left
  half-written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import make_npy

CLI = [sys.executable, "-m", "fsgen_bench.cli"]


def small_dataset(tmp_path: Path) -> Path:
    # 10 seen + 10 unseen classes of 24 images: enough for 10-way few-shot and the clean protocol's pools.
    return make_npy(tmp_path / "blobs.npy", classes=20, images=24, size=32)


def cli(args, *, timeout=600, check=True, env=None):
    proc = subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def records_of(results: Path) -> dict:
    out = {}
    for path in (results / "records").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out[(r["metric"], r["backbone"], r["setting"])] = r["value"]
    return out


COMMON = ["--set", "data.num_seen_classes=10", "--set", "eval.backbones=[domain]", "--preset", "smoke"]


@pytest.mark.ddp
def test_ddp_training_then_eval_matches_one_process(tmp_path):
    data = small_dataset(tmp_path)
    ddp_results = tmp_path / "ddp"
    cli(["run", "--method", "f2gan", "--dataset", f"npy:{data}", *COMMON, "--results", str(ddp_results),
         "--devices", "2", "--accelerator", "cpu", "--strategy", "ddp"])
    runs = list((ddp_results / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "DONE").exists()
    ckpt = runs[0] / "checkpoints" / "last.ckpt"
    one_results = tmp_path / "one"
    cli(["eval", "--method", "f2gan", "--dataset", f"npy:{data}", *COMMON, "--results", str(one_results),
         "--ckpt", str(ckpt), "--accelerator", "cpu"])
    ddp_vals, one_vals = records_of(ddp_results), records_of(one_results)
    assert ddp_vals.keys() == one_vals.keys() and ddp_vals
    for key, value in ddp_vals.items():
        assert value == pytest.approx(one_vals[key], rel=1e-4, abs=1e-6), key


@pytest.mark.slow
def test_sigkill_mid_training_resumes(tmp_path):
    data = small_dataset(tmp_path)
    results = tmp_path / "results"
    args = ["run", "--method", "f2gan", "--dataset", f"npy:{data}", *COMMON, "--results", str(results),
            "--set", "train.max_epochs=6", "--set", "data.episodes_per_epoch=32", "--accelerator", "cpu"]
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt_dir = None
    deadline = time.time() + 300
    while time.time() < deadline:
        found = list(results.glob("runs/*/checkpoints/epoch001.ckpt"))
        if found:
            ckpt_dir = found[0].parent
            break
        if proc.poll() is not None:
            raise AssertionError("training ended before it could be killed:\n" + proc.stdout.read()[-3000:])
        time.sleep(0.2)
    assert ckpt_dir is not None, "no checkpoint appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_step = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert killed_step > 0
    assert not list(results.glob("records/*.jsonl")), "no record may exist before the run finished"

    again = cli(args)
    assert "resuming" in again.stdout
    final = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["epoch"] == 5 and final["global_step"] > killed_step
    # every checkpoint file is complete (loads), no temp file is left, every record line parses
    for path in ckpt_dir.iterdir():
        assert not path.name.endswith(".tmp"), path
        torch.load(path, map_location="cpu", weights_only=False)
    lines = [line for p in results.glob("records/*.jsonl") for line in p.read_text().splitlines()]
    assert lines and all(json.loads(line)["method"] == "f2gan" for line in lines)
    assert (ckpt_dir.parent / "DONE").exists()
