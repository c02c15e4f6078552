"""Protocols are frozen, named, versioned and round-trip through their ids; each one's plan is pinned against
the peer's own split on a dataset with the peer's class sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fsgen_bench.data.evalplan import EvalPlan
from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocols import ALL_WAYS, PROTOCOLS, Protocol, get_protocol


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_named_protocols_round_trip_and_document_themselves(name):
    proto = get_protocol(name)
    assert proto.id == f"{name}@v{proto.version}" and proto.is_named
    assert get_protocol(proto.id) == proto
    with pytest.raises(dataclasses.FrozenInstanceError):
        proto.k_shot = 5
    # every protocol names its source and lists reproduced / not reproduced points
    assert proto.source and proto.doc
    if name != "clean":
        assert "Reproduced" in proto.doc and "Not reproduced" in proto.doc and "@" in proto.source


def test_versions_of_protocols_whose_numbers_changed():
    assert {p.id for p in PROTOCOLS.values()} == {"clean@v2", "lofgan@v2", "lofgan-paper@v1", "f2gan@v2"}
    with pytest.raises(UserError, match="version v2"):
        get_protocol("clean@v1")


def test_the_documented_settings():
    clean, lofgan, paper, f2gan = (get_protocol(n) for n in ("clean", "lofgan", "lofgan-paper", "f2gan"))
    assert (clean.k_shot, clean.num_generated, clean.support_draw, clean.real_sampling) == (3, 128, "distinct", "pool")
    assert clean.fewshot.ways == (ALL_WAYS,) and clean.fewshot.shots == 3 and clean.fewshot.generated_weight == "balanced"
    assert (clean.lpips_range, clean.quantize, clean.fid_input) == ((-1, 1), "round", "torch-fidelity")
    for p in (lofgan, paper):
        # LoFGAN's script: lpips.im2tensor then normalize=True -> [-3, 1]; pytorch-fid's input; ToPILImage pixels
        assert (p.lpips_net, p.lpips_size, p.lpips_resize, p.lpips_range) == ("vgg", 32, "cv2-linear", (-3, 1))
        assert (p.fid_input, p.quantize, p.support_draw, p.supports_per_class) == ("pytorch-fid", "floor", "replace", 128)
        assert [p.resolution_for(d, 96) for d in ("flowers", "animalfaces", "vggface", "glyphs")] == [128, 128, 64, 96]
    assert (lofgan.permute, lofgan.real_sampling) == (True, "replace")
    assert (paper.permute, paper.real_sampling, paper.seed) == (False, "pool", 0)
    assert (f2gan.permute, f2gan.lpips_pairs, f2gan.real_includes_cond, f2gan.real_pool_max) == (False, "first10", True, 128)
    assert f2gan.resolution_for("flowers", 96) == 128 and f2gan.fewshot.ways == (5, 10) and f2gan.fewshot.shots == 5
    assert [f2gan.cond_pool_for(d) for d in ("vggface", "flowers", "animalfaces")] == [10, 10, 10]   # no LoFGAN 30
    assert clean.cond_pool_for("vggface") == 30 and clean.cond_pool_for("glyphs") == 10


def test_variants_name_every_change_and_round_trip():
    base = get_protocol("clean")
    variant = base.with_overrides(num_generated=16, fewshot={"episodes": 20 + 1, "ways": [5]}, lpips_net="squeeze")
    assert variant.id == "clean@v2+fewshot.episodes=21+fewshot.ways=(5,)+lpips_net=squeeze+num_generated=16"
    assert not variant.is_named
    assert get_protocol(variant.id) == variant
    assert base.with_overrides(num_generated=128) == base          # no change, no variant
    other = get_protocol("lofgan").with_overrides(real_pool_max=5, fewshot={"classifier_c": 3})
    assert get_protocol(other.id) == other and "fewshot.classifier_c=3.0" in other.id
    # A variant of a variant is still named by its differences from the published protocol.
    assert variant.with_overrides(num_generated=128).id == "clean@v2+fewshot.episodes=21+fewshot.ways=(5,)+lpips_net=squeeze"
    assert get_protocol("lofgan").with_overrides(lpips_range=(-1, 1)).id == "lofgan@v2+lpips_range=(-1,1)"


@pytest.mark.parametrize("ident, match", [
    ("nope", "unknown protocol"),
    ("clean@v7", "version v2"),
    ("clean@v2+bogus=3", "unknown protocol field"),
    ("clean@v2+num_generated", "field=value"),
    ("clean@v2+num_generated=100", "multiple of"),
    ("clean@v2+lpips_net=resnet", "lpips_net"),
    ("clean@v2+fewshot.generated_weight=heavy", "generated_weight"),
    ("clean@v2+fewshot.ways=(1,)", "at least 2"),
    ("clean@v2+copy_quantile=0.7", "copy_quantile"),
])
def test_bad_ids_are_user_errors(ident, match):
    with pytest.raises(UserError, match=match):
        get_protocol(ident)


def _plan(protocol: Protocol, sizes=(20, 20, 25), seed=0, dataset="tiny", first=7) -> EvalPlan:
    ids = list(range(first, first + len(sizes)))
    return EvalPlan.build(dataset=dataset, unseen=ids, class_sizes=list(sizes), protocol=protocol, seed=seed)


def test_clean_plan_pools_are_disjoint_and_supports_distinct():
    proto = get_protocol("clean")
    plan = _plan(proto)
    assert plan.fingerprint() == _plan(proto).fingerprint()          # deterministic
    assert plan.fingerprint() != _plan(proto, seed=1).fingerprint()
    for cp in plan.classes:
        assert len(cp.cond) == 10 and not set(cp.cond) & set(cp.real)
        assert sorted(cp.cond) != list(range(10)) or sorted(cp.real) != list(range(10, len(cp.real) + 10))  # permuted
        assert cp.supports.shape == (8, 3) and cp.images_per_support == 16
        assert all(len(set(row)) == 3 for row in cp.supports)       # drawn without replacement
        assert cp.shot_sets.shape == (proto.fewshot.shot_sets, 3)
        assert list(cp.real_unique()) == list(cp.real) == list(cp.heldout())


def test_lofgan_plan_permutes_and_samples_128_reals_with_replacement(tmp_path):
    # LoFGAN@c169621 on Flowers: 40 images per class, pool 10, 128 reals drawn from the other 30
    plan = _plan(get_protocol("lofgan"), sizes=(40,) * 3, dataset="flowers")
    cp = plan.classes[0]
    assert len(cp.real) == 128 and len(cp.real_unique()) <= 30 and not set(cp.real) & set(cp.cond)
    assert sorted(cp.cond) != list(range(10))                        # permuted
    assert cp.supports.shape == (128, 3) and cp.images_per_support == 1
    plan.save(tmp_path / "plan.json")
    again = EvalPlan.load(tmp_path / "plan.json")
    assert again.fingerprint() == plan.fingerprint()
    assert np.array_equal(again.classes[1].shot_sets, plan.classes[1].shot_sets)
    # VGGFace (100 images per class): a pool of 30, as LoFGAN's `num = 30`
    assert len(_plan(get_protocol("lofgan"), sizes=(100,), dataset="vggface").classes[0].cond) == 30


def test_lofgan_paper_plan_uses_every_remaining_real_unpermuted():
    # LoFGAN@51620ad on Animal Faces-like classes of 100 images: first 10 condition, all 90 others are reals
    for dataset, pool in (("animalfaces", 10), ("vggface", 30)):
        cp = _plan(get_protocol("lofgan-paper"), sizes=(100,), dataset=dataset).classes[0]
        assert cp.cond.tolist() == list(range(pool))
        assert cp.real.tolist() == list(range(pool, 100))            # once each, file order, no replacement
        assert cp.supports.shape == (128, 3) and cp.images_per_support == 1


def test_f2gan_plan_conditions_on_the_first_10_and_reals_include_them():
    for dataset in ("vggface", "flowers"):      # v1 used LoFGAN's 30 on VGGFace
        cp = _plan(get_protocol("f2gan"), sizes=(100,), dataset=dataset).classes[0]
        assert cp.cond.tolist() == list(range(10))
        assert cp.real.tolist() == list(range(100))                 # conditioning images + the rest, <= 128
        assert cp.heldout().tolist() == list(range(10, 100))        # queries etc. never see a conditioning image
        assert cp.supports.shape == (16, 3) and cp.images_per_support == 8
        assert all(len(set(row)) == 3 for row in cp.supports)
    big = _plan(get_protocol("f2gan"), sizes=(300,), dataset="flowers").classes[0]
    assert big.real.tolist() == list(range(128))                    # capped at 128 per class


def test_reference_split_halves_the_heldout_images():
    cp = _plan(get_protocol("clean"), sizes=(21,)).classes[0]
    scored, reference = cp.reference_split()
    assert len(scored) == 5 and len(reference) == 6
    assert not set(scored) & set(reference) and set(scored) | set(reference) == set(cp.heldout())


def test_a_class_too_small_for_the_protocol_is_a_user_error():
    with pytest.raises(UserError, match="needs a conditional pool of 10"):
        _plan(get_protocol("clean"), sizes=(20, 10, 20))
