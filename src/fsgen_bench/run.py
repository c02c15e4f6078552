"""One run: resolved config -> data -> method -> Lightning training -> evaluation harness -> records.

A run lives in ``<results>/runs/<run_id>/``: the resolved ``config.yaml``, the ``eval_plan.json`` every method is
scored on, ``checkpoints/`` (periodic and last, written atomically), logs, figures, and a ``DONE`` marker written
after the records were appended. Starting the same run again resumes from its last checkpoint; a finished run
is skipped unless ``fresh`` is asked for.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from fsgen_bench.config import cache_dir as resolve_cache_dir
from fsgen_bench.config import config_hash, dump
from fsgen_bench.data.datamodule import EpisodicDataModule
from fsgen_bench.data.source import DatasetInfo
from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocols import Protocol
from fsgen_bench.eval.records import MetricRecord, append_records, records_path
from fsgen_bench.methods import METHODS, FewShotGenerator
from fsgen_bench.suite import cell_run_id, dataset_slug  # one owner of run naming

DONE_MARKER = "DONE"


@dataclass
class RunResult:
    run_dir: Path
    records: list[MetricRecord] = field(default_factory=list)
    status: str = "finished"          # finished | skipped


# ---------------------------------------------------------------------------------------------------------------
# Building blocks


def check_results_dir(results_dir: Path) -> None:
    """Fail early (before anything is written) when the results folder cannot be written."""
    probe_dir = results_dir
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise UserError(
            f"results folder {results_dir} is not writable (checked {probe_dir}); pass --results DIR with a "
            f"folder you can write to"
        )


def build_datamodule(cfg: dict) -> EpisodicDataModule:
    return EpisodicDataModule(cfg["data"], cache_dir=resolve_cache_dir(cfg), seed=int(cfg["run"]["seed"]))


def build_protocol(cfg: dict) -> Protocol:
    from fsgen_bench.eval.harness import resolve_protocol

    return resolve_protocol(str(cfg["eval"]["protocol"]), cfg["eval"])


def method_kwargs(cfg: dict) -> dict:
    params = dict(cfg.get("method") or {})
    params.pop("name", None)
    return params


def build_method(cfg: dict, info: DatasetInfo) -> FewShotGenerator:
    cls = METHODS.get(cfg["run"]["method"])
    params = method_kwargs(cfg)
    try:
        return cls(
            image_size=info.image_size,
            channels=info.channels,
            num_seen_classes=info.num_seen,
            k_shot=int(cfg["data"]["k_shot"]),
            **params,
        )
    except TypeError as exc:
        raise UserError(f"method {cfg['run']['method']!r} rejected its config section `method`: {exc}") from None


def _auto_accelerator(cfg: dict) -> str:
    acc = cfg["train"]["accelerator"]
    if acc == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return acc


def build_trainer(cfg: dict, run_dir: Path, logger, callbacks: list) -> L.Trainer:
    from fsgen_bench.training import AtomicCheckpointIO

    train = cfg["train"]
    accelerator = _auto_accelerator(cfg)
    devices = train["devices"]
    num_nodes = int(train["num_nodes"])
    multi = (isinstance(devices, int) and devices > 1) or num_nodes > 1 or (isinstance(devices, (list, str)) and str(devices) not in ("1", "auto"))
    strategy = train["strategy"]
    if strategy in ("auto", "ddp") and multi:
        from lightning.pytorch.strategies import DDPStrategy

        # GAN steps leave the other player's parameters without gradients: DDP must tolerate unused parameters
        # (reference ecosystem.md §4.3). Buffers are broadcast once per training_step, not per D call.
        strategy = DDPStrategy(find_unused_parameters=True)
    precision = train["precision"]
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "cuda" else "32-true"
    progress = train["enable_progress_bar"]
    if progress == "auto":
        import sys

        progress = sys.stderr.isatty() and not os.environ.get("CI")
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        max_epochs=int(train["max_epochs"]),
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_checkpointing=True,
        enable_progress_bar=bool(progress),
        enable_model_summary=False,
        log_every_n_steps=int(train["log_every_n_steps"]),
        reload_dataloaders_every_n_epochs=1,   # the episode sampler is re-seeded with the epoch number
        num_sanity_val_steps=0,
        limit_val_batches=0,
        sync_batchnorm=(accelerator == "cuda" and multi),  # SyncBatchNorm raises on CPU
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )


def _is_global_zero() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ---------------------------------------------------------------------------------------------------------------
# The run


def run_experiment(cfg: dict, *, resume: bool = True, fresh: bool = False, log=print) -> RunResult:
    """Train (unless the method needs no training), evaluate, append records. Returns the run's folder and records."""
    from fsgen_bench.loggers import build_logger, finish_logger

    results_dir = Path(cfg["run"]["results_dir"])
    check_results_dir(results_dir)
    method_name = cfg["run"]["method"]
    run_id = cfg["run"].get("name") or cell_run_id(method_name, cfg["run"]["dataset"], cfg["run"]["preset"], cfg["run"]["seed"])
    run_dir = results_dir / "runs" / run_id
    if (run_dir / DONE_MARKER).exists() and not fresh:
        log(f"run {run_id} already finished ({run_dir}); records are in {results_dir / 'records'}. "
            f"Use --fresh to run it again.")
        return RunResult(run_dir=run_dir, status="skipped")

    # Everything that can fail on bad input happens before the run folder is touched.
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    info = datamodule.info
    protocol = build_protocol(cfg)
    plan = datamodule.eval_plan(protocol)
    L.seed_everything(int(cfg["run"]["seed"]), workers=True, verbose=False)
    model = build_method(cfg, info)
    if _is_global_zero():
        summary = datamodule.summary()
        log(f"run {run_id}: {method_name} on {summary['dataset']} ({summary['seen_classes']} seen / "
            f"{summary['unseen_classes']} unseen classes, {summary['images_seen'] + summary['images_unseen']} images "
            f"of {'x'.join(map(str, summary['image_shape']))}), preset {cfg['run']['preset']}, protocol {protocol.id}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters -> {run_dir}")

    if fresh and run_dir.exists() and _is_global_zero():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / DONE_MARKER).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if _is_global_zero():
        dump(cfg, run_dir / "config.yaml")
        plan.save(run_dir / "eval_plan.json")
        (run_dir / "dataset.json").write_text(json.dumps(datamodule.summary(), indent=2))

    started = time.time()
    logger = build_logger(cfg, run_dir)
    try:
        return _train_and_evaluate(cfg, model, datamodule, protocol, plan, logger, run_dir, run_id, started, log,
                                   resume=resume)
    except BaseException:
        finish_logger(logger, exit_code=1)
        raise


