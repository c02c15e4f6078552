"""The steps every run is made of, shared by ``fsgen-bench run``, ``fsgen-bench eval`` and each suite cell.

    preflight(cfg)                  everything that can fail on bad input, before anything is written
    train(prepared, model, ...)     Lightning fit with checkpoints and callbacks (nothing for a reference row)
    run_meta(prepared, ...)         what every record of the run carries
    evaluate_and_record(...)        the evaluation harness, then the records appended (rank 0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fsgen_bench.config import cache_dir, config_hash
from fsgen_bench.data.datamodule import EpisodicDataModule
from fsgen_bench.data.evalplan import EvalPlan
from fsgen_bench.errors import UserError
from fsgen_bench.eval.harness import evaluate, format_table
from fsgen_bench.eval.preflight import check_protocol_fits
from fsgen_bench.eval.protocols import Protocol
from fsgen_bench.eval.records import MetricRecord, append_records
from fsgen_bench.eval.weights_download import ensure_weights, needed_weights
from fsgen_bench.methods import FewShotGenerator
from fsgen_bench.runner.build import (accelerator, build_datamodule, build_protocol, build_trainer,
                                      evaluation_device, method_class)
from fsgen_bench.runner.callbacks import FigureCallback, NonFiniteLossGuard
from fsgen_bench.runner.identity import RunIdentity, check_results_dir, is_global_zero, is_local_zero
from fsgen_bench.runner.loggers import log_metrics_table

Log = Callable[[str], None]


@dataclass
class Prepared:
    """What the steps share: the config, the run's identity and the inputs checked by ``preflight``."""

    cfg: dict
    identity: RunIdentity
    method_class: type[FewShotGenerator]
    datamodule: EpisodicDataModule
    protocol: Protocol
    plan: EvalPlan


def preflight(cfg: dict, *, log: Log = print) -> Prepared:
    """Check every input and build the data, protocol and evaluation plan; write nothing but weight files.

    The one place where a bad input (an unwritable results folder, an unknown method, a missing or malformed
    dataset, a protocol the dataset or the method cannot serve, a damaged weights file) becomes a UserError
    before a run folder exists or a minute of training is spent. Checks of a protocol against a dataset belong
    here, after the plan. With ``eval.download_weights: true`` the weight files the evaluation can use are
    fetched here, once per machine (local rank 0), so a missing file never costs a trained run its metrics.
    """
    identity = RunIdentity.of(cfg)
    check_results_dir(identity.results_dir)
    cls = method_class(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    protocol = build_protocol(cfg)
    check_method_fits(cls, protocol)
    check_protocol_fits(protocol, datamodule)
    plan = datamodule.eval_plan(protocol)
    if is_local_zero():
        ensure_weights(cfg["eval"], needed_weights(cfg["eval"].get("backbones") or [], protocol.lpips_net), log=log)
    return Prepared(cfg=cfg, identity=identity, method_class=cls, datamodule=datamodule, protocol=protocol,
                    plan=plan)


def check_method_fits(cls: type[FewShotGenerator], protocol: Protocol) -> None:
    """A UserError when the protocol's K is outside what the method accepts at generation time."""
    k, low, high = protocol.k_shot, cls.min_k, cls.max_k
    if k < low or (high is not None and k > high):
        reason = f" ({cls.min_k_reason})" if k < low and cls.min_k_reason else ""
        raise UserError(f"protocol {protocol.id} conditions on K = {k} images, but {cls.__name__} accepts "
                        f"K = {low}..{'any' if high is None else high}{reason}; choose another protocol or method")


def run_meta(prepared: Prepared, *, run_id: str, train_wall_s: float | None) -> dict:
    """The run's fields every record carries (the harness copies the keys it has no field for into ``extra``)."""
    cfg, cls = prepared.cfg, prepared.method_class
    return {
        "run_id": run_id,
        "method": cfg["run"]["method"],
        "dataset": prepared.identity.dataset,
        "seed": int(cfg["run"]["seed"]),
        "config_hash": config_hash(cfg),
        "preset": cfg["run"]["preset"],
        "train_wall_s": train_wall_s,                    # None: evaluated without training here
        "variant": (cfg.get("method") or {}).get("variant"),
        "default_variant": getattr(cls, "default_variant", None),
        "reference": not cls.trainable,                  # a reference row (copy-support, noise): never ranked
        "row_note": getattr(cls, "row_note", ""),
    }


def train(prepared: Prepared, model: FewShotGenerator, *, logger, run_dir: Path, resume: bool,
          log: Log = print) -> float:
    """Fit a trainable method, resuming from ``<run_dir>/checkpoints/last.ckpt`` when asked and present.

    Returns the training wall time in seconds (0.0 for a method that needs no training).
    """
    if not model.trainable:
        return 0.0
    cfg = prepared.cfg
    channels_last = cfg["train"]["channels_last"]
    if channels_last == "auto":
        channels_last = accelerator(cfg) == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg["train"].get("compile") and hasattr(model, "compile_networks"):
        model.compile_networks()
    ckpt_dir = run_dir / "checkpoints"
    callbacks = [
        ModelCheckpoint(dirpath=str(ckpt_dir), filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                        save_last=True, save_top_k=-1, every_n_epochs=int(cfg["train"]["checkpoint_every_n_epochs"])),
        NonFiniteLossGuard(),
        FigureCallback(datamodule=prepared.datamodule, plan=prepared.plan, out_dir=run_dir / "images",
                       every_n_epochs=int(cfg["train"]["sample_every_n_epochs"])),
    ]
    trainer = build_trainer(cfg, run_dir, logger, callbacks)
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if (resume and last.exists()) else None
    if ckpt_path:
        log(f"resuming {prepared.identity.run_id} from {last}")
    started = time.time()
    trainer.fit(model, datamodule=prepared.datamodule, ckpt_path=ckpt_path)
    if trainer.interrupted:
        raise UserError(f"training of {prepared.identity.run_id} was interrupted; run the same command again to "
                        f"resume from {last}")
    return time.time() - started


def evaluate_and_record(prepared: Prepared, model: FewShotGenerator, *, meta: dict, out_dir: Path,
                        logger=None, device: torch.device | None = None, log: Log = print) -> list[MetricRecord]:
    """Score ``model`` with the evaluation harness (on every rank under DDP), then, on rank 0, append the
    records to the run's records file, print them and hand them to the logger."""
    cfg = prepared.cfg
    model = model.to(device if device is not None else evaluation_device(cfg))
    writer = is_global_zero()
    records = evaluate(model, prepared.datamodule, protocol=prepared.protocol, eval_cfg=cfg["eval"],
                       cache_dir=cache_dir(cfg), run_meta=meta, out_dir=out_dir if writer else None)
    if writer:
        path = prepared.identity.records_path(prepared.protocol.id)
        append_records(records, path)
        log(format_table(records))
        log(f"records appended to {path}")
        log_metrics_table(logger, records)
    return records


def describe(prepared: Prepared, model: L.LightningModule) -> str:
    """One line about the run before it starts: data, preset, protocol, size, folder."""
    summary = prepared.datamodule.summary()
    cfg = prepared.cfg
    return (f"run {prepared.identity.run_id}: {cfg['run']['method']} on {summary['dataset']} "
            f"({summary['seen_classes']} seen / {summary['unseen_classes']} unseen classes, "
            f"{summary['images_seen'] + summary['images_unseen']} images of "
            f"{'x'.join(map(str, summary['image_shape']))}), preset {cfg['run']['preset']}, protocol "
            f"{prepared.protocol.id}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters -> "
            f"{prepared.identity.run_dir}")
