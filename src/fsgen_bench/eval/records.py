"""MetricRecord: one JSON line per (run, metric), appended atomically to ``<results>/records/*.jsonl``.

A record says exactly how its number was computed: the protocol id, the evaluation resolution, the metric, the
backbone that produced the features, the setting (e.g. ``allway3shot``), the method's variant, whether the row
is a reference row, the seed, a hash of the resolved config, the code version and the hardware. The
leaderboard never mixes protocols, resolutions or backbones in one column.

Records written before ``resolution``, ``variant`` and ``reference`` existed still load: resolution and
variant are then None, and ``reference`` is True exactly for the two reference rows of that time
(``copy-support`` and ``noise``, which were the only methods without training then).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import fsgen_bench
from fsgen_bench.errors import UserError

#: The reference rows of records that predate the ``reference`` field (see the module docstring).
_LEGACY_REFERENCE_METHODS = ("copy-support", "noise")

REQUIRED_FIELDS = (
    "run_id", "method", "dataset", "protocol", "metric", "backbone", "setting", "value", "ci95", "seed",
    "config_hash", "code_version", "hardware", "wall_time_s", "timestamp", "resolution", "variant", "reference",
)


@dataclass
class MetricRecord:
    run_id: str
    method: str
    dataset: str
    protocol: str          # e.g. "clean@v2"
    metric: str            # a registered metric (fsgen_bench.eval.metrics): fid | kid | novelty | ...
    backbone: str          # inception | domain | alex | vgg | ...
    value: float
    ci95: float | None = None   # half-width of a 95% interval where there is one; extra["ci95_of"] says of what
    setting: str = ""      # e.g. "allway3shot", "10real"; "" when the metric has a single setting
    seed: int = 0
    config_hash: str = ""
    code_version: str = ""
    hardware: str = ""
    wall_time_s: float = 0.0
    timestamp: float = field(default_factory=time.time)
    preset: str | None = None
    resolution: int | None = None   # evaluation side in px (None: a record from before the field existed)
    variant: str | None = None      # the method's variant (None: the method has none)
    reference: bool = False         # a reference row (copy-support, noise, real): shown, never ranked
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
        fields = {k: v for k, v in data.items() if k in names}
        if "reference" not in data:
            fields["reference"] = data.get("method") in _LEGACY_REFERENCE_METHODS
        missing = [k for k in ("run_id", "method", "dataset", "protocol", "metric", "backbone", "value") if k not in data]
        if missing:
            raise TypeError(f"record lacks {', '.join(missing)}")
        if not isinstance(data["value"], (int, float)) or isinstance(data["value"], bool) \
                or not math.isfinite(float(data["value"])):
            raise TypeError(f"record value {data['value']!r} is not a finite number")
        return cls(**fields)


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
    """Append all lines in one write under an exclusive lock: a reader never sees half a record.

    A trailing partial line left by an append that crashed is cut off first (it holds no complete record), so
    the new lines never glue onto it.
    """
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(r.to_json() + "\n" for r in records).encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _drop_partial_tail(fd)
            written = 0
            while written < len(payload):
                written += os.write(fd, payload[written:])
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _drop_partial_tail(fd: int) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - (1 << 20))
    tail = os.pread(fd, size - start, start)
    cut = tail.rfind(b"\n")
    os.ftruncate(fd, start + cut + 1 if cut >= 0 else (0 if start == 0 else size))


def read_records(directory: Path) -> list[MetricRecord]:
    """Every record under ``directory/*.jsonl``.

    A trailing partial line (a crash while appending: the file does not end with a newline) is skipped
    silently. Any other line that is not a record is lost data: a UserError names the file and the line.
    """
    out: list[MetricRecord] = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        text = path.read_text()
        lines = text.split("\n")
        # With a final newline the split ends in "": every line is complete. Otherwise the last one is partial.
        partial = lines.pop() if lines else ""
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(MetricRecord.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
                raise UserError(
                    f"{path}:{number}: damaged record ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                    f"repair or delete that line (records are append-only JSON lines)"
                ) from None
        if partial.strip():
            try:   # a complete record that only lacks its newline is still a record
                out.append(MetricRecord.from_dict(json.loads(partial)))
            except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
                pass   # the trailing partial line of an interrupted append
    return out


def records_path(results_dir: Path, dataset: str, protocol_id: str) -> Path:
    safe = f"{dataset}__{protocol_id}".replace("/", "_").replace(":", "_").replace("@", "_")
    return Path(results_dir) / "records" / f"{safe}.jsonl"
