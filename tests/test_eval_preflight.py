"""What the CLI will show and check before training: the protocols table, a plan's dry run, bad input."""

from __future__ import annotations

import pytest

from fsgen_bench.errors import UserError
from fsgen_bench.eval.preflight import DatasetShape, check_protocol_fits, render_plan_summary, render_protocols_markdown
from fsgen_bench.eval.protocols import PROTOCOLS, get_protocol
from test_eval_support import tiny_datamodule, tiny_images

GLYPHS = DatasetShape("glyphs", 32, (20,) * 105, tuple(range(391, 496)))
FLOWERS = DatasetShape("flowers", 128, (40,) * 17, tuple(range(85, 102)))


def test_protocols_table_has_every_protocol_and_setting_side_by_side():
    text = render_protocols_markdown()
    lines = text.splitlines()
    assert lines[0].startswith("| setting |") and all(f"`{p.id}`" in lines[0] for p in PROTOCOLS.values())
    rows = {line.split(" | ")[0].strip("| `"): line for line in lines[2:] if line.startswith("| ")}
    for key in PROTOCOLS["clean"].settings():
        assert key in rows, key
    assert rows["lpips_range"].count("(-3, 1)") == 2 and rows["fid_input"].count("pytorch-fid") == 2
    assert "51620ad" in rows["follows"] and "8151595" in rows["follows"]
    assert all(line.count("|") == lines[0].count("|") for line in lines if line.startswith("| "))


def test_dry_run_prints_the_plan_for_a_dataset():
    text = render_plan_summary(get_protocol("lofgan-paper"), FLOWERS)
    assert "protocol lofgan-paper@v1 on flowers" in text and "file order" in text
    assert "real set 30 per class (30 distinct)" in text and "resolution:     128 px" in text
    assert "first class 85: conditional [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in text
    clean = render_plan_summary(get_protocol("clean"), GLYPHS)
    assert "105-way (all)" in clean and "seeded permutation" in clean and "3 shots" in clean
    # a datamodule works too (set up on demand)
    assert "on tiny" in render_plan_summary(get_protocol("clean").with_overrides(fewshot={"ways": (5,)}),
                                            tiny_datamodule("/nonexistent"))


@pytest.mark.parametrize("change, dataset, match", [
    ({"fewshot": {"ways": (20,)}}, FLOWERS, "20-way few-shot episodes need 20 unseen classes, the dataset has 17"),
    ({"fewshot": {"shots": 12}}, GLYPHS, "take 12 shots per class from the conditional pool, which holds 10"),
    ({"k_shot": 11, "fewshot": {"shots": 3}}, GLYPHS, "K=11 conditional images per support set"),
    ({"cond_pool": 20}, GLYPHS, r"needs at least 21 images \(a conditional pool of 20"),
])
def test_a_protocol_that_cannot_run_is_a_user_error_naming_the_limit(change, dataset, match):
    proto = get_protocol("clean").with_overrides(**change)
    with pytest.raises(UserError, match=match):
        check_protocol_fits(proto, dataset)


def test_fitting_protocols_pass_and_images_are_accepted():
    for proto in PROTOCOLS.values():
        check_protocol_fits(proto, GLYPHS if proto.name != "f2gan" else FLOWERS)
    check_protocol_fits(get_protocol("clean").with_overrides(fewshot={"ways": (5,)}), tiny_images())
    with pytest.raises(UserError, match="10-way"):
        check_protocol_fits(get_protocol("f2gan"), tiny_images())      # 6 unseen classes
    with pytest.raises(TypeError):
        check_protocol_fits(get_protocol("clean"), object())
