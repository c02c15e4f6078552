"""The suite's batch-norm policy at generation time (README, "Batch norm at generation time").

Every method whose generator has batch norm (F2GAN, MatchingGAN, DAGAN) generates in eval mode with
*recalibrated* running statistics ("precise BN"): in the last training batch of every epoch, the statistics of
every BN layer of the generator are re-estimated as the plain average over the last ``batches`` training
batches, with the current weights, each run as in training. The releases generate with TF's moving averages
(decay 0.99) of batch-renormalised layers (e.g. DAGAN ``dagan_architectures.py`` L131-134 @ 6f1a503); PyTorch
has no batch renorm, and the moving average of a short run mixes statistics of weights long gone. A method
gets the policy by holding a :class:`BatchNormRecalibration` and calling :meth:`BatchNormRecalibration.step`
at the end of its ``training_step``; ``batches = 0`` keeps the moving averages instead.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn


@torch.no_grad()
def recalibrate_batch_norm(net: nn.Module, forward: Callable[[Tensor], object], supports: Sequence[Tensor],
                           trainer=None) -> None:
    """Re-estimate the running statistics of every BN layer of ``net``.

    ``forward(support)`` runs ``net`` on one training batch ``[B, K, C, H, W]`` exactly as a training step does
    (fresh coefficients or noise). Each layer gets the plain (cumulative) average over ``supports``; under DDP
    (``trainer.world_size > 1``) the statistics are then averaged over ranks, so every rank evaluates the same
    network. The momenta and the module's mode are restored afterwards.
    """
    if not supports:
        return
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = net.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                    # cumulative average over the calls below
    net.train()
    try:
        for support in supports:
            forward(support)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        net.train(was_training)
    if trainer is not None and trainer.world_size > 1:
        for m in norms:
            m.running_mean.copy_(trainer.strategy.reduce(m.running_mean, reduce_op="mean"))
            m.running_var.copy_(trainer.strategy.reduce(m.running_var, reduce_op="mean"))


class BatchNormRecalibration:
    """Keeps the last ``batches`` training supports (device tensors, never saved) and recalibrates in the last
    batch of each epoch: inside ``training_step``, not in ``on_train_epoch_end`` (which Lightning runs after
    the checkpoint callback), so that checkpoints, figures and the evaluation all see the same statistics."""

    def __init__(self, batches: int) -> None:
        self.batches = max(0, int(batches))
        self._recent: list[Tensor] = []

    def step(self, module, support: Tensor, batch_idx: int, net: nn.Module,
             forward: Callable[[Tensor], object]) -> None:
        if not self.batches:
            return
        self._recent = (self._recent + [support.detach()])[-self.batches:]
        trainer = module._trainer
        if trainer is not None and batch_idx + 1 == trainer.num_training_batches:
            recalibrate_batch_norm(net, forward, self._recent, trainer)
