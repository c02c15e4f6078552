"""GMN: Generative Matching Networks.

Bartunov & Vetrov, "Few-shot Generative Modelling with Generative Matching Networks", AISTATS 2018; original
code sbos/gmn @ b7d6ec5 (``one_shot.py``, ``utils.py``, ``scg/``). See CARD.md for what is re-implemented
and every deviation.

A sequential conditional VAE. An episode x_1..x_T of one class is modelled one image at a time: image t is
generated conditioned on the images before it through attention ("matching") over a memory of their
encoded features. The memory always holds one extra learnable *dummy* slot, so the first image (empty
memory) is generated unconditionally and attention can fall back to it.

* encoder f: a small ResNet (stride-2 sections down to <= 4 px) -> features of ``feature_dim``;
* a memory read (:class:`SetRepresentation`): a learnable initial state, ``hops`` x [query from the state,
  softmax over cosine similarity x learned strength, read r = sum a_i m_i, GRU state update];
* prior p(z_t | x_<t): its own memory read (query from the state), MLP -> Gaussian;
* recognition q(z_t | x_t, x_<t): a memory read whose query also sees f(x_t), linear -> Gaussian;
* generator p(x_t | z_t, x_<t): a memory read whose query also sees z_t, then a deconvolutional mirror of
  the encoder -> per-pixel Bernoulli logits.

Training maximises the ELBO summed over the K images of each episode (all steps at once: step t's memory is
the episode's features masked to j < t). Generation conditions on all K support images: z ~ prior, then
the decoder mean (sigmoid of the logits) mapped to [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsgen_bench.errors import UserError
from fsgen_bench.methods.base import FewShotGenerator


def _randn(shape, generator: torch.Generator | None, device: torch.device) -> Tensor:
    # Drawn on the generator's device (it may differ from the model's), then moved.
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def _half(size: int) -> int:
    return -(-size // 2)        # stride-2 conv, kernel 3, padding 1: ceil(H / 2)


def encoder_sizes(image_size: int, min_size: int = 4) -> list[int]:
    """Spatial sizes of the encoder, input first: halve until <= ``min_size`` (28 -> 14, 7, 4; 96 -> ... 6, 3).

    GMN's Omniglot encoder goes 28 -> 13 -> 6 -> 3 with VALID convs; 'same'-padded stride-2 convs give
    ceil(H / 2) at every size the suite uses.
    """
    sizes = [int(image_size)]
    while sizes[-1] > min_size:
        sizes.append(_half(sizes[-1]))
    return sizes


class ResSection(nn.Module):
    """GMN's ResNet section: a resampling conv (PReLU), one residual conv block (PReLU after the sum), and a
    1x1-conv shortcut from the section input, resampled the same way.

    ``down``: stride-2 conv and average-pooled shortcut. Otherwise (decoder): nearest resize to ``size``
    then conv, and a resized shortcut.
    """

    def __init__(self, in_ch: int, out_ch: int, *, down: bool) -> None:
        super().__init__()
        self.down = down
        self.scale = nn.Conv2d(in_ch, out_ch, 3, stride=2 if down else 1, padding=1)
        self.scale_act = nn.PReLU(out_ch)
        self.block = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.block_act = nn.PReLU(out_ch)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, size: int | None = None) -> Tensor:
        if self.down:
            h = self.scale_act(self.scale(x))
            short = F.avg_pool2d(self.shortcut(x), 2, ceil_mode=True)
        else:
            x = F.interpolate(x, size=(size, size), mode="nearest")
            h = self.scale_act(self.scale(x))
            short = self.shortcut(x)
        h = self.block_act(h + self.block(h))
        return h + short


class Encoder(nn.Module):
    """[N, C, H, W] -> [N, feature_dim]: ResNet sections down to <= 4 px, flatten, linear."""

    def __init__(self, channels: int, sizes: list[int], widths: list[int], feature_dim: int) -> None:
        super().__init__()
        ch, sections = channels, []
        for w in widths:
            sections.append(ResSection(ch, w, down=True))
            ch = w
        self.sections = nn.ModuleList(sections)
        self.fc = nn.Linear(ch * sizes[-1] * sizes[-1], feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        for section in self.sections:
            x = section(x)
        return self.fc(x.flatten(1))


class Decoder(nn.Module):
    """[N, in_dim] -> logits [N, C, H, W]: linear to the encoder's last map, mirrored sections, 1x1 conv."""

    def __init__(self, in_dim: int, channels: int, sizes: list[int], widths: list[int]) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.start_ch = widths[0]
        self.fc = nn.Linear(in_dim, widths[0] * sizes[-1] * sizes[-1])
        self.fc_act = nn.PReLU(widths[0])
        ch, sections = widths[0], []
        for w in widths[1:]:
            sections.append(ResSection(ch, w, down=False))
            ch = w
        self.sections = nn.ModuleList(sections)
        self.out = nn.Conv2d(ch, channels, 1)

    def forward(self, h: Tensor) -> Tensor:
        s = self.sizes[-1]
        x = self.fc_act(self.fc(h).view(h.shape[0], self.start_ch, s, s))
        for section, size in zip(self.sections, reversed(self.sizes[:-1])):
            x = section(x, size)
        return self.out(x)


