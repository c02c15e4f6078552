"""End-to-end evaluation on a tiny synthetic dataset with the reference rows (copy-support, noise, real)."""

from __future__ import annotations

import json
import math

import pytest

from fsgen_bench.eval import backbone as backbone_mod
from fsgen_bench.eval.harness import evaluate, format_table, resolve_protocol
from fsgen_bench.eval.metrics import FAMILIES, METRICS
from fsgen_bench.eval.records import REQUIRED_FIELDS, MetricRecord
from test_eval_support import (RUN_META, SIZE, TINY_EVAL_CFG, copy_support, noise, real_row, tiny_datamodule,
                               tiny_protocol, write_random_inception)


def _eval(model, cache_dir, *, eval_cfg=None, dm=None, method="copy-support", out_dir=None, log=None, protocol=None,
          meta=None):
    dm = dm or tiny_datamodule(cache_dir)
    return evaluate(model, dm, protocol=protocol or tiny_protocol(), eval_cfg=eval_cfg or TINY_EVAL_CFG,
                    cache_dir=cache_dir, run_meta={**RUN_META, "method": method, **(meta or {})}, out_dir=out_dir,
                    log=log or (lambda *a: None))


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


@pytest.fixture(scope="module")
def real_records(cache_dir, copy_records):
    return _eval(real_row(), cache_dir, method="real")


def test_every_registered_metric_is_recorded_with_its_fields(copy_records):
    records, _ = copy_records
    keys = set(_by_key(records))
    # every registered metric but LPIPS (no backbone weights here) on the domain backbone
    expected_metrics = set(METRICS) - {"lpips"}
    assert {r.metric for r in records} == expected_metrics
    assert {"fid/domain", "kid/domain", "novelty/domain", "copy_rate/domain", "class_fidelity/domain",
            "precision/domain", "recall/domain", "density/domain", "coverage/domain", "diversity/domain",
            "diversity_ratio/domain", "fewshot_acc_real/domain/5way3shot", "fewshot_acc_gen/domain/5way3shot",
            "fewshot_gain/domain/5way3shot", "lowdata_acc_real/domain/3real", "lowdata_acc_gen/domain/3real",
            "lowdata_gain/domain/3real"} == keys
    for r in records:
        data = json.loads(r.to_json())
        assert set(REQUIRED_FIELDS) <= set(data)
        assert isinstance(data["value"], float) and math.isfinite(data["value"])
        assert data["protocol"] == tiny_protocol().id
        assert data["resolution"] == SIZE and data["variant"] is None and data["reference"] is True
        assert data["run_id"] == "test-run" and data["config_hash"] == "abc" and data["preset"] == "smoke"
        assert data["wall_time_s"] > 0 and data["code_version"] and data["hardware"]
        assert 0.0 <= data["extra"]["domain_val_acc"] <= 1.0 and data["extra"]["served_px"] == SIZE
        assert MetricRecord.from_dict(data) == r
    by = _by_key(records)
    for key in ("kid/domain", "fewshot_gain/domain/5way3shot", "novelty/domain", "class_fidelity/domain"):
        assert by[key].ci95 is not None and by[key].extra["ci95_of"], key
    assert "subsets" in by["kid/domain"].extra["ci95_of"]
    assert by["fid/domain"].extra["generated_images"] == 6 * 8
    assert "fid/domain" in format_table(records) and f"at {SIZE} px" in format_table(records)


def test_run_meta_variant_reference_and_note_reach_the_records(cache_dir):
    meta = {"variant": "release", "default_variant": "paper", "reference": False, "row_note": "a note"}
    records = _eval(copy_support(), cache_dir, meta=meta, eval_cfg={**TINY_EVAL_CFG, "fewshot": False,
                                                                    "lowdata": False})
    r = records[0]
    assert (r.variant, r.reference) == ("release", False)
    assert r.extra["default_variant"] == "paper" and r.extra["row_note"] == "a note"
    assert not [x for x in records if x.metric.startswith(("fewshot", "lowdata"))]


