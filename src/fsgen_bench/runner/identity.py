"""A run's identity: its id, its folder, its DONE marker, its records file, and whether this process writes them.

Everything else (the run and eval steps, the suite, the loggers, the CLI) asks this module and nothing here
imports the rest of the runner, so it can be imported from anywhere without a cycle.

    <results>/runs/<run_id>/                       config.yaml, eval_plan.json, checkpoints/, logs, figures
    <results>/runs/<run_id>/DONE                   written once, atomically, after the records were appended:
                                                   a folder without it is an unfinished run
    <results>/records/<dataset>__<protocol>.jsonl  the records (fsgen_bench.eval.records.records_path names it)

A run id is ``<method>-<dataset slug>-<preset or 'default'>-s<seed>[-<hash of the overrides>]``, so a suite
cell and ``fsgen-bench run`` of the same configuration name the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from fsgen_bench.atomic import write_text_atomic
from fsgen_bench.errors import UserError
from fsgen_bench.eval.records import records_path

DONE_MARKER = "DONE"


# ------------------------------------------------------------------------------------------------ names

def dataset_slug(dataset: str) -> str:
    """The dataset part of a run id: ``glyphs`` -> ``glyphs``; ``npy:/data/x.npy`` -> ``npy-x``;
    ``folder:/data/faces/`` -> ``folder-faces``."""
    if ":" not in dataset:
        return dataset
    kind, _, path = dataset.partition(":")
    stem = Path(path.rstrip("/")).name
    if kind == "npy" and stem.endswith(".npy"):
        stem = stem[: -len(".npy")]
    return f"{kind}-{stem}"


def overrides_hash(overrides: Sequence[str]) -> str | None:
    """8 hex characters of sha256 over the overrides joined by newlines, in order; None when there are none.

    Order is kept because it is what the CLI does (``--config`` files, then ``--set`` flags, then
    ``--protocol``): the same command line and the same suite cell name the same folder.
    """
    if not overrides:
        return None
    return hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]


def cell_run_id(method: str, dataset: str, preset: str | None, seed: int, overrides: Sequence[str] = ()) -> str:
    """``<method>-<dataset slug>-<preset or 'default'>-s<seed>[-<overrides hash>]``."""
    name = f"{method}-{dataset_slug(dataset)}-{preset or 'default'}-s{int(seed)}"
    digest = overrides_hash(overrides)
    return f"{name}-{digest}" if digest else name


def dataset_label(cfg: dict) -> str:
    """The dataset's name in records, tables and logger groups: the registered name (``data.name``), or for
    ``npy:PATH`` / ``folder:PATH`` the slug of the path, so that two files never share a column."""
    run = cfg.get("run") or {}
    dataset = str(run.get("dataset") or "")
    if ":" in dataset:
        return dataset_slug(dataset)
    return str((cfg.get("data") or {}).get("name") or dataset or "data")


# ------------------------------------------------------------------------------------------------ the run

@dataclass(frozen=True)
class RunIdentity:
    run_id: str
    results_dir: Path
    dataset: str              # the label records carry (dataset_label)

    @classmethod
    def of(cls, cfg: dict) -> "RunIdentity":
        """The identity of the run a resolved config describes (``run.name``, else the cell run id)."""
        run = cfg["run"]
        run_id = run.get("name") or cell_run_id(run["method"], run["dataset"], run.get("preset"), run["seed"])
        return cls(run_id=str(run_id), results_dir=Path(run["results_dir"]), dataset=dataset_label(cfg))

    @property
    def run_dir(self) -> Path:
        return self.results_dir / "runs" / self.run_id

    @property
    def done_path(self) -> Path:
        return self.run_dir / DONE_MARKER

    @property
    def records_dir(self) -> Path:
        return self.results_dir / "records"

    def records_path(self, protocol_id: str) -> Path:
        return records_path(self.results_dir, self.dataset, protocol_id)

    def is_done(self) -> bool:
        return self.done_path.is_file()

    def write_done(self, info: dict) -> Path:
        """The DONE marker, written atomically: a crash leaves no marker, never half of one."""
        return write_text_atomic(self.done_path, json.dumps(info, sort_keys=True, indent=1) + "\n")


def read_done(path: Path) -> dict:
    """The content of a DONE marker ({} for a marker an older version wrote without content)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------ processes

def is_global_zero() -> bool:
    """Whether this process writes the run's files: rank 0 of the process group once there is one, else the
    launcher's environment (Lightning and torchrun set RANK, LOCAL_RANK and NODE_RANK in the other ranks)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return all(int(os.environ.get(name) or 0) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def is_local_zero() -> bool:
    """Whether this process is the first on its machine (LOCAL_RANK 0 or unset): the one that fills the
    machine's caches (weight files)."""
    return int(os.environ.get("LOCAL_RANK") or 0) == 0


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ------------------------------------------------------------------------------------------------ folders

def check_results_dir(results_dir: Path) -> None:
    """Fail before anything is written when the results folder cannot be created or written.

    The folder's nearest existing ancestor must be a folder in which a folder can really be made: a probe
    folder is created there and removed at once. Asking ``os.access`` is not enough: it says yes to root for
    places such as /proc where nothing can be created.
    """
    results_dir = Path(results_dir)
    probe_dir = results_dir
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    fix = "pass --results DIR with a folder you can write to"
    if not probe_dir.is_dir():
        raise UserError(f"results folder {results_dir} is not writable: {probe_dir} is a file, not a folder; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".fsgen-probe-", dir=probe_dir))
    except OSError as exc:
        raise UserError(f"results folder {results_dir} is not writable (checked {probe_dir}: {exc.strerror}); "
                        f"{fix}") from None


def make_dir(path: Path) -> Path:
    """``mkdir -p`` whose failure (a full disk, a name too long) is a UserError naming the folder."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {path} ({exc.strerror}); pass --results DIR with a folder you "
                        f"can write to") from None
    return Path(path)
