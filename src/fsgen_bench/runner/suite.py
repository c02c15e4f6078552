"""Benchmark suites: a YAML grid of methods x datasets x presets x seeds, run cell by cell, resumable.

A suite file (configs/suites/*.yaml)::

    name: glyphs-quick             # optional; the file's stem by default
    methods: [f2gan, dagan, copy-support]
    datasets: [glyphs]             # registered names, npy:PATH or folder:PATH
    presets: [quick]               # optional; default: no preset
    seeds: [0, 1, 2]               # optional; default: [0]
    protocol: clean                # optional; default: the configs' eval.protocol
    set: [train.max_epochs=2]      # optional; --set overrides applied to every cell
    results_dir: results           # optional; relative to the working directory (default: run.results_dir)

Every cell is one call of the run function the suite is given (``fsgen-bench bench`` gives it
:func:`fsgen_bench.runner.run.run_experiment`), with a deterministic run id (``cell_run_id``), so a cell and a
plain ``fsgen-bench run --results <the suite's folder>`` of the same configuration share one run folder. A cell
is finished when its folder holds the ``DONE`` marker, which the run function writes after the records were
appended (:mod:`fsgen_bench.runner.identity`); a rerun skips finished cells and restarts the others, which
resume from their own checkpoints. ``shard=(i, n)`` runs cells i, i+n, i+2n, ... (0-based), so n processes or
machines can split one suite.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from fsgen_bench import leaderboard
from fsgen_bench.config import configs_dir, load_yaml, resolve
from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocols import get_protocol
from fsgen_bench.eval.records import read_records
from fsgen_bench.progress import progress
from fsgen_bench.runner import loggers
from fsgen_bench.runner.identity import DONE_MARKER, RunIdentity, cell_run_id, check_results_dir, is_global_zero

SUITE_KEYS = ("name", "description", "methods", "datasets", "presets", "seeds", "protocol", "set", "results_dir")
# A cell's run function: run_fn(cfg, resume=True) -> an object with `run_dir`, `records` and `status`
# ("finished" | "skipped"), which writes the cell's DONE marker when the cell finished (run_experiment does).
RunFn = Callable[..., Any]


def check_overrides(overrides: tuple[str, ...] | list[str]) -> list[str]:
    """Validate the ``key=value`` form early (before hours of other cells ran) and return a list."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (example: train.max_epochs=2)")
    return list(overrides)


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
        get_protocol(str(protocol))
    name = data.get("name") or (path.stem if path else "suite")
    return Suite(
        name=str(name), path=path, methods=methods, datasets=datasets, presets=presets,
        seeds=tuple(int(s) for s in seeds_raw), protocol=None if protocol is None else str(protocol),
        overrides=tuple(overrides), results_dir=None if data.get("results_dir") is None else str(data["results_dir"]),
        description=str(data.get("description") or ""),
    )


def load_suite(path: Path) -> Suite:
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


def plan_cells(suite: Suite, *, results_dir: Path | None = None,
               config_root: Path | None = None) -> list[tuple[Cell, dict]]:
    """Resolve every cell's config before anything runs, so a typo fails in seconds, not after hours.

    Each config gets ``run.results_dir`` (when given) and ``run.name``, the cell's run id, which names the
    cell's run folder (RunIdentity.of).
    """
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
        cell = Cell(method=method, dataset=dataset, preset=preset, seed=seed, overrides=tuple(overrides))
        if results_dir is not None:
            cfg["run"]["results_dir"] = str(results_dir)
        cfg["run"]["name"] = cell.run_id
        planned.append((cell, cfg))
    return planned


def _echo(text: str, *, err: bool = False) -> None:
    # tqdm.write keeps an active progress bar intact below the line
    tqdm.write(text, file=sys.stderr if err else sys.stdout)


