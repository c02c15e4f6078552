"""A real training run with ``--logger wandb`` in offline mode, read back from the wandb run folder: the
resolved config, the training losses, the sample grids and method figures logged during training, and the
evaluation metrics as a table and as summary values. (tests/test_loggers.py covers the logger helpers alone.)"""

from __future__ import annotations

import json

from fsgen_bench.cli import main
from helpers import make_npy, read_wandb_run


def test_f2gan_run_with_wandb_offline_logs_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))          # no ~/.netrc or wandb settings from the machine
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    data = make_npy(tmp_path / "blobs.npy", classes=20, images=24, size=32)
    results = tmp_path / "results"
    code = main(["run", "--method", "f2gan", "--dataset", f"npy:{data}", "--preset", "smoke",
                 "--set", "data.num_seen_classes=10", "--set", "eval.backbones=[domain]",
                 "--set", "train.max_epochs=2", "--logger", "wandb", "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 0, err
    (run_dir,) = (results / "runs").iterdir()
    assert (run_dir / "DONE").exists()
    assert f"wandb sync {run_dir / 'wandb'}/offline-run-*" in err      # how to upload the run later

    (offline,) = run_dir.glob("wandb/offline-run-*")
    run = read_wandb_run(offline)
    assert run["run"].run_group == "npy-blobs/clean@v2" and run["run"].display_name == "f2gan-smoke-s0"
    assert run["config"]["run"]["method"] == "f2gan" and run["config"]["train"]["max_epochs"] == 2

    # training losses, one history row per step (smoke: 8 episodes / batch 4 = 2 steps per epoch, 2 epochs)
    losses = [h["train/loss_g"] for h in run["history"] if "train/loss_g" in h]
    assert len(losses) == 4 and all(isinstance(v, float) for v in losses)
    assert all("train/loss_d" in h for h in run["history"] if "train/loss_g" in h)

    # a sample grid and F2GAN's two figures (interpolation strip, NAF attention) at the end of each epoch
    media = offline / "files" / "media" / "images"
    assert len(list(media.glob("samples_*.png"))) == 2
    for figure in ("interpolation", "attention"):
        assert len(list(media.glob(f"figures/{figure}_*.png"))) == 2, figure
        key = f"figures/{figure}/captions"
        captions = [c for h in run["history"] if key in h for c in h[key]]
        assert captions == ["epoch 1", "epoch 2"], figure
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in media.rglob("*.png"))

    # the evaluation: the same numbers as the run's records, as a wandb table and as summary values
    records = [json.loads(line) for p in (results / "records").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert records
    for r in records:
        key = "/".join(x for x in (r["metric"], r["backbone"], r["setting"]) if x)
        assert run["summary"][f"eval/{key}"] == r["value"], key
    (table_file,) = offline.glob("files/media/table/eval/records_*.table.json")
    table = json.loads(table_file.read_text())
    assert len(table["data"]) == len(records) and table["columns"][0] == "key"
