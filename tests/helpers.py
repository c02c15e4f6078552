"""Small builders shared by tests (real formats, made on the fly)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np


def make_npy(path: Path, *, classes: int = 10, images: int = 24, size: int = 28, channels: int = 1,
             dtype=np.uint8, seed: int = 0) -> Path:
    """A [classes, images, H, W, C] array whose classes are distinguishable (class-specific blobs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    data = np.zeros((classes, images, size, size, channels), dtype=np.float32)
    for c in range(classes):
        cy, cx = rng.uniform(0.25, 0.75, 2) * size
        for i in range(images):
            jy, jx = rng.normal(0, 1.5, 2)
            blob = np.exp(-(((yy - cy - jy) ** 2 + (xx - cx - jx) ** 2) / (2 * (size / 8) ** 2)))
            data[c, i] = blob[..., None] * (0.6 + 0.4 * rng.random())
    if dtype == np.uint8:
        out = (data * 255).round().astype(np.uint8)
    else:
        out = data.astype(dtype)
    np.save(path, out)
    return path


def base_data_cfg(**over) -> dict:
    cfg = {
        "name": "glyphs", "path": None, "root": None, "download": False, "image_size": 32, "channels": 1,
        "num_seen_classes": None, "k_shot": 3, "batch_size": 4, "episodes_per_epoch": 16, "num_workers": 0,
        "glyph_images_per_class": 20,
    }
    cfg.update(over)
    return cfg


# -- reading an offline wandb run back -------------------------------------------------------------------------
# wandb 0.31 offline writes no wandb-summary.json or config.yaml: metrics, summary and config exist only in the
# run's ``.wandb`` transaction log (the LevelDB log format: 32 KiB blocks of records with a 7-byte header
# crc32/length/type, full or first/middle/last fragments, after a 7-byte ``:W&B`` file header), and wandb no
# longer ships a Python reader for it. ``read_wandb_log`` decodes the fragments and parses each record with
# wandb's own protobuf ``Record``. Media files and table JSON are plain files under ``files/media/``.

def read_wandb_log(path: Path):
    """Yield wandb_internal_pb2.Record objects from a .wandb file."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a wandb transaction log"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:                       # a block tail too short for a header is zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):   # a record still being written
            return
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk   # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wait_for_exit_record(path: Path, timeout: float = 20.0) -> list:
    """The records of a finished run. wandb.finish() returns before wandb-core has flushed the log (seen here:
    a 7-byte file right after finish, the whole run a moment later), so wait for the final ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(read_wandb_log(path)) if path.stat().st_size > 7 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_wandb_run(offline_dir: Path) -> dict:
    """history (list of dicts), summary (dict), run (the run record) and config (dict) of a finished run."""
    (log_file,) = Path(offline_dir).glob("*.wandb")
    history, summary, run_info = [], {}, None
    for record in wait_for_exit_record(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in record.summary.update})
        elif kind == "run":
            run_info = record.run
    config = {u.key: json.loads(u.value_json) for u in run_info.config.update} if run_info is not None else {}
    return {"history": history, "summary": summary, "run": run_info, "config": config}


# -- method defaults ---------------------------------------------------------------------------------------------
def method_defaults(name: str) -> dict:
    """The ``method:`` section of configs/methods/<name>.yaml without ``name``: the single source of a method's
    defaults (its constructor has none), for tests that build a method directly."""
    from fsgen_bench.config import configs_dir, load_yaml

    params = dict(load_yaml(configs_dir() / "methods" / f"{name}.yaml")["method"])
    params.pop("name")
    return params
