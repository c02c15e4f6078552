"""Experiment loggers: build one from the config, and the few helpers the runner and the suite call.

Model code never calls a logger's API: it hands tensors to the runner, and the runner goes through
``log_images`` / ``log_metrics_table`` here, which work the same way for every kind:

* ``csv`` (the default): Lightning's CSVLogger in ``<run_dir>/csv/version_N/`` (a new version on every resume,
  because CSVLogger deletes an existing metrics.csv in a reused folder), images as PNG files under
  ``<run_dir>/images/``, the evaluation records in ``<run_dir>/eval_metrics.csv``.
* ``wandb``: Lightning's WandbLogger, one wandb run per experiment, grouped by ``<dataset>/<protocol>``.
  Without credentials it runs offline and says how to sync later; ``WANDB_MODE`` always wins.
* ``none``: no logger; the helpers do nothing. Records and checkpoints are written regardless.
"""

from __future__ import annotations

import copy
import csv
import netrc
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence
from urllib.parse import urlparse

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from PIL import Image

from fsgen_bench.atomic import atomic_write
from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocols import get_protocol
from fsgen_bench.runner.identity import dataset_label

if TYPE_CHECKING:  # pragma: no cover
    from fsgen_bench.eval.records import MetricRecord

LOGGER_KINDS = ("csv", "wandb", "none")
# WANDB_MODE values wandb itself accepts, mapped onto the three modes we act on.
_WANDB_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
                "disabled": "disabled"}
_EVAL_COLUMNS = ("key", "metric", "backbone", "setting", "value", "ci95", "protocol", "method", "dataset",
                 "preset", "seed", "run_id")


def logger_kind(cfg: dict) -> str:
    """The configured kind, validated: an unknown kind is a UserError naming the valid ones."""
    kind = str((cfg.get("logger") or {}).get("kind") or "csv").lower()
    if kind not in LOGGER_KINDS:
        raise UserError(
            f"unknown logger kind {kind!r}; valid kinds: {', '.join(LOGGER_KINDS)} "
            f"(set it with --set logger.kind=csv)"
        )
    return kind


