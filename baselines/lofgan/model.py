"""LoFGAN: Fusing Local Representations for Few-shot Image Generation, as a Lightning module.

Gu, Li, Huo, Wang, Gao, ICCV 2021. Official code: edward3862/LoFGAN-pytorch @ c169621 (read for facts only;
nothing copied). The networks are in :mod:`.networks`; CARD.md lists every deviation from the release.

One training iteration is the release's (train.py:52-56 -> trainer.py:30-42 -> networks/lofgan.py:25-82):

* D step: hinge on the B*K real images, seen-class cross-entropy on them, the gradient penalty
  ``w_gp * sum(d(mean_i D_cls(x_i)[y_i]) / dx)^2 / B`` on the reals' true-class logit, then a fresh fusion
  generated without gradients (G in training mode) and the hinge on it; Adam step on D.
* G step: a second fusion (fresh random choices), local reconstruction loss, -D_adv and the seen-class
  cross-entropy of D on it; Adam step on G.
* Adam(lr 1e-4, weight decay 1e-4) for both; the learning rate decays linearly to 0 over the second half of
  training (trainer.py:82-85).

The same mathematics in fewer operations (see CARD.md, "Speed"): one backward per step instead of four, no
gradients of D's parameters during the G step, the release's discarded D pass over the reals in the G step
replaced by the one thing it changed (a power-iteration step of D's spectral norms), fusion vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsgen_bench.methods.base import FewShotGenerator

from .networks import (
    FusionDraw,
    LoFGANDiscriminator,
    LoFGANGenerator,
    draw_fusion,
    kaiming_init,
    local_reconstruction_loss,
    power_iteration,
)


@dataclass(frozen=True)
class LoFGANLosses:
    """Loss weights (release configs/*.yaml); 0 skips a term."""

    adv_g: float = 1.0       # w_adv_g
    adv_d: float = 1.0       # w_adv_d
    recon: float = 0.5       # w_recon: local reconstruction
    cls: float = 1.0         # w_cls: seen-class cross-entropy, D on reals and G on fakes
    gp: float = 10.0         # w_gp: gradient penalty on the reals' true-class logit


def lr_factor(iteration: int, total: float, decay_start: float) -> float:
    """The release's schedule (trainer.py:82-85): constant, then after ``start = floor(total * decay_start)``
    iterations the rate drops by lr0 / (total - start) per iteration (1 - 1/50000 ... at iteration 50001 of 100k)."""
    if total == float("inf") or total <= 0:
        return 1.0
    start = int(total * decay_start)
    length = max(int(total) - start, 1)
    return max(0.0, 1.0 - max(0, iteration - start) / length)


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class LocalFusionGAN(FewShotGenerator):
    """Training, generation and BN recalibration shared by LoFGAN and WaveGAN.

    Subclasses build ``generator`` (``encode``/``decode``/``forward(support, draw)``/``latent_size``/``rate``,
    e.g. :class:`~.networks.LoFGANGenerator`) and the :class:`~.networks.LoFGANDiscriminator` from their own
    keyword arguments and call ``save_hyperparameters`` in their own ``__init__``.

    K: any K >= 1 at generation. K = 1 has no references: the fused map is the base map itself, so the output is
    the deterministic reconstruction of that one image. Training with K = 1 runs too (the local reconstruction
    target is then the shrunk image), but fusion needs K >= 2.
    """

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int, generator: nn.Module,
                 discriminator: LoFGANDiscriminator, losses: LoFGANLosses, lr_gen: float, lr_dis: float,
                 betas: Sequence[float], weight_decay: float, lr_decay_start: float, bn_recalibration_batches: int,
                 max_generate_batch: int) -> None:
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot)
        self.automatic_optimization = False
        self.net_g = generator
        self.net_d = discriminator
        kaiming_init(self.net_g)
        kaiming_init(self.net_d)
        self.losses = losses
        self.lr_gen, self.lr_dis = float(lr_gen), float(lr_dis)
        self.betas = (float(betas[0]), float(betas[1]))
        self.weight_decay = float(weight_decay)
        if not 0.0 <= float(lr_decay_start) <= 1.0:
            raise ValueError(f"lr_decay_start is a fraction of training in [0, 1]; got {lr_decay_start}")
        self.lr_decay_start = float(lr_decay_start)
        self.bn_recalibration_batches = max(0, int(bn_recalibration_batches))
        self.max_generate_batch = max(1, int(max_generate_batch))
        self._recent_supports: list[Tensor] = []

    # -- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        # foreach: the same update as the per-parameter loop, in a few multi-tensor kernels
        opt_g = torch.optim.Adam(self.net_g.parameters(), lr=self.lr_gen, betas=self.betas,
                                 weight_decay=self.weight_decay, foreach=True)
        opt_d = torch.optim.Adam(self.net_d.parameters(), lr=self.lr_dis, betas=self.betas,
                                 weight_decay=self.weight_decay, foreach=True)
        return [opt_g, opt_d]

    def draw(self, support: Tensor, generator: torch.Generator | None = None) -> FusionDraw:
        """Random choices for one fusion per episode of ``support`` [B, K, C, H, W]."""
        b, k, _, h, w = support.shape
        size = self.net_g.latent_size(h, w)
        return draw_fusion(b, k, size[0], size[1], self.net_g.rate, device=support.device, generator=generator)

    def generator_extra_loss(self, fake: Tensor, support: Tensor, draw: FusionDraw) -> dict[str, tuple[float, Tensor]]:
        """Further G terms ``{name: (weight, term)}`` (WaveGAN's frequency L1); LoFGAN has none."""
        return {}

    def discriminator_loss(self, support: Tensor, labels: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The D step's loss (release networks/lofgan.py:48-82) for reals ``support`` [B, K, C, H, W] with seen-class
        ``labels`` [B] and generated images ``fake`` [B, C, H, W] (no graph to G)."""
        w = self.losses
        b, k = support.shape[:2]
        logs: dict[str, Tensor] = {}
        reals = support.flatten(0, 1)
        labels_real = labels.repeat_interleave(k)                  # = y.repeat(1, K).view(-1) for y [B, 1]
        if w.gp > 0:
            reals = reals.detach().requires_grad_(True)
        adv_r, cls_r = self.net_d(reals)
        d_real = F.relu(1.0 - adv_r.float()).mean()
        loss = w.adv_d * d_real
        logs["d_adv_real"] = d_real
        if w.cls > 0:
            d_cls = F.cross_entropy(cls_r.float(), labels_real)
            loss = loss + w.cls * d_cls
            logs["d_cls"] = d_cls
        if w.gp > 0:
            picked = cls_r.gather(1, labels_real.unsqueeze(1)).float()
            (grad,) = torch.autograd.grad(picked.mean(), reals, create_graph=True)
            d_gp = grad.float().pow(2).sum() / b                  # release calc_grad2: x_in.size(0) = B episodes
            loss = loss + w.gp * d_gp
            logs["d_gp"] = d_gp
        adv_f, _ = self.net_d(fake.detach())
        d_fake = F.relu(1.0 + adv_f.float()).mean()
        loss = loss + w.adv_d * d_fake
        logs["d_adv_fake"] = d_fake
        return loss, logs

    def generator_loss(self, support: Tensor, labels: Tensor, draw: FusionDraw) -> tuple[Tensor, dict[str, Tensor]]:
        """The G step's loss (release networks/lofgan.py:26-46) for one fusion per episode with ``draw``."""
        w = self.losses
        logs: dict[str, Tensor] = {}
        fake, fusion = self.net_g(support, draw)
        adv, cls = self.net_d(fake)
        g_adv = -adv.float().mean()
        loss = w.adv_g * g_adv
        logs["g_adv"] = g_adv
        if w.recon > 0:
            g_rec = local_reconstruction_loss(fake, support, draw, fusion)
            loss = loss + w.recon * g_rec
            logs["g_recon"] = g_rec
        if w.cls > 0:
            g_cls = F.cross_entropy(cls.float(), labels)
            loss = loss + w.cls * g_cls
            logs["g_cls"] = g_cls
        for name, (weight, term) in self.generator_extra_loss(fake, support, draw).items():
            loss = loss + weight * term
            logs[name] = term
        return loss, logs

    def train_iteration(self, support: Tensor, labels: Tensor, opt_g, opt_d,
                        backward: Callable[..., None] | None = None) -> dict[str, Tensor]:
        """One D step then one G step (release train.py:55-56). Usable without a Trainer: ``backward`` defaults to
        ``Tensor.backward``. Returns the detached loss terms."""
        backward = backward or (lambda loss, **kw: loss.backward(**kw))
        # ---- D step --------------------------------------------------------------------------------------------
        with torch.no_grad():                                     # the release regenerates here, G in train mode
            fake, _ = self.net_g(support, self.draw(support))
        loss_d, logs_d = self.discriminator_loss(support, labels, fake)
        opt_d.zero_grad(set_to_none=True)
        # One backward for all D terms (the release runs four, networks/lofgan.py:54-74), and only to D's weights.
        backward(loss_d, inputs=[p for p in self.net_d.parameters() if p.requires_grad])
        opt_d.step()
        # ---- G step --------------------------------------------------------------------------------------------
        _set_requires_grad(self.net_d, False)                     # the release computed D's gradients and dropped them
        try:
            # The release runs D over the reals here and discards the result (networks/lofgan.py:31); its only
            # effect is one power-iteration step of every spectral norm, reproduced without the pass.
            if self.net_d.training:
                power_iteration(self.net_d, 1)
            loss_g, logs_g = self.generator_loss(support, labels, self.draw(support))
            opt_g.zero_grad(set_to_none=True)
            backward(loss_g)
            opt_g.step()
        finally:
            _set_requires_grad(self.net_d, True)
        logs = {f"train/{n}": v.detach() for n, v in {**logs_d, **logs_g}.items()}
        logs["train/loss_d"] = loss_d.detach()
        logs["train/loss_g"] = loss_g.detach()
        return logs

    def training_step(self, batch: dict, batch_idx: int) -> None:
        support: Tensor = batch["support"]
        opt_g, opt_d = self.optimizers()
        iteration = self.current_epoch * self.trainer.num_training_batches + batch_idx
        factor = lr_factor(iteration, float(self.trainer.estimated_stepping_batches), self.lr_decay_start)
        for opt, lr0 in ((opt_g, self.lr_gen), (opt_d, self.lr_dis)):
            for group in opt.param_groups:
                group["lr"] = lr0 * factor
        logs = self.train_iteration(support, batch["label"], opt_g, opt_d, backward=self.manual_backward)
        logs["train/lr_factor"] = torch.tensor(factor)
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=support.shape[0])
        if self.bn_recalibration_batches:
            self._recent_supports = (self._recent_supports + [support.detach()])[-self.bn_recalibration_batches:]
            # In the epoch's last batch (before the checkpoint callback runs) so that checkpoints, figures and the
            # evaluation all see the recalibrated statistics.
            if batch_idx + 1 == self.trainer.num_training_batches:
                self.recalibrate_batch_norm(self._recent_supports)

    @torch.no_grad()
    def recalibrate_batch_norm(self, supports: Sequence[Tensor]) -> None:
        """Re-estimate G's BatchNorm statistics as the plain average over ``supports`` (training batches, each run
        as in training with fresh random choices) with the current weights, averaged over DDP ranks: the
        policy F2GAN and MatchingGAN use (src/fsgen_bench/methods/f2gan/CARD.md, "BN statistics")."""
        norms = [m for m in self.net_g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not supports or not norms:
            return
        momenta = [m.momentum for m in norms]
        was_training = self.net_g.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None                     # cumulative average over the calls below
        self.net_g.train()
        try:
            for support in supports:
                self.net_g(support, self.draw(support))
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            self.net_g.train(was_training)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            for m in norms:
                m.running_mean.copy_(trainer.strategy.reduce(m.running_mean, reduce_op="mean"))
                m.running_var.copy_(trainer.strategy.reduce(m.running_var, reduce_op="mean"))

    # -- generation ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        """[B, K, C, H, W] -> [B, num, C, H, W]: num fusions per episode, each with its own base image, weights
        and positions drawn from ``generator``. Eval mode (BN running statistics). Each support set is encoded
        once; its draws are decoded in chunks of ``max_generate_batch``. An image depends only on its own
        support set and its draw, never on the other episodes of the batch."""
        self.check_support(support)
        b, k, _, h, w = support.shape
        rows = torch.arange(b, device=support.device).repeat_interleave(num)
        size = self.net_g.latent_size(h, w)
        draw = draw_fusion(b * num, k, size[0], size[1], self.net_g.rate, device=support.device, generator=generator)
        was_training = self.net_g.training
        self.net_g.eval()
        try:
            enc = self.net_g.encode(support)
            outs = [self.net_g.decode(enc, draw[s:s + self.max_generate_batch], rows[s:s + self.max_generate_batch])[0]
                    for s in range(0, b * num, self.max_generate_batch)]
        finally:
            self.net_g.train(was_training)
        images = torch.cat(outs) if len(outs) > 1 else outs[0]
        return images.reshape(b, num, *images.shape[1:])


class LoFGAN(LocalFusionGAN):
    """LoFGAN (Gu et al., ICCV 2021). Keyword arguments = ``method:`` keys of configs/methods/lofgan.yaml (all
    required: that file is the one place their defaults live)."""

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int,
                 gen_widths: Sequence[int], rate: float, bn_momentum: float, disc_base_channels: int, disc_blocks: int,
                 disc_max_channels: int, lr_gen: float, lr_dis: float, betas: Sequence[float], weight_decay: float,
                 lr_decay_start: float, loss_adv_g: float, loss_adv_d: float, loss_recon: float, loss_cls: float,
                 loss_gp: float, bn_recalibration_batches: int, max_generate_batch: int) -> None:
        super().__init__(
            image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot,
            generator=LoFGANGenerator(channels, gen_widths, rate, bn_momentum),
            discriminator=LoFGANDiscriminator(channels, num_seen_classes, disc_base_channels, disc_blocks,
                                              disc_max_channels),
            losses=LoFGANLosses(adv_g=loss_adv_g, adv_d=loss_adv_d, recon=loss_recon, cls=loss_cls, gp=loss_gp),
            lr_gen=lr_gen, lr_dis=lr_dis, betas=betas, weight_decay=weight_decay, lr_decay_start=lr_decay_start,
            bn_recalibration_batches=bn_recalibration_batches, max_generate_batch=max_generate_batch,
        )
        self.save_hyperparameters()


__all__ = ["LoFGAN", "LocalFusionGAN", "LoFGANLosses", "lr_factor"]
