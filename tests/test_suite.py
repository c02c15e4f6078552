"""The suite runner with a fake run function: grid, run ids, resume, failures, shards, dry run, suite files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from fsgen_bench.config import configs_dir
from fsgen_bench.errors import UserError
from fsgen_bench.eval.records import MetricRecord, append_records, read_records
from fsgen_bench.methods import METHODS
from fsgen_bench.runner.identity import RunIdentity, cell_run_id, dataset_slug, overrides_hash
from fsgen_bench.runner.suite import load_suite, parse_shard, parse_suite, run_suite, select_shard

SUITES = Path(__file__).resolve().parents[1] / "configs" / "suites"
ALL_METHODS = METHODS.names()        # a new method needs no edit here
FAKE_FID = {"f2gan": 10.0, "noise": 70.0}


@pytest.fixture
def config_root(tmp_path) -> Path:
    """The real configs, plus a stub file for every method whose config has not landed yet.

    Method layers merge non-strictly, so a stub resolves; the runner is faked, so nothing trains.
    """
    root = tmp_path / "configs"
    shutil.copytree(configs_dir(), root)
    for method in ALL_METHODS:
        path = root / "methods" / f"{method}.yaml"
        if not path.exists():
            path.write_text(yaml.safe_dump({"method": {"name": method}}))
    return root


@dataclass
class FakeRunResult:
    run_dir: Path
    records: list = field(default_factory=list)
    status: str = "finished"


def is_done(results: Path, run_id: str) -> bool:
    return RunIdentity(run_id=run_id, results_dir=results, dataset="glyphs").is_done()


class FakeRunner:
    """Stands in for run_experiment: records one FID per call and marks the run DONE, as the real one does
    (``write_dones=False``: a run function that forgets its marker)."""

    def __init__(self, fail_methods=(), write_dones=True):
        self.calls: list[dict] = []
        self.fail_methods = set(fail_methods)
        self.write_dones = write_dones

    def __call__(self, cfg, *, resume=True):
        self.calls.append(cfg)
        run = cfg["run"]
        if run["method"] in self.fail_methods:
            raise RuntimeError(f"{run['method']} diverged")
        identity = RunIdentity.of(cfg)
        identity.run_dir.mkdir(parents=True, exist_ok=True)
        value = FAKE_FID.get(run["method"], 50.0) + run["seed"]
        rec = MetricRecord(run_id=identity.run_id, method=run["method"], dataset=identity.dataset,
                           protocol=f"{cfg['eval']['protocol']}@v1", metric="fid", backbone="domain", value=value,
                           seed=run["seed"], preset=run["preset"], timestamp=1000.0 + len(self.calls))
        append_records([rec], identity.records_path(rec.protocol))
        if self.write_dones:
            identity.write_done({"run_id": identity.run_id})
        return FakeRunResult(run_dir=identity.run_dir, records=[rec])


def write_suite(tmp_path, **data) -> Path:
    base = {"methods": ["f2gan", "noise"], "datasets": ["glyphs"], "presets": ["smoke"], "seeds": [0, 1],
            "protocol": "clean"}
    base.update(data)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def test_duration_text():
    from fsgen_bench.runner.suite import _duration

    assert [_duration(s) for s in (5, 95, 7300)] == ["5 s", "1 min 35 s", "2 h 01 min"]


def test_cell_run_id_rule():
    assert cell_run_id("f2gan", "glyphs", "quick", 0) == "f2gan-glyphs-quick-s0"
    assert cell_run_id("noise", "glyphs", None, 2) == "noise-glyphs-default-s2"
    assert cell_run_id("f2gan", "npy:/data/lofgan/animal_128.npy", "paper", 1) == "f2gan-npy-animal_128-paper-s1"
    assert dataset_slug("folder:/data/faces/") == "folder-faces"
    with_set = cell_run_id("f2gan", "glyphs", "quick", 0, ["train.max_epochs=2"])
    assert with_set == f"f2gan-glyphs-quick-s0-{overrides_hash(['train.max_epochs=2'])}"
    assert len(with_set.rsplit("-", 1)[1]) == 8
    assert overrides_hash([]) is None
    # the order of overrides is part of the name, as it is on the command line
    assert overrides_hash(["a=1", "b=2"]) != overrides_hash(["b=2", "a=1"])


def test_runs_every_cell_then_resumes_without_rerunning(tmp_path, config_root):
    suite = write_suite(tmp_path)
    results = tmp_path / "results"
    runner = FakeRunner()
    result = run_suite(suite, runner, results_dir=results, config_root=config_root)

    assert result.exit_code == 0 and result.ok
    assert [c.cell.run_id for c in result.cells] == [
        "f2gan-glyphs-smoke-s0", "noise-glyphs-smoke-s0", "f2gan-glyphs-smoke-s1", "noise-glyphs-smoke-s1"]
    assert all(c.status == "finished" and c.records == 1 for c in result.cells)
    for cfg in runner.calls:   # what run_experiment is handed
        assert cfg["run"]["results_dir"] == str(results)
        assert cfg["run"]["name"] == cell_run_id(cfg["run"]["method"], "glyphs", "smoke", cfg["run"]["seed"])
        assert cfg["eval"]["protocol"] == "clean" and cfg["run"]["preset"] == "smoke"
    assert all(is_done(results, c.cell.run_id) for c in result.cells)
    assert len(read_records(results / "records")) == 4
    assert (results / "leaderboard.md").is_file() and (results / "leaderboard_glyphs_clean-v1.csv").is_file()
    assert result.leaderboard

    again = FakeRunner()
    second = run_suite(suite, again, results_dir=results, config_root=config_root)
    assert again.calls == [] and [c.status for c in second.cells] == ["skipped"] * 4
    assert len(read_records(results / "records")) == 4


def test_logger_choice_reaches_every_cell_without_changing_run_ids(tmp_path, config_root, monkeypatch):
    suite = write_suite(tmp_path)
    results = tmp_path / "results"
    monkeypatch.setenv("WANDB_MODE", "disabled")    # the leaderboard Table at the end is a no-op when disabled
    runner = FakeRunner()
    run_suite(suite, runner, results_dir=results, config_root=config_root, logger="wandb")
    assert [cfg["logger"]["kind"] for cfg in runner.calls] == ["wandb"] * 4
    assert [cfg["run"]["name"] for cfg in runner.calls][0] == "f2gan-glyphs-smoke-s0"
    with pytest.raises(UserError, match="csv, wandb, none"):
        run_suite(suite, FakeRunner(), results_dir=tmp_path / "other", config_root=config_root,
                  logger="tensorboard")
    assert not (tmp_path / "other").exists()


def test_with_wandb_the_suite_ends_with_the_leaderboard_as_a_wandb_table(tmp_path, config_root, monkeypatch):
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))          # no credentials or settings from the machine
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    results = tmp_path / "results"
    run_suite(write_suite(tmp_path), FakeRunner(), results_dir=results, config_root=config_root,
              logger="wandb")
    (table_file,) = results.glob("wandb/offline-run-*/files/media/table/leaderboard/glyphs/*.table.json")
    table = json.loads(table_file.read_text())
    rows = {row[0]: row for row in table["data"]}
    fid = table["columns"].index("fid/domain")
    assert set(rows) == {"f2gan", "noise"} and rows["f2gan"][fid] == pytest.approx(10.5)   # seeds 0, 1: 10, 11


def test_a_failing_cell_is_reported_and_the_suite_goes_on(tmp_path, config_root, capsys):
    suite = write_suite(tmp_path)
    results = tmp_path / "results"
    result = run_suite(suite, FakeRunner(fail_methods={"f2gan"}), results_dir=results, config_root=config_root)
    assert result.exit_code == 1 and not result.ok
    assert [c.status for c in result.cells] == ["failed", "finished", "failed", "finished"]
    assert "RuntimeError: f2gan diverged" in result.failed[0].error
    assert not is_done(results, "f2gan-glyphs-smoke-s0") and is_done(results, "noise-glyphs-smoke-s0")
    assert (results / "leaderboard.md").is_file()   # built from the cells that did finish
    out = capsys.readouterr()
    assert "f2gan-glyphs-smoke-s0: failed" in out.out and "diverged" in out.err
    assert "[1/4]" in out.out and "3 cells left, about 0 s at this pace" in out.out   # an ETA also in logs
    assert "[4/4]" in out.out and "cells left" not in out.out.split("[4/4]")[1]

    # the rerun runs only the failed cells
    retry = FakeRunner()
    second = run_suite(suite, retry, results_dir=results, config_root=config_root)
    assert sorted(c["run"]["name"] for c in retry.calls) == ["f2gan-glyphs-smoke-s0", "f2gan-glyphs-smoke-s1"]
    assert second.exit_code == 0


def test_a_run_function_without_its_done_marker_is_rerun(tmp_path, config_root, capsys):
    """The DONE marker is the run function's (run_experiment writes it once); the suite only reads it."""
    suite = write_suite(tmp_path, methods=["noise"], seeds=[0])
    results = tmp_path / "results"
    result = run_suite(suite, FakeRunner(write_dones=False), results_dir=results, config_root=config_root)
    assert [c.status for c in result.cells] == ["finished"] and not is_done(results, "noise-glyphs-smoke-s0")
    assert "without its DONE marker" in capsys.readouterr().err
    again = FakeRunner()
    run_suite(suite, again, results_dir=results, config_root=config_root)
    assert len(again.calls) == 1 and is_done(results, "noise-glyphs-smoke-s0")


