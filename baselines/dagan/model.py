"""DAGAN: Data Augmentation Generative Adversarial Networks.

Antoniou, Storkey & Edwards, "Data Augmentation Generative Adversarial Networks", arXiv 1711.04340 (2017);
original code AntreasAntoniou/DAGAN @ 6f1a503 (``dagan_architectures.py``, ``dagan_networks_wgan.py``,
``experiment_builder.py``). See CARD.md for what is re-implemented and every deviation.

* Generator G(x, z): the UResNet encoder of :mod:`fsgen_bench.methods.blocks` over one conditional image x;
  a decoder that walks back up the encoder resolutions, with z (100-d) projected by dense layers to maps of
  8, 4 and 2 channels (dagan_architectures.py L264-276, halving from 8) concatenated into the first three
  decoder stages (L283), U-Net skips from the encoder after
  every upscale, x itself concatenated at the full-resolution stage, then 2 x conv64 -> conv -> tanh.
* Critic D(x, y): a *pair* critic on the channel concatenation [x, y] (2C channels): the same
  densely-connected multi-layer pattern with LayerNorm (no batch statistics, as WGAN-GP requires) and
  dropout; head GAP -> dense(1024, LReLU), concatenated with the flattened last map -> dense(1).
* WGAN-GP (dagan_networks_wgan.py L167-186): L_D = E[D(x, G(x, z))] - E[D(x, x')] + 10 GP, GP on interpolates
  between x' and G(x, z) (the conditional x fixed), with the release's norm or WGAN-GP's (``gp_norm``);
  L_G = -E[D(x, G(x, z))]. ``critic_steps`` critic updates (each on a fresh batch) per
  generator update; Adam(1e-4, betas (0, 0.9)) for both.

Training pairs come from an episode: x = support[:, 0], x' = support[:, 1] (two images of one class), so
training needs K >= 2. DAGAN conditions on one image; with K > 1 support images at generation, generated
image j is conditioned on support[:, j % K].
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsgen_bench.errors import UserError
from fsgen_bench.methods.base import FewShotGenerator
from fsgen_bench.methods.batchnorm import BatchNormRecalibration
from fsgen_bench.methods.blocks import LRELU_SLOPE, ConvLReLUBN, DenseInnerLayers, UResNetEncoder, conv2d, init_weights

#: gradient-penalty norms: the release's (per sample, column and channel) or WGAN-GP's per-sample norm
GP_NORMS = ("height", "sample")


def _randn(shape, generator: torch.Generator | None, device: torch.device) -> Tensor:
    # Drawn on the generator's device (it may differ from the model's), then moved.
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def _half(size: int) -> int:
    return -(-size // 2)            # a stride-2 'same' conv: ceil(H / 2), as the shared encoder


def encoder_sizes(image_size: int, blocks: int) -> list[int]:
    """[H, size of block 0, ..., size of block L-1]: block i is at ceil(H / 2^(i+1))."""
    sizes = [int(image_size)]
    for _ in range(blocks):
        sizes.append(_half(sizes[-1]))
    return sizes


# ---------------------------------------------------------------------------------------------------------
# Generator


class DAGANGenerator(nn.Module):
    """G(x, z) -> image in [-1, 1]; see the module docstring for the layout (dagan_architectures.py
    ``UResNetGenerator``)."""

    def __init__(self, *, image_size: int, channels: int, layer_sizes: list[int], inner_layers: int,
                 dropout: float, z_dim: int, z_channels: list[int], bn_momentum: float, sn: bool) -> None:
        super().__init__()
        depth = len(layer_sizes)
        self.depth = depth
        self.encoder = UResNetEncoder(channels, layer_sizes, inner_layers, dropout, sn=sn, bn_momentum=bn_momentum)
        sizes = encoder_sizes(image_size, depth)
        # Decoder stage s (s = 0..depth) works at sizes[depth - s]: the bottleneck first, the image size last.
        self.stage_sizes = [sizes[depth - s] for s in range(depth + 1)]
        z_channels = [int(c) for c in z_channels][: depth + 1]
        self.z_channels = z_channels
        # z is projected to an h x w x c map for each of the first stages (the release: 8, 4, 2 channels).
        self.z_proj = nn.ModuleList(
            nn.Linear(z_dim, c * self.stage_sizes[s] ** 2) for s, c in enumerate(z_channels)
        )
        self.inners = nn.ModuleList()
        self.ups = nn.ModuleList()
        ch = layer_sizes[-1]
        for s in range(depth + 1):
            idx = depth - 1 - s                                  # the encoder block this stage mirrors
            if s < len(z_channels):
                ch += z_channels[s]
            if idx < 0:
                ch += channels                                   # the conditional image joins the last stage
            stage_ch = layer_sizes[max(idx, 0)]
            inner = DenseInnerLayers(ch, stage_ch, inner_layers, sn=sn, bn_momentum=bn_momentum)
            self.inners.append(inner)
            ch = inner.out_channels
            if idx >= 0:
                # Upscale (nearest resize + conv) to the next resolution, then the U-Net skip from the
                # encoder block at that resolution (none after the last upscale, which lands on the image).
                self.ups.append(ConvLReLUBN(ch, stage_ch, sn=sn, dropout=dropout, bn_momentum=bn_momentum))
                ch = stage_ch + (layer_sizes[idx - 1] if idx - 1 >= 0 else 0)
        self.head = nn.Sequential(
            ConvLReLUBN(ch, layer_sizes[0], sn=sn, bn_momentum=bn_momentum),
            ConvLReLUBN(layer_sizes[0], layer_sizes[0], sn=sn, bn_momentum=bn_momentum),
            conv2d(layer_sizes[0], channels, 3, sn=False),
        )
        init_weights(self)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        feats = self.encoder(x)
        h = feats[-1]
        n = x.shape[0]
        for s in range(self.depth + 1):
            idx = self.depth - 1 - s
            if s < len(self.z_proj):
                size = h.shape[-1]
                zmap = self.z_proj[s](z).view(n, self.z_channels[s], size, size)
                h = torch.cat([zmap.to(h.dtype), h], dim=1)
            if idx < 0:
                h = torch.cat([h, x.to(h.dtype)], dim=1)
            h = self.inners[s](h)
            if idx >= 0:
                target = feats[idx - 1].shape[-2:] if idx - 1 >= 0 else x.shape[-2:]
                h = self.ups[s](F.interpolate(h, size=tuple(target), mode="nearest"))
                if idx - 1 >= 0:
                    h = torch.cat([h, feats[idx - 1]], dim=1)
        return torch.tanh(self.head(h))


# ---------------------------------------------------------------------------------------------------------
# Pair critic


def _layer_norm(channels: int) -> nn.Module:
    # TF layer_norm on a conv map normalises each sample over (C, H, W) with a per-channel affine: GroupNorm
    # with one group. Per-sample statistics keep WGAN-GP's per-sample gradient penalty valid.
    return nn.GroupNorm(1, channels)


class _ConvLReLULN(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [conv2d(in_ch, out_ch, 3, stride, sn=False), nn.LeakyReLU(LRELU_SLOPE),
                                   _layer_norm(out_ch)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class PairCritic(nn.Module):
    """D([x, y]) -> score: DAGAN's DenseNet-style discriminator with LayerNorm (dagan_architectures.py
    ``Discriminator``).

    Block 0: conv3x3 s2 -> LReLU -> LN. Block i >= 1: ``inner_layers`` stride-1 convs, each reading the block
    input and all earlier inner outputs, then a stride-2 conv over all of them -> LReLU -> LN -> dropout.
    Head: GAP -> dense(head_width, LReLU), concatenated with the flattened last map -> dense(1).
    """

    def __init__(self, *, image_size: int, in_channels: int, layer_sizes: list[int], inner_layers: int,
                 dropout: float, head_width: int) -> None:
        super().__init__()
        self.first = _ConvLReLULN(in_channels, layer_sizes[0], 2)
        self.inners = nn.ModuleList()
        self.downs = nn.ModuleList()
        ch = layer_sizes[0]
        for size in layer_sizes[1:]:
            inner = nn.ModuleList(_ConvLReLULN(ch + j * size, size, 1) for j in range(inner_layers))
            self.inners.append(inner)
            self.downs.append(_ConvLReLULN(ch + inner_layers * size, size, 2, dropout))
            ch = size
        last = encoder_sizes(image_size, len(layer_sizes))[-1]
        self.gap_fc = nn.Linear(ch, head_width)
        self.out = nn.Linear(head_width + ch * last * last, 1)

    def forward(self, pair: Tensor) -> Tensor:
        h = self.first(pair)
        for inner, down in zip(self.inners, self.downs):
            feats = [h]
            for layer in inner:
                feats.append(layer(torch.cat(feats, dim=1)))
            h = down(torch.cat(feats, dim=1))
        g = F.leaky_relu(self.gap_fc(h.mean(dim=(2, 3))), LRELU_SLOPE)
        return self.out(torch.cat([g, h.flatten(1)], dim=1)).squeeze(1)


def make_pairs(support: Tensor) -> tuple[Tensor, Tensor]:
    """Training pairs of an episode batch [B, K, C, H, W]: x = image 0, x' = image 1 (same class)."""
    if support.ndim != 5 or support.shape[1] < 2:
        raise UserError(
            "DAGAN trains on pairs of images of one class (x = support[:, 0], x' = support[:, 1]), so it needs "
            f"data.k_shot >= 2; got support of shape {tuple(support.shape)}"
        )
    return support[:, 0], support[:, 1]


