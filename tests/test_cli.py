"""CLI behaviour, and every bad input of the foundation issue: exit status 2, one clear message, no traceback,
nothing in results/ touched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fsgen_bench.cli import main
from helpers import make_npy


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    (folder / "records").mkdir(parents=True)
    (folder / "records" / "old.jsonl").write_text('{"kept": true}\n')
    return folder


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dry_run_on_any_npy(tmp_path, results, capsys):
    path = make_npy(tmp_path / "ten.npy", classes=10, images=60, size=28)
    code, out, err = run_cli(["run", "--method", "f2gan", "--dataset", f"npy:{path}", "--set",
                              "data.num_seen_classes=7", "--dry-run", "--results", str(results)], capsys)
    assert code == 0, err
    docs = list(yaml.safe_load_all(out.replace("# dataset summary", "---")))
    cfg, summary = docs[0], docs[1]
    assert cfg["data"]["path"] == str(path) and cfg["data"]["num_seen_classes"] == 7
    assert summary["seen_classes"] == 7 and summary["unseen_classes"] == 3


def bad_npys(tmp_path):
    good = make_npy(tmp_path / "good.npy", classes=4, images=20, size=16)
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"this is not a numpy file at all" * 10)
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(good.read_bytes()[:-500])
    wrong_rank = tmp_path / "rank.npy"
    np.save(wrong_rank, np.zeros((4, 16, 16), np.uint8))
    few = tmp_path / "few.npy"
    make_npy(few, classes=10, images=6, size=16)   # 6 images: fewer than the 10-image pool + reals
    return {"missing": (tmp_path / "nope.npy", "does not exist|not found|missing"),
            "corrupt": (corrupt, "corrupt|not a valid|cannot"),
            "truncated": (truncated, "truncated|corrupt|short"),
            "wrong rank": (wrong_rank, "rank|dimension|shape"),
            "too few images": (few, "images")}


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "wrong rank", "too few images"])
def test_bad_npy_exit_2_and_results_untouched(case, tmp_path, results, capsys):
    path, pattern = bad_npys(tmp_path)[case]
    before = snapshot(results)
    args = ["run", "--method", "noise", "--dataset", f"npy:{path}", "--set", "data.num_seen_classes=3",
            "--results", str(results), "--preset", "smoke"]
    if case != "too few images":
        args.append("--dry-run")
    code, out, err = run_cli(args, capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and err.startswith("fsgen-bench: error:")
    import re
    assert re.search(pattern, err, re.I), err
    assert snapshot(results) == before


@pytest.mark.parametrize("args,pattern", [
    (["run", "--method", "nosuch", "--dataset", "glyphs"], "known methods"),
    (["run", "--method", "noise", "--dataset", "nosuch"], "known datasets"),
    (["run", "--method", "noise", "--dataset", "glyphs", "--set", "data.batchsize=3"], "unknown config key"),
    (["run", "--method", "noise", "--dataset", "glyphs", "--protocol", "nosuch"], "known protocols"),
    (["eval", "--method", "f2gan", "--dataset", "glyphs", "--ckpt", "/nonexistent/x.ckpt"], "checkpoint"),
])
def test_bad_names_exit_2(args, pattern, results, capsys):
    before = snapshot(results)
    code, out, err = run_cli(args + ["--results", str(results)], capsys)
    assert code == 2 and pattern in err, err
    assert snapshot(results) == before


def test_unwritable_results_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run_cli(["run", "--method", "noise", "--dataset", "glyphs", "--preset", "smoke",
                              "--results", str(blocker / "results")], capsys)
    assert code == 2 and "not writable" in err
    assert blocker.read_text() == "x"


def test_datasets_lists_every_registered_dataset(capsys):
    code, out, err = run_cli(["datasets"], capsys)
    assert code == 0
    for name in ("glyphs", "omniglot", "emnist", "vggface", "flowers", "animalfaces"):
        assert f"\n{name} " in out
    assert "embedded" in out


def test_console_script_exit_status(tmp_path):
    """The installed entry point, as a user runs it: status 2 and no traceback."""
    proc = subprocess.run([sys.executable, "-m", "fsgen_bench.cli", "run", "--method", "noise", "--dataset",
                           f"npy:{tmp_path / 'missing.npy'}", "--dry-run"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "missing.npy" in proc.stderr


def test_cli_silences_only_the_known_lightning_noise(recwarn):
    import logging
    import warnings

    from fsgen_bench.cli import _DropLitLoggerTip, _quiet_known_noise

    _quiet_known_noise()
    _quiet_known_noise()                       # idempotent: one filter, however many commands run in a process
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert sum(isinstance(f, _DropLitLoggerTip) for f in rank_zero.filters) == 1

    def passes(message: str) -> bool:
        record = logging.LogRecord(rank_zero.name, logging.INFO, __file__, 1, message, None, None)
        return bool(rank_zero.filter(record))

    assert not passes("💡 Tip: ... try installing [litlogger](https://pypi.org/project/litlogger/) ...")
    assert passes("GPU available: False, used: False")
    warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning)
    warnings.warn("a real problem", UserWarning)
    assert [str(w.message) for w in recwarn] == ["a real problem"]


def test_logger_settings_do_not_rename_the_run(results, capsys):
    def run_name(*extra):
        code, out, err = run_cli(["run", "--method", "noise", "--dataset", "glyphs", "--preset", "smoke",
                                  "--dry-run", "--results", str(results), *extra], capsys)
        assert code == 0, err
        return yaml.safe_load(out.split("# dataset summary")[0])["run"]["name"]

    plain = run_name()
    assert plain == "noise-glyphs-smoke-s0"
    assert run_name("--logger", "wandb", "--set", "logger.project=p", "--set", "logger.entity=e") == plain
    assert run_name("--set", "eval.num_generated=16") != plain      # what is computed does rename it


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no folder can be created")
@pytest.mark.parametrize("command", [
    ["run", "--method", "noise", "--dataset", "glyphs", "--preset", "smoke"],
    ["eval", "--method", "noise", "--dataset", "glyphs", "--preset", "smoke"],
    ["bench", "glyphs-quick"],
])
def test_results_where_no_folder_can_be_created(command, tmp_path, capsys):
    """Even as root (for whom os.access says yes): exit 2, one line, no traceback, nothing written anywhere,
    not even the dataset cache (the check comes before any input is read)."""
    cache = tmp_path / "cache"
    code, out, err = run_cli([*command, "--results", "/proc/fsgen-x/y", *(
        [] if command[0] == "bench" else ["--set", f"run.cache_dir={cache}"])], capsys)
    assert code == 2, (out, err)
    assert err.startswith("fsgen-bench: error: results folder /proc/fsgen-x/y is not writable")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not Path("/proc/fsgen-x").exists() and not cache.exists()


def test_plain_runs_write_outputs_not_the_committed_results(capsys):
    """`fsgen-bench run` without --results goes to outputs/ (git ignores it); results/ is the committed suite's."""
    code, out, err = run_cli(["run", "--method", "noise", "--dataset", "glyphs", "--preset", "smoke", "--dry-run"],
                             capsys)
    assert code == 0, err
    assert yaml.safe_load(out.split("# dataset summary")[0])["run"]["results_dir"] == "outputs"
    root = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "outputs/records/x.jsonl"])
    assert ignored.returncode == 0, "outputs/ must be ignored by git"