def test_fail_fast_stops_at_the_first_failure(tmp_path, config_root):
    suite = write_suite(tmp_path)
    runner = FakeRunner(fail_methods={"f2gan"})
    result = run_suite(suite, runner, results_dir=tmp_path / "results", config_root=config_root, fail_fast=True)
    assert len(runner.calls) == 1 and result.stopped_early and result.exit_code == 1
    assert not (tmp_path / "results" / "leaderboard.md").exists()


def test_shards_partition_the_cells(tmp_path, config_root):
    suite = write_suite(tmp_path, seeds=[0, 1, 2])
    results = tmp_path / "results"
    seen = []
    for i in range(3):
        runner = FakeRunner()
        run_suite(suite, runner, results_dir=results, shard=(i, 3), config_root=config_root)
        seen.append([c["run"]["name"] for c in runner.calls])
    flat = [name for shard in seen for name in shard]
    assert len(flat) == 6 and len(set(flat)) == 6 and all(len(s) == 2 for s in seen)
    assert select_shard(list(range(7)), (1, 3)) == [1, 4]
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "x", "1/0"):
        with pytest.raises(UserError, match="shard"):
            parse_shard(bad)


def test_dry_run_resolves_and_lists_without_running(tmp_path, config_root, capsys):
    suite = write_suite(tmp_path, set=["train.max_epochs=2"], protocol="f2gan")
    results = tmp_path / "results"
    result = run_suite(suite, lambda *a, **k: pytest.fail("dry run must not run"), results_dir=results,
                       dry_run=True, config_root=config_root)
    digest = overrides_hash(["train.max_epochs=2", "eval.protocol=f2gan"])
    assert [c.cell.run_id for c in result.cells][0] == f"f2gan-glyphs-smoke-s0-{digest}"
    assert {c.status for c in result.cells} == {"pending"} and not results.exists()
    assert f"pending  f2gan-glyphs-smoke-s0-{digest}" in capsys.readouterr().out


