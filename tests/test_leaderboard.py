"""Leaderboard: records -> tables. A golden test protects the Markdown and CSV format.

The golden files live in tests/golden/leaderboard/. After an intended format change, regenerate them with

    FSGEN_UPDATE_GOLDEN=1 pytest tests/test_leaderboard.py

and review the diff before committing it.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from fsgen_bench.errors import UserError
from fsgen_bench.eval.records import MetricRecord, append_records
from fsgen_bench.leaderboard import build, compute_tables, format_cell, slug

GOLDEN = Path(__file__).parent / "golden" / "leaderboard"
UPDATE = bool(os.environ.get("FSGEN_UPDATE_GOLDEN"))


REFERENCE = ("copy-support", "noise", "real")


def rec(method, seed, metric, backbone, value, *, setting="", protocol="clean@v1", dataset="glyphs", preset="quick",
        ci95=None, ts=1000.0, version="0.1.0+gaaaaaaa", resolution=32, variant=None, extra=None):
    run_id = f"{method}-{dataset}-{preset or 'default'}-s{seed}"
    return MetricRecord(run_id=run_id, method=method, dataset=dataset, protocol=protocol, metric=metric,
                        backbone=backbone, setting=setting, value=value, ci95=ci95, seed=seed,
                        config_hash="c0ffee", code_version=version, hardware="cpu:x86_64x2", wall_time_s=1.0,
                        timestamp=ts + seed, preset=preset, resolution=resolution, variant=variant,
                        reference=method in REFERENCE, extra=dict(extra or {}))


def synthetic_records() -> list[MetricRecord]:
    """Three methods, two presets of f2gan, both reference rows, two protocols, seeds with gaps."""
    out = []
    f2 = {"fid": (41.2, 43.0, 39.9), "kid": (0.0312, 0.0340, 0.0298), "lpips": (0.212, 0.220, 0.205),
          "acc5": (0.712, 0.698, 0.725), "acc10": (0.561, 0.570, 0.552), "gain": (0.031, 0.022, 0.040)}
    for s in (0, 1, 2):
        out += [
            rec("f2gan", s, "fid", "domain", f2["fid"][s]),
            rec("f2gan", s, "kid", "domain", f2["kid"][s], ci95=0.002),
            rec("f2gan", s, "lpips", "alex", f2["lpips"][s]),
            rec("f2gan", s, "fewshot_acc_gen", "domain", f2["acc5"][s], setting="5way5shot"),
            rec("f2gan", s, "fewshot_acc_gen", "domain", f2["acc10"][s], setting="10way5shot"),
            rec("f2gan", s, "fewshot_gain", "domain", f2["gain"][s], setting="5way5shot"),
        ]
    # Inception FID only for two seeds: the cell says (n=2)
    out += [rec("f2gan", 0, "fid", "inception", 120.5), rec("f2gan", 1, "fid", "inception", 118.25)]
    for s, (fid, lp) in enumerate(((48.0, 0.230), (50.5, 0.226))):
        out += [rec("dagan", s, "fid", "domain", fid), rec("dagan", s, "lpips", "alex", lp),
                rec("dagan", s, "kid", "domain", 0.04 + s / 1000, ci95=0.003),
                rec("dagan", s, "fewshot_acc_gen", "domain", 0.690 + s / 100, setting="5way5shot")]
    # a re-evaluation of dagan seed 1: the newer record replaces the older one
    out.append(rec("dagan", 1, "lpips", "alex", 0.228, ts=5000.0, version="0.1.0+gbbbbbbb"))
    # f2gan at a second preset on the same dataset: rows become "f2gan [quick]" and "f2gan [smoke]"
    out += [rec("f2gan", 0, "fid", "domain", 95.0, preset="smoke"),
            rec("f2gan", 0, "kid", "domain", 0.09, preset="smoke", ci95=0.01)]
    # reference rows: noise has the lowest "FID" here on purpose; it must never be bold
    out += [rec("copy-support", s, "fid", "domain", 20.0 + s, preset=None) for s in (0, 1, 2)]
    out += [rec("copy-support", s, "lpips", "alex", 0.050, preset=None) for s in (0, 1, 2)]
    out += [rec("noise", 0, "fid", "domain", 5.0, preset=None), rec("noise", 0, "lpips", "alex", 0.9, preset=None)]
    # a second protocol on the same dataset: its own table, never merged with clean@v1
    out += [rec("f2gan", s, "fid", "inception", 130.0 + s, protocol="lofgan@v1") for s in (0, 1)]
    out += [rec("f2gan", s, "lpips", "vgg", 0.31, protocol="lofgan@v1") for s in (0, 1)]
    out += [rec("matchinggan", 0, "fid", "inception", 140.0, protocol="lofgan@v1", ci95=4.5)]
    return out


def v2_records() -> list[MetricRecord]:
    """clean@v2 at 32 px with the novelty/fidelity columns (a scatter), a non-default variant with a note, the
    real reference row; and the same protocol at 64 px: a second table."""
    out = []
    note = {"default_variant": "paper", "row_note": "release variant: BN statistics recalibrated"}
    rows = {  # method: (novelty, class_fidelity, diversity_ratio, variant, extra)
        "f2gan": ((0.62, 0.70, 0.66), (0.81, 0.79, 0.83), (0.9, 1.3, 1.1), None, {}),
        "gmn": ((1.9, 2.1, 2.0), (0.35, 0.31, 0.33), (2.5, 2.4, 2.6), None, {}),
        "dagan": ((0.40, 0.44, 0.42), (0.70, 0.72, 0.71), (0.8, 0.8, 0.8), "release", note),
        "copy-support": ((0.0, 0.0, 0.0), (0.99, 0.98, 0.99), (0.87, 0.88, 0.86), None, {}),
        "real": ((1.0, 1.02, 0.98), (0.95, 0.94, 0.96), (1.0, 1.0, 1.0), None,
                 {"real_reference": "held-out real images scored as if generated"}),
    }
    for method, (nov, fid_, ratio, variant, extra) in rows.items():
        preset = None if method in REFERENCE else "quick"
        for s in (0, 1, 2):
            kw = dict(protocol="clean@v2", preset=preset, variant=variant, extra=extra)
            out += [rec(method, s, "novelty", "domain", nov[s], **kw),
                    rec(method, s, "class_fidelity", "domain", fid_[s], **kw),
                    rec(method, s, "diversity_ratio", "domain", ratio[s], **kw),
                    rec(method, s, "fewshot_gain", "domain", 0.01 * s, setting="allway3shot", **kw)]
    out += [rec("f2gan", 0, "fid", "domain", 30.0 + s, protocol="clean@v2", resolution=64) for s in (0,)]
    out += [rec("dagan", 0, "fid", "domain", 35.0, protocol="clean@v2", resolution=64)]
    return out


def write_records(results: Path, records: list[MetricRecord]) -> Path:
    records_dir = results / "records"
    by_file: dict[str, list[MetricRecord]] = {}
    for r in records:
        by_file.setdefault(f"{r.dataset}__{r.protocol.replace('@', '_')}.jsonl", []).append(r)
    for name, recs in sorted(by_file.items()):
        append_records(recs, records_dir / name)
    return records_dir


GOLDEN_FILES = ["leaderboard.md", "README.md", "leaderboard_glyphs_clean-v1_32px.csv",
                "leaderboard_glyphs_clean-v2_32px.csv", "leaderboard_glyphs_clean-v2_64px.csv",
                "leaderboard_glyphs_lofgan-v1_32px.csv"]


def test_golden_markdown_and_csv(tmp_path):
    results = tmp_path / "results"
    records_dir = write_records(results, synthetic_records() + v2_records())
    # f2gan's seed-1 run saved samples (seed 0 did not): the Markdown links that one
    sample = results / "runs" / "f2gan-glyphs-quick-s1" / "eval_samples.png"
    sample.parent.mkdir(parents=True)
    sample.write_bytes(b"\x89PNG\r\n\x1a\n")
    written = build(records_dir, results)

    names = sorted(p.relative_to(results).as_posix() for p in written)
    assert names == ["README.md", "figures/leaderboard_glyphs_clean-v1_32px.png",
                     "figures/leaderboard_glyphs_clean-v2_32px.png", "figures/leaderboard_glyphs_clean-v2_64px.png",
                     "figures/leaderboard_glyphs_lofgan-v1_32px.png",
                     "figures/samples/glyphs_clean-v1_32px/f2gan_quick_s1.png",
                     "figures/samples/glyphs_clean-v2_32px/f2gan_s1.png",
                     "figures/samples/glyphs_lofgan-v1_32px/f2gan_s1.png", "figures/scatter_glyphs_clean-v2_32px.png",
                     "leaderboard.md", *GOLDEN_FILES[2:]]
    compared = GOLDEN_FILES
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name in compared:
            shutil.copyfile(results / name, GOLDEN / name)
    for name in compared:
        expected = (GOLDEN / name).read_text(encoding="utf-8")
        assert (results / name).read_text(encoding="utf-8") == expected, f"{name} differs from tests/golden/leaderboard"
    for png in (p for p in written if p.parent.name == "figures"):   # the plots (sample grids are copies)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    for stale in GOLDEN.glob("*"):
        assert stale.name in compared, f"{stale} is no longer produced: remove it"


def test_sample_grids_are_copied_out_of_the_uncommitted_run_folders(tmp_path):
    results = tmp_path / "results"
    records_dir = write_records(results, synthetic_records())
    grid = results / "runs" / "f2gan-glyphs-quick-s1" / "eval_samples.png"
    grid.parent.mkdir(parents=True)
    grid.write_bytes(b"\x89PNG\r\n\x1a\n grid of seed 1")
    build(records_dir, results, plots=False)
    copy = results / "figures" / "samples" / "glyphs_clean-v1_32px" / "f2gan_quick_s1.png"
    assert copy.read_bytes() == grid.read_bytes()
    assert "](figures/samples/glyphs_clean-v1_32px/f2gan_quick_s1.png)" in (results / "leaderboard.md").read_text()

    # a fresh clone has no runs/: the committed copy stays linked
    shutil.rmtree(results / "runs")
    before = (results / "leaderboard.md").read_text()
    build(records_dir, results, plots=False)
    assert copy.is_file() and (results / "leaderboard.md").read_text() == before

    # seed 0's grid appears: the lowest seed wins, and the copy no row links any more is removed
    grid0 = results / "runs" / "f2gan-glyphs-quick-s0" / "eval_samples.png"
    grid0.parent.mkdir(parents=True)
    grid0.write_bytes(b"\x89PNG\r\n\x1a\n grid of seed 0")
    build(records_dir, results, plots=False)
    assert not copy.exists() and (copy.parent / "f2gan_quick_s0.png").read_bytes() == grid0.read_bytes()
    assert "(seed 0)" in (results / "leaderboard.md").read_text()


def test_output_is_a_pure_function_of_the_records(tmp_path):
    records = synthetic_records() + v2_records()
    a = tmp_path / "a"
    build(write_records(a, records), a, plots=False)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    b = tmp_path / "b"
    build(write_records(b, shuffled), b, plots=False)
    for name in GOLDEN_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_never_mixes_protocols_or_backbones_in_a_column():
    records = synthetic_records()
    tables = compute_tables(records)
    assert [(t.dataset, t.protocol) for t in tables] == [("glyphs", "clean@v1"), ("glyphs", "lofgan@v1")]
    for table in tables:
        for row in table.rows:
            for col in table.columns:
                cell = row.cells.get(col.key)
                if cell is None:
                    continue
                sources = [r for r in records if r.protocol == table.protocol and r.dataset == table.dataset
                           and r.method == row.method and r.preset == row.preset and r.seed in cell.seeds
                           and (r.metric, r.backbone, r.setting) == (col.metric, col.backbone, col.setting)]
                assert sources, (table.protocol, row.label, col.key)
                # every value in the cell comes from this exact protocol/metric/backbone/setting
                assert all(r.key == col.key and r.protocol == table.protocol for r in sources)
    clean = tables[0]
    keys = [c.key for c in clean.columns]
    assert "fid/domain" in keys and "fid/inception" in keys  # two backbones, two columns
    f2 = next(r for r in clean.rows if r.label == "f2gan [quick]")
    assert f2.cells["fid/domain"].mean == pytest.approx((41.2 + 43.0 + 39.9) / 3)
    assert f2.cells["fid/inception"].mean == pytest.approx((120.5 + 118.25) / 2)
    lofgan = tables[1]
    assert {c.key for c in lofgan.columns} == {"fid/inception", "lpips/vgg"}
    assert next(r for r in lofgan.rows if r.method == "f2gan").cells["fid/inception"].mean == pytest.approx(130.5)


def test_column_order_direction_and_row_order():
    clean = compute_tables(synthetic_records())[0]
    assert [c.key for c in clean.columns] == [
        "fid/inception", "fid/domain", "kid/domain", "lpips/alex", "fewshot_acc_gen/domain/5way5shot",
        "fewshot_acc_gen/domain/10way5shot", "fewshot_gain/domain/5way5shot"]
    assert [c.arrow for c in clean.columns] == ["↓", "↓", "↓", "↑", "↑", "↑", "↑"]
    assert [r.label for r in clean.rows] == ["dagan", "f2gan [quick]", "f2gan [smoke]", "copy-support", "noise"]
    assert [r.reference for r in clean.rows] == [False, False, False, True, True]


def test_cells_mean_std_ci_and_best():
    clean = compute_tables(synthetic_records())[0]
    rows = {r.label: r for r in clean.rows}
    f2 = rows["f2gan [quick]"]
    assert f2.n == 3
    fid = f2.cells["fid/domain"]
    assert fid.n == 3 and fid.std == pytest.approx(1.5567, abs=1e-4)   # sample std (n - 1)
    assert fid.best  # 41.37 beats dagan's 49.25 and f2gan [smoke]'s 95; noise's 5.0 is a reference row
    assert not rows["noise"].cells["fid/domain"].best
    assert rows["dagan"].cells["lpips/alex"].best   # higher is better; the re-evaluated 0.228 replaced 0.226
    assert rows["dagan"].cells["lpips/alex"].mean == pytest.approx((0.230 + 0.228) / 2)
    smoke_kid = rows["f2gan [smoke]"].cells["kid/domain"]
    assert smoke_kid.n == 1 and smoke_kid.std is None and smoke_kid.spread == 0.01   # one seed: its own ci95
    assert format_cell(smoke_kid, 4, 1) == "0.0900 ± 0.0100"
    assert format_cell(rows["noise"].cells["fid/domain"], 2, 1) == "5.00"          # one seed, no ci95
    # only f2gan has Inception features here: no bold, and fewer seeds than the row says (n=2)
    assert format_cell(f2.cells["fid/inception"], 1, f2.n) == "119.4 ± 1.6 (n=2)"


def test_best_is_not_claimed_by_a_lone_method():
    lofgan = compute_tables(synthetic_records())[1]
    # fid/inception has f2gan and matchinggan: one is best; lpips/vgg only f2gan: no bold
    assert sum(r.cells["fid/inception"].best for r in lofgan.rows) == 1
    assert not any(r.cells["lpips/vgg"].best for r in lofgan.rows if "lpips/vgg" in r.cells)


def test_slug_and_file_names():
    assert slug("clean@v1") == "clean-v1"
    assert slug("clean+custom@v1") == "clean-custom-v1"
    assert slug("npy-animal_128") == "npy-animal_128"
    assert slug("a b/c") == "a_b_c"


def test_missing_or_empty_records_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build(tmp_path / "nope", tmp_path)
    (tmp_path / "records").mkdir()
    with pytest.raises(UserError, match="no records"):
        build(tmp_path / "records", tmp_path)


def test_stale_tables_are_removed(tmp_path):
    results = tmp_path / "results"
    records_dir = write_records(results, synthetic_records())
    (results / "leaderboard_old_clean-v1.csv").write_text("stale\n")
    (results / "figures").mkdir(parents=True)
    (results / "figures" / "scatter_old_clean-v1_32px.png").write_bytes(b"stale")
    (results / "notes.csv").write_text("mine\n")
    build(records_dir, results, plots=True)
    assert not (results / "leaderboard_old_clean-v1.csv").exists()
    assert not (results / "figures" / "scatter_old_clean-v1_32px.png").exists()
    assert (results / "notes.csv").exists()   # only our own file pattern is cleaned


def test_accuracy_with_real_images_only_is_never_ranked():
    base = dict(dataset="glyphs", protocol="clean@v1", preset="quick", backbone="domain", setting="5way5shot")
    records = [MetricRecord(run_id=f"{m}-s0", method=m, seed=0, metric=metric, value=value, **base)
               for m, gen in (("f2gan", 0.90), ("dagan", 0.80))
               for metric, value in (("fewshot_acc_real", 0.95 if m == "f2gan" else 0.94),
                                     ("fewshot_acc_gen", gen))]
    (table,) = compute_tables(records)
    rows = {r.label: r for r in table.rows}
    assert rows["f2gan"].cells["fewshot_acc_gen/domain/5way5shot"].best
    assert not any(r.cells["fewshot_acc_real/domain/5way5shot"].best for r in table.rows)


def test_two_resolutions_of_one_protocol_give_two_tables():
    tables = [t for t in compute_tables(v2_records()) if t.protocol == "clean@v2"]
    assert [(t.resolution, t.slug) for t in tables] == [(32, "glyphs_clean-v2_32px"), (64, "glyphs_clean-v2_64px")]
    at64 = tables[1]
    assert {r.method for r in at64.rows} == {"f2gan", "dagan"} and [c.key for c in at64.columns] == ["fid/domain"]
    assert "64 px" in at64.title


def test_variant_labels_notes_and_reference_rows_come_from_the_records():
    table = next(t for t in compute_tables(v2_records()) if t.resolution == 32)
    rows = {r.label: r for r in table.rows}
    assert "dagan (release)" in rows and rows["dagan (release)"].note.startswith("release variant")
    assert [r.label for r in table.rows] == ["dagan (release)", "f2gan", "gmn", "copy-support", "real"]
    assert [r.reference for r in table.rows] == [False, False, False, True, True]
    md = "\n".join(__import__("fsgen_bench.leaderboard", fromlist=["x"])._markdown_table(table))
    assert "| dagan (release)<sup>1</sup> |" in md and "<sup>1</sup> release variant" in md
    assert "*real* (ref)<sup>2</sup>" in md and "<sup>2</sup> held-out real images" in md


def test_closest_to_target_wins_and_the_registry_orders_the_columns():
    table = next(t for t in compute_tables(v2_records()) if t.resolution == 32)
    assert [c.key for c in table.columns] == ["class_fidelity/domain", "novelty/domain", "diversity_ratio/domain",
                                              "fewshot_gain/domain/allway3shot"]
    assert [c.arrow for c in table.columns] == ["↑", "→1", "→1", "↑"]
    best = {c.key: [r.label for r in table.rows if r.cells[c.key].best] for c in table.columns}
    # novelty: f2gan 0.66 is closer to 1 than dagan 0.42 or gmn 2.0; diversity ratio: f2gan 1.1 beats 0.8 and 2.5;
    # the copier's perfect class fidelity and real's novelty 1.0 are reference rows, never best
    assert best["novelty/domain"] == ["f2gan"] and best["diversity_ratio/domain"] == ["f2gan"]
    assert best["class_fidelity/domain"] == ["f2gan"]


def test_records_without_the_new_fields_still_load(tmp_path):
    legacy = {"run_id": "noise-s0", "method": "noise", "dataset": "glyphs", "protocol": "clean@v1", "metric": "fid",
              "backbone": "domain", "value": 5.0, "seed": 0}
    r = MetricRecord.from_dict(legacy)
    assert (r.resolution, r.variant, r.reference) == (None, None, True)       # the reference rows of that time
    assert MetricRecord.from_dict({**legacy, "method": "f2gan"}).reference is False
    (table,) = compute_tables([r, MetricRecord.from_dict({**legacy, "method": "f2gan", "value": 9.0})])
    assert table.slug == "glyphs_clean-v1" and "resolution not recorded" in table.title
    assert not any(c.best for row in table.rows for c in row.cells.values())   # one method: no claim


def test_an_unregistered_metric_is_shown_unranked():
    records = [rec(m, 0, "made_up", "domain", v) for m, v in (("f2gan", 1.0), ("dagan", 2.0))]
    (table,) = compute_tables(records)
    assert [c.key for c in table.columns] == ["made_up/domain"]
    assert not any(r.cells["made_up/domain"].best for r in table.rows)


def test_copy_rate_ranks_by_distance_to_what_real_images_score():
    """A copy rate of 0 means images far off the data, not the best novelty: closest to the quantile wins."""
    from fsgen_bench.eval.metrics import spec_of

    spec = spec_of("copy_rate")
    assert spec.badness(0.05) == 0 and spec.badness(0.0) > spec.badness(0.1) > spec.badness(0.06)
    assert spec.arrow == "→0.05"
