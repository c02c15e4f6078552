"""DAGAN (baselines/dagan): pair critic, WGAN-GP schedule, one-image conditioning cycled over K."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from fsgen_bench.baselines.dagan.model import DAGAN, make_pairs
from fsgen_bench.data.datamodule import ClassStore, EpisodicDataModule
from fsgen_bench.data.source import ClassImages, DatasetInfo

SIZE = 16


def tiny(**kw) -> DAGAN:
    torch.manual_seed(0)
    args = dict(image_size=SIZE, channels=1, num_seen_classes=4, k_shot=3, layer_sizes=(4, 4, 8), inner_layers=1,
                dropout=0.0, disc_layer_sizes=(4, 8), disc_inner_layers=1, disc_head_width=8, bn_momentum=0.1)
    args.update(kw)
    return DAGAN(**args)


def support(b: int, k: int, seed: int = 1, size: int = SIZE, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, k, channels, size, size), generator=g) * 2 - 1


def tiny_datamodule(tmp_path, *, batches: int, k_shot: int = 3) -> EpisodicDataModule:
    """Each class is one distinct constant-per-class pattern, so 'same class' is checkable from pixels."""
    rng = np.random.default_rng(0)
    classes = [(rng.random((1, SIZE, SIZE, 1)) > 0.5).repeat(5, 0).astype(np.uint8) * 255 for _ in range(6)]
    for c, imgs in enumerate(classes):
        imgs[:, 0, 0, 0] = np.arange(5) * 40 + c          # images of a class differ in one pixel
    info = DatasetInfo(name="tiny", channels=1, image_size=SIZE, native_size=SIZE, num_classes=6, num_seen=4,
                       origin="test")
    images = ClassImages(info=info, classes=classes, class_names=[str(i) for i in range(6)], seen=[0, 1, 2, 3],
                         unseen=[4, 5])
    cfg = {"name": "tiny", "k_shot": k_shot, "batch_size": 2, "episodes_per_epoch": 2 * batches, "num_workers": 0,
           "image_size": SIZE, "channels": 1}
    dm = EpisodicDataModule(cfg, cache_dir=tmp_path, seed=0)
    dm.images, dm.seen_store = images, ClassStore(images, images.seen)
    return dm


def fit(model, dm, epochs: int = 1, callbacks=()):
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(model, datamodule=dm)
    return trainer


def test_pairs_are_two_images_of_one_episode():
    s = support(3, 4)
    x, y = make_pairs(s)
    assert torch.equal(x, s[:, 0]) and torch.equal(y, s[:, 1])
    with pytest.raises(ValueError, match="k_shot >= 2"):
        make_pairs(support(3, 1))


def test_critic_sees_real_pairs_of_one_class_and_fake_pairs(tmp_path):
    model = tiny()
    seen_inputs: list[torch.Tensor] = []
    model.critic.register_forward_hook(lambda mod, args, out: seen_inputs.append(args[0].detach().clone()))
    batches: list[dict] = []

    class Grab(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            batches.append({k: v.clone() for k, v in batch.items()})

    fit(model, tiny_datamodule(tmp_path, batches=1), callbacks=[Grab()])
    s = batches[0]["support"]
    x = s[:, 0]
    real_pair, fake_pair = seen_inputs[0], seen_inputs[1]
    assert real_pair.shape[1] == 2 * 1, "the critic input must hold the two images of a pair (2*C channels)"
    # Real pair: (x, x') = support[:, 0], support[:, 1], two distinct images of one episode's class.
    assert torch.equal(real_pair, torch.cat([x, s[:, 1]], dim=1))
    assert not torch.equal(s[:, 0], s[:, 1])
    assert (s[:, 0, :, 1:, 1:] == s[:, 1, :, 1:, 1:]).all(), "a real pair mixes classes"
    # Fake pair: the same conditional x, then a generated image.
    assert torch.equal(fake_pair[:, :1], x)
    assert not torch.equal(fake_pair[:, 1:], s[:, 1])


def test_training_needs_two_images_per_episode(tmp_path):
    with pytest.raises(ValueError, match="k_shot >= 2"):
        fit(tiny(k_shot=1), tiny_datamodule(tmp_path, batches=1, k_shot=1))


@pytest.mark.parametrize("critic_steps,batches,g_moves", [(2, 2, True), (5, 4, False)])
def test_generator_updates_once_per_critic_steps(tmp_path, critic_steps, batches, g_moves):
    model = tiny(critic_steps=critic_steps)
    g0 = {n: p.detach().clone() for n, p in model.generator.named_parameters()}
    d0 = {n: p.detach().clone() for n, p in model.critic.named_parameters()}
    fit(model, tiny_datamodule(tmp_path, batches=batches))
    assert model.critic_updates == batches
    assert any(not torch.equal(p.detach(), d0[n]) for n, p in model.critic.named_parameters())
    g_changed = any(not torch.equal(p.detach(), g0[n]) for n, p in model.generator.named_parameters())
    assert g_changed == g_moves


def test_generated_image_j_is_conditioned_on_support_j_mod_k():
    model = tiny()
    s = support(1, 3)
    other = s.clone()
    other[:, 1] = -other[:, 1]
    a = model.generate(s, 6, generator=torch.Generator().manual_seed(0))
    b = model.generate(other, 6, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(a[0, j], b[0, j]) for j in range(6)]
    assert same == [True, False, True, True, False, True]


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 1), (64, 3), (96, 3)])
def test_generate_shapes_and_range_for_k_1_to_5(size, channels):
    model = tiny(image_size=size, channels=channels)
    for k in range(1, 6):
        out = model.generate(support(2, k, size=size, channels=channels), 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, channels, size, size)
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
    # Deterministic under a fixed generator, in train mode as well (generate always runs the inference path).
    model.train()
    s = support(2, 3, size=size, channels=channels)
    assert torch.equal(model.generate(s, 2, generator=torch.Generator().manual_seed(3)),
                       model.generate(s, 2, generator=torch.Generator().manual_seed(3)))
