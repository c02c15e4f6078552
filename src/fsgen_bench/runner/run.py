"""One run: resolved config -> data -> method -> Lightning training -> evaluation harness -> records.

A run lives in ``<results>/runs/<run_id>/`` (see :mod:`fsgen_bench.runner.identity`): the resolved
``config.yaml``, the ``eval_plan.json`` every method is scored on, ``dataset.json``, ``checkpoints/`` (periodic
and last, written atomically), logs, figures, and the ``DONE`` marker written after the records were appended.
Starting the same run again resumes from its last checkpoint; a finished run is skipped unless ``fresh``.

``run_experiment`` is what ``fsgen-bench run`` and every suite cell call; ``evaluate_saved`` is ``fsgen-bench
eval`` (a checkpoint, or a reference row, scored again and recorded). Both are made of the same steps
(:mod:`fsgen_bench.runner.steps`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L

from fsgen_bench.atomic import write_text_atomic
from fsgen_bench.config import dump
from fsgen_bench.errors import UserError
from fsgen_bench.eval.records import MetricRecord
from fsgen_bench.methods import FewShotGenerator
from fsgen_bench.runner.build import build_method, launch_evaluation_ranks
from fsgen_bench.runner.identity import RunIdentity, barrier, is_global_zero, make_dir
from fsgen_bench.runner.loggers import build_logger, finish_logger
from fsgen_bench.runner.steps import Log, Prepared, describe, evaluate_and_record, preflight, run_meta, train


@dataclass
class RunResult:
    run_dir: Path
    records: list[MetricRecord] = field(default_factory=list)
    status: str = "finished"          # finished | skipped


def run_experiment(cfg: dict, *, resume: bool = True, fresh: bool = False, log: Log = print) -> RunResult:
    """Train (unless the method needs no training), evaluate, append records, mark the run DONE."""
    identity = RunIdentity.of(cfg)
    if identity.is_done() and not fresh:
        log(f"run {identity.run_id} already finished ({identity.run_dir}); records are in {identity.records_dir}. "
            f"Use --fresh to run it again.")
        return RunResult(run_dir=identity.run_dir, status="skipped")
    prepared = preflight(cfg, log=log)
    L.seed_everything(int(cfg["run"]["seed"]), workers=True, verbose=False)
    model = build_method(cfg, prepared.datamodule.info)
    writer = is_global_zero()
    if writer:
        log(describe(prepared, model))

    # The run folder is touched only now, after every input was checked.
    run_dir = identity.run_dir
    if fresh and writer and run_dir.exists():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        identity.done_path.unlink(missing_ok=True)
    make_dir(run_dir)
    if writer:
        dump(cfg, run_dir / "config.yaml")
        prepared.plan.save(run_dir / "eval_plan.json")
        write_text_atomic(run_dir / "dataset.json", json.dumps(prepared.datamodule.summary(), indent=2))

    started = time.time()
    logger = build_logger(cfg, run_dir)
    try:
        train_wall_s = train(prepared, model, logger=logger, run_dir=run_dir, resume=resume, log=log)
        meta = run_meta(prepared, run_id=identity.run_id, train_wall_s=train_wall_s)
        records = evaluate_and_record(prepared, model, meta=meta, out_dir=run_dir, logger=logger, log=log)
        if writer:
            # After the records were appended: a folder without the marker is an unfinished run.
            identity.write_done({
                "run_id": identity.run_id, "method": cfg["run"]["method"], "dataset": identity.dataset,
                "preset": cfg["run"]["preset"], "seed": int(cfg["run"]["seed"]), "records": len(records),
                "train_wall_s": round(train_wall_s, 3), "wall_s": round(time.time() - started, 3),
                "finished_at": time.time(),
            })
        barrier()
    except BaseException:
        finish_logger(logger, exit_code=1)
        raise
    finish_logger(logger, exit_code=0)
    return RunResult(run_dir=run_dir, records=records, status="finished")


def evaluate_saved(cfg: dict, *, ckpt: Path | None = None, log: Log = print) -> list[MetricRecord]:
    """Evaluate a trained checkpoint (default: the run's ``last.ckpt``) or a reference row, and record it.

    The records carry the id of the run the checkpoint belongs to. With several devices the other ranks are
    started here and every rank evaluates its share of the unseen classes.
    """
    prepared = preflight(cfg, log=log)
    identity = prepared.identity
    cls = prepared.method_class
    run_id = identity.run_id
    if cls.trainable:
        ckpt = Path(ckpt) if ckpt else identity.run_dir / "checkpoints" / "last.ckpt"
        model = _load_checkpoint(cls, ckpt, cfg)
        if ckpt.parent.name == "checkpoints":
            run_id = ckpt.parent.parent.name
    else:
        model = build_method(cfg, prepared.datamodule.info)
    fabric = launch_evaluation_ranks(cfg)
    meta = run_meta(prepared, run_id=run_id, train_wall_s=None)
    return evaluate_and_record(prepared, model, meta=meta, out_dir=identity.results_dir / "runs" / run_id,
                               device=fabric.device if fabric is not None else None, log=log)


def _load_checkpoint(cls: type[FewShotGenerator], ckpt: Path, cfg: dict) -> FewShotGenerator:
    method = cfg["run"]["method"]
    if not ckpt.is_file():
        raise UserError(f"no checkpoint for {method}: {ckpt} does not exist; pass --ckpt PATH or train first with "
                        f"`fsgen-bench run --method {method} --dataset {cfg['run']['dataset']}`")
    try:
        return cls.load_from_checkpoint(str(ckpt), map_location="cpu")
    except Exception as exc:  # a foreign or corrupt file
        raise UserError(f"cannot load checkpoint {ckpt} as {cls.__name__}: {exc}") from None


__all__ = ["RunResult", "Prepared", "evaluate_saved", "run_experiment"]
