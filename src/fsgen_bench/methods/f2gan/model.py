"""F2GAN: Fusing-and-Filling GAN for few-shot image generation, as a Lightning module.

Hong, Niu, Zhang, Zhao, Fu, Zhang. "F2GAN: Fusing-and-Filling GAN for Few-shot Image Generation", ACM MM 2020,
arXiv 2008.01999. Official TF1 code: bcmi/F2GAN-Few-Shot-Image-Generation @ 8151595 (read for facts only).
See ``shared/reference/f2gan-and-baselines.md`` sections 1.1-1.7 and CARD.md beside this file for every
place where the code and the paper disagree and what this re-implementation chose.

The module is split so that MatchingGAN (baselines/matchinggan) reuses it unchanged:

* :class:`FusionDiscriminator`: the shared ResNet trunk + heads (adversarial, seen-class classifier and the
  optional coefficient regressor).
* :class:`FusionGAN`: the LightningModule shared by F2GAN and MatchingGAN: manual optimisation with one
  D step and one G step per batch, every loss term behind a weight (0 switches it off), ``generate``,
  ``generate_with_coefficients`` and ``attention_maps``.
* :class:`F2GAN`: builds the NAF generator and the F2GAN discriminator from config keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsgen_bench.methods.base import FewShotGenerator
from fsgen_bench.methods.blocks import (
    LRELU_SLOPE,
    FusionGenerator,
    ResDiscriminatorTrunk,
    conv2d,
    linear,
    sample_coefficients,
)
from fsgen_bench.methods.f2gan.naf import NAF

#: keeps the mode-seeking ratio finite when two generations coincide
MODE_SEEKING_EPS = 1e-5


# -- discriminator ---------------------------------------------------------------------------------------------
class CoefficientRegressor(nn.Module):
    """F2GAN's interpolation-coefficient regressor (reference 1.5): predicts a from D features.

    concat[D features of x_1..x_K, D feature of the generated image] on the trunk's last map -> per-location
    dense layers (1x1 convs, ``widths``) -> global average pool -> dense(K) -> logits (softmax gives a-hat).
    K is therefore fixed at construction (the training K).
    """

    def __init__(self, feature_channels: int, k_shot: int, widths: Sequence[int] = (256, 128, 64),
                 activation: str = "lrelu") -> None:
        super().__init__()
        if activation not in ("lrelu", "none"):
            raise ValueError(f"regressor_activation must be 'lrelu' or 'none'; got {activation!r}")
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


class FusionDiscriminator(nn.Module):
    """F2GAN's discriminator (reference 1.5): :class:`ResDiscriminatorTrunk`, GAP, dense heads.

    ``forward(x)`` returns the trunk's feature map (the "D features" of the mode-seeking, feature-matching and
    regression losses); :meth:`heads` turns maps into (adversarial logit [N], class logits [N, classes]).
    Heads are plain dense layers with Glorot-uniform init, as ``tf.layers.dense`` in the release (only the
    trunk is spectrally normalised).
    """

    def __init__(self, channels: int, num_classes: int, k_shot: int, *, base_channels: int = 32,
                 num_stages: int = 4, max_channels: int = 512, final_blocks: int = 2, regressor: bool = True,
                 regressor_widths: Sequence[int] = (256, 128, 64), regressor_activation: str = "lrelu",
                 lrelu_before_gap: bool = False) -> None:
        super().__init__()
        self.trunk = ResDiscriminatorTrunk(channels, base_channels, num_stages, max_channels, final_blocks)
        c = self.trunk.out_channels
        self.lrelu_before_gap = bool(lrelu_before_gap)
        self.adv = linear(c, 1, init="glorot")
        self.classifier = linear(c, max(1, int(num_classes)), init="glorot")
        self.regressor = (CoefficientRegressor(c, k_shot, regressor_widths, regressor_activation)
                          if regressor else None)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def heads(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        if self.lrelu_before_gap:        # MatchingGAN applies LReLU before GAP; F2GAN does not
            maps = F.leaky_relu(maps, LRELU_SLOPE)
        pooled = maps.mean(dim=(2, 3))
        return self.adv(pooled).squeeze(1), self.classifier(pooled)


# -- losses ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossSettings:
    """Loss weights and forms shared by F2GAN and MatchingGAN (a weight of 0 skips the term entirely)."""

    adv: float = 1.0                 # hinge, D and G (README loss_D = loss_G = 1)
    cla: float = 1.0                 # seen-class CE: D on reals, G on fakes (loss_CLA)
    recons: float = 1.0              # weighted L1 (loss_recons_B)
    recons_form: str = "fused"       # "fused": |x - sum_k a_k x_k| (paper figure); "per_image": sum_k |x - a_k x_k| (code)
    sim: float = 1.0                 # coefficient regression (loss_sim)
    regressor_train: str = "fake"    # "fake": D also fits the regressor (soft-target CE) on detached fakes; "none": code
    mode_seeking: float = 1.0        # loss_matching_G
    mode_seeking_direction: str = "diversity"   # "diversity": |a1-a2| / |f1-f2| (MSGAN intent); "code": inverse
    matching_d: float = 1.0          # feature matching |sum_k a_k D_f(x_k) - D_f(x)| (loss_matching_D)

    def __post_init__(self) -> None:
        if self.recons_form not in ("fused", "per_image"):
            raise ValueError(f"recons_form must be 'fused' or 'per_image'; got {self.recons_form!r}")
        if self.regressor_train not in ("fake", "none"):
            raise ValueError(f"regressor_train must be 'fake' or 'none'; got {self.regressor_train!r}")
        if self.mode_seeking_direction not in ("diversity", "code"):
            raise ValueError(f"mode_seeking_direction must be 'diversity' or 'code'; got {self.mode_seeking_direction!r}")


def hinge_d(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def fuse(coefficients: Tensor, stacked: Tensor) -> Tensor:
    """sum_k a_k t_k for ``coefficients`` [B, K] and ``stacked`` [B, K, ...] -> [B, ...]."""
    a = coefficients.to(stacked.dtype).reshape(*coefficients.shape, *([1] * (stacked.ndim - 2)))
    return (a * stacked).sum(dim=1)


def weighted_l1(fake: Tensor, support: Tensor, coefficients: Tensor, form: str = "fused") -> Tensor:
    """F2GAN's L1 to the weighted fusion of the conditional images (reference 1.6), mean over pixels.

    ``fused``: mean |x - sum_k a_k x_k| (the framework figure); ``per_image``: mean sum_k |x - a_k x_k| (code).
    """
    fake, support = fake.float(), support.float()
    if form == "fused":
        return (fake - fuse(coefficients, support)).abs().mean()
    a = coefficients.float().reshape(*coefficients.shape, 1, 1, 1)
    return (fake.unsqueeze(1) - a * support).abs().sum(dim=1).mean()


def coefficient_regression_loss(regressor: nn.Module, real_maps: Tensor, fake_maps: Tensor, coefficients: Tensor,
                                form: str = "l1") -> Tensor:
    """Coefficient regression from D features (reference 1.6, L_a).

    ``l1``: mean |softmax(a-hat) - a| (the release's G term). ``soft_ce``: -sum_k a_k log softmax(a-hat)_k,
    averaged over the batch; the D step fits the regressor with it because its gradient (softmax - a) does
    not vanish around the uniform prediction where an L1 on the softmax stalls for hundreds of steps.
    """
    logits = regressor(real_maps, fake_maps).float()
    if form == "soft_ce":
        return -(coefficients.float() * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return (torch.softmax(logits, dim=1) - coefficients.float()).abs().mean()


def mode_seeking_loss(maps1: Tensor, maps2: Tensor, a1: Tensor, a2: Tensor, direction: str = "diversity") -> Tensor:
    """Mode seeking between two generations from the same images with coefficients a1 and a2.

    ``diversity`` (MSGAN's intent, minimised): mean|a1 - a2| / (mean|f1 - f2| + eps), so G is pushed to make
    different coefficients give different D features. ``code`` (the release, minimised): mean|f1 - f2| /
    mean|a1 - a2|, which reduces diversity (reference 1.6, "Mode-seeking sign").
    """
    d_feat = (maps1.float() - maps2.float()).abs().mean()
    d_a = (a1.float() - a2.float()).abs().mean()
    if direction == "diversity":
        return d_a / (d_feat + MODE_SEEKING_EPS)
    return d_feat / (d_a + MODE_SEEKING_EPS)


def corrupt_inputs(support: Tensor, coefficients: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The release code's input corruption (reference 1.2): each pixel of x_k is kept with probability a_k and
    otherwise replaced by N(0, 1) noise. Drawn from ``generator`` when given."""
    device = generator.device if generator is not None else support.device
    keep_u = torch.rand(support.shape, generator=generator, device=device).to(support.device)
    noise = torch.randn(support.shape, generator=generator, device=device).to(support.device, support.dtype)
    keep = keep_u < coefficients.to(support.device).reshape(*coefficients.shape, 1, 1, 1)
    return torch.where(keep, support, noise)


# -- the shared Lightning module -------------------------------------------------------------------------------
class FusionGAN(FewShotGenerator):
    """Training, generation and figures shared by F2GAN and MatchingGAN.

    Subclasses build ``generator`` (a :class:`FusionGenerator`) and ``discriminator`` (a
    :class:`FusionDiscriminator`) from their own keyword arguments and call ``save_hyperparameters`` in their
    own ``__init__`` so checkpoints rebuild them.

    One training step (manual optimisation, reference 1.7): draw a1, a2 ~ normalised U(low, high) per episode;
    generate x1, x2 in one generator pass over a batch of 2B; D step (hinge on K reals vs the two fakes with
    logits averaged per episode as in the release, CE on the reals, optionally the regressor on the detached
    fakes); G step (hinge-G, CE on fakes, weighted L1, coefficient regression, mode seeking, feature matching).
    """

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int,
                 generator: FusionGenerator, discriminator: FusionDiscriminator, losses: LossSettings,
                 lr: float = 1e-4, betas: Sequence[float] = (0.0, 0.9), coefficient_low: float = 1.0,
                 coefficient_high: float = 10.0, corruption: bool = False, max_generate_batch: int = 512,
                 bn_recalibration_batches: int = 16) -> None:
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot)
        self.automatic_optimization = False
        self.net_g = generator
        self.net_d = discriminator
        self.losses = losses
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.coefficient_range = (float(coefficient_low), float(coefficient_high))
        self.corruption = bool(corruption)
        self.max_generate_batch = max(1, int(max_generate_batch))
        self.bn_recalibration_batches = max(0, int(bn_recalibration_batches))
        # the last few training supports (device tensors, not saved) for the end-of-epoch BN recalibration
        self._recent_supports: list[Tensor] = []

    # -- optimisation -------------------------------------------------------------------------------------
    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.net_g.parameters(), lr=self.lr, betas=self.betas)
        opt_d = torch.optim.Adam(self.net_d.parameters(), lr=self.lr, betas=self.betas)
        return [opt_g, opt_d]

    def compile_networks(self) -> None:
        """torch.compile the generator and the discriminator trunk in place (state-dict keys unchanged)."""
        self.net_g.compile()
        self.net_d.trunk.compile()

    def _coefficients(self, batch: int, k: int, device, generator: torch.Generator | None = None) -> Tensor:
        low, high = self.coefficient_range
        return sample_coefficients(batch, k, generator=generator, device=device, low=low, high=high)

    def _run_generator(self, support: Tensor, coefficients: Tensor, generator: torch.Generator | None = None,
                       return_attention: bool = False):
        encoder_input = corrupt_inputs(support, coefficients, generator) if self.corruption else None
        return self.net_g(support, coefficients, encoder_input=encoder_input, return_attention=return_attention)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        support: Tensor = batch["support"]
        labels: Tensor = batch["label"]
        b, k = support.shape[:2]
        w = self.losses
        regressor = self.net_d.regressor
        if regressor is not None and k != regressor.k_shot:
            raise ValueError(f"{type(self).__name__} was built for K={regressor.k_shot} (its coefficient "
                             f"regressor is K-specific) but the training batch has K={k}")
        opt_g, opt_d = self.optimizers()
        a = self._coefficients(2 * b, k, support.device)                    # rows [a1 (B); a2 (B)]
        support2 = torch.cat([support, support], dim=0)
        fake = self._run_generator(support2, a)                              # [2B, C, H, W] = [x1; x2]
        reals = support.reshape(b * k, *support.shape[2:])
        labels_real = labels.repeat_interleave(k)
        labels_fake = labels.repeat(2)
        logs: dict[str, Tensor] = {}

        # ---- D step --------------------------------------------------------------------------------------
        self.toggle_optimizer(opt_d)
        maps = self.net_d(torch.cat([reals, fake.detach()], dim=0))        # no batch statistics in D
        adv, cls = self.net_d.heads(maps)
        adv = adv.float()
        real_logit = adv[: b * k].reshape(b, k).mean(dim=1)                 # averaged before the hinge (release)
        fake_logit = adv[b * k:].reshape(2, b).mean(dim=0)
        d_adv = hinge_d(real_logit, fake_logit)
        loss_d = w.adv * d_adv
        logs["train/d_adv"] = d_adv
        if w.cla > 0:
            d_cla = F.cross_entropy(cls[: b * k].float(), labels_real)
            loss_d = loss_d + w.cla * d_cla
            logs["train/d_cla"] = d_cla
        if regressor is not None and w.sim > 0 and w.regressor_train == "fake":
            real_maps = maps[: b * k].reshape(b, k, *maps.shape[1:])
            d_sim = coefficient_regression_loss(regressor, torch.cat([real_maps, real_maps]), maps[b * k:], a,
                                                form="soft_ce")
            loss_d = loss_d + w.sim * d_sim
            logs["train/d_sim"] = d_sim
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        # ---- G step --------------------------------------------------------------------------------------
        self.toggle_optimizer(opt_g)
        with torch.no_grad():                      # the reals need no graph: D is frozen in this step
            real_maps = self.net_d(reals)
        fake_maps = self.net_d(fake)
        adv_f, cls_f = self.net_d.heads(fake_maps)
        g_adv = -adv_f.float().mean()
        loss_g = w.adv * g_adv
        logs["train/g_adv"] = g_adv
        if w.cla > 0:
            g_cla = F.cross_entropy(cls_f.float(), labels_fake)
            loss_g = loss_g + w.cla * g_cla
            logs["train/g_cla"] = g_cla
        if w.recons > 0:
            g_rec = weighted_l1(fake, support2, a, w.recons_form)
            loss_g = loss_g + w.recons * g_rec
            logs["train/g_recons"] = g_rec
        real_maps = real_maps.reshape(b, k, *real_maps.shape[1:])
        real_maps2 = torch.cat([real_maps, real_maps])
        if regressor is not None and w.sim > 0:
            g_sim = coefficient_regression_loss(regressor, real_maps2, fake_maps, a)
            loss_g = loss_g + w.sim * g_sim
            logs["train/g_sim"] = g_sim
        if w.mode_seeking > 0:
            m1, m2 = fake_maps.chunk(2)
            g_ms = mode_seeking_loss(m1, m2, a[:b], a[b:], w.mode_seeking_direction)
            loss_g = loss_g + w.mode_seeking * g_ms
            logs["train/g_mode_seeking"] = g_ms
        if w.matching_d > 0:
            g_fm = (fuse(a, real_maps2).float() - fake_maps.float()).abs().mean()
            loss_g = loss_g + w.matching_d * g_fm
            logs["train/g_matching_d"] = g_fm
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        logs["train/loss_d"] = loss_d
        logs["train/loss_g"] = loss_g
        self.log_dict({name: value.detach() for name, value in logs.items()}, on_step=True, on_epoch=False,
                      batch_size=b)

        if self.bn_recalibration_batches:
            self._recent_supports = (self._recent_supports + [support.detach()])[-self.bn_recalibration_batches:]
            # In the last batch of the epoch (not in on_train_epoch_end, which Lightning runs after the checkpoint
            # callback) so that checkpoints, figures and the evaluation all see the recalibrated statistics.
            if batch_idx + 1 == self.trainer.num_training_batches:
                self.recalibrate_batch_norm(self._recent_supports)

    @torch.no_grad()
    def recalibrate_batch_norm(self, supports: Sequence[Tensor]) -> None:
        """Re-estimate the generator's BN running statistics with the current weights ("precise BN").

        The EMA statistics mix estimates from small batches (the 2x2 to 8x8 maps of the deepest layers give few
        values per channel) taken while the weights moved; eval-mode generation was then visibly worse than
        train-mode generation on some classes (saturated blobs). Here every BN layer gets the plain average over
        ``supports`` (training batches [B, K, C, H, W]), each run as in training (2B episodes, fresh coefficients),
        averaged over DDP ranks so that every rank evaluates the same network.
        """
        if not supports:
            return
        norms = [m for m in self.net_g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        was_training = self.net_g.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None                    # cumulative average over the calls below
        self.net_g.train()
        try:
            for support in supports:
                b, k = support.shape[:2]
                self._run_generator(torch.cat([support, support]), self._coefficients(2 * b, k, support.device))
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            self.net_g.train(was_training)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            for m in norms:
                m.running_mean.copy_(trainer.strategy.reduce(m.running_mean, reduce_op="mean"))
                m.running_var.copy_(trainer.strategy.reduce(m.running_var, reduce_op="mean"))

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
        ``max_generate_batch``); coefficients (and the optional corruption) come from ``generator``.
        K may differ from the training K: only the discriminator's regressor is K-specific.
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
        """NAF attention per fusion stage: ``{stage: [B, K, h, w, h_e, w_e]}`` (empty for MatchingGAN).

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
        """``interpolation.png`` (coefficient sweep between two conditional images) and, with NAF,
        ``attention.png`` for one class's support [K, C, H, W] (see :mod:`fsgen_bench.methods.f2gan.figures`)."""
        from fsgen_bench.methods.f2gan.figures import write_method_figures

        return write_method_figures(self, support.to(self.device), out_dir)


