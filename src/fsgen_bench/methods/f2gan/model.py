"""F2GAN: Fusing-and-Filling GAN for few-shot image generation.

Hong, Niu, Zhang, Zhao, Fu, Zhang. "F2GAN: Fusing-and-Filling GAN for Few-shot Image Generation", ACM MM 2020,
arXiv 2008.01999. Official TF1 code: bcmi/F2GAN-Few-Shot-Image-Generation @ 8151595 (read for facts only);
below, "arch" is its ``dagan_architectures_with_matchingclassifier.py`` and "net" its
``dagan_networks_wgan_with_matchingclassifier.py``. CARD.md beside this file lists every place where that code
and the paper disagree and what each ``method.variant`` does there.

What is F2GAN's own lives here; the backbone and the training loop it shares with MatchingGAN are
:mod:`fsgen_bench.methods.fusion`:

* fusing: the bottleneck sum_k a_k E(x_k) of the shared encoder (:class:`~fsgen_bench.methods.blocks.FusionGenerator`);
* filling: NAF (:mod:`fsgen_bench.methods.f2gan.naf`) after the first decoder upscales;
* the interpolation-coefficient regressor L_a (:class:`CoefficientRegressor`, arch L1583-1592);
* mode seeking L_m between two generations of the same images (:func:`mode_seeking_loss`, arch L1574);
* the release's input corruption (:func:`corrupt_inputs`, arch L177-181, L749).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch
from torch import Tensor, nn

from fsgen_bench.errors import UserError
from fsgen_bench.methods.blocks import LRELU_SLOPE, FusionGenerator, conv2d, linear
from fsgen_bench.methods.f2gan.naf import NAF
from fsgen_bench.methods.fusion import FusionDiscriminator, FusionGAN, FusionLosses, FusionStep

#: keeps the mode-seeking ratio finite when two generations coincide
MODE_SEEKING_EPS = 1e-5

#: ``method.variant``: a named bundle of switches. ``release`` is the code behind the published Table 1
#: (arch/net @ 8151595); ``paper`` is what CARD.md argues the paper means. A switch set explicitly in the config
#: (not null) wins over the variant.
VARIANTS: dict[str, dict[str, object]] = {
    "release": dict(
        mode_seeking_direction="code",      # arch L1574: mean|f1 - f2| / mean|a1 - a2|, minimised
        mode_seeking_reduction="sample",    # arch L1574 ratio per sample, net L275 mean over the batch
        regressor_train="none",             # net L287: L_a is not in D's loss, the regressor head stays random
        regressor_activation="none",        # arch L1587: three dense layers without activation
        recons_form="per_image",            # arch L1040-1050: mean sum_k |x - a_k x_k|
        corruption=True,                    # arch L749: keep pixel with prob a_k, else N(0, 1), also at test time
        naf_query="encoder",                # arch L404-423: query from a_k xi_k, softmax over decoder positions
    ),
    "paper": dict(
        mode_seeking_direction="diversity",  # MSGAN's intent: |a1 - a2| / |f1 - f2|, minimised
        mode_seeking_reduction="batch",      # ratio of batch means (no per-sample division by a tiny |f1 - f2|)
        regressor_train="fake",              # D fits the regressor on the detached fakes (the figure's L_a on D)
        regressor_activation="lrelu",        # so the head can compare the fake with each x_k
        recons_form="fused",                 # the framework figure: |x - sum_k a_k x_k|
        corruption=False,                    # not in the paper
        naf_query="decoder",                 # the poster: decoder positions query image k's positions
    ),
}
VARIANT_SWITCHES = tuple(VARIANTS["release"])


# -- discriminator head ----------------------------------------------------------------------------------------
class CoefficientRegressor(nn.Module):
    """F2GAN's interpolation-coefficient regressor (arch L1583-1592): predicts a from D features.

    concat[D features of x_1..x_K, D feature of the generated image] on the trunk's last map -> per-location
    dense layers (1x1 convs, ``widths``) -> global average pool -> dense(K) -> logits (softmax gives a-hat).
    K is therefore fixed at construction (the training K).
    """

    def __init__(self, feature_channels: int, k_shot: int, widths: Sequence[int], activation: str) -> None:
        super().__init__()
        if activation not in ("lrelu", "none"):
            raise UserError(f"method.regressor_activation must be 'lrelu' or 'none'; got {activation!r}")
        self.k_shot = int(k_shot)
        layers: list[nn.Module] = []
        ch = feature_channels * (self.k_shot + 1)
        for w in widths:
            layers.append(conv2d(ch, int(w), 1, sn=False, init="glorot"))
            if activation == "lrelu":
                layers.append(nn.LeakyReLU(LRELU_SLOPE))
            ch = int(w)
        self.body = nn.Sequential(*layers)
        self.out = linear(ch, self.k_shot, init="glorot")

    def forward(self, real_maps: Tensor, fake_map: Tensor) -> Tensor:
        """``real_maps`` [N, K, C, h, w], ``fake_map`` [N, C, h, w] -> coefficient logits [N, K]."""
        n, k = real_maps.shape[:2]
        if k != self.k_shot:
            raise ValueError(f"the coefficient regressor was built for K={self.k_shot}, got K={k}")
        x = torch.cat([real_maps.reshape(n, k * real_maps.shape[2], *real_maps.shape[3:]), fake_map], dim=1)
        return self.out(self.body(x).mean(dim=(2, 3)))


# -- F2GAN's own losses ----------------------------------------------------------------------------------------
def coefficient_regression_loss(regressor: nn.Module, real_maps: Tensor, fake_maps: Tensor, coefficients: Tensor,
                                form: str = "l1") -> Tensor:
    """L_a from D features.

    ``l1``: mean |softmax(a-hat) - a| (the release's G term, arch L1592). ``soft_ce``: -sum_k a_k log
    softmax(a-hat)_k, averaged over the batch; the ``paper`` variant's D step fits the regressor with it because
    its gradient (softmax - a) does not vanish around the uniform prediction where an L1 on the softmax stalls.
    """
    logits = regressor(real_maps, fake_maps).float()
    if form == "soft_ce":
        return -(coefficients.float() * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return (torch.softmax(logits, dim=1) - coefficients.float()).abs().mean()


def mode_seeking_loss(maps1: Tensor, maps2: Tensor, a1: Tensor, a2: Tensor, direction: str,
                      reduction: str) -> Tensor:
    """Mode seeking between two generations from the same images with coefficients a1 and a2 (minimised).

    ``direction``: ``diversity`` (MSGAN's intent) d_a / (d_f + eps), so G is pushed to make different
    coefficients give different D features; ``code`` (arch L1574) d_f / (d_a + eps), which reduces diversity.
    ``reduction``: ``sample`` takes the ratio per episode and averages it (arch L1574, net L275); ``batch`` takes
    the ratio of the batch means. d_f = mean |f1 - f2| over D's feature map, d_a = mean |a1 - a2| over K.
    """
    if reduction == "sample":
        d_feat = (maps1.float() - maps2.float()).abs().flatten(1).mean(dim=1)
        d_a = (a1.float() - a2.float()).abs().mean(dim=1)
    else:
        d_feat = (maps1.float() - maps2.float()).abs().mean()
        d_a = (a1.float() - a2.float()).abs().mean()
    ratio = d_a / (d_feat + MODE_SEEKING_EPS) if direction == "diversity" else d_feat / (d_a + MODE_SEEKING_EPS)
    return ratio.mean()


def corrupt_inputs(support: Tensor, coefficients: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The release's input corruption (arch L177-181, applied at L749): each pixel of x_k is kept with probability
    a_k and otherwise replaced by N(0, 1) noise. Drawn from ``generator`` when given."""
    device = generator.device if generator is not None else support.device
    keep_u = torch.rand(support.shape, generator=generator, device=device).to(support.device)
    noise = torch.randn(support.shape, generator=generator, device=device).to(support.device, support.dtype)
    keep = keep_u < coefficients.to(support.device).reshape(*coefficients.shape, 1, 1, 1)
    return torch.where(keep, support, noise)


@dataclass(frozen=True)
class F2GANLosses:
    """F2GAN's own terms (0 skips a term): regression L_a and mode seeking L_m, with their forms."""

    sim: float
    regressor_train: str
    mode_seeking: float
    mode_seeking_direction: str
    mode_seeking_reduction: str

    def __post_init__(self) -> None:
        for key, value, allowed in (("regressor_train", self.regressor_train, ("fake", "none")),
                                    ("mode_seeking_direction", self.mode_seeking_direction, ("diversity", "code")),
                                    ("mode_seeking_reduction", self.mode_seeking_reduction, ("sample", "batch"))):
            if value not in allowed:
                raise UserError(f"method.{key} must be one of {', '.join(allowed)}; got {value!r}")


def resolve_variant(variant: str, switches: dict[str, object]) -> dict[str, object]:
    """The switch values of ``variant``, with every switch that is not None in ``switches`` winning."""
    if variant not in VARIANTS:
        raise UserError(f"unknown method.variant {variant!r} for f2gan; choose one of {', '.join(VARIANTS)}")
    return {key: (VARIANTS[variant][key] if switches.get(key) is None else switches[key]) for key in VARIANT_SWITCHES}


# -- F2GAN -----------------------------------------------------------------------------------------------------
class F2GAN(FusionGAN):
    """F2GAN (Hong et al., ACM MM 2020). Keyword arguments = the ``method:`` keys of configs/methods/f2gan.yaml,
    which holds every default and says why; the variant switches there are null ("as the variant says")."""

    variants = tuple(VARIANTS)
    default_variant = "release"

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int, variant: str,
                 layer_sizes: Sequence[int], inner_layers: int, dropout: float, bn_momentum: float,
                 naf_stages: Sequence[int], naf_query: str | None, naf_residual: bool, naf_key_channels: int | None,
                 disc_base_channels: int, disc_stages: int, disc_max_channels: int, disc_final_blocks: int,
                 regressor_widths: Sequence[int], regressor_activation: str | None, lr: float,
                 betas: Sequence[float], loss_adv: float, loss_cla: float, loss_recons: float,
                 recons_form: str | None, loss_sim: float, regressor_train: str | None, loss_mode_seeking: float,
                 mode_seeking_direction: str | None, mode_seeking_reduction: str | None, loss_matching_d: float,
                 hinge_on: str, generations_per_step: int, train_classifier_head: bool, corruption: bool | None,
                 coefficient_low: float, coefficient_high: float, max_generate_batch: int,
                 bn_recalibration_batches: int) -> None:
        sw = resolve_variant(variant, dict(
            naf_query=naf_query, regressor_activation=regressor_activation, recons_form=recons_form,
            regressor_train=regressor_train, mode_seeking_direction=mode_seeking_direction,
            mode_seeking_reduction=mode_seeking_reduction, corruption=corruption))
        if recons_form is not None and sw["recons_form"] == "feature_mse":
            raise UserError("method.recons_form feature_mse is MatchingGAN's; F2GAN takes fused or per_image")
        if float(loss_mode_seeking) > 0 and int(generations_per_step) < 2:
            raise UserError("F2GAN's mode seeking compares two generations of the same images: set "
                            "method.generations_per_step >= 2 or method.loss_mode_seeking: 0")
        losses = FusionLosses(adv=loss_adv, cla=loss_cla, recons=loss_recons, recons_form=sw["recons_form"],
                              matching_d=loss_matching_d, hinge_on=hinge_on)
        net_g = FusionGenerator(
            channels, layer_sizes=layer_sizes, inner_layers=inner_layers, dropout=dropout, fusion_stages=naf_stages,
            fusion_factory=partial(_naf_factory, query=sw["naf_query"], residual=naf_residual,
                                   key_channels=naf_key_channels),
            bn_momentum=bn_momentum,
        )
        regressor = None
        if float(loss_sim) > 0:
            trunk_channels = min(disc_base_channels * 2 ** disc_stages, disc_max_channels)
            regressor = CoefficientRegressor(trunk_channels, k_shot, regressor_widths, sw["regressor_activation"])
        net_d = FusionDiscriminator(
            channels, num_seen_classes, base_channels=disc_base_channels, num_stages=disc_stages,
            max_channels=disc_max_channels, final_blocks=disc_final_blocks, lrelu_before_gap=False,
            extra_head=regressor,
        )
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot,
                         generator=net_g, discriminator=net_d, losses=losses,
                         generations_per_step=generations_per_step, train_classifier_head=train_classifier_head,
                         lr=lr, betas=betas, coefficient_low=coefficient_low, coefficient_high=coefficient_high,
                         max_generate_batch=max_generate_batch, bn_recalibration_batches=bn_recalibration_batches)
        self.variant = variant
        #: the resolved switch values (the variant's, with explicit settings winning)
        self.variant_switches = sw
        self.f2gan_losses = F2GANLosses(sim=loss_sim, regressor_train=sw["regressor_train"],
                                        mode_seeking=loss_mode_seeking,
                                        mode_seeking_direction=sw["mode_seeking_direction"],
                                        mode_seeking_reduction=sw["mode_seeking_reduction"])
        self.corruption = bool(sw["corruption"])
        self.save_hyperparameters()

    def _run_generator(self, support: Tensor, coefficients: Tensor, generator: torch.Generator | None = None,
                       return_attention: bool = False, return_code: bool = False):
        encoder_input = corrupt_inputs(support, coefficients, generator) if self.corruption else None
        return self.net_g(support, coefficients, encoder_input=encoder_input, return_attention=return_attention,
                          return_code=return_code)

    def _check_regressor_k(self, k: int) -> None:
        regressor = self.net_d.regressor
        if regressor is not None and k != regressor.k_shot:
            raise ValueError(f"F2GAN was built for K={regressor.k_shot} (its coefficient regressor is K-specific) "
                             f"but the training batch has K={k}")

    def extra_d_terms(self, step: FusionStep, real_maps: Tensor, fake_maps: Tensor) -> dict:
        w = self.f2gan_losses
        self._check_regressor_k(step.support.shape[1])
        if self.net_d.regressor is None or w.sim <= 0 or w.regressor_train != "fake":
            return {}
        reals = real_maps.repeat(step.generations, 1, 1, 1, 1)
        return {"d_sim": (w.sim, coefficient_regression_loss(self.net_d.regressor, reals, fake_maps, step.a,
                                                             form="soft_ce"))}

    def extra_g_terms(self, step: FusionStep, real_maps: Tensor, fake_maps: Tensor) -> dict:
        w = self.f2gan_losses
        terms = {}
        if self.net_d.regressor is not None and w.sim > 0:      # net L284: mean over the fakes of |a-hat - a|
            terms["g_sim"] = (w.sim, coefficient_regression_loss(self.net_d.regressor, real_maps, fake_maps, step.a))
        if w.mode_seeking > 0:                                 # between generations 1 and 2 of each episode
            b = step.support.shape[0]
            terms["g_mode_seeking"] = (w.mode_seeking, mode_seeking_loss(
                fake_maps[:b], fake_maps[b:2 * b], step.a[:b], step.a[b:2 * b], w.mode_seeking_direction,
                w.mode_seeking_reduction))
        return terms


def _naf_factory(decoder_channels: int, encoder_channels: int, *, query: str, residual: bool,
                 key_channels: int | None) -> NAF:
    return NAF(decoder_channels, encoder_channels, query=query, residual=residual, key_channels=key_channels)


__all__ = ["F2GAN", "CoefficientRegressor", "F2GANLosses", "VARIANTS", "coefficient_regression_loss",
           "corrupt_inputs", "mode_seeking_loss", "resolve_variant"]
