"""Benchmark suites: a YAML grid of methods x datasets x presets x seeds, run cell by cell, resumable.

A suite file (configs/suites/*.yaml)::

    name: glyphs-quick             # optional; the file's stem by default
    methods: [f2gan, dagan, copy-support]
    datasets: [glyphs]             # registered names, npy:PATH or folder:PATH
    presets: [quick]               # optional; default: no preset
    seeds: [0, 1, 2]               # optional; default: [0]
    protocol: clean                # optional; default: the configs' eval.protocol
    set: [train.max_epochs=2]      # optional; --set overrides applied to every cell
    results_dir: results           # optional; relative to the working directory

Every cell is one ``run_experiment`` call with a deterministic run id (``cell_run_id``), so the suite and a
plain ``fsgen-bench run`` of the same cell share one run folder. A cell is finished when its folder holds the
``DONE`` marker, written atomically after run_experiment returned (and so after its records were appended);
a rerun skips finished cells and restarts the others, which resume from their own checkpoints. ``shard=(i, n)``
runs cells i, i+n, i+2n, ... (0-based), so n processes or machines can split one suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fsgen_bench.errors import UserError

SUITE_KEYS = ("name", "description", "methods", "datasets", "presets", "seeds", "protocol", "set", "results_dir")
DONE_MARKER = "DONE"


# ----------------------------------------------------------------------------------------------- run ids

def dataset_slug(dataset: str) -> str:
    """The dataset part of a run id: ``glyphs`` -> ``glyphs``; ``npy:/data/x.npy`` -> ``npy-x``;
    ``folder:/data/faces/`` -> ``folder-faces`` (the same rule as fsgen_bench.run.dataset_slug)."""
    if ":" not in dataset:
        return dataset
    kind, _, path = dataset.partition(":")
    stem = Path(path.rstrip("/")).name
    if kind == "npy" and stem.endswith(".npy"):
        stem = stem[: -len(".npy")]
    return f"{kind}-{stem}"


def check_overrides(overrides: tuple[str, ...] | list[str]) -> list[str]:
    """Validate the ``key=value`` form early (before hours of other cells ran) and return a list."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (example: train.max_epochs=2)")
    return list(overrides)


def overrides_hash(overrides: tuple[str, ...] | list[str]) -> str | None:
    """8 hex characters of sha256 over the overrides joined by newlines, in order; None when there are none.

    Order is kept because it is what the CLI does (``--set`` flags, then ``--protocol``): the same command line
    and the same suite cell name the same folder.
    """
    if not overrides:
        return None
    return hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]


def cell_run_id(method: str, dataset: str, preset: str | None, seed: int,
                overrides: tuple[str, ...] | list[str] = ()) -> str:
    """``<method>-<dataset slug>-<preset or 'default'>-s<seed>[-<overrides hash>]``."""
    name = f"{method}-{dataset_slug(dataset)}-{preset or 'default'}-s{int(seed)}"
    digest = overrides_hash(overrides)
    return f"{name}-{digest}" if digest else name


# ----------------------------------------------------------------------------------------------- suite file

@dataclass(frozen=True)
class Cell:
    method: str
    dataset: str
    preset: str | None
    seed: int
    overrides: tuple[str, ...] = ()   # the suite's `set:` list, then eval.protocol=... when it changes the config

    @property
    def run_id(self) -> str:
        return cell_run_id(self.method, self.dataset, self.preset, self.seed, self.overrides)


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path | None
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    presets: tuple[str | None, ...]
    seeds: tuple[int, ...]
    protocol: str | None = None
    overrides: tuple[str, ...] = ()
    results_dir: str | None = None
    description: str = ""

    def grid(self) -> list[tuple[str, str, str | None, int]]:
        """(method, dataset, preset, seed) in run order: dataset, preset, seed, then method, so that an early
        stop (or the first shard) already holds every method for the first seeds."""
        return [(m, d, p, s) for d in self.datasets for p in self.presets for s in self.seeds for m in self.methods]