class SetRepresentation(nn.Module):
    """GMN's memory read: attention over a memory of features plus a learnable dummy slot, with a GRU state.

    ``forward(memory [N, M, F], mask [N, M] (True = a real slot), query(state) -> [N, F],
    strength(state) -> [N, 1], hops)`` returns (read r [N, F], state [N, S]).
    """

    def __init__(self, feature_dim: int, state_dim: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(feature_dim, state_dim)
        bound = 1.0 / feature_dim                # the original's U(-1/F, 1/F) initial state and dummy slot
        self.dummy = nn.Parameter(torch.empty(feature_dim).uniform_(-bound, bound))
        self.init_state = nn.Parameter(torch.empty(state_dim).uniform_(-bound, bound))

    def forward(self, memory: Tensor, mask: Tensor, query, strength, hops: int) -> tuple[Tensor, Tensor]:
        n = memory.shape[0]
        mem = torch.cat([memory, self.dummy.expand(n, 1, -1)], dim=1)
        valid = torch.cat([mask, mask.new_ones(n, 1)], dim=1)
        state = self.init_state.expand(n, -1)
        if hops == 0:                             # the original's hops=0 branch: the mean of the memory
            w = valid.to(mem.dtype)
            r = (mem * w[..., None]).sum(1) / w.sum(1, keepdim=True)
            return r, self.cell(r, state)
        mem_unit = F.normalize(mem, dim=-1, eps=1e-12)
        r = mem[:, 0]
        for _ in range(hops):
            q = F.normalize(query(state), dim=-1, eps=1e-12)
            logits = torch.einsum("nf,nmf->nm", q, mem_unit) * strength(state)      # cosine x strength
            a = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=-1)
            r = torch.einsum("nm,nmf->nf", a, mem)
            state = self.cell(r, state)
        return r, state


def _gaussian(params: Tensor) -> tuple[Tensor, Tensor]:
    mu, pre_sigma = params.chunk(2, dim=-1)
    return mu, F.softplus(pre_sigma) + 1e-4      # softplus keeps sigma > 0 (the original's pre_sigma)


def gaussian_kl(mu_q: Tensor, sd_q: Tensor, mu_p: Tensor, sd_p: Tensor) -> Tensor:
    """KL(N(mu_q, sd_q^2) || N(mu_p, sd_p^2)) summed over the last dimension."""
    var_ratio = (sd_q / sd_p) ** 2
    return 0.5 * (var_ratio + ((mu_q - mu_p) / sd_p) ** 2 - 1 - var_ratio.log()).sum(-1)