def test_lpips_and_inception_are_skipped_not_substituted(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("FSGEN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("FSGEN_LPIPS_BACKBONE_WEIGHTS", raising=False)
    said: list[str] = []
    records = _eval(copy_support(), cache_dir, eval_cfg={**TINY_EVAL_CFG, "backbones": ["domain", "inception"]},
                    log=lambda *a: said.append(" ".join(map(str, a))))
    assert not [r for r in records if r.backbone == "inception" or r.metric == "lpips"]
    notes = [s for s in said if s.startswith("note:")]
    assert any("inception records" in s and "weights-inception-2015-12-05-6726825d.pth" in s for s in notes)
    assert any("lpips/alex" in s and "alexnet-owt-7be5be79.pth" in s for s in notes)
    assert "diversity/domain" in _by_key(records)


def test_copier_noise_and_real_rows_land_where_each_column_says(copy_records, noise_records, real_records):
    c, n, r = _by_key(copy_records[0]), _by_key(noise_records), _by_key(real_records)
    # FID cannot tell a copier from a generator; novelty and copy rate can
    assert c["fid/domain"].value < 0.2 * n["fid/domain"].value
    assert c["novelty/domain"].value < 1e-3 and c["copy_rate/domain"].value == 1.0
    assert r["novelty/domain"].value > 0.5 and r["copy_rate/domain"].value < 0.5
    assert n["novelty/domain"].value > r["novelty/domain"].value
    # class fidelity: noise lands lowest, the held-out real images at the top
    assert n["class_fidelity/domain"].value < min(r["class_fidelity/domain"].value, c["class_fidelity/domain"].value)
    assert c["diversity/domain"].value < n["diversity/domain"].value
    assert n["diversity_ratio/domain"].value > 1.5
    assert c["kid/domain"].value < n["kid/domain"].value
    # the real row scores held-out images: no record compares an image with itself, and it is marked
    assert r["fid/domain"].extra["real_reference"] and r["fid/domain"].extra["generated_images"] == 6 * 2
    assert all(x.reference for x in real_records)


def test_copy_support_few_shot_gain_is_about_zero(copy_records):
    by = _by_key(copy_records[0])
    gain = by["fewshot_gain/domain/5way3shot"]
    assert abs(gain.value) <= 0.1
    assert gain.value == pytest.approx(by["fewshot_acc_gen/domain/5way3shot"].value
                                       - by["fewshot_acc_real/domain/5way3shot"].value, abs=1e-9)


def test_results_do_not_depend_on_batch_size_or_workers(cache_dir, copy_records):
    dm = tiny_datamodule(cache_dir)
    dm.num_workers = 2
    other = _eval(copy_support(), cache_dir, eval_cfg={**TINY_EVAL_CFG, "batch_size": 5}, dm=dm)
    a, b = _by_key(copy_records[0]), _by_key(other)
    assert a.keys() == b.keys()
    for key in a:
        assert b[key].value == pytest.approx(a[key].value, rel=1e-4, abs=1e-7), key


def test_the_evaluation_resolution_is_applied_and_recorded(cache_dir):
    proto = tiny_protocol(resolution=24)
    records = _eval(copy_support(), cache_dir, protocol=proto, eval_cfg={**TINY_EVAL_CFG, "fewshot": False,
                                                                         "lowdata": False})
    assert {r.resolution for r in records} == {24} and records[0].extra["served_px"] == SIZE
    assert "resolution=24" in records[0].protocol


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


def test_the_backbone_key_hashes_every_image(cache_dir):
    """Changing one pixel of one image in the middle of a class changes the data fingerprint (v1 hashed only each
    class's first and last image)."""
    dm = tiny_datamodule(cache_dir)
    before = backbone_mod.data_fingerprint(dm.images)
    dm.images.classes[3][5, 7, 7, 0] ^= 1
    assert backbone_mod.data_fingerprint(dm.images) != before


def test_sample_grid_is_written(copy_records):
    _, out = copy_records
    png = out / "eval_samples.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_protocol_id_string_takes_eval_overrides():
    proto = resolve_protocol("clean", {"num_generated": 12, "fewshot_episodes": 7})
    assert proto.num_generated == 12 and 12 % proto.supports_per_class == 0 and proto.fewshot.episodes == 7
    assert "num_generated=12" in proto.id and "fewshot.episodes=7" in proto.id
    assert resolve_protocol("clean", {}).id == "clean@v2"


def test_families_cover_the_registry():
    assert {s.name for f in FAMILIES.values() for s in f.specs} == set(METRICS)


@pytest.mark.slow
def test_inception_fid_with_a_named_weights_file(cache_dir, monkeypatch, random_inception_file):
    # A file named explicitly (here by environment variable) that is not the standard one is used and reported
    # with standard_weights: false; the same file in the hub cache would be refused as damaged.
    monkeypatch.setenv("FSGEN_INCEPTION_WEIGHTS", str(random_inception_file))
    records = _eval(copy_support(), cache_dir, eval_cfg={**TINY_EVAL_CFG, "backbones": ["domain", "inception"],
                                                         "fewshot": False, "lowdata": False})
    by = _by_key(records)
    assert {"fid/inception", "kid/inception", "novelty/inception", "class_fidelity/inception"} <= by.keys()
    assert by["fid/inception"].extra["standard_weights"] is False
    assert by["fid/inception"].extra["fid_input"] == "torch-fidelity"


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    return write_random_inception(tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth")
