"""MetricRecord: one JSON line per (run, metric), appended atomically to ``<results>/records/*.jsonl``.

A record says exactly how its number was computed: the protocol id, the metric, the backbone that produced
the features, the setting (e.g. ``5way5shot``), the seed, a hash of the resolved config, the code version and
the hardware. The leaderboard never mixes protocols or backbones in one column.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import fsgen_bench

REQUIRED_FIELDS = (
    "run_id", "method", "dataset", "protocol", "metric", "backbone", "setting", "value", "ci95", "seed",
    "config_hash", "code_version", "hardware", "wall_time_s", "timestamp",
)


@dataclass
class MetricRecord:
    run_id: str
    method: str
    dataset: str
    protocol: str          # e.g. "clean@v1"
    metric: str            # fid | kid | lpips | diversity | fewshot_acc_real | fewshot_acc_gen | fewshot_gain | ...
    backbone: str          # inception | domain | alex | vgg | ...
    value: float
    ci95: float | None = None   # half-width of a 95% interval where there is one (KID: std over subsets x 1.96)
    setting: str = ""      # e.g. "5way5shot", "10real"; "" when the metric has a single setting
    seed: int = 0
    config_hash: str = ""
    code_version: str = ""
    hardware: str = ""
    wall_time_s: float = 0.0
    timestamp: float = field(default_factory=time.time)
    preset: str | None = None
    extra: dict = field(default_factory=dict)   # e.g. sample counts, backbone validation accuracy

    @property
    def key(self) -> str:
        """The column name in a leaderboard: metric/backbone[/setting]."""
        return "/".join(p for p in (self.metric, self.backbone, self.setting) if p)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "MetricRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def code_version() -> str:
    """Package version plus the git commit of the checkout (and '+dirty' when it has local changes)."""
    version = fsgen_bench.__version__
    repo = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        if sha:
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return f"{version}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu:{platform.machine()}x{os.cpu_count()}"


def append_records(records: list[MetricRecord], path: Path) -> None:
    """Append all lines in one write under an exclusive lock: a reader never sees half a record."""
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(r.to_json() + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            written = 0
            while written < len(payload):
                written += os.write(fd, payload[written:])
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_records(directory: Path) -> list[MetricRecord]:
    """Every complete record under ``directory`` (a trailing partial line, e.g. after a crash, is skipped)."""
    out: list[MetricRecord] = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(MetricRecord.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
    return out


def records_path(results_dir: Path, dataset: str, protocol_id: str) -> Path:
    safe = f"{dataset}__{protocol_id}".replace("/", "_").replace(":", "_").replace("@", "_")
    return Path(results_dir) / "records" / f"{safe}.jsonl"