class GMN(FewShotGenerator):
    """GMN (Bartunov & Vetrov, AISTATS 2018). Keyword arguments = the ``method:`` keys of configs/methods/gmn.yaml,
    which holds every default and says why."""

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int, latent_dim: int,
                 state_dim: int, feature_dim: int, prior_hidden: int, encoder_widths: tuple[int, ...], hops: int,
                 prior_hops: int, binarize: bool | None, lr: float, betas: tuple[float, float],
                 lr_milestones: tuple[int, ...], lr_gamma: float, max_generate_batch: int) -> None:
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot)
        self.save_hyperparameters()
        self.latent_dim = int(latent_dim)
        self.hops = int(hops)
        self.prior_hops = int(prior_hops)
        self.binarize = (channels == 1) if binarize is None else bool(binarize)
        self.lr = float(lr)
        self.betas = tuple(float(b) for b in betas)
        self.lr_milestones = [int(m) for m in lr_milestones]
        self.lr_gamma = float(lr_gamma)
        self.max_generate_batch = max(1, int(max_generate_batch))

        sizes = encoder_sizes(image_size)
        widths = [int(w) for w in encoder_widths]
        n_sections = len(sizes) - 1
        # More sections than widths listed (64/96 px need 4/5): repeat the last width.
        widths = (widths + [widths[-1]] * n_sections)[:n_sections]
        S, F_, Z = int(state_dim), int(feature_dim), self.latent_dim
        self.encoder = Encoder(channels, sizes, widths, F_)
        # The decoder mirrors the encoder with each width halved one step later: (16, 32, 32) -> 32, 16, 8.
        dec_widths = list(reversed(widths)) + [max(1, widths[0] // 2)]
        self.decoder = Decoder(Z + F_ + S, channels, sizes, dec_widths)

        # Recognition and generation share one memory reader (the original's `set_repr`); the prior has its own.
        self.set_repr = SetRepresentation(F_, S)
        self.prior_repr = SetRepresentation(F_, S)
        self.rec_query = nn.Sequential(nn.Linear(S + F_, F_), nn.PReLU(F_))
        self.rec_strength = nn.Linear(S, 1)
        self.gen_query = nn.Sequential(nn.Linear(S + Z, F_), nn.PReLU(F_))
        self.gen_strength = nn.Linear(S, 1)
        self.prior_query = nn.Sequential(nn.Linear(S, F_), nn.PReLU(F_))
        self.prior_strength = nn.Linear(S, 1)
        self.prior_net = nn.Sequential(nn.Linear(F_ + S, int(prior_hidden)), nn.PReLU(int(prior_hidden)),
                                       nn.Linear(int(prior_hidden), 2 * Z))
        self.posterior_net = nn.Linear(F_ + F_ + S, 2 * Z)

    # -- the three conditionals ----------------------------------------------------------------------------
    def prior(self, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        r, s = self.prior_repr(memory, mask, self.prior_query, self.prior_strength, self.prior_hops)
        return _gaussian(self.prior_net(torch.cat([r, s], -1)))

    def posterior(self, feat: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        query = lambda state: self.rec_query(torch.cat([state, feat], -1))
        r, s = self.set_repr(memory, mask, query, self.rec_strength, self.hops)
        return _gaussian(self.posterior_net(torch.cat([feat, r, s], -1)))

    def decode(self, z: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        query = lambda state: self.gen_query(torch.cat([state, z], -1))
        r, s = self.set_repr(memory, mask, query, self.gen_strength, self.hops)
        return self.decoder(torch.cat([z, r, s], -1))

    # -- the sequential ELBO -------------------------------------------------------------------------------
    def neg_elbo(self, episodes: Tensor, *, targets: Tensor | None = None, noise: Tensor | None = None) -> dict:
        """-ELBO of episodes [B, T, C, H, W] in [-1, 1], image t conditioned on images < t.

        ``targets`` (default: (x + 1) / 2, binarised when ``binarize``) are the Bernoulli targets;
        ``noise`` [B, T, latent] the reparameterisation noise (default: global RNG). All T steps run as one
        batch of B*T rows; row (b, t) reads the memory of episode b masked to images j < t.
        Returns per-episode means over the batch: ``loss`` (-ELBO summed over the T images), ``recon``, ``kl``.
        """
        b, t = episodes.shape[:2]
        flat = episodes.reshape(b * t, *episodes.shape[2:])
        feats = self.encoder(flat).view(b, t, -1)
        memory = feats.unsqueeze(1).expand(b, t, t, feats.shape[-1]).reshape(b * t, t, -1)
        steps = torch.arange(t, device=episodes.device)
        mask = (steps[None, :] < steps[:, None]).expand(b, t, t).reshape(b * t, t)      # slot j < step t
        feat_rows = feats.reshape(b * t, -1)

        mu_p, sd_p = self.prior(memory, mask)
        mu_q, sd_q = self.posterior(feat_rows, memory, mask)
        eps = torch.randn_like(mu_q) if noise is None else noise.reshape(b * t, -1).to(mu_q)
        z = mu_q + sd_q * eps
        logits = self.decode(z, memory, mask)

        if targets is None:
            targets = (flat + 1) / 2
            if self.binarize:
                # The paper's dynamic binarisation: a fresh Bernoulli draw of the intensities every batch.
                targets = torch.bernoulli(targets.clamp(0, 1))
        else:
            targets = targets.reshape(flat.shape)
        recon = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).sum(1)
        kl = gaussian_kl(mu_q, sd_q, mu_p, sd_p)
        recon, kl = recon.view(b, t).sum(1).mean(), kl.view(b, t).sum(1).mean()
        return {"loss": recon + kl, "recon": recon, "kl": kl}

    # -- Lightning ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        support = batch["support"]
        if support.shape[1] < 2:
            raise UserError(
                "GMN trains on the sequential ELBO of an episode (image t conditioned on images < t), so it "
                f"needs data.k_shot >= 2; got K={support.shape[1]}"
            )
        out = self.neg_elbo(support)
        k = support.shape[1]
        self.log_dict({"gmn/neg_elbo": out["loss"].detach(), "gmn/recon": out["recon"].detach(),
                       "gmn/kl": out["kl"].detach(), "gmn/nats_per_image": out["loss"].detach() / k},
                      on_step=True, on_epoch=False, prog_bar=False, batch_size=support.shape[0])
        return out["loss"]

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas)
        if not self.lr_milestones:
            return opt
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=self.lr_milestones, gamma=self.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # -- the contract ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        """[B, num, C, H, W]: z ~ p(z | all K support images), decoder mean mapped to [-1, 1]."""
        self.check_support(support)
        b, k = support.shape[:2]
        feats = self.encoder(support.reshape(b * k, *support.shape[2:]).to(self.dtype)).view(b, k, -1)
        mask = torch.ones(b, k, dtype=torch.bool, device=feats.device)
        mu_p, sd_p = self.prior(feats, mask)                                   # [B, Z]: deterministic reads
        eps = _randn((b, num, self.latent_dim), generator, feats.device)
        z = (mu_p[:, None] + sd_p[:, None] * eps).reshape(b * num, -1)
        rows = torch.arange(b, device=feats.device).repeat_interleave(num)
        out = []
        for lo in range(0, b * num, self.max_generate_batch):
            idx = rows[lo:lo + self.max_generate_batch]
            logits = self.decode(z[lo:lo + self.max_generate_batch], feats[idx], mask[idx])
            out.append(torch.sigmoid(logits) * 2 - 1)
        return torch.cat(out).view(b, num, *support.shape[2:]).to(support.dtype)
