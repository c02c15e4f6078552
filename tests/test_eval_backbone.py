"""The domain backbone: deterministic given the seed, cached with its validation accuracy, batch-independent."""

from __future__ import annotations

import json

import torch

from fsgen_bench.eval.backbone import DomainResNet, obtain_domain_backbone, split_seen, train_domain_backbone
from test_eval_support import TINY_EVAL_CFG, tiny_images

CFG = TINY_EVAL_CFG["domain_backbone"]
CPU = torch.device("cpu")


def test_training_is_deterministic_given_the_seed():
    images = tiny_images()
    quiet = dict(cfg=CFG, device=CPU, log=lambda *a: None)
    state = torch.random.get_rng_state()
    a, meta = train_domain_backbone(images, seed=3, **quiet)
    assert torch.equal(state, torch.random.get_rng_state()), "the caller's global RNG is untouched"
    b, _ = train_domain_backbone(images, seed=3, **quiet)
    c, _ = train_domain_backbone(images, seed=4, **quiet)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    assert 0.0 <= meta["val_acc"] <= 1.0 and meta["val_images"] == 10      # one held-out image per seen class


def test_held_out_split_is_ten_percent_per_class():
    x_tr, y_tr, x_va, y_va = split_seen(tiny_images(), seed=0)
    assert len(y_va) == 10 and len(y_tr) == 10 * 11 and x_tr.dtype == torch.uint8 and x_tr.shape[1:] == (1, 16, 16)
    assert torch.equal(torch.bincount(y_va), torch.ones(10, dtype=torch.long))


def test_cached_once_then_loaded(tmp_path, monkeypatch):
    images = tiny_images()
    first = obtain_domain_backbone(images, cfg=CFG, cache_dir=tmp_path, seed=0, device=CPU, log=lambda *a: None)
    assert first.meta["cached"] is False
    stored = json.loads(next((tmp_path / "backbones" / "tiny").glob("*.json")).read_text())
    assert stored["val_acc"] == first.meta["val_acc"] and stored["key"] == first.key

    import fsgen_bench.eval.backbone as mod

    monkeypatch.setattr(mod, "train_domain_backbone", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    second = obtain_domain_backbone(images, cfg=CFG, cache_dir=tmp_path, seed=0, device=CPU, log=lambda *a: None)
    assert second.meta["cached"] is True and second.key == first.key
    x = torch.from_numpy(images.classes[12].transpose(0, 3, 1, 2).copy())
    assert torch.equal(first.extract(x), second.extract(x))
    # Another seed or width is another backbone.
    monkeypatch.undo()
    other = obtain_domain_backbone(images, cfg={**CFG, "width": 4}, cache_dir=tmp_path, seed=0, device=CPU,
                                   log=lambda *a: None)
    assert other.key != first.key and other.num_features == 16


def test_features_do_not_depend_on_the_batch_size():
    torch.manual_seed(0)
    net = DomainResNet(in_channels=1, num_classes=5, width=8, image_size=16).eval()
    from fsgen_bench.eval.backbone import DomainBackbone

    bb = DomainBackbone(net=net, key="x")
    x = torch.randint(0, 256, (20, 1, 16, 16), dtype=torch.uint8)
    assert torch.allclose(bb.extract(x, batch_size=3), bb.extract(x, batch_size=20), rtol=1e-5, atol=1e-6)
    assert bb.extract(x).shape == (20, 32)


def test_larger_images_are_pooled_to_the_working_size():
    net = DomainResNet(in_channels=3, num_classes=4, width=4, image_size=128)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.stem) == 2
    assert net(torch.zeros(2, 3, 128, 128)).shape == (2, 4)
