"""FIGR (baselines/figr): Reptile meta-learning of a WGAN-GP, test-time adaptation on a copy."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from helpers import method_defaults
from torch.func import grad

from fsgen_bench.baselines.figr.model import FIGR, upsampling_plan
from fsgen_bench.data.datamodule import ClassStore, EpisodicDataModule
from fsgen_bench.data.source import ClassImages, DatasetInfo

SIZE = 16


def tiny(**kw) -> FIGR:
    torch.manual_seed(0)
    args = {**method_defaults("figr"), **dict(image_size=SIZE, channels=1, num_seen_classes=4, k_shot=3, width=2,
                                              max_stages=2, inner_steps=2, inner_batch=3, adapt_steps=2)}
    args.update(kw)
    return FIGR(**args)


def support(b: int, k: int, seed: int = 1, size: int = SIZE, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, k, channels, size, size), generator=g) * 2 - 1


def params(module) -> dict:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_upsampling_plan_reaches_every_size():
    assert upsampling_plan(32, 4) == (2, 4)      # FIGR's DCGAN: 2x2 -> 32
    assert upsampling_plan(28, 4) == (7, 2)
    assert upsampling_plan(64, 4) == (4, 4)
    assert upsampling_plan(96, 4) == (6, 4)


def test_adapt_fine_tunes_a_copy_and_leaves_the_meta_weights():
    model = tiny()
    before = params(model)
    adapted = model.adapt(support(1, 3), generator=torch.Generator().manual_seed(0))
    assert adapted is not model and adapted.is_adapted and not model.is_adapted
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), f"meta-weight {n} changed"
    changed = [n for n, p in adapted.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any(n.startswith("generator.") for n in changed) and any(n.startswith("critic.") for n in changed)


def test_adapt_works_under_inference_mode():
    model = tiny()
    with torch.inference_mode():
        adapted = model.adapt(support(1, 3))
    assert not torch.equal(adapted.generator.out.weight, model.generator.out.weight)


def test_no_state_leaks_between_classes():
    model = tiny()
    a, b = support(1, 3, seed=1), support(1, 3, seed=2)
    alone = model.adapt(b, generator=torch.Generator().manual_seed(5))
    model.adapt(a, generator=torch.Generator().manual_seed(5))
    after_a = model.adapt(b, generator=torch.Generator().manual_seed(5))
    for (n, p), q in zip(alone.named_parameters(), after_a.parameters()):
        assert torch.equal(p, q), n
    x = alone.generate(b, 4, generator=torch.Generator().manual_seed(9))
    y = after_a.generate(b, 4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(x, y)
    # adapt() without a generator is seeded by adapt_seed: the same support gives the same copy.
    assert torch.equal(model.adapt(b).generator.out.weight, model.adapt(b).generator.out.weight)


def test_generate_adapts_each_episode_on_its_own():
    """The vectorised generate() equals adapting each episode alone with its own seeded generator."""
    model = tiny()
    s = support(2, 3)
    out = model.generate(s, 4, generator=torch.Generator().manual_seed(7))
    seeds = torch.randint(2 ** 62, (2,), generator=torch.Generator().manual_seed(7)).tolist()
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        expect = model.adapt(s[i:i + 1], generator=g).sample(4, generator=g)
        assert torch.allclose(out[i], expect, atol=1e-5)


def test_vmapped_and_looped_inner_loops_agree():
    model = tiny()
    s = support(2, 3)
    pg_v, pd_v, _ = model._run_inner_loops(s, 2, [torch.Generator().manual_seed(i) for i in range(2)])
    model.vectorise_tasks = False
    pg_l, pd_l, _ = model._run_inner_loops(s, 2, [torch.Generator().manual_seed(i) for i in range(2)])
    for k in pg_v:
        assert torch.allclose(pg_v[k], pg_l[k], atol=1e-5), k
    for k in pd_v:
        assert torch.allclose(pd_v[k], pd_l[k], atol=1e-5), k


def test_generate_shapes_and_range_for_k_1_to_5():
    model = tiny(adapt_steps=1)
    model.eval()
    for k in range(1, 6):
        out = model.generate(support(2, k), 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, 1, SIZE, SIZE)
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 1), (64, 3), (96, 3)])
def test_every_image_size(size, channels):
    model = tiny(image_size=size, channels=channels, max_stages=4, adapt_steps=1)
    out = model.generate(support(1, 3, size=size, channels=channels), 2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 2, channels, size, size)
    assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1


def _tiny_datamodule(tmp_path) -> EpisodicDataModule:
    rng = np.random.default_rng(0)
    classes = [(rng.random((1, SIZE, SIZE, 1)) > 0.6).repeat(6, 0).astype(np.uint8) * 255 for _ in range(6)]
    info = DatasetInfo(name="tiny", channels=1, image_size=SIZE, native_size=SIZE, num_classes=6, num_seen=4,
                       origin="test")
    images = ClassImages(info=info, classes=classes, class_names=[str(i) for i in range(6)], seen=[0, 1, 2, 3],
                         unseen=[4, 5])
    cfg = {"name": "tiny", "k_shot": 3, "batch_size": 2, "episodes_per_epoch": 2, "num_workers": 0,
           "image_size": SIZE, "channels": 1}
    dm = EpisodicDataModule(cfg, cache_dir=tmp_path, seed=0)
    dm.images, dm.seen_store = images, ClassStore(images, images.seen)
    return dm


def test_reptile_outer_step_moves_towards_the_fast_weights(tmp_path):
    """grad := theta - mean(theta'): Adam's first step moves every weight towards the task-adapted weights."""
    model = tiny(meta_lr=1e-3)
    before = params(model)
    target_g = {k: v + torch.randn_like(v) for k, v in model.generator.named_parameters()}
    target_d = {k: v + torch.randn_like(v) for k, v in model.critic.named_parameters()}

    def fake_inner_loops(support, steps, generators=None):
        t = support.shape[0]
        stack = lambda d: {k: v.detach().unsqueeze(0).expand(t, *v.shape) for k, v in d.items()}
        zero = support.new_zeros(())
        return stack(target_g), stack(target_d), {"d_loss": zero, "g_loss": zero, "wdist": zero}

    model._run_inner_loops = fake_inner_loops
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=_tiny_datamodule(tmp_path))
    for prefix, target in (("generator.", target_g), ("critic.", target_d)):
        for k, v in target.items():
            step = model.get_parameter(prefix + k).detach() - before[prefix + k]
            towards = (v.detach() - before[prefix + k])
            assert torch.all(step * towards > 0), f"{prefix}{k} did not move towards the fast weights"


# -- mechanism: adversarial signs and the gradient penalty of the inner loop -------------------------------------
def _task(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    real = support(1, 3, seed=seed)[0]
    z_d, z_g = torch.randn(3, model.z_dim, generator=g), torch.randn(3, model.z_dim, generator=g)
    eps = torch.rand(3, 1, 1, 1, generator=g)
    return real, z_d, eps, z_g


def _wdist(model, pd, pg, real, z):
    from torch.func import functional_call

    fake = functional_call(model.generator, pg, (z,))
    return float(functional_call(model.critic, pd, (real,)).mean() - functional_call(model.critic, pd, (fake,)).mean())


def test_inner_critic_step_raises_the_wasserstein_estimate_and_generator_step_raises_its_score():
    from torch.func import functional_call

    model = tiny(width=4, gp_weight=0.0, inner_lr=0.05)
    real, z_d, eps, z_g = _task(model)
    pg, pd = model._fast_weights()
    before = _wdist(model, pd, pg, real, z_d)
    pd2, pg2, *_ = model._inner_step(pd, pg, real, z_d, eps, z_g)
    assert _wdist(model, pd2, pg, real, z_d) > before + 1e-5       # the critic step alone (G unchanged)
    score = lambda g: float(functional_call(model.critic, pd2, (functional_call(model.generator, g, (z_g,)),)).mean())
    assert score(pg2) > score(pg)                                 # the generator step, against the new critic


def test_gradient_penalty_reaches_the_critic_gradient_and_has_the_release_form():
    real, z_d, eps, _ = _task(tiny())
    grads = {}
    for weight in (10.0, 0.0):
        model = tiny(gp_weight=weight)
        pg, pd = model._fast_weights()
        grads[weight] = grad(model._critic_loss, has_aux=True)(pd, pg, real, z_d, eps)[0]
    assert any(not torch.allclose(grads[10.0][k], grads[0.0][k]) for k in grads[10.0])
    # pixel (train.py L45: norm over dim 1 of the NCHW gradient) vs sample norms, from the loss itself
    model = tiny(gp_weight=1.0)
    pg, pd = model._fast_weights()
    from torch.func import functional_call

    fake = functional_call(model.generator, pg, (z_d,)).detach()
    interp = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(functional_call(model.critic, pd, (interp,)).sum(), interp)
    wdist = functional_call(model.critic, pd, (real,)).mean() - functional_call(model.critic, pd, (fake,)).mean()
    for norm, norms in (("pixel", g.norm(dim=1)), ("sample", g.flatten(1).norm(dim=1))):
        model.gp_norm = norm
        loss, _ = model._critic_loss(pd, pg, real, z_d, eps)
        assert torch.isclose(loss, -wdist + ((norms - 1) ** 2).mean(), atol=1e-5), norm
    assert tiny().gp_norm == "pixel"
