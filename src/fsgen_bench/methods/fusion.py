"""The fusion GAN shared by F2GAN and MatchingGAN: discriminator, training step, generation, figures.

MatchingGAN (Hong et al., ICME 2020; bcmi/MatchingGAN-Few-Shot-Image-Generation @ 916e424) and its successor
F2GAN (Hong et al., ACM MM 2020, arXiv 2008.01999; bcmi/F2GAN-Few-Shot-Image-Generation @ 8151595) share one
backbone and one training loop; their releases differ only in the parts each method's module chooses. Below,
"MG" and "F2" name those two releases at those commits, ``arch`` their ``dagan_architectures_with_matchingclassifier.py``
and ``net`` their ``dagan_networks_wgan_with_matchingclassifier.py``.

* :class:`FusionDiscriminator`: the ResNet trunk (:class:`~fsgen_bench.methods.blocks.ResDiscriminatorTrunk`),
  global average pooling, an adversarial and a seen-class head, and an optional extra head (F2GAN's
  coefficient regressor) that the discriminator's optimiser covers.
* :class:`FusionGAN`: manual optimisation with one D step and one G step per batch. ``generations_per_step``
  generations per episode (F2 ``net`` L234-244 makes two, MG ``net`` L232 one), each with its own
  coefficients a ~ normalised U(low, high) (F2 ``arch`` L733, MG ``arch`` L556). The losses are
  :meth:`FusionGAN.discriminator_loss` and :meth:`FusionGAN.generator_loss`; a subclass adds its own terms through
  :meth:`FusionGAN.extra_d_terms` / :meth:`FusionGAN.extra_g_terms`. Every term sits behind a weight (0 skips it).
* generation in eval mode with recalibrated BN statistics (:mod:`fsgen_bench.methods.batchnorm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsgen_bench.errors import UserError
from fsgen_bench.methods.base import FewShotGenerator
from fsgen_bench.methods.batchnorm import BatchNormRecalibration
from fsgen_bench.methods.blocks import LRELU_SLOPE, FusionGenerator, ResDiscriminatorTrunk, linear, sample_coefficients

RECONS_FORMS = ("fused", "per_image", "feature_mse")
HINGE_ON = ("episode", "image")


class FusionDiscriminator(nn.Module):
    """Trunk -> [LReLU] -> GAP -> dense heads (adversarial [N], seen-class logits [N, classes]).

    ``forward(x)`` returns the trunk's feature map, the "D features" of the feature-matching, mode-seeking and
    regression losses (before the LReLU, as both releases). The heads are plain dense layers with Glorot-uniform
    init (``tf.layers.dense``); only the trunk is spectrally normalised. ``extra_head`` (e.g. F2GAN's regressor)
    becomes ``self.regressor`` so that the discriminator's optimiser covers it.
    """

    def __init__(self, channels: int, num_classes: int, *, base_channels: int, num_stages: int, max_channels: int,
                 final_blocks: int, lrelu_before_gap: bool, extra_head: nn.Module | None = None) -> None:
        super().__init__()
        self.trunk = ResDiscriminatorTrunk(channels, base_channels, num_stages, max_channels, final_blocks)
        c = self.trunk.out_channels
        self.lrelu_before_gap = bool(lrelu_before_gap)
        self.adv = linear(c, 1, init="glorot")
        self.classifier = linear(c, max(1, int(num_classes)), init="glorot")
        self.regressor = extra_head

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def heads(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        if self.lrelu_before_gap:        # MG arch L1179 applies LReLU before GAP; F2 does not
            maps = F.leaky_relu(maps, LRELU_SLOPE)
        pooled = maps.mean(dim=(2, 3))
        return self.adv(pooled).squeeze(1), self.classifier(pooled)


@dataclass(frozen=True)
class FusionLosses:
    """The weights and forms of the terms both releases have (0 skips a term); see :class:`FusionGAN`."""

    adv: float            # hinge, D and G (loss_D = loss_G)
    cla: float            # seen-class CE: D on reals, G on fakes (loss_CLA)
    recons: float         # reconstruction (loss_recons_B), in the form `recons_form`
    recons_form: str
    matching_d: float     # |sum_k a_k D_f(x_k) - D_f(x)| (loss_matching_D)
    hinge_on: str         # "episode": logits averaged per episode before the hinge; "image": hinge per image

    def __post_init__(self) -> None:
        if self.recons_form not in RECONS_FORMS:
            raise UserError(f"method.recons_form must be one of {', '.join(RECONS_FORMS)}; got {self.recons_form!r}")
        if self.hinge_on not in HINGE_ON:
            raise UserError(f"method.hinge_on must be one of {', '.join(HINGE_ON)}; got {self.hinge_on!r}")


@dataclass
class FusionStep:
    """One training batch after the generator pass: ``support`` [B, K, C, H, W], ``labels`` [B], coefficients
    ``a`` [G*B, K] and generated images ``fake`` [G*B, C, H, W] for G generations (rows: generation 1 for the
    B episodes, then generation 2, ...), and the fused bottleneck code ``code`` [G*B, ...] of each."""

    support: Tensor
    labels: Tensor
    a: Tensor
    fake: Tensor
    code: Tensor
    generations: int

    @property
    def support_g(self) -> Tensor:
        return self.support.repeat(self.generations, 1, 1, 1, 1)


def hinge_d(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The releases' hinge (F2 ``net`` L8-11): mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def fuse(coefficients: Tensor, stacked: Tensor) -> Tensor:
    """sum_k a_k t_k for ``coefficients`` [B, K] and ``stacked`` [B, K, ...] -> [B, ...]."""
    a = coefficients.to(stacked.dtype).reshape(*coefficients.shape, *([1] * (stacked.ndim - 2)))
    return (a * stacked).sum(dim=1)


def pixel_reconstruction(fake: Tensor, support: Tensor, coefficients: Tensor, form: str) -> Tensor:
    """L1 to the coefficient-weighted conditional images, mean over pixels.

    ``fused``: mean |x - sum_k a_k x_k| (F2GAN's framework figure); ``per_image``: mean sum_k |x - a_k x_k|
    (F2 ``arch`` L1040-1050).
    """
    fake, support = fake.float(), support.float()
    if form == "fused":
        return (fake - fuse(coefficients, support)).abs().mean()
    a = coefficients.float().reshape(*coefficients.shape, 1, 1, 1)
    return (fake.unsqueeze(1) - a * support).abs().sum(dim=1).mean()


class FusionGAN(FewShotGenerator):
    """Training, generation and figures shared by F2GAN and MatchingGAN.

    Subclasses build ``generator`` (a :class:`FusionGenerator`) and ``discriminator`` (a
    :class:`FusionDiscriminator`) from their keyword arguments and call ``save_hyperparameters`` themselves.

    One training step: draw coefficients for ``generations_per_step`` generations of every episode, run the
    generator once over all of them, then a D step on the detached fakes (:meth:`discriminator_loss`) and a G
    step that re-scores them with the updated D (:meth:`generator_loss`).
    """

    #: fusion needs two images: with K = 1 every coefficient is 1 and all generated images would be identical
    min_k = 2
    min_k_reason = ("a fusion method mixes K >= 2 conditional images with random coefficients; with K = 1 every "
                    "coefficient is 1 and all its images would be the same")

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int,
                 generator: FusionGenerator, discriminator: FusionDiscriminator, losses: FusionLosses,
                 generations_per_step: int, train_classifier_head: bool, lr: float, betas: Sequence[float],
                 coefficient_low: float, coefficient_high: float, max_generate_batch: int,
                 bn_recalibration_batches: int) -> None:
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot)
        if int(k_shot) < self.min_k:
            raise UserError(f"{type(self).__name__} cannot train with data.k_shot = {k_shot}: {self.min_k_reason}; "
                            f"set data.k_shot >= {self.min_k}")
        if int(generations_per_step) < 1:
            raise UserError(f"method.generations_per_step must be >= 1; got {generations_per_step}")
        if not 0 < float(coefficient_low) <= float(coefficient_high):
            raise UserError("method.coefficient_low and coefficient_high need 0 < low <= high "
                            f"(got {coefficient_low}, {coefficient_high})")
        self.automatic_optimization = False
        self.net_g = generator
        self.net_d = discriminator
        self.losses = losses
        self.generations = int(generations_per_step)
        self.train_classifier_head = bool(train_classifier_head)
        # MG: the classifier head lives outside the variables D's optimiser updates (arch L1190, L1210-1213) and
        # its own optimiser never runs (experiment_builder L407, L482, L520 run only g_opt_op and d_opt_op), so
        # it stays at its initialisation while its CE still trains D's trunk and G.
        self.net_d.classifier.requires_grad_(self.train_classifier_head)
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.coefficient_range = (float(coefficient_low), float(coefficient_high))
        self.max_generate_batch = max(1, int(max_generate_batch))
        self.bn_recalibration = BatchNormRecalibration(bn_recalibration_batches)

    # -- optimisation -------------------------------------------------------------------------------------
    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.net_g.parameters(), lr=self.lr, betas=self.betas)
        opt_d = torch.optim.Adam([p for p in self.net_d.parameters() if p.requires_grad], lr=self.lr,
                                 betas=self.betas)
        return [opt_g, opt_d]

    def compile_networks(self) -> None:
        """torch.compile the generator and the discriminator trunk in place (state-dict keys unchanged)."""
        self.net_g.compile()
        self.net_d.trunk.compile()

    def coefficient_bounds(self, k: int) -> tuple[float, float]:
        """The smallest and largest a_k that training draws for K = ``k``: u ~ U(low, high) normalised."""
        low, high = self.coefficient_range
        return low / (low + (k - 1) * high), high / (high + (k - 1) * low)

    def _coefficients(self, batch: int, k: int, device, generator: torch.Generator | None = None) -> Tensor:
        low, high = self.coefficient_range
        return sample_coefficients(batch, k, generator=generator, device=device, low=low, high=high)

    def _run_generator(self, support: Tensor, coefficients: Tensor, generator: torch.Generator | None = None,
                       return_attention: bool = False, return_code: bool = False):
        """The generator on ``support`` [N, K, ...] with ``coefficients`` [N, K]; subclasses may transform what
        the encoder sees (F2GAN's input corruption)."""
        return self.net_g(support, coefficients, return_attention=return_attention, return_code=return_code)

    def make_step(self, support: Tensor, labels: Tensor, coefficients: Tensor | None = None) -> FusionStep:
        """Run the generator (train mode as set by the caller) for every generation of every episode."""
        b, k = support.shape[:2]
        a = self._coefficients(self.generations * b, k, support.device) if coefficients is None else coefficients
        fake, code = self._run_generator(support.repeat(self.generations, 1, 1, 1, 1), a, return_code=True)
        return FusionStep(support=support, labels=labels, a=a, fake=fake, code=code, generations=self.generations)

    # -- losses -------------------------------------------------------------------------------------------
    def discriminator_loss(self, step: FusionStep) -> tuple[Tensor, dict[str, Tensor]]:
        """Hinge on the K reals vs the detached fakes + seen-class CE on the reals (F2 ``net`` L287, MG ``net``
        L376) + the subclass's terms. Returns (loss, logged terms)."""
        w = self.losses
        b, k = step.support.shape[:2]
        reals = step.support.reshape(b * k, *step.support.shape[2:])
        maps = self.net_d(torch.cat([reals, step.fake.detach()], dim=0))       # no batch statistics in D
        adv, cls = self.net_d.heads(maps)
        adv = adv.float()
        real_logit, fake_logit = adv[: b * k], adv[b * k:]
        if w.hinge_on == "episode":      # F2 arch L1534-1542: logits averaged over the K reals / the fakes
            real_logit = real_logit.reshape(b, k).mean(dim=1)
            fake_logit = fake_logit.reshape(step.generations, b).mean(dim=0)
        terms = {"d_adv": (w.adv, hinge_d(real_logit, fake_logit))}        # MG net L261-306: per image
        if w.cla > 0:
            terms["d_cla"] = (w.cla, F.cross_entropy(cls[: b * k].float(), step.labels.repeat_interleave(k)))
        real_maps = maps[: b * k].reshape(b, k, *maps.shape[1:])
        terms.update(self.extra_d_terms(step, real_maps, maps[b * k:]))
        return self._total(terms, "d")

    def generator_loss(self, step: FusionStep) -> tuple[Tensor, dict[str, Tensor]]:
        """-D(fake) + CE on the fakes + reconstruction + feature matching (F2 ``net`` L284, MG ``net`` L335) + the
        subclass's terms. D's parameters take no part in the update (the optimiser toggling sees to that)."""
        w = self.losses
        b, k = step.support.shape[:2]
        with torch.no_grad():                      # the reals need no graph: D is frozen in this step
            real_maps = self.net_d(step.support.reshape(b * k, *step.support.shape[2:]))
        real_maps = real_maps.reshape(b, k, *real_maps.shape[1:]).repeat(step.generations, 1, 1, 1, 1)
        fake_maps = self.net_d(step.fake)
        adv_f, cls_f = self.net_d.heads(fake_maps)
        terms = {"g_adv": (w.adv, -adv_f.float().mean())}
        if w.cla > 0:
            terms["g_cla"] = (w.cla, F.cross_entropy(cls_f.float(), step.labels.repeat(step.generations)))
        if w.recons > 0:
            terms["g_recons"] = (w.recons, self.reconstruction_loss(step))
        if w.matching_d > 0:   # F2 arch L1546-1562, MG net L280-289: |sum_k a_k D_f(x_k) - D_f(x)|, mean
            terms["g_matching_d"] = (w.matching_d, (fuse(step.a, real_maps).float() - fake_maps.float()).abs().mean())
        terms.update(self.extra_g_terms(step, real_maps, fake_maps))
        return self._total(terms, "g")

    def reconstruction_loss(self, step: FusionStep) -> Tensor:
        """``fused`` / ``per_image``: pixel L1 (:func:`pixel_reconstruction`). ``feature_mse`` (MG arch L771-774):
        mean squared error between the shared encoder's code of the generated image and the fused code
        sum_k a_k E(x_k), both with gradients, the encoder in the generator's mode."""
        form = self.losses.recons_form
        if form == "feature_mse":
            code_fake = self.net_g.encoder(step.fake)[-1]
            return (code_fake.float() - step.code.float()).pow(2).mean()
        return pixel_reconstruction(step.fake, step.support_g, step.a, form)

    def extra_d_terms(self, step: FusionStep, real_maps: Tensor, fake_maps: Tensor) -> dict:
        """A subclass's own D terms: ``{name: (weight, value)}``; ``real_maps`` [B, K, ...], ``fake_maps`` [G*B, ...]
        (the fakes detached)."""
        return {}

    def extra_g_terms(self, step: FusionStep, real_maps: Tensor, fake_maps: Tensor) -> dict:
        """A subclass's own G terms: ``{name: (weight, value)}``; ``real_maps`` [G*B, K, ...] (no graph),
        ``fake_maps`` [G*B, ...]."""
        return {}

    @staticmethod
    def _total(terms: dict, player: str) -> tuple[Tensor, dict[str, Tensor]]:
        total = sum(weight * value for weight, value in terms.values())
        logs = {f"train/{name}": value for name, (_, value) in terms.items()}
        logs[f"train/loss_{player}"] = total
        return total, logs

    # -- training -----------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> None:
        support: Tensor = batch["support"]
        opt_g, opt_d = self.optimizers()
        step = self.make_step(support, batch["label"])

        self.toggle_optimizer(opt_d)
        loss_d, logs = self.discriminator_loss(step)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        loss_g, logs_g = self.generator_loss(step)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        logs.update(logs_g)
        self.log_dict({name: value.detach() for name, value in logs.items()}, on_step=True, on_epoch=False,
                      batch_size=support.shape[0])
        self.bn_recalibration.step(self, support, batch_idx, self.net_g, self._recalibration_forward)

    def _recalibration_forward(self, support: Tensor) -> None:
        b, k = support.shape[:2]
        n = self.generations * b
        self._run_generator(support.repeat(self.generations, 1, 1, 1, 1), self._coefficients(n, k, support.device))

    def recalibrate_batch_norm(self, supports: Sequence[Tensor]) -> None:
        """Re-estimate G's BN statistics over ``supports`` now (see :mod:`fsgen_bench.methods.batchnorm`)."""
        from fsgen_bench.methods.batchnorm import recalibrate_batch_norm

        recalibrate_batch_norm(self.net_g, self._recalibration_forward, supports, self._trainer)

    # -- generation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _generate_eval(self, support: Tensor, coefficients: Tensor, generator: torch.Generator | None = None,
                       return_attention: bool = False):
        """Eval-mode generator pass (BN running statistics), chunked by ``max_generate_batch`` episodes."""
        was_training = self.net_g.training
        self.net_g.eval()
        try:
            outs, attns = [], []
            for start in range(0, support.shape[0], self.max_generate_batch):
                stop = start + self.max_generate_batch
                res = self._run_generator(support[start:stop], coefficients[start:stop], generator, return_attention)
                if return_attention:
                    outs.append(res[0])
                    attns.append(res[1])
                else:
                    outs.append(res)
        finally:
            self.net_g.train(was_training)
        images = torch.cat(outs) if len(outs) > 1 else outs[0]
        if not return_attention:
            return images
        merged = {s: torch.cat([a[s] for a in attns]) for s in attns[0]}
        return images, merged

    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        """[B, K, C, H, W] -> [B, num, C, H, W]: num images per episode, each with fresh coefficients.

        All B*num episodes go through the generator in one eval-mode pass (chunked only beyond
        ``max_generate_batch``); coefficients (and any input corruption) come from ``generator``, drawn in
        (episode, image) order. K >= 2 may differ from the training K (only F2GAN's regressor is K-specific).
        """
        self.check_support(support)
        b, k = support.shape[:2]
        episodes = support.unsqueeze(1).expand(b, num, *support.shape[1:]).reshape(b * num, *support.shape[1:])
        a = self._coefficients(b * num, k, support.device, generator)
        images = self._generate_eval(episodes, a, generator)
        return images.reshape(b, num, *images.shape[1:])

    def generate_with_coefficients(self, support: Tensor, coefficients: Tensor,
                                   generator: torch.Generator | None = None) -> Tensor:
        """[B, K, C, H, W] with explicit coefficients [B, K] (rows summing to 1) -> [B, C, H, W] (eval mode)."""
        self.check_support(support)
        return self._generate_eval(support, coefficients.to(support.device, torch.float32), generator)

    def attention_maps(self, support: Tensor, coefficients: Tensor | None = None) -> dict[int, Tensor]:
        """NAF attention per fusion stage: ``{stage: [B, K, h, w, h_e, w_e]}`` (empty without NAF).

        Entry ``[b, k, y, x]`` is the map over image k's encoder positions that output position (y, x) of that
        stage reads from; it sums to 1. ``coefficients`` default to uniform 1/K.
        """
        self.check_support(support)
        b, k = support.shape[:2]
        if coefficients is None:
            coefficients = torch.full((b, k), 1.0 / k, device=support.device)
        _, attn = self._generate_eval(support, coefficients.to(support.device, torch.float32), None, True)
        depth = len(self.net_g.encoder.out_channels)
        out = {}
        for s, t in attn.items():
            # stage s works at the resolution of encoder block depth-2-s: ceil(size / 2^(block + 1))
            factor = 2 ** (depth - 1 - s)
            hw = tuple(-(-int(n) // factor) for n in support.shape[-2:])
            out[s] = t.reshape(b, k, *hw, *hw)
        return out

    def method_figures(self, support: Tensor, out_dir) -> list:
        """``interpolation.png`` (coefficient sweep between two conditional images, within the training range)
        and, with NAF, ``attention.png`` for one class's support [K, C, H, W]
        (see :mod:`fsgen_bench.methods.f2gan.figures`)."""
        from fsgen_bench.methods.f2gan.figures import write_method_figures

        return write_method_figures(self, support.to(self.device), out_dir)


__all__ = ["FusionDiscriminator", "FusionGAN", "FusionLosses", "FusionStep", "fuse", "hinge_d",
           "pixel_reconstruction"]
