from __future__ import annotations

import numpy as np
import pytest
import torch

from fsgen_bench.data.datamodule import ClassStore, EpisodeBatches, EpisodicDataModule, to_uint8, to_unit_range
from fsgen_bench.data.evalplan import EvalPlan
from fsgen_bench.data.source import ClassImages, DatasetInfo
from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocols import get_protocol


def ragged_images(seen=5, unseen=3, size=16) -> ClassImages:
    rng = np.random.default_rng(0)
    counts = [12, 15, 20, 13, 14, 25, 30, 22][: seen + unseen]
    # each class' images carry its class index in pixel (0, 0) so episodes can be checked
    classes = []
    for c, n in enumerate(counts):
        arr = rng.integers(0, 255, size=(n, size, size, 1), dtype=np.uint8)
        arr[:, 0, 0, 0] = c
        arr[:, 0, 1, 0] = np.arange(n)      # image index inside the class
        classes.append(arr)
    info = DatasetInfo("t", 1, size, size, seen + unseen, seen, "test")
    return ClassImages(info, classes, [str(i) for i in range(seen + unseen)], list(range(seen)),
                       list(range(seen, seen + unseen)))


def dm_for(images, **over):
    cfg = {"k_shot": 3, "batch_size": 4, "episodes_per_epoch": 40, "num_workers": 0, "name": "t"}
    cfg.update(over)
    dm = EpisodicDataModule(cfg, cache_dir="/nonexistent", seed=7)
    dm.images = images
    dm.seen_store = ClassStore(images, images.seen)
    return dm


def test_episodes_shapes_labels_and_no_unseen_class():
    images = ragged_images()
    dm = dm_for(images)
    loader = dm.train_dataloader()
    seen_counts = {c: 0 for c in images.seen}
    for batch in loader:
        batch = dm.on_after_batch_transfer(batch, 0)
        s = batch["support"]
        assert s.shape == (4, 3, 1, 16, 16) and s.dtype == torch.float32
        assert s.min() >= -1 and s.max() <= 1
        raw = to_uint8(s)
        owners = raw[:, :, 0, 0, 0].long()
        # every image of an episode belongs to the episode's class, which is a seen class
        assert torch.equal(owners, batch["class_id"][:, None].expand(-1, 3))
        assert set(batch["class_id"].tolist()) <= set(images.seen)
        assert torch.equal(batch["label"], batch["class_id"])  # seen classes are 0..4 here, label = index
        # K distinct images per episode (without replacement)
        idx = raw[:, :, 0, 1, 0]
        assert all(len(set(row.tolist())) == 3 for row in idx)
        for c in batch["class_id"].tolist():
            seen_counts[c] += 1
    # classes are drawn without replacement per pass: 40 episodes over 5 classes = 8 each
    assert set(seen_counts.values()) == {8}


def test_episodes_deterministic_and_worker_independent():
    images = ragged_images()
    a = [b["support"] for b in dm_for(images).train_dataloader()]
    b = [b["support"] for b in dm_for(images, num_workers=2).train_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == 10


def test_epochs_differ():
    images = ragged_images()
    store = ClassStore(images, images.seen)
    e0 = EpisodeBatches(store, k_shot=3, batch_size=4, num_batches=2, seed=0, epoch=0)[0]
    e1 = EpisodeBatches(store, k_shot=3, batch_size=4, num_batches=2, seed=0, epoch=1)[0]
    assert not torch.equal(e0["support"], e1["support"])


def test_ranks_get_different_batches():
    from torch.utils.data import DistributedSampler

    images = ragged_images()
    ds = dm_for(images).train_dataloader().dataset
    r0 = list(DistributedSampler(ds, num_replicas=2, rank=0, shuffle=False))
    r1 = list(DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False))
    assert not set(r0) & set(r1) and len(r0) == len(r1) == 5


@pytest.mark.parametrize("proto", ["clean", "lofgan", "f2gan"])
def test_eval_plan_identical_and_disjoint(proto, tmp_path):
    images = ragged_images()
    p = get_protocol(proto)
    plans = [dm_for(images, num_workers=w).eval_plan(p) for w in (0, 2)]
    assert plans[0].fingerprint() == plans[1].fingerprint()
    for cp in plans[0].classes:
        assert not set(cp.cond.tolist()) & set(cp.heldout().tolist()), "conditional pool and held-out images overlap"
        if not p.real_includes_cond:   # F2GAN's real set includes its conditioning images on purpose
            assert not set(cp.cond.tolist()) & set(cp.real.tolist()), "conditional and real pools overlap"
        assert cp.supports.shape == (p.supports_per_class, p.k_shot)
        if p.support_draw == "distinct":
            assert all(len(set(r)) == p.k_shot for r in cp.supports.tolist())
    path = tmp_path / "plan.json"
    plans[0].save(path)
    assert EvalPlan.load(path).fingerprint() == plans[0].fingerprint()


def test_eval_plan_rejects_small_classes():
    images = ragged_images()
    images.classes[6] = images.classes[6][:9]     # fewer than a pool of 10 plus one real image
    with pytest.raises(UserError, match="needs a conditional pool"):
        dm_for(images).eval_plan(get_protocol("clean"))


def test_unit_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(to_unit_range(x)), x)