def _train_and_evaluate(cfg, model, datamodule, protocol, plan, logger, run_dir: Path, run_id: str, started: float,
                        log, *, resume: bool) -> RunResult:
    from fsgen_bench.eval.harness import evaluate, format_table
    from fsgen_bench.loggers import finish_logger, log_metrics_table
    from fsgen_bench.training import FigureCallback, NonFiniteLossGuard

    results_dir = Path(cfg["run"]["results_dir"])
    info = datamodule.info
    method_name = cfg["run"]["method"]
    ckpt_dir = run_dir / "checkpoints"
    train_wall_s = 0.0
    if model.trainable:
        from lightning.pytorch.callbacks import ModelCheckpoint

        accelerator = _auto_accelerator(cfg)
        channels_last = cfg["train"]["channels_last"]
        if channels_last == "auto":
            channels_last = accelerator == "cuda"
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg["train"].get("compile") and hasattr(model, "compile_networks"):
            model.compile_networks()
        callbacks = [
            ModelCheckpoint(
                dirpath=str(ckpt_dir), filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                save_last=True, save_top_k=-1, every_n_epochs=int(cfg["train"]["checkpoint_every_n_epochs"]),
            ),
            NonFiniteLossGuard(),
            FigureCallback(datamodule=datamodule, plan=plan, every_n_epochs=int(cfg["train"]["sample_every_n_epochs"]),
                           out_dir=run_dir / "images"),
        ]
        trainer = build_trainer(cfg, run_dir, logger, callbacks)
        last = ckpt_dir / "last.ckpt"
        ckpt_path = str(last) if (resume and last.exists()) else None
        if ckpt_path:
            log(f"resuming {run_id} from {last}")
        t0 = time.time()
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        train_wall_s = time.time() - t0
        if trainer.interrupted:
            raise UserError(f"training of {run_id} was interrupted; run the same command again to resume from {last}")

    if torch.cuda.is_available() and _auto_accelerator(cfg) == "cuda":
        model = model.to("cuda")
    run_meta = {
        "run_id": run_id,
        "method": method_name,
        "dataset": info.name if ":" not in cfg["run"]["dataset"] else dataset_slug(cfg["run"]["dataset"]),
        "seed": int(cfg["run"]["seed"]),
        "config_hash": config_hash(cfg),
        "preset": cfg["run"]["preset"],
        "train_wall_s": train_wall_s,
    }
    records = evaluate(
        model, datamodule, protocol=protocol, eval_cfg=cfg["eval"], cache_dir=resolve_cache_dir(cfg),
        run_meta=run_meta, out_dir=run_dir if _is_global_zero() else None,
    )
    if _is_global_zero():
        append_records(records, records_path(results_dir, run_meta["dataset"], protocol.id))
        log(format_table(records))
        log_metrics_table(logger, records)
        # The marker is written (atomically) only after the records were appended: a run without it is unfinished.
        tmp = run_dir / (DONE_MARKER + ".tmp")
        tmp.write_text(json.dumps({"finished": time.time(), "wall_s": time.time() - started}))
        tmp.replace(run_dir / DONE_MARKER)
    _barrier()
    finish_logger(logger, exit_code=0)
    return RunResult(run_dir=run_dir, records=records, status="finished")
