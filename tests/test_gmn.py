"""GMN (baselines/gmn): the sequential conditional VAE with attention over a memory of support features."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import method_defaults
from torch.utils.data import DataLoader

from fsgen_bench.baselines.gmn.model import GMN, encoder_sizes
from fsgen_bench.errors import UserError

SIZE = 16


def tiny(**kw) -> GMN:
    torch.manual_seed(0)
    args = {**method_defaults("gmn"), **dict(image_size=SIZE, channels=1, num_seen_classes=4, k_shot=3,
                                             latent_dim=4, state_dim=16, feature_dim=16, prior_hidden=16,
                                             encoder_widths=(4, 8))}
    args.update(kw)
    return GMN(**args)


def episodes(b: int, k: int, seed: int = 1, size: int = SIZE, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((b, k, channels, size, size), generator=g) > 0.7).float() * 2 - 1


def test_encoder_sizes_halve_to_at_most_4px():
    assert encoder_sizes(28) == [28, 14, 7, 4]
    assert encoder_sizes(32) == [32, 16, 8, 4]
    assert encoder_sizes(96) == [96, 48, 24, 12, 6, 3]


def test_elbo_on_a_fixed_batch_decreases():
    model = tiny()
    x = episodes(4, 3)
    targets = (x + 1) / 2
    noise = torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    losses = []
    for _ in range(10):
        out = model.neg_elbo(x, targets=targets, noise=noise)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.9 * losses[0], losses


def test_step_t_only_reads_images_before_t():
    """The memory of step t is masked to images j < t: later slots cannot change the prior (causality)."""
    model = tiny()
    feats = torch.randn(2, 3, 16)
    mask = torch.tensor([[True, False, False], [True, True, False]])
    mu, sd = model.prior(feats, mask)
    changed = feats.clone()
    changed[0, 1:] = torch.randn(2, 16)
    changed[1, 2] = torch.randn(16)
    mu2, sd2 = model.prior(changed, mask)
    assert torch.allclose(mu, mu2) and torch.allclose(sd, sd2)
    # ...while an unmasked slot does matter.
    changed[0, 0] = torch.randn(16)
    assert not torch.allclose(model.prior(changed, mask)[0][0], mu[0])


def test_training_needs_two_images_per_episode():
    model = tiny()
    with pytest.raises(UserError, match="k_shot >= 2"):
        model.training_step({"support": episodes(2, 1)}, 0)


def test_generation_conditions_on_the_support():
    model = tiny()
    s = episodes(1, 3)
    a = model.generate(s, 4, generator=torch.Generator().manual_seed(0))
    b = model.generate(-s, 4, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 1), (64, 3), (96, 3)])
def test_generate_shapes_range_and_determinism_for_k_1_to_5(size, channels):
    model = tiny(image_size=size, channels=channels)
    assert model.binarize == (channels == 1)
    for k in range(1, 6):
        s = episodes(2, k, size=size, channels=channels)
        out = model.generate(s, 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, channels, size, size)
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, model.generate(s, 3, generator=torch.Generator().manual_seed(0)))
    # The ELBO runs at every size too (the decoder mirrors the encoder's ceil-halving sizes).
    out = model.neg_elbo(episodes(2, 3, size=size, channels=channels))
    assert torch.isfinite(out["loss"])


# -- mechanism: the objective's sign and both of its terms ------------------------------------------------------
def test_training_steps_lower_the_negative_elbo():
    """Through the real training_step (Trainer, automatic optimisation): -ELBO on the training episodes falls."""
    model = tiny(lr=3e-3)
    x = episodes(4, 3)
    noise = torch.zeros(4, 3, 4)                   # the posterior mean: a low-variance measure of the fit
    targets = (x + 1) / 2
    with torch.no_grad():
        before = float(model.neg_elbo(x, targets=targets, noise=noise)["loss"])
    batches = [{"support": x, "label": torch.zeros(4, dtype=torch.long), "class_id": torch.zeros(4, dtype=torch.long)}] * 10
    L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, DataLoader(batches, batch_size=None))
    with torch.no_grad():
        after = float(model.neg_elbo(x, targets=targets, noise=noise)["loss"])
    assert after < 0.95 * before, (before, after)


def test_both_terms_of_the_elbo_reach_their_networks():
    """-ELBO = reconstruction + KL: the decoder is trained by the first, the prior network only by the second."""
    model = tiny()
    x = episodes(2, 3)
    out = model.neg_elbo(x, targets=(x + 1) / 2, noise=torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0)))
    assert torch.isclose(out["loss"], out["recon"] + out["kl"])
    prior = list(model.prior_net.parameters()) + list(model.prior_repr.parameters())
    grads = torch.autograd.grad(out["loss"], prior + list(model.decoder.parameters()), allow_unused=True)
    g_prior, g_decoder = grads[:len(prior)], grads[len(prior):]
    assert any(g is not None and g.abs().sum() > 0 for g in g_prior), "the KL term does not reach the prior"
    assert any(g is not None and g.abs().sum() > 0 for g in g_decoder), "the reconstruction does not reach the decoder"
