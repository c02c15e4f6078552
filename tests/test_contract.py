"""The FewShotGenerator contract, run for every registered method with its `smoke` preset.

No per-method test code lives here: a method registered in ``fsgen_bench.methods.METHODS`` is covered without
edits, by meeting the contract with its tiny config and by declaring its properties honestly
(``uses_support``, ``stochastic``, ``min_k``/``max_k``; see :mod:`fsgen_bench.methods.base`).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from fsgen_bench.config import resolve
from fsgen_bench.data.datamodule import ClassStore, EpisodicDataModule
from fsgen_bench.data.source import ClassImages, DatasetInfo
from fsgen_bench.errors import UserError
from fsgen_bench.methods import METHODS
from fsgen_bench.runner.build import build_method

SIZE, CHANNELS, SEEN, UNSEEN, PER_CLASS = 32, 1, 6, 2, 8


def tiny_images() -> ClassImages:
    rng = np.random.default_rng(0)
    classes = []
    for c in range(SEEN + UNSEEN):
        base = (rng.random((1, SIZE, SIZE, CHANNELS)) > 0.7).astype(np.float32)
        noise = rng.random((PER_CLASS, SIZE, SIZE, CHANNELS)) * 0.3
        classes.append((np.clip(base * 0.8 + noise, 0, 1) * 255).astype(np.uint8))
    info = DatasetInfo(name="tiny", channels=CHANNELS, image_size=SIZE, native_size=SIZE,
                       num_classes=SEEN + UNSEEN, num_seen=SEEN, origin="test")
    return ClassImages(info=info, classes=classes, class_names=[str(i) for i in range(SEEN + UNSEEN)],
                       seen=list(range(SEEN)), unseen=list(range(SEEN, SEEN + UNSEEN)))


def smoke_setup(name: str, tmp_path):
    cfg = resolve(method=name, dataset="glyphs", preset="smoke")
    cfg["data"].update(image_size=SIZE, channels=CHANNELS, batch_size=2, episodes_per_epoch=4)
    dm = EpisodicDataModule(cfg["data"], cache_dir=tmp_path, seed=0)
    dm.images = tiny_images()
    dm.seen_store = ClassStore(dm.images, dm.images.seen)
    L.seed_everything(0, verbose=False)
    model = build_method(cfg, dm.images.info)
    return cfg, dm, model


def support_batch(b: int, k: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, k, CHANNELS, SIZE, SIZE), generator=g) * 2 - 1


def gen(model, support, num, seed=123):
    model.eval()
    with torch.no_grad():
        return model.generate(support, num, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=METHODS.names())
def trained(request, tmp_path_factory):
    """Each registered method after one smoke epoch (reference rows as built), with its trainer."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    cfg, dm, model = smoke_setup(request.param, tmp_path)
    trainer = None
    if model.trainable:
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, reload_dataloaders_every_n_epochs=1)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer.fit(model, datamodule=dm)
        changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
        assert changed, f"{request.param}: no parameter changed after a training epoch"
    return request.param, cfg, model, trainer, tmp_path


def test_shapes_and_range_for_every_accepted_k(trained):
    name, _, model, _, _ = trained
    max_k = model.max_k or 5
    for k in range(model.min_k, min(5, max_k) + 1):
        out = gen(model, support_batch(3, k), 4)
        assert out.shape == (3, 4, CHANNELS, SIZE, SIZE), f"{name}: K={k} gave {tuple(out.shape)}"
        assert torch.isfinite(out).all()
        assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5, f"{name}: output outside [-1, 1]"
    if model.min_k > 1:                      # a K it cannot serve is refused with an error naming the fix
        with pytest.raises(UserError, match="K = 1"):
            gen(model, support_batch(2, model.min_k - 1), 2)


def test_seeds(trained):
    """One seed repeats; different seeds differ for a stochastic method and agree for a deterministic one."""
    name, cfg, model, _, _ = trained
    s = support_batch(2, int(cfg["data"]["k_shot"]))
    a, b = gen(model, s, 3, seed=5), gen(model, s, 3, seed=5)
    assert torch.equal(a, b), f"{name}: generate is not deterministic under a fixed torch.Generator"
    other = gen(model, s, 3, seed=6)
    if model.stochastic:
        assert not torch.allclose(a, other), f"{name}: a stochastic method gave the same images for two seeds"
    else:
        assert torch.equal(a, other), f"{name}: declared deterministic but its images depend on the seed"


def test_generate_depends_on_its_support_and_follows_a_swap(trained):
    """Row b of a batch is generated from support b: the same as a batch holding support b in every row (with
    the same seed, randomness being drawn per row), and different from another support's images."""
    name, cfg, model, _, _ = trained
    k = int(cfg["data"]["k_shot"])
    s1, s2 = support_batch(1, k, seed=1), support_batch(1, k, seed=2)
    mixed = gen(model, torch.cat([s1, s2]), 3)
    swapped = gen(model, torch.cat([s2, s1]), 3)
    only1 = gen(model, torch.cat([s1, s1]), 3)
    only2 = gen(model, torch.cat([s2, s2]), 3)
    if not model.uses_support:
        assert torch.equal(only1, only2), f"{name}: declared uses_support=False but its images depend on the support"
        return
    assert not torch.allclose(only1, only2, atol=1e-4), f"{name}: generate ignores its support"
    for out, first, second in ((mixed, only1, only2), (swapped, only2, only1)):
        assert torch.allclose(out[0], first[0], atol=1e-5), f"{name}: row 0 is not generated from its own support"
        assert torch.allclose(out[1], second[1], atol=1e-5), f"{name}: row 1 is not generated from its own support"


def test_checkpoint_round_trip(trained):
    name, cfg, model, trainer, tmp_path = trained
    if not model.trainable:
        return
    s = support_batch(2, int(cfg["data"]["k_shot"]))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    reloaded = type(model).load_from_checkpoint(str(path), map_location="cpu")
    assert torch.allclose(gen(reloaded, s, 3, seed=5), gen(model, s, 3, seed=5), atol=1e-5), (
        f"{name}: checkpoint round trip differs")


def test_declared_attributes_are_consistent():
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert isinstance(cls.row_note, str) and "\n" not in cls.row_note, name
        assert cls.min_k >= 1 and (cls.max_k is None or cls.max_k >= cls.min_k), name
        if cls.variants:
            assert cls.default_variant in cls.variants, name


def test_every_method_has_a_config_with_presets():
    from fsgen_bench.config import configs_dir, load_yaml

    for name in METHODS.names():
        layer = load_yaml(configs_dir() / "methods" / f"{name}.yaml")
        assert layer["method"]["name"] == name
        if getattr(METHODS.get(name), "trainable", True):
            assert {"smoke", "quick", "paper"} <= set(layer.get("presets", {})), f"{name}: presets missing"
