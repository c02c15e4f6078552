"""The FewShotGenerator contract, run for every registered method with its `smoke` preset.

No per-method test code lives here: a new method passes by meeting the contract with its tiny config.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from fsgen_bench.config import resolve
from fsgen_bench.data.datamodule import ClassStore, EpisodicDataModule
from fsgen_bench.data.source import ClassImages, DatasetInfo
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


def support_batch(b: int, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand((b, k, CHANNELS, SIZE, SIZE), generator=g) * 2 - 1


def gen(model, support, num, seed=123):
    model.eval()
    with torch.no_grad():
        return model.generate(support, num, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", METHODS.names())
def test_contract(name, tmp_path):
    cfg, dm, model = smoke_setup(name, tmp_path)
    k_train = int(cfg["data"]["k_shot"])

    # One short training run (trainable methods) must change the weights.
    if model.trainable:
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, reload_dataloaders_every_n_epochs=1)
        trainer.fit(model, datamodule=dm)
        changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
        assert changed, f"{name}: no parameter changed after a training epoch"

    # Shapes and range, for any K from 1 to 5 the method accepts.
    max_k = model.max_k or 5
    for k in range(1, min(5, max_k) + 1):
        out = gen(model, support_batch(3, k), 4)
        assert out.shape == (3, 4, CHANNELS, SIZE, SIZE), f"{name}: K={k} gave {tuple(out.shape)}"
        assert torch.isfinite(out).all()
        assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5, f"{name}: output outside [-1, 1]"

    # Determinism under a fixed generator; different seeds differ for stochastic methods.
    s = support_batch(2, k_train)
    a, b = gen(model, s, 3, seed=5), gen(model, s, 3, seed=5)
    assert torch.equal(a, b), f"{name}: generate is not deterministic under a fixed torch.Generator"

    # Checkpoint round trip: the reloaded model generates the same images.
    if model.trainable:
        path = tmp_path / "m.ckpt"
        trainer.save_checkpoint(path)
        reloaded = type(model).load_from_checkpoint(str(path), map_location="cpu")
        assert torch.allclose(gen(reloaded, s, 3, seed=5), a, atol=1e-5), f"{name}: checkpoint round trip differs"


def test_every_method_has_a_config_with_presets():
    from fsgen_bench.config import configs_dir, load_yaml

    for name in METHODS.names():
        layer = load_yaml(configs_dir() / "methods" / f"{name}.yaml")
        assert layer["method"]["name"] == name
        if getattr(METHODS.get(name), "trainable", True):
            assert {"smoke", "quick", "paper"} <= set(layer.get("presets", {})), f"{name}: presets missing"
