"""FID/KID agree with torch-fidelity's own computation; LPIPS pairs agree with lpips' forward; pair rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsgen_bench.eval.diversity import LpipsDistance, cosine_distances, mean_over_pairs, pair_mask
from fsgen_bench.eval.fid import frechet_distance, kernel_distance
from fsgen_bench.eval.weights import WeightsFile


def _features(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, d), generator=g, dtype=torch.float64) * 0.7 + shift


def test_fid_matches_torch_fidelity():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    real, fake = _features(200, 16, 0.0, 1), _features(150, 16, 0.3, 2)
    ours = frechet_distance(real, fake)
    theirs = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake),
                                      verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours > 0.5


def test_fid_of_a_set_with_itself_is_zero():
    x = _features(100, 8, 0.0, 3)
    assert abs(frechet_distance(x, x)) < 1e-6


def test_fid_is_order_and_dtype_robust():
    real, fake = _features(64, 8, 0.0, 4), _features(64, 8, 0.5, 5)
    a = frechet_distance(real, fake)
    b = frechet_distance(real.float()[torch.randperm(64)], fake.float())
    assert a == pytest.approx(b, rel=1e-5)


def test_kid_matches_torch_fidelity_and_clamps_subset_size():
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = _features(40, 12, 0.0, 6), _features(30, 12, 0.4, 7)
    ours = kernel_distance(real, fake, subset_size=1000, subsets=20, seed=11)
    assert ours.subset_size == 30          # clamped to the smaller set
    theirs = kid_features_to_metric(real, fake, kid_subsets=20, kid_subset_size=30, rng_seed=11, verbose=False)
    assert ours.mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours.std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)
    again = kernel_distance(real, fake, subset_size=1000, subsets=20, seed=11)
    assert again == ours                   # seeded: no global RNG involved


def test_pair_rules():
    assert int(pair_mask(5, "all").sum()) == 10
    m = pair_mask(15, "first10")
    assert int(m.sum()) == sum(15 - i - 1 for i in range(10))
    assert not bool(m[10:].any())
    d = torch.arange(16, dtype=torch.float64).view(4, 4)
    assert mean_over_pairs(d, "all") == pytest.approx(np.mean([1, 2, 3, 6, 7, 11]))


def test_cosine_distances():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    d = cosine_distances(f)
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(2.0) and d[1, 1] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def squeeze_weights(tmp_path_factory) -> WeightsFile:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lpips") / "squeezenet1_1-b8a52dc0.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    return WeightsFile(path, "option")


def test_batched_lpips_equals_lpips_forward(squeeze_weights):
    """All pairs from one backbone pass per image == lpips' own pairwise forward."""
    dist = LpipsDistance("squeeze", squeeze_weights, device=torch.device("cpu"), size=None)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 32, 32), generator=g, dtype=torch.uint8)
    ours = dist.pairwise(images, batch_size=2)
    x = images.float().div(127.5).sub(1.0).expand(-1, 3, -1, -1)
    i, j = torch.triu_indices(5, 5, offset=1)
    with torch.no_grad():
        ref = dist.model(x[i], x[j]).flatten().double()
    assert torch.allclose(ours[i, j], ref, rtol=1e-4, atol=1e-6)
    assert torch.allclose(ours, ours.T) and float(ours.diagonal().abs().max()) < 1e-6
    # The batch size of the backbone pass does not change the numbers.
    assert torch.allclose(dist.pairwise(images, batch_size=64), ours, rtol=1e-5, atol=1e-8)


# -- the metrics of the registry, on constructed features --------------------------------------------------------

from fsgen_bench.data.evalplan import ClassPlan  # noqa: E402
from fsgen_bench.eval.fewshot import generated_weight  # noqa: E402
from fsgen_bench.eval.metrics import class_fidelity as cf_mod  # noqa: E402
from fsgen_bench.eval.metrics import frechet as frechet_mod  # noqa: E402
from fsgen_bench.eval.metrics import novelty as novelty_mod  # noqa: E402
from fsgen_bench.eval.metrics.inputs import MetricInputs  # noqa: E402
from fsgen_bench.eval.metrics.prdc import density_coverage, precision_recall  # noqa: E402
from fsgen_bench.eval.protocols import get_protocol  # noqa: E402