def test_leaderboard_reads_the_records_of_a_results_folder(tmp_path, capsys):
    from fsgen_bench.eval.records import MetricRecord, append_records, records_path

    folder = tmp_path / "mine"
    rec = MetricRecord(run_id="noise-glyphs-smoke-s0", method="noise", dataset="glyphs", protocol="clean@v1",
                       metric="fid", backbone="domain", value=3.5, seed=0, preset="smoke", timestamp=1.0)
    append_records([rec], records_path(folder, "glyphs", "clean@v1"))
    code, out, err = run_cli(["leaderboard", "--results", str(folder)], capsys)
    assert code == 0, err
    assert (folder / "leaderboard.md").is_file() and "3.5" in (folder / "leaderboard.md").read_text()
    code, out, err = run_cli(["leaderboard", "--results", str(tmp_path / "none")], capsys)
    assert code == 2 and "does not exist" in err


def test_a_subcommand_is_one_function_and_its_registration(capsys, monkeypatch):
    from fsgen_bench import cli

    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))      # leave the real table as it was

    @cli.command("hello", "say hello", cli.arg("--name", default="world"))
    def cmd_hello(args) -> int:
        print(f"hello {args.name}")
        return 0

    assert run_cli(["hello", "--name", "glyphs"], capsys)[:2] == (0, "hello glyphs\n")
    assert "hello" in cli.build_parser().format_help()
    with pytest.raises(ValueError, match="defined twice"):
        cli.command("hello", "again")(cmd_hello)


