"""MatchingGAN: few-shot image generation by fusing conditional images with a matching generator.

Hong, Niu, Zhang, Zhao, Fu, Zhang. "MatchingGAN: Matching-based Few-shot Image Generation", ICME 2020.
Official TF1 code: bcmi/MatchingGAN-Few-Shot-Image-Generation @ 916e424 (read for facts only); see
``shared/reference/f2gan-and-baselines.md`` section 2.1 and CARD.md beside this file.

MatchingGAN is F2GAN's direct predecessor and shares its backbone, so this module only chooses parts:

* generator: :class:`~fsgen_bench.methods.blocks.FusionGenerator` with
  :class:`~fsgen_bench.methods.blocks.WeightedSumFusion` (the a-weighted encoder features sum_k a_k xi^k
  concatenated at the same decoder stages where F2GAN puts NAF), coefficients a ~ normalised U(1, 10) as in
  the release's ``sim_random=True`` path (its z-matching branch is dead code there);
* discriminator: F2GAN's trunk with LReLU before global average pooling and no coefficient regressor;
* losses (README): hinge (1) + seen-class CE (1) + weighted L1 (``loss_recons_B`` 0.1) + the matching
  discriminator's feature-matching loss (``loss_matching_D`` 1); no mode seeking, no regression.

Training, generation and checkpointing are F2GAN's :class:`~fsgen_bench.methods.f2gan.model.FusionGAN`.
"""

from __future__ import annotations

from typing import Sequence

from fsgen_bench.methods.blocks import FusionGenerator, WeightedSumFusion
from fsgen_bench.methods.f2gan.model import FusionDiscriminator, FusionGAN, LossSettings


class MatchingGAN(FusionGAN):
    """MatchingGAN (Hong et al., ICME 2020). Keyword arguments = ``method:`` keys of configs/methods/matchinggan.yaml."""

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        num_seen_classes: int,
        k_shot: int,
        layer_sizes: Sequence[int] = (64, 64, 128, 128),
        inner_layers: int = 2,
        dropout: float = 0.0,
        bn_momentum: float = 0.01,
        skip_stages: Sequence[int] = (0, 1),
        disc_base_channels: int = 32,
        disc_stages: int = 4,
        disc_max_channels: int = 512,
        disc_final_blocks: int = 2,
        lr: float = 1e-4,
        betas: Sequence[float] = (0.0, 0.9),
        loss_adv: float = 1.0,
        loss_cla: float = 1.0,
        loss_recons: float = 0.1,
        recons_form: str = "fused",
        loss_matching_d: float = 1.0,
        coefficient_low: float = 1.0,
        coefficient_high: float = 10.0,
        max_generate_batch: int = 512,
        bn_recalibration_batches: int = 16,
    ) -> None:
        losses = LossSettings(adv=loss_adv, cla=loss_cla, recons=loss_recons, recons_form=recons_form, sim=0.0,
                              regressor_train="none", mode_seeking=0.0, matching_d=loss_matching_d)
        net_g = FusionGenerator(channels, layer_sizes=layer_sizes, inner_layers=inner_layers, dropout=dropout,
                                fusion_stages=skip_stages, fusion_factory=WeightedSumFusion, bn_momentum=bn_momentum)
        net_d = FusionDiscriminator(channels, num_seen_classes, k_shot, base_channels=disc_base_channels,
                                    num_stages=disc_stages, max_channels=disc_max_channels,
                                    final_blocks=disc_final_blocks, regressor=False, lrelu_before_gap=True)
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot,
                         generator=net_g, discriminator=net_d, losses=losses, lr=lr, betas=betas,
                         coefficient_low=coefficient_low, coefficient_high=coefficient_high, corruption=False,
                         max_generate_batch=max_generate_batch, bn_recalibration_batches=bn_recalibration_batches)
        self.save_hyperparameters()
