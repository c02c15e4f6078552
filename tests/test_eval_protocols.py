"""Protocols are frozen, named, versioned and round-trip through their ids; the plan follows the protocol."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fsgen_bench.data.evalplan import EvalPlan
from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocols import PROTOCOLS, Protocol, get_protocol


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_named_protocols_round_trip(name):
    proto = get_protocol(name)
    assert proto.id == f"{name}@v{proto.version}" and proto.is_named
    assert get_protocol(proto.id) == proto
    with pytest.raises(dataclasses.FrozenInstanceError):
        proto.k_shot = 5


def test_the_documented_settings():
    clean, lofgan, f2gan = get_protocol("clean"), get_protocol("lofgan"), get_protocol("f2gan")
    assert (clean.k_shot, clean.num_generated, clean.support_draw, clean.real_sampling) == (3, 128, "distinct", "pool")
    assert clean.fewshot.ways == (5, 10) and clean.fewshot.shots == 5
    assert (lofgan.support_draw, lofgan.real_sampling, lofgan.lpips_net, lofgan.lpips_size) == ("replace", "replace",
                                                                                                  "vgg", 32)
    assert (f2gan.permute, f2gan.lpips_pairs, f2gan.fid_resize, f2gan.real_pool_max) == (False, "first10", 128, 128)
    assert clean.cond_pool_for("vggface") == 30 and clean.cond_pool_for("glyphs") == 10


def test_variants_name_every_change_and_round_trip():
    base = get_protocol("clean")
    variant = base.with_overrides(num_generated=16, fewshot={"episodes": 20, "ways": [5]}, lpips_net="squeeze")
    assert variant.id == "clean@v1+fewshot.episodes=20+fewshot.ways=(5,)+lpips_net=squeeze+num_generated=16"
    assert not variant.is_named
    assert get_protocol(variant.id) == variant
    assert base.with_overrides(num_generated=128) == base          # no change, no variant
    other = get_protocol("lofgan").with_overrides(real_pool_max=5, fewshot={"classifier_c": 3})
    assert get_protocol(other.id) == other and "fewshot.classifier_c=3.0" in other.id
    # A variant of a variant is still named by its differences from the published protocol.
    assert variant.with_overrides(num_generated=128).id == "clean@v1+fewshot.episodes=20+fewshot.ways=(5,)+lpips_net=squeeze"


@pytest.mark.parametrize("ident, match", [
    ("nope", "unknown protocol"),
    ("clean@v7", "version v1"),
    ("clean@v1+bogus=3", "unknown protocol field"),
    ("clean@v1+num_generated", "field=value"),
    ("clean@v1+num_generated=100", "multiple of"),
    ("clean@v1+lpips_net=resnet", "lpips_net"),
])
def test_bad_ids_are_user_errors(ident, match):
    with pytest.raises(UserError, match=match):
        get_protocol(ident)


def _plan(protocol: Protocol, sizes=(20, 20, 25), seed=0) -> EvalPlan:
    return EvalPlan.build(dataset="tiny", unseen=[7, 8, 9], class_sizes=list(sizes), protocol=protocol, seed=seed)


def test_clean_plan_pools_are_disjoint_and_supports_distinct():
    proto = get_protocol("clean")
    plan = _plan(proto)
    assert plan.fingerprint() == _plan(proto).fingerprint()          # deterministic
    assert plan.fingerprint() != _plan(proto, seed=1).fingerprint()
    for cp in plan.classes:
        assert len(cp.cond) == 10 and not set(cp.cond) & set(cp.real)
        assert cp.supports.shape == (8, 3) and cp.images_per_support == 16
        assert all(len(set(row)) == 3 for row in cp.supports)       # drawn without replacement
        assert cp.shot_sets.shape == (proto.fewshot.shot_sets, 5)
        assert all(len(set(row)) == 5 for row in cp.shot_sets)
        assert list(cp.real_unique()) == list(cp.real)


def test_lofgan_plan_samples_with_replacement_and_plan_json_round_trips(tmp_path):
    plan = _plan(get_protocol("lofgan"), sizes=(14, 14, 14))
    cp = plan.classes[0]
    assert len(cp.real) == 128 and len(cp.real_unique()) <= 4 and cp.supports.shape == (128, 3)
    plan.save(tmp_path / "plan.json")
    again = EvalPlan.load(tmp_path / "plan.json")
    assert again.fingerprint() == plan.fingerprint()
    assert np.array_equal(again.classes[1].shot_sets, plan.classes[1].shot_sets)


def test_f2gan_plan_uses_file_order():
    cp = _plan(get_protocol("f2gan"), sizes=(300, 20, 20)).classes[0]
    assert list(cp.cond) == list(range(10)) and len(cp.real) == 128 and cp.real[0] == 10


def test_a_class_too_small_for_the_protocol_is_a_user_error():
    with pytest.raises(UserError, match="needs a conditional pool of 10"):
        _plan(get_protocol("clean"), sizes=(20, 10, 20))
