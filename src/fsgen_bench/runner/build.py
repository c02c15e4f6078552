"""The parts of a run built from a resolved config: data, protocol, method, Lightning trainer, devices."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy

from fsgen_bench.config import cache_dir
from fsgen_bench.data.datamodule import EpisodicDataModule
from fsgen_bench.data.source import DatasetInfo
from fsgen_bench.errors import UserError
from fsgen_bench.eval.harness import resolve_protocol
from fsgen_bench.eval.protocols import Protocol
from fsgen_bench.methods import METHODS, FewShotGenerator
from fsgen_bench.progress import progress_enabled
from fsgen_bench.runner.callbacks import AtomicCheckpointIO


def build_datamodule(cfg: dict) -> EpisodicDataModule:
    return EpisodicDataModule(cfg["data"], cache_dir=cache_dir(cfg), seed=int(cfg["run"]["seed"]))


def build_protocol(cfg: dict) -> Protocol:
    return resolve_protocol(str(cfg["eval"]["protocol"]), cfg["eval"])


def method_class(cfg: dict) -> type[FewShotGenerator]:
    """The registered class of ``run.method`` (an unknown name is a UserError listing the known ones)."""
    return METHODS.get(cfg["run"]["method"])


def build_method(cfg: dict, info: DatasetInfo) -> FewShotGenerator:
    """A new model: the dataset's shape and K from the data, every other argument from the `method` section."""
    params = {k: v for k, v in (cfg.get("method") or {}).items() if k != "name"}
    try:
        return method_class(cfg)(image_size=info.image_size, channels=info.channels, num_seen_classes=info.num_seen,
                                 k_shot=int(cfg["data"]["k_shot"]), **params)
    except TypeError as exc:
        raise UserError(f"method {cfg['run']['method']!r} rejected its config section `method`: {exc}") from None


def accelerator(cfg: dict) -> str:
    """``train.accelerator`` with ``auto`` made concrete: cuda when a GPU is there, else cpu."""
    choice = cfg["train"]["accelerator"]
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def evaluation_device(cfg: dict) -> torch.device:
    """Where a single process evaluates: the GPU when the run uses one (the current device of this rank)."""
    return torch.device("cuda" if accelerator(cfg) == "cuda" and torch.cuda.is_available() else "cpu")


def _several_processes(train: dict) -> bool:
    devices = train["devices"]
    if int(train["num_nodes"]) > 1:
        return True
    if isinstance(devices, int):
        return devices > 1
    return isinstance(devices, (list, str)) and str(devices) not in ("1", "auto")


def build_trainer(cfg: dict, run_dir: Path, logger, callbacks: list) -> L.Trainer:
    train = cfg["train"]
    device_kind = accelerator(cfg)
    multi = _several_processes(train)
    strategy = train["strategy"]
    if strategy in ("auto", "ddp") and multi:
        # A GAN step leaves the other player's parameters without gradients; DDP then waits forever for their
        # reduction unless it may skip them: find_unused_parameters (torch/nn/parallel/distributed.py, the
        # DistributedDataParallel docstring, torch 2.14.1).
        strategy = DDPStrategy(find_unused_parameters=True)
    precision = train["precision"]
    if precision == "auto":
        precision = "bf16-mixed" if device_kind == "cuda" else "32-true"
    progress_bar = train["enable_progress_bar"]
    if progress_bar == "auto":
        progress_bar = progress_enabled()
    return L.Trainer(
        accelerator=device_kind,
        devices=train["devices"],
        num_nodes=int(train["num_nodes"]),
        strategy=strategy,
        precision=precision,
        max_epochs=int(train["max_epochs"]),
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_checkpointing=True,
        enable_progress_bar=bool(progress_bar),
        enable_model_summary=False,
        log_every_n_steps=int(train["log_every_n_steps"]),
        reload_dataloaders_every_n_epochs=1,   # the episode sampler is re-seeded with the epoch number
        num_sanity_val_steps=0,
        limit_val_batches=0,
        sync_batchnorm=(device_kind == "cuda" and multi),  # SyncBatchNorm raises on CPU
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )


def launch_evaluation_ranks(cfg: dict) -> L.Fabric | None:
    """For evaluation on several devices: start the other ranks with Lightning Fabric (the harness shards the
    unseen classes over them); None for one device."""
    devices = cfg["train"]["devices"]
    n = int(devices) if str(devices).isdigit() else 1
    num_nodes = int(cfg["train"]["num_nodes"])
    if n <= 1 and num_nodes <= 1:
        return None
    strategy = cfg["train"]["strategy"]
    fabric = L.Fabric(accelerator=cfg["train"]["accelerator"], devices=n, num_nodes=num_nodes,
                      strategy="ddp" if strategy == "auto" else strategy)
    fabric.launch()
    return fabric