def _str_list(data: dict, key: str, where: str, *, required: bool) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        if required:
            example = {"methods": "[f2gan, dagan]", "datasets": "[glyphs]"}.get(key, "[...]")
            raise UserError(f"{where}: `{key}:` is required (a list, e.g. {key}: {example})")
        return ()
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
        raise UserError(f"{where}: `{key}:` must be a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise UserError(f"{where}: `{key}:` lists a name twice: {value!r}")
    return tuple(str(v) for v in value)


def parse_suite(data: Any, *, where: str = "suite", path: Path | None = None) -> Suite:
    """Validate a suite mapping; every mistake is a UserError naming the key and the fix."""
    if not isinstance(data, dict):
        raise UserError(f"{where} must hold a mapping with methods:, datasets:, seeds:, presets:")
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(SUITE_KEYS)}")
    methods = _str_list(data, "methods", where, required=True)
    datasets = _str_list(data, "datasets", where, required=True)
    presets: tuple[str | None, ...] = _str_list(data, "presets", where, required=False) or (None,)
    seeds_raw = data.get("seeds", [0])
    if isinstance(seeds_raw, int):
        seeds_raw = [seeds_raw]
    if (not isinstance(seeds_raw, list) or not seeds_raw
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds_raw)):
        raise UserError(f"{where}: `seeds:` must be a non-empty list of non-negative integers, got {seeds_raw!r}")
    if len(set(seeds_raw)) != len(seeds_raw):
        raise UserError(f"{where}: `seeds:` lists a seed twice: {seeds_raw!r}")
    overrides = data.get("set") or []
    if isinstance(overrides, str):
        overrides = [overrides]
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{where}: `set:` must be a list of key=value strings, got {overrides!r}")
    check_overrides(overrides)
    protocol = data.get("protocol")
    if protocol is not None:
        from fsgen_bench.eval.protocols import get_protocol

        get_protocol(str(protocol))
    name = data.get("name") or (path.stem if path else "suite")
    return Suite(
        name=str(name), path=path, methods=methods, datasets=datasets, presets=presets,
        seeds=tuple(int(s) for s in seeds_raw), protocol=None if protocol is None else str(protocol),
        overrides=tuple(overrides), results_dir=None if data.get("results_dir") is None else str(data["results_dir"]),
        description=str(data.get("description") or ""),
    )