REAL_1D = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
FAKE_1D = torch.tensor([[0.5], [9.0], [20.0]])


def test_density_and_coverage_match_a_worked_example():
    """k = 1. Real radii (nearest other real): 0->1, 1->1, 2->1, 10->8.
    Fake 0.5 lies in the balls of 0 and 1 (0.5 < 1), fake 9 in the ball of 10 (1 < 8), fake 20 in none (10 > 8):
    density = (2 + 1 + 0) / (k * 3) = 1. Real 0, 1 and 10 have a fake inside their ball, real 2 does not (its
    nearest fake is 1.5 away): coverage = 3 / 4."""
    density, coverage = density_coverage(REAL_1D, FAKE_1D, k=1)
    assert density == pytest.approx(1.0) and coverage == pytest.approx(0.75)
    # k = 2: radii 0->2, 1->1, 2->2, 10->9; fake 0.5 in 0, 1, 2 (1.5 < 2); 9 in 10; 20 in none -> 4 / (2 * 3)
    density, coverage = density_coverage(REAL_1D, FAKE_1D, k=2)
    assert density == pytest.approx(4 / 6) and coverage == pytest.approx(1.0)


def test_precision_and_recall_match_the_library_and_a_worked_example():
    """k = 1 (torch-fidelity's <=). Precision: fakes 0.5 and 9 lie in real balls, 20 does not: 2/3. Fake radii:
    0.5->8.5, 9->8.5, 20->11; every real image lies in a fake ball: recall 1."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    p, r = precision_recall(REAL_1D, FAKE_1D, k=1)
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(1.0))
    real, fake = _features(60, 6, 0.0, 8), _features(50, 6, 0.6, 9)
    ours = precision_recall(real, fake, k=3)
    lib = prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=1000, save_cpu_ram=False,
                                 verbose=False)
    assert ours == (pytest.approx(lib["precision"]), pytest.approx(lib["recall"]))
    assert ours[0] != ours[1]            # generated and real are not interchangeable: the order is checked


def _class_inputs(gen, gen_support, heldout, cond, supports, *, real=None, protocol=None) -> MetricInputs:
    ids = sorted(gen)
    plans = {c: ClassPlan(c, np.arange(len(cond[c])), np.arange(len(heldout[c])) + 100, supports[c], 1, None)
             for c in ids}
    table = lambda d: {"domain": d}  # noqa: E731
    return MetricInputs(protocol=protocol or get_protocol("clean"), plans=plans, class_ids=ids, resolution=32,
                        backbones=["domain"], real=table(real or heldout), heldout=table(heldout), cond=table(cond),
                        gen=table(gen), gen_support=gen_support, backbone_extra={"domain": {}})


def _clusters(n_classes=4, pool=10, held=400, seed=0, d=8):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn((n_classes, d), generator=g) * 6
    draw = lambda c, n: centres[c] + torch.randn((n, d), generator=g, dtype=torch.float32)  # noqa: E731
    cond = {c: draw(c, pool) for c in range(n_classes)}
    heldout = {c: draw(c, held) for c in range(n_classes)}
    supports = {c: np.stack([np.random.default_rng([c, t]).choice(pool, 3, replace=False) for t in range(8)])
                for c in range(n_classes)}
    return draw, cond, heldout, supports


def test_a_copier_scores_novelty_0_and_copy_rate_1():
    _, cond, heldout, supports = _clusters()
    gen = {c: cond[c][torch.from_numpy(supports[c][:, 0])].repeat_interleave(4, 0) for c in cond}
    sup = {c: torch.arange(8).repeat_interleave(4) for c in cond}
    out = {v.metric: v for v in novelty_mod.compute(_class_inputs(gen, sup, heldout, cond, supports))}
    assert out["novelty"].value == 0.0 and out["copy_rate"].value == 1.0


def test_images_from_the_real_distribution_score_novelty_about_1_and_copy_rate_about_the_quantile():
    draw, cond, heldout, supports = _clusters()
    gen = {c: draw(c, 400) for c in cond}
    sup = {c: torch.arange(8).repeat(50) for c in cond}
    out = {v.metric: v for v in novelty_mod.compute(_class_inputs(gen, sup, heldout, cond, supports))}
    assert abs(out["novelty"].value - 1.0) < 0.1
    assert abs(out["copy_rate"].value - 0.05) < 0.03
    lo, hi = out["novelty"].extra["ci95_low"], out["novelty"].extra["ci95_high"]
    assert lo <= out["novelty"].value <= hi and out["novelty"].ci95 == pytest.approx((hi - lo) / 2)
    # a row without a support set (the real reference row) is measured against every set
    every = {c: torch.full((400,), -1) for c in cond}
    alt = {v.metric: v for v in novelty_mod.compute(_class_inputs(gen, every, heldout, cond, supports))}
    assert abs(alt["novelty"].value - 1.0) < 0.1


def test_class_fidelity_is_the_nearest_prototype_share():
    draw, cond, heldout, supports = _clusters(n_classes=3)
    sup = {c: torch.zeros(20, dtype=torch.long) for c in cond}
    right = {c: draw(c, 20) for c in cond}
    wrong = {c: draw((c + 1) % 3, 20) for c in cond}                  # every image looks like the next class
    good = cf_mod.compute(_class_inputs(right, sup, heldout, cond, supports))[0]
    bad = cf_mod.compute(_class_inputs(wrong, sup, heldout, cond, supports))[0]
    assert good.value == 1.0 and bad.value == 0.0 and good.extra["chance"] == pytest.approx(1 / 3)


def test_kid_interval_is_for_the_mean_over_subsets():
    real, fake = _features(40, 12, 0.0, 6), _features(30, 12, 0.4, 7)
    inputs = _class_inputs({0: fake}, {0: torch.zeros(30)}, {0: real}, {0: real[:5]}, {0: np.zeros((1, 3), int)},
                           protocol=get_protocol("clean").with_overrides(kid_subsets=25))
    kid = next(v for v in frechet_mod.compute(inputs) if v.metric == "kid")
    assert kid.ci95 == pytest.approx(1.96 * kid.extra["kid_std"] / 5.0)
    assert "mean over the random subsets" in kid.extra["ci95_of"]


def test_generated_images_never_outweigh_the_real_shots_under_balanced_weights():
    assert generated_weight("balanced", 3, 16) == pytest.approx(3 / 16)
    assert generated_weight("balanced", 3, 16) * 16 == pytest.approx(3.0)      # together: the shots' weight
    assert generated_weight("unit", 3, 16) == 1.0
    with pytest.raises(ValueError):
        generated_weight("heavy", 3, 16)


def test_images_farther_from_their_conditioning_than_real_ones_score_above_1():
    """Generated images spread twice as wide as real ones: each lies about sqrt((4 + 1) / (1 + 1)) ~ 1.6 times
    as far from a conditioning image as a held-out real image does (so the normaliser must be the real images')."""
    draw, cond, heldout, supports = _clusters()
    gen = {c: (draw(c, 400) - cond[c].mean(0)) * 2 + cond[c].mean(0) for c in cond}
    sup = {c: torch.arange(8).repeat(50) for c in cond}
    out = {v.metric: v for v in novelty_mod.compute(_class_inputs(gen, sup, heldout, cond, supports))}
    assert 1.35 < out["novelty"].value < 1.9 and out["copy_rate"].value < 0.02


def test_every_episode_fits_with_the_protocols_classifier_c(monkeypatch):
    """v1 named the loop's class id `c` and fitted each episode with C = that id instead of classifier_c."""
    from fsgen_bench.eval import fewshot as fs_mod

    seen_c = []
    real_classifier = fs_mod._classifier
    monkeypatch.setattr(fs_mod, "_classifier", lambda c, it: seen_c.append(c) or real_classifier(c, it))
    shots = {cid: _features(6, 4, float(cid), cid).view(2, 3, 4) for cid in (400, 401, 402)}
    gen = {cid: _features(8, 4, float(cid), cid + 10).view(2, 4, 4) for cid in shots}
    queries = {cid: _features(5, 4, float(cid), cid + 20) for cid in shots}
    fs_mod.fewshot_episodes(shots, gen, queries, ways=2, episodes=3, seed=0, protocol_seed=0, c=2.5, max_iter=50,
                            weight_rule="balanced")
    assert seen_c == [2.5] * 6
