"""Two gloo ranks give the numbers one process gives (classes sharded, features gathered, metrics everywhere)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from test_eval_support import RUN_META, TINY_EVAL_CFG, copy_support, tiny_datamodule, tiny_protocol


def _evaluate(cache_dir: Path) -> list:
    from fsgen_bench.eval.harness import evaluate

    return evaluate(copy_support(), tiny_datamodule(cache_dir), protocol=tiny_protocol(), eval_cfg=TINY_EVAL_CFG,
                    cache_dir=cache_dir, run_meta=RUN_META, log=lambda *a: None)


def _ddp_worker(rank: int, world: int, port: int, cache_dir: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)          # two ranks on two cores
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        records = _evaluate(Path(cache_dir))
        values = {r.key: r.value for r in records}
        values["_world"] = records[0].extra["world_size"]
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(values))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_gloo_ranks_match_one_process(tmp_path):
    single_cache, ddp_cache = tmp_path / "single", tmp_path / "ddp"
    single = {r.key: r.value for r in _evaluate(single_cache)}
    # Share the trained backbone (rank 0 loads and broadcasts it) but not the real-feature cache, so the
    # DDP run shards and gathers real and generated features itself.
    shutil.copytree(single_cache / "backbones", ddp_cache / "backbones")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(ddp_cache), str(tmp_path)), nprocs=2,
                                join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1], "every rank computes the same numbers"
    assert ranks[0].pop("_world") == 2
    assert ranks[0].keys() == single.keys()
    for key, value in single.items():
        assert ranks[0][key] == pytest.approx(value, rel=1e-4, abs=1e-8), key
    assert list((ddp_cache / "eval").rglob("*.pt")), "the gathered real features were cached"