def run_suite(
    path: Path,
    run_fn: RunFn,
    *,
    results_dir: Path | None = None,
    shard: tuple[int, int] | None = None,
    dry_run: bool = False,
    fail_fast: bool = False,
    config_root: Path | None = None,
    logger: str | None = None,
) -> SuiteResult:
    """Run (or resume) every cell of a suite, or shard i of n of them, with ``run_fn``; then rebuild the
    leaderboards from the suite folder's records.

    ``run_fn(cfg, resume=True)`` is called once per cell that has no DONE marker (see ``RunFn``). A failing
    cell is reported and the suite goes on (``fail_fast`` stops instead); ``SuiteResult.exit_code`` is non-zero
    when any cell failed. ``dry_run`` resolves every config and prints the plan without running anything.
    ``logger`` (csv | wandb | none) replaces every cell's ``logger.kind``; like the results folder it is not part
    of the run ids, so switching it resumes the same cells.
    """
    suite = load_suite(Path(path))
    if shard is not None:
        check_shard(shard)
    if results_dir is None and suite.results_dir:
        results_dir = Path(suite.results_dir)
    everything = plan_cells(suite, results_dir=results_dir, config_root=config_root)
    # without an explicit folder, the configs' own run.results_dir decides
    results_dir = Path(results_dir if results_dir is not None else everything[0][1]["run"]["results_dir"])
    if logger is not None:
        loggers.logger_kind({"logger": {"kind": logger}})   # an unknown kind fails here, before any cell runs
    for _, cfg in everything:
        cfg["run"]["results_dir"] = str(results_dir)
        if logger is not None:
            cfg["logger"]["kind"] = logger
    planned = [(cell, RunIdentity.of(cfg), cfg) for cell, cfg in select_shard(everything, shard)]
    result = SuiteResult(suite=suite, results_dir=results_dir, shard=shard, dry_run=dry_run)

    if dry_run:
        for cell, identity, _ in planned:
            status = "done" if identity.is_done() else "pending"
            result.cells.append(CellResult(cell=cell, status=status, run_dir=identity.run_dir))
            _echo(f"{status:8s} {cell.run_id}")
        _echo(result.summary())
        return result

    check_results_dir(results_dir)
    done = [(c, ident, cfg) for c, ident, cfg in planned if ident.is_done()]
    pending = [(c, ident, cfg) for c, ident, cfg in planned if not ident.is_done()]
    for cell, identity, _ in done:
        result.cells.append(CellResult(cell=cell, status="skipped", run_dir=identity.run_dir))
    if done:
        _echo(f"{len(done)} of {len(planned)} cells already finished ({DONE_MARKER} marker); skipping them")

    # Lightning's DDP launcher re-executes this command in every extra rank; those ranks train and evaluate
    # with rank 0, which alone builds the leaderboards (markers and records are the run function's).
    writer = is_global_zero()
    total = len(planned)
    # initial=len(done): the bar shows the whole suite, and tqdm's rate (hence the ETA) counts only new work
    shown_tracebacks: set[str] = set()
    bar = progress(pending, desc=f"suite {suite.name}", total=total, initial=len(done), unit="cell")
    try:
        for index, (cell, identity, cfg) in enumerate(bar, start=len(done) + 1):
            bar.set_postfix_str(cell.run_id, refresh=False)
            start = time.monotonic()
            cell_result = CellResult(cell=cell, status="failed", run_dir=identity.run_dir)
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
                loggers.finish_logger(None)   # in case the run function left a wandb run open
                cell_result.status = "skipped" if getattr(out, "status", "finished") == "skipped" else "finished"
                cell_result.records = len(getattr(out, "records", None) or [])
                if writer and not identity.is_done():
                    _echo(f"warning: {cell.run_id} returned without its {DONE_MARKER} marker "
                          f"({identity.done_path}); the next run of the suite runs it again", err=True)
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
        _build_leaderboard(result, planned[0][2].get("logger") if planned else None)
    if result.failed:
        for c in result.failed:
            _echo(f"failed: {c.cell.run_id}: {c.error}", err=True)
    _echo(result.summary())
    return result


def _build_leaderboard(result: SuiteResult, logger_cfg: dict | None) -> None:
    """The suite folder's leaderboards from all its records (also cells of earlier runs), and with wandb the
    tables as a wandb run of their own."""
    records_dir = result.results_dir / "records"
    try:
        result.leaderboard = leaderboard.build(records_dir, result.results_dir)
    except UserError as exc:
        _echo(f"leaderboard not built: {exc}", err=True)
        return
    _echo(f"leaderboard: {result.results_dir / 'leaderboard.md'}")
    if logger_cfg and loggers.logger_kind({"logger": logger_cfg}) == "wandb":
        loggers.log_leaderboard(logger_cfg, leaderboard.compute_tables(read_records(records_dir)),
                                save_dir=result.results_dir)