# -- F2GAN -----------------------------------------------------------------------------------------------------
class F2GAN(FusionGAN):
    """F2GAN (Hong et al., ACM MM 2020). Keyword arguments = ``method:`` keys of configs/methods/f2gan.yaml."""

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
        naf_stages: Sequence[int] = (0, 1),
        naf_query: str = "decoder",
        naf_residual: bool = True,
        naf_key_channels: int | None = None,
        disc_base_channels: int = 32,
        disc_stages: int = 4,
        disc_max_channels: int = 512,
        disc_final_blocks: int = 2,
        regressor_widths: Sequence[int] = (256, 128, 64),
        regressor_activation: str = "lrelu",
        lr: float = 1e-4,
        betas: Sequence[float] = (0.0, 0.9),
        loss_adv: float = 1.0,
        loss_cla: float = 1.0,
        loss_recons: float = 1.0,
        recons_form: str = "fused",
        loss_sim: float = 1.0,
        regressor_train: str = "fake",
        loss_mode_seeking: float = 1.0,
        mode_seeking_direction: str = "diversity",
        loss_matching_d: float = 1.0,
        corruption: bool = False,
        coefficient_low: float = 1.0,
        coefficient_high: float = 10.0,
        max_generate_batch: int = 512,
        bn_recalibration_batches: int = 16,
    ) -> None:
        losses = LossSettings(adv=loss_adv, cla=loss_cla, recons=loss_recons, recons_form=recons_form, sim=loss_sim,
                              regressor_train=regressor_train, mode_seeking=loss_mode_seeking,
                              mode_seeking_direction=mode_seeking_direction, matching_d=loss_matching_d)
        net_g = FusionGenerator(
            channels, layer_sizes=layer_sizes, inner_layers=inner_layers, dropout=dropout, fusion_stages=naf_stages,
            fusion_factory=partial(_naf_factory, query=naf_query, residual=naf_residual, key_channels=naf_key_channels),
            bn_momentum=bn_momentum,
        )
        net_d = FusionDiscriminator(
            channels, num_seen_classes, k_shot, base_channels=disc_base_channels, num_stages=disc_stages,
            max_channels=disc_max_channels, final_blocks=disc_final_blocks, regressor=loss_sim > 0,
            regressor_widths=regressor_widths, regressor_activation=regressor_activation, lrelu_before_gap=False,
        )
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot,
                         generator=net_g, discriminator=net_d, losses=losses, lr=lr, betas=betas,
                         coefficient_low=coefficient_low, coefficient_high=coefficient_high, corruption=corruption,
                         max_generate_batch=max_generate_batch, bn_recalibration_batches=bn_recalibration_batches)
        self.save_hyperparameters()


def _naf_factory(decoder_channels: int, encoder_channels: int, *, query: str, residual: bool,
                 key_channels: int | None) -> NAF:
    return NAF(decoder_channels, encoder_channels, query=query, residual=residual, key_channels=key_channels)


__all__ = ["F2GAN", "FusionGAN", "FusionDiscriminator", "CoefficientRegressor", "LossSettings"]