def wandb_has_credentials(environ: dict | None = None) -> bool:
    """An API key in the environment, or a netrc entry for the wandb host (what `wandb login` writes)."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = Path(env.get("NETRC") or Path(env.get("HOME") or Path.home()) / ".netrc").expanduser()
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_mode(environ: dict | None = None) -> str:
    """``online`` | ``offline`` | ``disabled``: WANDB_MODE when set, else online only with credentials.

    A machine without credentials (a cluster node, a laptop on a train) still gets a complete local run
    that ``wandb sync`` can upload later, instead of a login prompt or a crash.
    """
    env = os.environ if environ is None else environ
    requested = (env.get("WANDB_MODE") or "").strip().lower()
    if requested:
        if requested not in _WANDB_MODES:
            raise UserError(
                f"WANDB_MODE={requested!r} is not a wandb mode; use one of online, offline, disabled "
                f"(or unset it: online with credentials, else offline)"
            )
        return _WANDB_MODES[requested]
    return "online" if wandb_has_credentials(env) else "offline"


def _run_fields(cfg: dict) -> tuple[str, str, str | None, int, str]:
    """(method, dataset, preset, seed, protocol) as the run name and group show them."""
    run = cfg.get("run") or {}
    protocol = str((cfg.get("eval") or {}).get("protocol") or "clean")
    try:
        protocol = get_protocol(protocol).id
    except UserError:
        pass  # the runner reports a bad protocol; the logger only needs a label
    return str(run.get("method") or "run"), dataset_label(cfg), run.get("preset"), int(run.get("seed") or 0), protocol


def build_logger(cfg: dict, run_dir: Path) -> Logger | None:
    """The Lightning logger for one run, chosen by ``cfg["logger"]["kind"]`` (csv | wandb | none)."""
    kind = logger_kind(cfg)
    run_dir = Path(run_dir)
    if kind == "none":
        return None
    if kind == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv")
    return _build_wandb_logger(cfg, run_dir)


def _build_wandb_logger(cfg: dict, run_dir: Path) -> Logger:
    opts = cfg.get("logger") or {}
    method, dataset, preset, seed, protocol = _run_fields(cfg)
    mode = wandb_mode()
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"{method}-{preset}-s{seed}" if preset else f"{method}-s{seed}"
    # `mode=` goes to wandb.init for this run only; WandbLogger(offline=True) would instead set WANDB_MODE in
    # the process environment and leak offline mode into every later run of a suite.
    logger = WandbLogger(
        project=opts.get("project") or "fsgen-bench",
        entity=opts.get("entity") or None,
        save_dir=str(run_dir),
        name=name,
        group=f"{dataset}/{protocol}",
        job_type="run",
        tags=[t for t in (method, dataset, preset, protocol) if t],
        config=copy.deepcopy(cfg),
        mode=mode,
        log_model=False,
    )
    # WandbLogger always passes anonymous=None, which wandb 0.31 answers with a deprecation warning per run.
    init_kwargs = getattr(logger, "_wandb_init", None)
    if isinstance(init_kwargs, dict) and init_kwargs.get("anonymous") is None:
        init_kwargs.pop("anonymous", None)
    if mode == "offline":
        print(f"wandb: offline run (no credentials found, or WANDB_MODE=offline); upload it later with:\n"
              f"  wandb sync {run_dir / 'wandb'}/offline-run-*", file=sys.stderr)
    return logger


def _is_wandb(logger: Any) -> bool:
    return isinstance(logger, WandbLogger)


def _local_dir(logger: Any) -> Path | None:
    """Where a non-wandb logger keeps files: the run dir it was built with (CSVLogger.save_dir)."""
    for attr in ("save_dir", "log_dir"):
        value = getattr(logger, attr, None)
        if value:
            return Path(value)
    return None


def to_uint8_image(image: Any) -> np.ndarray:
    """A tensor or array image as uint8 ``[H, W]`` or ``[H, W, C]``.

    Accepts ``[C, H, W]`` (C = 1, 3, 4), ``[H, W, C]`` and ``[H, W]``. Floats are read as the project's
    [-1, 1] convention when they go below zero, else as [0, 1] (what make_grid(normalize=True) returns).
    """
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"an image must be [C, H, W], [H, W, C] or [H, W], got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32)
    if arr.size and float(arr.min()) < 0:
        arr = (arr + 1.0) / 2.0
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _as_image_list(images: Any) -> list:
    """A list of single images; a batch tensor/array ``[N, C, H, W]`` counts as N images."""
    if hasattr(images, "ndim") and not isinstance(images, (str, Path)) and images.ndim == 4:
        return [images[i] for i in range(images.shape[0])]
    if isinstance(images, (str, Path)) or hasattr(images, "ndim"):
        return [images]
    return list(images)


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_") or "image"


def log_images(logger: Any, key: str, images: Any, step: int | None = None,
               captions: Sequence[str] | None = None) -> list[Path]:
    """Log images under ``key``: wandb media, PNG files for csv (returned), nothing without a logger.

    ``images`` holds tensors/arrays (see ``to_uint8_image``) or paths of PNG files.
    """
    if logger is None:
        return []
    items = _as_image_list(images)
    if captions is not None and len(captions) != len(items):
        raise ValueError(f"{len(captions)} captions for {len(items)} images")
    if _is_wandb(logger):
        payload = [str(x) if isinstance(x, (str, Path)) else to_uint8_image(x) for x in items]
        kwargs = {"caption": list(captions)} if captions is not None else {}
        logger.log_image(key=key, images=payload, step=step, **kwargs)
        return []
    base = _local_dir(logger)
    if base is None:
        return []
    out_dir = base / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _safe_name(key) + (f"_step{int(step):07d}" if step is not None else "")
    written = []
    for i, item in enumerate(items):
        suffix = f"_{i}" if len(items) > 1 else ""
        if captions is not None:
            suffix += "_" + _safe_name(str(captions[i]))
        path = out_dir / f"{stem}{suffix}.png"
        if isinstance(item, (str, Path)):
            shutil.copyfile(item, path)
        else:
            Image.fromarray(to_uint8_image(item)).save(path)
        written.append(path)
    return written


def _record_row(record: "MetricRecord") -> list:
    return [record.key, record.metric, record.backbone, record.setting, record.value, record.ci95,
            record.protocol, record.method, record.dataset, record.preset, record.seed, record.run_id]


def log_metrics_table(logger: Any, records: Iterable["MetricRecord"]) -> Path | None:
    """The evaluation records of one run: a wandb table plus ``eval/<key>`` summary values, or eval_metrics.csv."""
    if logger is None:
        return None
    records = sorted(records, key=lambda r: (r.key, r.protocol, r.seed))
    if _is_wandb(logger):
        logger.log_table(key="eval/records", columns=list(_EVAL_COLUMNS), data=[_record_row(r) for r in records])
        # summary values make the numbers sortable and plottable across runs in the wandb UI
        logger.experiment.summary.update({f"eval/{r.key}": r.value for r in records})
        return None
    base = _local_dir(logger)
    if base is None:
        return None
    base.mkdir(parents=True, exist_ok=True)
    path = base / "eval_metrics.csv"
    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(_EVAL_COLUMNS)
        writer.writerows(["" if v is None else v for v in _record_row(r)] for r in records)
    return path


def finish_logger(logger: Any = None, *, exit_code: int = 0) -> None:
    """End the wandb run of ``logger`` (or any run still open in this process); other kinds need nothing.

    Call it when a run ends, also on failure: WandbLogger reuses an open wandb run, so without this the next
    experiment in the same process (the next suite cell) would log into the previous one.
    """
    if logger is not None and _is_wandb(logger):
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None:
            experiment.finish(exit_code=exit_code)
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def log_leaderboard(cfg_logger: dict | None, tables: Sequence[Any], *, save_dir: Path | None = None) -> str | None:
    """Leaderboard tables as wandb Tables in a run of their own (job_type ``leaderboard``).

    Only for ``kind: wandb``; csv and none have nothing to do (the CSV files are the tables). ``tables`` are
    ``fsgen_bench.leaderboard.Table`` objects. Returns the wandb run's local directory, or None.
    """
    opts = cfg_logger or {}
    if logger_kind({"logger": opts}) != "wandb" or not tables:
        return None
    mode = wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=opts.get("project") or "fsgen-bench", entity=opts.get("entity") or None,
        job_type="leaderboard", name="leaderboard", dir=str(save_dir) if save_dir is not None else None,
        mode=mode, reinit="finish_previous",
    )
    try:
        for table in tables:
            columns, rows = table.wide()
            run.log({f"leaderboard/{table.dataset}/{table.protocol}": wandb.Table(columns=columns, data=rows)})
        local_dir = str(Path(run.dir).parent) if getattr(run, "dir", None) else None
    finally:
        run.finish()
    if mode == "offline" and local_dir:
        print(f"wandb: offline leaderboard run; upload it later with:\n  wandb sync {local_dir}", file=sys.stderr)
    return local_dir
