"""End-to-end evaluation on a tiny synthetic dataset with the reference rows (copy-support, noise)."""

from __future__ import annotations

import json
import math

import pytest

from fsgen_bench.eval import backbone as backbone_mod
from fsgen_bench.eval.harness import evaluate, format_table, resolve_protocol
from fsgen_bench.eval.records import REQUIRED_FIELDS, MetricRecord
from test_eval_support import (RUN_META, TINY_EVAL_CFG, copy_support, noise, tiny_datamodule, tiny_protocol,
                               write_random_inception)


def _eval(model, cache_dir, *, eval_cfg=None, dm=None, method="copy-support", out_dir=None, log=None):
    dm = dm or tiny_datamodule(cache_dir)
    return evaluate(model, dm, protocol=tiny_protocol(), eval_cfg=eval_cfg or TINY_EVAL_CFG, cache_dir=cache_dir,
                    run_meta={**RUN_META, "method": method}, out_dir=out_dir, log=log or (lambda *a: None))


def _by_key(records: list[MetricRecord]) -> dict[str, MetricRecord]:
    return {r.key: r for r in records}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="module")
def copy_records(cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    records = _eval(copy_support(), cache_dir, out_dir=out)
    return records, out


@pytest.fixture(scope="module")
def noise_records(cache_dir, copy_records):
    return _eval(noise(), cache_dir, method="noise")


def test_records_are_complete_json_lines(copy_records):
    records, _ = copy_records
    keys = set(_by_key(records))
    assert {"fid/domain", "kid/domain", "diversity/domain", "fewshot_acc_real/domain/5way5shot",
            "fewshot_acc_gen/domain/5way5shot", "fewshot_gain/domain/5way5shot", "lowdata_acc_real/domain/3real",
            "lowdata_acc_gen/domain/3real", "lowdata_gain/domain/3real"} <= keys
    for r in records:
        data = json.loads(r.to_json())
        assert set(REQUIRED_FIELDS) <= set(data)
        assert isinstance(data["value"], float) and math.isfinite(data["value"])
        assert data["protocol"] == tiny_protocol().id
        assert data["run_id"] == "test-run" and data["config_hash"] == "abc" and data["preset"] == "smoke"
        assert data["wall_time_s"] > 0 and data["code_version"] and data["hardware"]
        assert 0.0 <= data["extra"]["domain_val_acc"] <= 1.0
        assert MetricRecord.from_dict(data) == r
    by = _by_key(records)
    assert by["kid/domain"].ci95 is not None and by["fewshot_gain/domain/5way5shot"].ci95 is not None
    assert by["fid/domain"].extra["generated_images"] == 6 * 8
    assert "fid/domain" in format_table(records)


def test_lpips_and_inception_are_skipped_not_substituted(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("FSGEN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("FSGEN_LPIPS_BACKBONE_WEIGHTS", raising=False)
    said: list[str] = []
    records = _eval(copy_support(), cache_dir, eval_cfg={**TINY_EVAL_CFG, "backbones": ["domain", "inception"]},
                    log=lambda *a: said.append(" ".join(map(str, a))))
    assert not [r for r in records if r.backbone == "inception" or r.metric == "lpips"]
    notes = [s for s in said if s.startswith("note:")]
    assert any("fid/inception" in s and "weights-inception-2015-12-05-6726825d.pth" in s for s in notes)
    assert any("lpips/alex" in s and "alexnet-owt-7be5be79.pth" in s for s in notes)
    assert "diversity/domain" in _by_key(records)


def test_copy_support_beats_noise_on_fid_and_noise_is_more_diverse(copy_records, noise_records):
    c, n = _by_key(copy_records[0]), _by_key(noise_records)
    assert c["fid/domain"].value < 0.2 * n["fid/domain"].value
    assert c["kid/domain"].value < n["kid/domain"].value
    assert c["diversity/domain"].value < n["diversity/domain"].value


def test_copy_support_few_shot_gain_is_about_zero(copy_records):
    by = _by_key(copy_records[0])
    gain = by["fewshot_gain/domain/5way5shot"]
    assert abs(gain.value) <= 0.1
    assert gain.value == pytest.approx(by["fewshot_acc_gen/domain/5way5shot"].value
                                       - by["fewshot_acc_real/domain/5way5shot"].value, abs=1e-9)


def test_results_do_not_depend_on_batch_size_or_workers(cache_dir, copy_records):
    dm = tiny_datamodule(cache_dir)
    dm.num_workers = 2
    other = _eval(copy_support(), cache_dir, eval_cfg={**TINY_EVAL_CFG, "batch_size": 5}, dm=dm)
    a, b = _by_key(copy_records[0]), _by_key(other)
    assert a.keys() == b.keys()
    for key in a:
        assert b[key].value == pytest.approx(a[key].value, rel=1e-4, abs=1e-7), key


def test_second_call_reuses_backbone_and_real_features(cache_dir, copy_records, monkeypatch):
    assert list((cache_dir / "backbones").rglob("*.json")), "backbone json with its val accuracy"
    assert list((cache_dir / "eval").rglob("*.pt")), "real-feature cache"
    meta = json.loads(next((cache_dir / "backbones").rglob("*.json")).read_text())
    assert 0.0 <= meta["val_acc"] <= 1.0

    def no_training(*a, **k):
        raise AssertionError("the cached backbone must be reused")

    monkeypatch.setattr(backbone_mod, "train_domain_backbone", no_training)
    again = _eval(copy_support(), cache_dir)
    assert _by_key(again)["fid/domain"].value == pytest.approx(_by_key(copy_records[0])["fid/domain"].value, rel=1e-9)


def test_sample_grid_is_written(copy_records):
    _, out = copy_records
    png = out / "eval_samples.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_protocol_id_string_takes_eval_overrides():
    proto = resolve_protocol("clean", {"num_generated": 12, "fewshot_episodes": 7})
    assert proto.num_generated == 12 and 12 % proto.supports_per_class == 0 and proto.fewshot.episodes == 7
    assert "num_generated=12" in proto.id and "fewshot.episodes=7" in proto.id
    assert resolve_protocol("clean", {}).id == "clean@v1"


@pytest.mark.slow
def test_inception_fid_with_a_named_weights_file(cache_dir, monkeypatch, random_inception_file):
    # A file named explicitly (here by environment variable) that is not the standard one is used and reported
    # with standard_weights: false; the same file in the hub cache would be refused as damaged.
    monkeypatch.setenv("FSGEN_INCEPTION_WEIGHTS", str(random_inception_file))
    records = _eval(copy_support(), cache_dir, eval_cfg={**TINY_EVAL_CFG, "backbones": ["domain", "inception"],
                                                         "fewshot": False, "lowdata": False})
    by = _by_key(records)
    assert {"fid/inception", "kid/inception"} <= by.keys()
    assert by["fid/inception"].extra["standard_weights"] is False
    assert by["fid/inception"].extra["antialias"] is False


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    return write_random_inception(tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth")
