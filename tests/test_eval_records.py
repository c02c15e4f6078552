"""Records files: a damaged line in the middle is named (file and line); a crash's trailing partial line is not."""

from __future__ import annotations

import json

import pytest

from fsgen_bench.errors import UserError
from fsgen_bench.eval.records import MetricRecord, append_records, read_records


def _rec(i: int) -> MetricRecord:
    return MetricRecord(run_id=f"r{i}", method="f2gan", dataset="glyphs", protocol="clean@v2", metric="fid",
                        backbone="domain", value=float(i), seed=i, resolution=32)


def test_a_damaged_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "glyphs__clean_v2.jsonl"
    append_records([_rec(0), _rec(1), _rec(2)], path)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:40]                       # cut in the middle: lost data
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"glyphs__clean_v2\.jsonl:2: damaged record"):
        read_records(tmp_path)


def test_a_record_that_is_not_a_record_is_named_too(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(_rec(0).to_json() + "\n" + json.dumps({"method": "f2gan"}) + "\n")
    with pytest.raises(UserError, match=r"x\.jsonl:2: .*lacks run_id"):
        read_records(tmp_path)


def test_a_trailing_partial_line_is_skipped_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "glyphs__clean_v2.jsonl"
    append_records([_rec(0), _rec(1)], path)
    with path.open("a") as f:
        f.write(_rec(2).to_json()[:50])            # a crash while appending
    assert [r.run_id for r in read_records(tmp_path)] == ["r0", "r1"]
    append_records([_rec(3)], path)                # the next append does not glue onto the partial line
    assert [r.run_id for r in read_records(tmp_path)] == ["r0", "r1", "r3"]
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 3


def test_new_fields_round_trip_and_old_records_get_defaults(tmp_path):
    r = _rec(5)
    r.variant, r.reference = "release", True
    again = MetricRecord.from_dict(json.loads(r.to_json()))
    assert again == r and (again.resolution, again.variant, again.reference) == (32, "release", True)
    old = {k: v for k, v in json.loads(_rec(1).to_json()).items() if k not in ("resolution", "variant", "reference")}
    loaded = MetricRecord.from_dict(old)
    assert (loaded.resolution, loaded.variant, loaded.reference) == (None, None, False)