def load_suite(path: Path) -> Suite:
    from fsgen_bench.config import configs_dir, load_yaml

    path = Path(path)
    if not path.is_file() and path.suffix == "" and len(path.parts) == 1:
        shipped = configs_dir() / "suites" / f"{path}.yaml"     # a bare name: a suite that ships with the package
        if shipped.is_file():
            path = shipped
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (configs_dir() / "suites").glob("*.yaml")))
        raise UserError(f"suite file {path} does not exist; give a suite YAML path or the name of a shipped "
                        f"suite ({known})")
    return parse_suite(load_yaml(path), where=str(path), path=path)


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` -> (1, 4): shard 1 of shards 0..3 (0-based, as ``fsgen-bench bench --shard I/N``)."""
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise UserError(f"--shard expects I/N with 0 <= I < N (e.g. --shard 0/4), got {text!r}") from None
    return check_shard((i, n))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise UserError(f"shard {i}/{n} is out of range: use I/N with 0 <= I < N (e.g. 0/4 ... 3/4)")
    return i, n


def select_shard(items: list, shard: tuple[int, int] | None) -> list:
    """Round-robin: shard i of n takes items i, i+n, i+2n, ... so that every shard gets a mix of methods."""
    if shard is None:
        return list(items)
    i, n = check_shard(shard)
    return list(items)[i::n]


# ----------------------------------------------------------------------------------------------- markers

def run_dir_for(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "runs" / run_id


def is_done(results_dir: Path, run_id: str) -> bool:
    return (run_dir_for(results_dir, run_id) / DONE_MARKER).is_file()


def mark_done(results_dir: Path, run_id: str, info: dict) -> Path:
    """Write the DONE marker atomically (temp file + rename): a crash leaves no marker, never half of one."""
    directory = run_dir_for(results_dir, run_id)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DONE_MARKER
    tmp = directory / f".{DONE_MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------- running

@dataclass
class CellResult:
    cell: Cell
    status: str                    # finished | skipped | failed | pending (dry run) | done (dry run)
    run_dir: Path | None = None
    records: int = 0
    wall_s: float = 0.0
    error: str | None = None


@dataclass
class SuiteResult:
    suite: Suite
    results_dir: Path
    shard: tuple[int, int] | None
    cells: list[CellResult] = field(default_factory=list)
    leaderboard: list[Path] = field(default_factory=list)
    stopped_early: bool = False    # --fail-fast stopped at a failed cell
    dry_run: bool = False

    @property
    def failed(self) -> list[CellResult]:
        return [c for c in self.cells if c.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        """0 when no cell failed, else 1 (the CLI exits with it)."""
        return 1 if self.failed else 0

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for c in self.cells:
            counts[c.status] = counts.get(c.status, 0) + 1
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard else ""
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"suite {self.suite.name}{shard}: {len(self.cells)} cells: {parts or 'none'}"


def _duration(seconds: float) -> str:
    """``95`` -> ``1 min 35 s``; ``7300`` -> ``2 h 01 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _default_run_fn() -> Callable:
    from fsgen_bench.run import run_experiment  # imported late: the runner pulls in Lightning and the methods

    return run_experiment


def plan_cells(suite: Suite, *, results_dir: Path | None = None,
               config_root: Path | None = None) -> list[tuple[Cell, dict]]:
    """Resolve every cell's config before anything runs, so a typo fails in seconds, not after hours.

    Each config gets ``run.results_dir`` (when given) and ``run.name``, the cell's run id, which
    run_experiment uses as its folder name.
    """
    from fsgen_bench.config import resolve

    planned = []
    for method, dataset, preset, seed in suite.grid():
        overrides = list(suite.overrides)
        cfg = resolve(method=method, dataset=dataset, preset=preset, overrides=overrides, seed=seed,
                      root=config_root)
        # The protocol joins the overrides (and so the run id) only when it changes the config: a suite cell and
        # `fsgen-bench run` of the same configuration then share one run folder.
        if suite.protocol is not None and str(cfg["eval"]["protocol"]) != suite.protocol:
            overrides.append(f"eval.protocol={suite.protocol}")
            cfg = resolve(method=method, dataset=dataset, preset=preset, overrides=overrides, seed=seed,
                          root=config_root)
        cell = Cell(method=method, dataset=dataset, preset=preset, seed=seed,
                    overrides=tuple(overrides))
        if results_dir is not None:
            cfg["run"]["results_dir"] = str(results_dir)
        cfg["run"]["name"] = cell.run_id
        planned.append((cell, cfg))
    return planned


def _is_global_zero() -> bool:
    env = os.environ
    return all(int(env.get(name, "0") or 0) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _echo(text: str, *, err: bool = False) -> None:
    from tqdm import tqdm

    # tqdm.write keeps an active progress bar intact below the line
    tqdm.write(text, file=sys.stderr if err else sys.stdout)


def run_suite(
    path: Path,
    *,
    results_dir: Path | None = None,
    run_fn: Callable | None = None,
    shard: tuple[int, int] | None = None,
    dry_run: bool = False,
    fail_fast: bool = False,
    config_root: Path | None = None,
    logger: str | None = None,
) -> SuiteResult:
    """Run (or resume) every cell of a suite, or shard i of n of them; then rebuild the leaderboards.

    ``run_fn(cfg, resume=True)`` returns an object with ``run_dir``, ``records`` and ``status``; it defaults
    to ``fsgen_bench.run.run_experiment``. A failing cell is reported and the suite goes on (``fail_fast``
    stops instead); ``SuiteResult.exit_code`` is non-zero when any cell failed. ``dry_run`` resolves every
    config and prints the plan without running anything. ``logger`` (csv | wandb | none) replaces every cell's
    ``logger.kind``; like the results folder it is not part of the run ids, so switching it resumes the same cells.
    """
    from fsgen_bench import leaderboard, loggers
    from fsgen_bench.progress import progress

    suite = load_suite(Path(path))
    if shard is not None:
        check_shard(shard)
    if results_dir is None and suite.results_dir:
        results_dir = Path(suite.results_dir)
    everything = plan_cells(suite, results_dir=results_dir, config_root=config_root)
    # without an explicit folder, the configs' own run.results_dir (default: results/) decides
    results_dir = Path(results_dir if results_dir is not None else everything[0][1]["run"]["results_dir"])
    if logger is not None:
        loggers.logger_kind({"logger": {"kind": logger}})   # an unknown kind fails here, before any cell runs
    for _, cfg in everything:
        cfg["run"]["results_dir"] = str(results_dir)
        if logger is not None:
            cfg["logger"]["kind"] = logger
    planned = select_shard(everything, shard)
    result = SuiteResult(suite=suite, results_dir=results_dir, shard=shard, dry_run=dry_run)
    done = [(c, cfg) for c, cfg in planned if is_done(results_dir, c.run_id)]
    pending = [(c, cfg) for c, cfg in planned if not is_done(results_dir, c.run_id)]

    if dry_run:
        for cell, _ in planned:
            status = "done" if is_done(results_dir, cell.run_id) else "pending"
            result.cells.append(CellResult(cell=cell, status=status, run_dir=run_dir_for(results_dir, cell.run_id)))
            _echo(f"{status:8s} {cell.run_id}")
        _echo(result.summary())
        return result

    for cell, _ in done:
        result.cells.append(CellResult(cell=cell, status="skipped", run_dir=run_dir_for(results_dir, cell.run_id)))
    if done:
        _echo(f"{len(done)} of {len(planned)} cells already finished (DONE marker); skipping them")

    run_fn = run_fn or _default_run_fn()
    # Lightning's DDP launcher re-executes this command in every extra rank; those ranks train and evaluate
    # with rank 0 but must not write markers or leaderboards.
    writer = _is_global_zero()
    total = len(planned)
    # initial=len(done): the bar shows the whole suite, and tqdm's rate (hence the ETA) counts only new work
    shown_tracebacks: set[str] = set()
    bar = progress(pending, desc=f"suite {suite.name}", total=total, initial=len(done), unit="cell")
    try:
        for index, (cell, cfg) in enumerate(bar, start=len(done) + 1):
            bar.set_postfix_str(cell.run_id, refresh=False)
            start = time.monotonic()
            cell_result = CellResult(cell=cell, status="failed", run_dir=run_dir_for(results_dir, cell.run_id))
            try:
                out = run_fn(cfg, resume=True)
            except Exception as exc:  # a failing cell must not stop the other cells (KeyboardInterrupt does)
                cell_result.error = f"{type(exc).__name__}: {exc}"
                # a bug usually fails every cell the same way: one traceback per distinct error is enough
                if not isinstance(exc, UserError) and cell_result.error not in shown_tracebacks:
                    shown_tracebacks.add(cell_result.error)
                    _echo(traceback.format_exc().rstrip(), err=True)
                loggers.finish_logger(None, exit_code=1)
            else:
                loggers.finish_logger(None)   # in case the runner left a wandb run open
                cell_result.status = "skipped" if getattr(out, "status", "finished") == "skipped" else "finished"
                cell_result.records = len(getattr(out, "records", None) or [])
                actual = getattr(out, "run_dir", None)
                if actual is not None and Path(actual).name != cell.run_id:
                    _echo(f"warning: {cell.run_id} ran in {actual}, not in a folder named by its run id; "
                          f"resuming relies on {run_dir_for(results_dir, cell.run_id)}/{DONE_MARKER}", err=True)
                cell_result.wall_s = time.monotonic() - start
                # run_experiment writes its own DONE marker; ours covers a runner that does not, and is the
                # only one written atomically. An existing marker is left as the runner wrote it.
                if writer and not is_done(results_dir, cell.run_id):
                    mark_done(results_dir, cell.run_id, {
                        "run_id": cell.run_id, "method": cell.method, "dataset": cell.dataset,
                        "preset": cell.preset, "seed": cell.seed, "overrides": list(cell.overrides),
                        "status": cell_result.status, "records": cell_result.records,
                        "run_dir": str(actual) if actual is not None else None,
                        "wall_time_s": round(cell_result.wall_s, 3), "finished_at": time.time(),
                    })
            cell_result.wall_s = time.monotonic() - start
            result.cells.append(cell_result)
            line = (f"[{index}/{total}] {cell.run_id}: {cell_result.status} in {cell_result.wall_s:.1f}s"
                    f", {cell_result.records} records")
            if cell_result.error:
                line += f" ({cell_result.error})"
            ran = [c.wall_s for c in result.cells if c.status in ("finished", "failed")]
            left = total - index
            if left and ran:   # the bar's ETA is hidden without a terminal; this line reaches logs too
                line += f"; {left} cells left, about {_duration(left * sum(ran) / len(ran))} at this pace"
            _echo(line)
            if cell_result.status == "failed" and fail_fast:
                result.stopped_early = True
                break
    finally:
        bar.close()

    if not result.stopped_early and writer:
        records_dir = results_dir / "records"
        try:
            result.leaderboard = leaderboard.build(records_dir, results_dir)
        except UserError as exc:
            _echo(f"leaderboard not built: {exc}", err=True)
        else:
            _echo(f"leaderboard: {results_dir / 'leaderboard.md'}")
            logger_cfg = planned[0][1].get("logger") if planned else None
            if logger_cfg and loggers.logger_kind({"logger": logger_cfg}) == "wandb":
                from fsgen_bench.eval.records import read_records

                loggers.log_leaderboard(logger_cfg, leaderboard.compute_tables(read_records(records_dir)),
                                        save_dir=results_dir)
    if result.failed:
        for c in result.failed:
            _echo(f"failed: {c.cell.run_id}: {c.error}", err=True)
    _echo(result.summary())
    return result
