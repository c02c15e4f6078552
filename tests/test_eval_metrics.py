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