def test_the_default_protocol_does_not_change_run_ids(tmp_path, config_root):
    result = run_suite(write_suite(tmp_path, protocol="clean"), FakeRunner(), results_dir=tmp_path / "r", dry_run=True,
                       config_root=config_root)
    assert result.cells[0].cell.run_id == "f2gan-glyphs-smoke-s0"   # the same folder as `fsgen-bench run`


def test_bad_suite_files_are_user_errors(tmp_path, config_root):
    with pytest.raises(UserError, match="does not exist.*glyphs-quick, paper"):
        load_suite(tmp_path / "missing.yaml")
    assert load_suite(Path("glyphs-quick")).name == "glyphs-quick"     # a shipped suite by name, from any folder
    with pytest.raises(UserError, match="does not exist"):
        load_suite(Path("no-such-suite"))
    with pytest.raises(UserError, match="unknown key.*metods"):
        parse_suite({"metods": ["f2gan"], "datasets": ["glyphs"]})
    with pytest.raises(UserError, match="methods:` is required"):
        parse_suite({"datasets": ["glyphs"]})
    with pytest.raises(UserError, match="seeds"):
        parse_suite({"methods": ["f2gan"], "datasets": ["glyphs"], "seeds": ["zero"]})
    with pytest.raises(UserError, match="unknown protocol"):
        parse_suite({"methods": ["f2gan"], "datasets": ["glyphs"], "protocol": "clen"})
    with pytest.raises(UserError, match="key=value"):
        parse_suite({"methods": ["f2gan"], "datasets": ["glyphs"], "set": ["train.max_epochs"]})
    # a typo in a method name fails before any cell runs
    runner = FakeRunner()
    with pytest.raises(UserError, match="unknown method"):
        run_suite(write_suite(tmp_path, methods=["f2gan", "f3gan"]), runner, results_dir=tmp_path / "r",
                  config_root=config_root)
    assert runner.calls == []


@pytest.mark.parametrize("name,datasets", [("glyphs-quick", 1), ("paper", 5)])
def test_shipped_suites_resolve(name, datasets, config_root, tmp_path):
    suite = load_suite(SUITES / f"{name}.yaml")
    assert set(suite.methods) == set(ALL_METHODS)          # every registered method and reference row
    assert list(suite.seeds) == [0, 1, 2]
    result = run_suite(SUITES / f"{name}.yaml", FakeRunner(), results_dir=tmp_path / "r", dry_run=True,
                       config_root=config_root)
    cells = len(ALL_METHODS) * datasets * 3               # every registered method, each dataset, 3 seeds
    assert len(result.cells) == cells and len({c.cell.run_id for c in result.cells}) == cells   # one folder each
    # run order: every method of the first seed before the next seed (an early stop already has a full table)
    first = result.cells[:len(suite.methods)]
    assert [c.cell.method for c in first] == list(suite.methods) and {c.cell.seed for c in first} == {0}
    assert suite.results_dir == "results"      # a shipped suite writes the committed folder, not outputs/
    if name == "glyphs-quick":
        assert result.cells[0].cell.run_id == "f2gan-glyphs-quick-s0"
        assert suite.presets == ("quick",) and suite.datasets == ("glyphs",) and suite.protocol == "clean"
    else:
        assert set(suite.datasets) == {"omniglot", "emnist", "vggface", "flowers", "animalfaces"}
        assert suite.presets == ("paper",)