# ---------------------------------------------------------------------------------------------------------
# The method


class DAGAN(FewShotGenerator):
    """DAGAN (Antoniou et al. 2017). Keyword arguments = the ``method:`` keys of configs/methods/dagan.yaml,
    which holds every default and says why."""

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int,
                 layer_sizes: Sequence[int], inner_layers: int, dropout: float, z_dim: int,
                 z_channels: Sequence[int], bn_momentum: float, spectral_norm: bool, disc_layer_sizes: Sequence[int],
                 disc_inner_layers: int, disc_head_width: int, gp_weight: float, gp_norm: str, critic_steps: int,
                 lr: float, betas: Sequence[float], augment_rot90: bool, max_generate_batch: int,
                 bn_recalibration_batches: int) -> None:
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot)
        if int(k_shot) < 2:
            raise UserError("DAGAN trains on pairs of images of one class (x = support[:, 0], x' = support[:, 1]): "
                            f"set data.k_shot >= 2 (got {k_shot})")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.z_dim = int(z_dim)
        self.gp_weight = float(gp_weight)
        if gp_norm not in GP_NORMS:
            raise UserError(f"method.gp_norm must be one of {', '.join(GP_NORMS)}; got {gp_norm!r}")
        self.gp_norm = gp_norm
        self.critic_steps = int(critic_steps)
        if self.critic_steps < 1:
            raise UserError(f"method.critic_steps must be >= 1; got {critic_steps}")
        self.lr = float(lr)
        self.betas = tuple(float(b) for b in betas)
        self.augment_rot90 = bool(augment_rot90)
        self.max_generate_batch = max(1, int(max_generate_batch))
        self.generator = DAGANGenerator(
            image_size=image_size, channels=channels, layer_sizes=[int(s) for s in layer_sizes],
            inner_layers=int(inner_layers), dropout=float(dropout), z_dim=self.z_dim,
            z_channels=list(z_channels), bn_momentum=float(bn_momentum), sn=bool(spectral_norm),
        )
        self.critic = PairCritic(
            image_size=image_size, in_channels=2 * channels, layer_sizes=[int(s) for s in disc_layer_sizes],
            inner_layers=int(disc_inner_layers), dropout=float(dropout), head_width=int(disc_head_width),
        )
        init_weights(self.critic)
        # Critic updates so far; a generator update follows every `critic_steps`-th. A plain int (no host
        # sync), kept in checkpoints through on_save_checkpoint so a resumed run keeps its phase.
        self.critic_updates = 0
        self.bn_recalibration = BatchNormRecalibration(bn_recalibration_batches)

    # -- training -------------------------------------------------------------------------------------------
    def critic_score(self, x: Tensor, y: Tensor) -> Tensor:
        """D on the pair (x, y): the two images concatenated along channels."""
        return self.critic(torch.cat([x, y], dim=1))

    def _rotate_pairs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        # One random multiple of 90 degrees per pair, the same for both images (so they stay one class).
        k = torch.randint(4, (x.shape[0],), device=x.device)
        xs, ys = x.clone(), y.clone()
        for r in range(1, 4):
            sel = (k == r)[:, None, None, None]
            xs = torch.where(sel, torch.rot90(x, r, dims=(2, 3)), xs)
            ys = torch.where(sel, torch.rot90(y, r, dims=(2, 3)), ys)
        return xs, ys

    def gradient_penalty(self, x: Tensor, real: Tensor, fake: Tensor) -> Tensor:
        """E[(||grad_y D(x, y)|| - 1)^2] on y = e x' + (1 - e) G(x, z). ``gp_norm``: ``height`` is the release's
        norm (dagan_networks_wgan.py L183-185: the sum of squares over axis 1 of the NHWC gradient, i.e. one norm
        per (sample, column, channel), averaged); ``sample`` the per-sample norm of WGAN-GP (Gulrajani et al.)."""
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        interp = (eps * real + (1 - eps) * fake).requires_grad_(True)
        score = self.critic_score(x, interp)
        (grad,) = torch.autograd.grad(score.sum(), interp, create_graph=True)
        norms = grad.norm(dim=2) if self.gp_norm == "height" else grad.flatten(1).norm(dim=1)
        return ((norms - 1) ** 2).mean()

    def critic_loss(self, x: Tensor, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """WGAN-GP critic loss E[D(x, G(x, z))] - E[D(x, x')] + gp_weight * GP (dagan_networks_wgan.py L167-186)."""
        d_real = self.critic_score(x, real).mean()
        d_fake = self.critic_score(x, fake).mean()
        gp = self.gradient_penalty(x, real, fake)
        loss = d_fake - d_real + self.gp_weight * gp
        return loss, {"dagan/d_loss": loss, "dagan/wdist": d_real - d_fake, "dagan/gp": gp}

    def generator_loss(self, x: Tensor, fake: Tensor) -> Tensor:
        """-E[D(x, G(x, z))] (dagan_networks_wgan.py L168)."""
        return -self.critic_score(x, fake).mean()

    def training_step(self, batch: dict, batch_idx: int) -> None:
        x, real = make_pairs(batch["support"])
        if self.augment_rot90:
            x, real = self._rotate_pairs(x, real)
        opt_g, opt_d = self.optimizers()
        n = x.shape[0]

        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.generator(x, torch.randn(n, self.z_dim, device=x.device))
        d_loss, logs = self.critic_loss(x, real, fake)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.critic_updates += 1

        if self.critic_updates % self.critic_steps == 0:
            self.toggle_optimizer(opt_g)
            g_loss = self.generator_loss(x, self.generator(x, torch.randn(n, self.z_dim, device=x.device)))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            logs["dagan/g_loss"] = g_loss
        self.log_dict({k: v.detach() for k, v in logs.items()}, on_step=True, on_epoch=False, prog_bar=False,
                      batch_size=n)
        self.bn_recalibration.step(self, batch["support"], batch_idx, self.generator, self._recalibration_forward)

    def _recalibration_forward(self, support: Tensor) -> None:
        x = make_pairs(support)[0]
        self.generator(x, torch.randn(x.shape[0], self.z_dim, device=x.device))

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas)
        opt_d = torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=self.betas)
        return [opt_g, opt_d]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dagan_critic_updates"] = self.critic_updates

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.critic_updates = int(checkpoint.get("dagan_critic_updates", 0))

    # -- the contract ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        """[B, num, C, H, W]; image j is G(support[:, j % K], z_j) (DAGAN conditions on one image).

        The generator runs in inference mode (BatchNorm running statistics, no dropout), as the release samples
        (utils/sampling.py L15, L25 feed training_phase False, which turns its dropout off), whatever the module's
        mode, so the images depend only on ``support`` and ``generator``.
        """
        self.check_support(support)
        b, k = support.shape[:2]
        cond = support[:, torch.arange(num, device=support.device) % k].reshape(b * num, *support.shape[2:])
        z = _randn((b * num, self.z_dim), generator, self.device)
        was_training = self.generator.training
        self.generator.eval()
        try:
            out = [self.generator(cond[lo:lo + self.max_generate_batch].to(self.dtype),
                                  z[lo:lo + self.max_generate_batch])
                   for lo in range(0, b * num, self.max_generate_batch)]
        finally:
            self.generator.train(was_training)
        return torch.cat(out).clamp(-1, 1).view(b, num, *support.shape[2:]).to(support.dtype)
