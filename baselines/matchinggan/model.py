"""MatchingGAN: few-shot image generation by fusing conditional images, as its release trains it.

Hong, Niu, Zhang, Zhao, Fu, Zhang. "MatchingGAN: Matching-based Few-shot Image Generation", ICME 2020.
Official TF1 code: bcmi/MatchingGAN-Few-Shot-Image-Generation @ 916e424 (read for facts only); below, "arch" is
its ``dagan_architectures_with_matchingclassifier.py`` and "net" its ``dagan_networks_wgan_with_matchingclassifier.py``.
CARD.md beside this file lists every remaining difference.

MatchingGAN is F2GAN's direct predecessor and shares its backbone (:mod:`fsgen_bench.methods.fusion`), so this
module only chooses parts:

* generator: :class:`~fsgen_bench.methods.blocks.FusionGenerator` with
  :class:`~fsgen_bench.methods.blocks.WeightedSumFusion` (the a-weighted encoder features sum_k a_k xi^k
  concatenated at the decoder stages where F2GAN puts NAF), coefficients a ~ normalised U(1, 10) as in the
  release's ``sim_random=True`` path (arch L471, L556; its matching network is dead code there);
* discriminator: F2GAN's trunk with LReLU before global average pooling (arch L1179), no coefficient regressor;
* losses (README): hinge (1) + seen-class CE (1) + ``loss_recons_B`` 0.1, a feature-space mean squared error
  between the encoder's code of the generated image and the fused code (arch L771-774) + the matching
  discriminator's feature loss (``loss_matching_D`` 1, net L280-289). No mode seeking, no regression.
"""

from __future__ import annotations

from typing import Sequence

from fsgen_bench.errors import UserError
from fsgen_bench.methods.blocks import FusionGenerator, WeightedSumFusion
from fsgen_bench.methods.fusion import FusionDiscriminator, FusionGAN, FusionLosses


class MatchingGAN(FusionGAN):
    """MatchingGAN (Hong et al., ICME 2020). Keyword arguments = the ``method:`` keys of
    configs/methods/matchinggan.yaml, which holds every default and says why."""

    row_note = ("the release's MatchingGAN: random fusion coefficients (sim_random=True), its matching network is "
                "not trained or used")

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int,
                 layer_sizes: Sequence[int], inner_layers: int, dropout: float, bn_momentum: float,
                 skip_stages: Sequence[int], disc_base_channels: int, disc_stages: int, disc_max_channels: int,
                 disc_final_blocks: int, lr: float, betas: Sequence[float], loss_adv: float, loss_cla: float,
                 loss_recons: float, recons_form: str, loss_matching_d: float, hinge_on: str,
                 generations_per_step: int, train_classifier_head: bool, coefficient_low: float,
                 coefficient_high: float, max_generate_batch: int, bn_recalibration_batches: int) -> None:
        if recons_form not in ("feature_mse", "fused", "per_image"):
            raise UserError(f"method.recons_form must be feature_mse, fused or per_image; got {recons_form!r}")
        losses = FusionLosses(adv=loss_adv, cla=loss_cla, recons=loss_recons, recons_form=recons_form,
                              matching_d=loss_matching_d, hinge_on=hinge_on)
        net_g = FusionGenerator(channels, layer_sizes=layer_sizes, inner_layers=inner_layers, dropout=dropout,
                                fusion_stages=skip_stages, fusion_factory=WeightedSumFusion, bn_momentum=bn_momentum)
        net_d = FusionDiscriminator(channels, num_seen_classes, base_channels=disc_base_channels,
                                    num_stages=disc_stages, max_channels=disc_max_channels,
                                    final_blocks=disc_final_blocks, lrelu_before_gap=True)
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot,
                         generator=net_g, discriminator=net_d, losses=losses,
                         generations_per_step=generations_per_step, train_classifier_head=train_classifier_head,
                         lr=lr, betas=betas, coefficient_low=coefficient_low, coefficient_high=coefficient_high,
                         max_generate_batch=max_generate_batch, bn_recalibration_batches=bn_recalibration_batches)
        self.save_hyperparameters()