def test_run_then_eval_share_one_evaluate_and_record_step(tmp_path, capsys):
    """`run` (a reference row: nothing to train) and `eval` of the same configuration: the same records file,
    the same run metadata in every record, one DONE marker written by `run` only, and a rerun is skipped."""
    import json

    data = make_npy(tmp_path / "blobs.npy", classes=12, images=24, size=16)
    results = tmp_path / "results"
    args = ["--method", "noise", "--dataset", f"npy:{data}", "--preset", "smoke", "--results", str(results),
            "--set", "data.num_seen_classes=7", "--set", "eval.backbones=[domain]", "--set", "data.image_size=16"]
    code, out, err = run_cli(["run", *args], capsys)
    assert code == 0, err
    (run_dir,) = (results / "runs").iterdir()
    done = json.loads((run_dir / "DONE").read_text())
    (records_file,) = (results / "records").glob("*.jsonl")
    assert records_file.name.startswith("npy-blobs__clean_v2")       # the dataset label of an npy: path
    first = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert done["run_id"] == run_dir.name and done["records"] == len(first) > 0
    assert {(r["run_id"], r["dataset"], r["method"]) for r in first} == {(run_dir.name, "npy-blobs", "noise")}
    assert all(r["reference"] is True and r["variant"] is None for r in first)
    assert {r["extra"]["train_wall_s"] for r in first} == {0.0}
    assert sorted(p.name for p in run_dir.iterdir() if not p.is_dir()) == [
        "DONE", "config.yaml", "dataset.json", "eval_metrics.csv", "eval_plan.json", "eval_samples.png"]

    code, out, err = run_cli(["run", *args], capsys)
    assert code == 0 and "already finished" in out

    (run_dir / "DONE").unlink()
    code, out, err = run_cli(["eval", *args], capsys)
    assert code == 0, err
    assert not (run_dir / "DONE").exists()                            # eval never marks a run finished
    lines = [json.loads(line) for line in records_file.read_text().splitlines()]
    second = lines[len(first):]
    assert [(r["metric"], r["backbone"], r["setting"]) for r in second] == \
        [(r["metric"], r["backbone"], r["setting"]) for r in first]
    drop = ("timestamp", "wall_time_s", "extra")
    assert [{k: v for k, v in r.items() if k not in drop} for r in second] == \
        [{k: v for k, v in r.items() if k not in drop} for r in first]
    assert {r["extra"]["train_wall_s"] for r in second} == {None}     # evaluated without training


def test_preflight_checks_weights_and_k_before_a_run_folder_exists(tmp_path, results, capsys):
    """A damaged weights file named by an option stops a run with eval.download_weights on before training; a
    protocol K the method cannot take is refused before training (not after, at generation)."""
    from fsgen_bench.errors import UserError
    from fsgen_bench.eval.protocols import get_protocol
    from fsgen_bench.methods import METHODS
    from fsgen_bench.runner.steps import check_method_fits

    bad = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    bad.write_bytes(b"not a state dict" * 100)
    before = snapshot(results)
    code, out, err = run_cli(["run", "--method", "noise", "--dataset", "glyphs", "--preset", "smoke", "--results",
                              str(results), "--set", "eval.download_weights=true", "--set",
                              f"eval.inception_weights={bad}"], capsys)
    assert code == 2 and str(bad) in err, err
    assert snapshot(results) == before
    with pytest.raises(UserError, match=r"K = 1.*accepts K = 2\.\.any.*fusion"):
        check_method_fits(METHODS.get("f2gan"), get_protocol("clean").with_overrides(k_shot=1))
    check_method_fits(METHODS.get("f2gan"), get_protocol("clean"))
