"""Loggers: csv / wandb / none, the helpers, and a real offline wandb run read back from disk
(through ``helpers.read_wandb_run``; see there for why the run's ``.wandb`` log is decoded by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fsgen_bench.errors import UserError
from fsgen_bench.eval.records import MetricRecord
from fsgen_bench.runner.loggers import (build_logger, finish_logger, log_images, log_leaderboard, log_metrics_table,
                                        to_uint8_image, wandb_has_credentials, wandb_mode)
from helpers import read_wandb_run, wait_for_exit_record


def cfg(kind="csv", **logger):
    return {"run": {"method": "f2gan", "dataset": "glyphs", "preset": "smoke", "seed": 1},
            "data": {"name": "glyphs"}, "eval": {"protocol": "clean"},
            "logger": {"kind": kind, "project": "fsgen-test", "entity": None, **logger}}


def records():
    base = dict(run_id="f2gan-glyphs-smoke-s1", method="f2gan", dataset="glyphs", protocol="clean@v1", seed=1,
                preset="smoke")
    return [MetricRecord(metric="fid", backbone="domain", value=42.5, **base),
            MetricRecord(metric="lpips", backbone="alex", value=0.25, ci95=0.01, **base)]


def test_csv_logger_images_and_metrics_table(tmp_path):
    run_dir = tmp_path / "run"
    logger = build_logger(cfg("csv"), run_dir)
    assert type(logger).__name__ == "CSVLogger" and Path(logger.save_dir) == run_dir
    logger.log_metrics({"train/loss_g": 1.5}, step=3)
    logger.save()
    assert list(run_dir.glob("csv/version_*/metrics.csv"))

    grid = torch.rand(3, 10, 12) * 2 - 1                 # [C, H, W] in [-1, 1]
    paths = log_images(logger, "samples", [grid, np.zeros((10, 12), np.uint8)], step=7, captions=["a", "b c"])
    assert [p.name for p in paths] == ["samples_step0000007_0_a.png", "samples_step0000007_1_b_c.png"]
    from PIL import Image

    assert Image.open(paths[0]).size == (12, 10)
    copied = log_images(logger, "eval/grid", [paths[1]])
    assert copied[0].read_bytes() == paths[1].read_bytes() and copied[0].parent == run_dir / "images"

    table = log_metrics_table(logger, records())
    lines = table.read_text().splitlines()
    assert table == run_dir / "eval_metrics.csv" and lines[0].startswith("key,metric,backbone,setting,value,ci95")
    assert lines[1].startswith("fid/domain,fid,domain,,42.5,,clean@v1") and lines[2].startswith("lpips/alex")


def test_none_logger_and_unknown_kind(tmp_path):
    assert build_logger(cfg("none"), tmp_path) is None
    assert log_images(None, "samples", [torch.zeros(1, 4, 4)]) == []
    assert log_metrics_table(None, records()) is None
    finish_logger(None)
    with pytest.raises(UserError, match="csv, wandb, none"):
        build_logger(cfg("tensorboard"), tmp_path)


def test_image_conversion():
    assert to_uint8_image(torch.full((1, 2, 2), -1.0)).tolist() == [[0, 0], [0, 0]]
    assert to_uint8_image(torch.ones(3, 2, 2)).shape == (2, 2, 3)
    assert to_uint8_image(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 128      # [0, 1] floats
    with pytest.raises(ValueError):
        to_uint8_image(np.zeros((2, 2, 2, 2)))


def test_wandb_mode_rules(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert wandb_mode(home) == "offline"
    assert wandb_mode({**home, "WANDB_API_KEY": "k" * 40}) == "online"
    assert wandb_mode({**home, "WANDB_API_KEY": "k", "WANDB_MODE": "disabled"}) == "disabled"
    assert wandb_mode({**home, "WANDB_MODE": "dryrun"}) == "offline"
    assert wandb_mode({**home, "WANDB_MODE": "online"}) == "online"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    assert wandb_has_credentials(home) and wandb_mode(home) == "online"
    assert not wandb_has_credentials({**home, "WANDB_BASE_URL": "https://wandb.example.org"})
    with pytest.raises(UserError, match="WANDB_MODE"):
        wandb_mode({**home, "WANDB_MODE": "sometimes"})


def test_wandb_disabled_mode_is_a_quiet_no_op(tmp_path):
    logger = build_logger(cfg("wandb"), tmp_path)   # conftest: WANDB_MODE=disabled
    logger.log_metrics({"x": 1.0}, step=0)
    log_images(logger, "samples", [torch.zeros(3, 4, 4)])
    log_metrics_table(logger, records())
    finish_logger(logger)
    assert log_leaderboard({"kind": "wandb"}, ["not used when disabled"]) is None
    assert log_leaderboard({"kind": "csv"}, ["ignored"]) is None


def test_wandb_offline_run_holds_metrics_images_and_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path))          # no ~/.netrc, no settings from the machine
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir = tmp_path / "runs" / "f2gan-glyphs-smoke-s1"
    logger = build_logger(cfg("wandb"), run_dir)
    assert f"wandb sync {run_dir / 'wandb'}/offline-run-*" in capsys.readouterr().err
    try:
        logger.log_metrics({"train/loss_g": 1.5}, step=1)
        logger.log_metrics({"train/loss_g": 1.25}, step=2)
        log_images(logger, "samples", [torch.zeros(3, 8, 8)], step=2, captions=["epoch 1"])
        log_metrics_table(logger, records())
    finally:
        finish_logger(logger)

    (offline,) = run_dir.glob("wandb/offline-run-*")
    run = read_wandb_run(offline)
    history, summary, run_info = run["history"], run["summary"], run["run"]
    assert [h["train/loss_g"] for h in history if "train/loss_g" in h] == [1.5, 1.25]
    assert summary["eval/fid/domain"] == 42.5 and summary["eval/lpips/alex"] == 0.25
    assert run_info.run_group == "glyphs/clean@v2" and run_info.display_name == "f2gan-smoke-s1"
    assert run["config"]["run"]["method"] == "f2gan" and run["config"]["logger"]["kind"] == "wandb"

    images = list(offline.glob("files/media/images/samples_*.png"))
    assert len(images) == 1 and images[0].read_bytes()[:4] == b"\x89PNG"
    (table_file,) = offline.glob("files/media/table/eval/records_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:5] == ["key", "metric", "backbone", "setting", "value"]
    assert [row[0] for row in table["data"]] == ["fid/domain", "lpips/alex"]
    assert not (tmp_path / "wandb-dir").exists() or not list((tmp_path / "wandb-dir").glob("**/offline-run-*"))


def test_wandb_leaderboard_run_offline(tmp_path, monkeypatch):
    from fsgen_bench.leaderboard import compute_tables

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    tables = compute_tables(records())
    local = log_leaderboard({"kind": "wandb", "project": "fsgen-test"}, tables, save_dir=tmp_path / "results")
    assert local and Path(local).parent == tmp_path / "results" / "wandb"
    run_info = next(r.run for r in wait_for_exit_record(next(Path(local).glob("*.wandb")))
                    if r.WhichOneof("record_type") == "run")
    assert run_info.job_type == "leaderboard"
    (table_file,) = Path(local).glob("files/media/table/leaderboard/glyphs/*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:4] == ["method", "preset", "reference", "n"] and "fid/domain" in table["columns"]
    assert table["data"][0][0] == "f2gan"
