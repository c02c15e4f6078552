"""FIGR: Few-shot Image Generation with Reptile.

Clouâtre & Demers, "FIGR: Few-shot Image Generation with Reptile", arXiv 1901.02199 (2019); original code
OctThe16th/FIGR @ 18cd48f (``train.py``, ``model.py``). See CARD.md for what is re-implemented and every
deviation.

An unconditional WGAN-GP (DCGAN-like generator and critic with LayerNorm and PReLU) whose weights are
meta-learned with Reptile (Nichol et al. 2018) across the seen classes:

* a *task* is one episode (one seen class); its K support images, cycled to ``inner_batch`` images, are the
  real data of the inner loop;
* the inner loop runs ``inner_steps`` x (one critic step + one generator step) of plain SGD on a functional
  copy of the weights (a dict of fast weights used through :func:`torch.func.functional_call`);
* the outer update sets ``grad := theta - mean_over_tasks(theta')`` and steps Adam.

The inner loops of the B tasks of a batch are independent, so they run together under
:func:`torch.func.vmap` (one stacked copy of the weights per task); ``vectorise_tasks=False`` runs the same
functions in a Python loop over tasks instead (identical numbers up to float rounding, slower on small nets).

At test time ``adapt(support)`` fine-tunes a deep copy of the meta-model on the K images of the unseen class
(``adapt_steps`` inner steps) and returns it; the meta-weights are never changed. ``generate`` on the
meta-model adapts one copy per episode and samples z ~ N(0, I) from it.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from fsgen_bench.errors import UserError
from fsgen_bench.methods.base import FewShotGenerator

#: gradient-penalty norms: the release's per-pixel norm over channels, or WGAN-GP's per-sample norm
GP_NORMS = ("pixel", "sample")


# ---------------------------------------------------------------------------------------------------------
# Randomness: every draw goes through a torch.Generator when one is given (contract: fixed generator, same
# images). A generator may live on another device than the model (CPU generator, CUDA model): draw on the
# generator's device, then move.

def _randn(shape, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def _rand(shape, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def _randint(high: int, shape, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randint(high, shape, generator=generator, device=where).to(device)


def upsampling_plan(image_size: int, max_stages: int) -> tuple[int, int]:
    """(start size, number of 2x stages) with ``start * 2**stages == image_size``.

    FIGR's DCGAN starts at H/16 and doubles four times (32 px: 2x2). Sizes that are not a multiple of 16
    stop halving at the first odd size: 28 -> 7 with 2 stages, 96 -> 6 with 4 stages, 64 -> 4 with 4.
    """
    size, stages = int(image_size), 0
    while stages < max_stages and size % 2 == 0 and size // 2 >= 2:
        size //= 2
        stages += 1
    return size, stages


def layer_norm(channels: int) -> nn.Module:
    # TF's layer_norm on a conv map normalises each sample over (C, H, W) with a per-channel affine:
    # GroupNorm with one group is exactly that, and it does not fix the spatial size at construction.
    return nn.GroupNorm(1, channels)


class FIGRGenerator(nn.Module):
    """z -> linear -> (width*2^S) x s0 x s0 -> S x [conv5x5 -> PReLU -> LN -> 2x upsample] -> conv5x5 -> tanh."""

    def __init__(self, *, image_size: int, channels: int, z_dim: int, width: int, max_stages: int) -> None:
        super().__init__()
        self.start, self.stages = upsampling_plan(image_size, max_stages)
        self.z_dim = z_dim
        ch = width * 2 ** self.stages                       # FIGR: 64*16 channels at H/16 for 4 stages
        self.ch0 = ch
        self.fc = nn.Linear(z_dim, ch * self.start * self.start)
        self.fc_act = nn.PReLU(ch)
        self.fc_norm = layer_norm(ch)
        blocks = []
        for _ in range(self.stages):
            blocks += [nn.Conv2d(ch, ch // 2, 5, padding=2), nn.PReLU(ch // 2), layer_norm(ch // 2),
                       nn.Upsample(scale_factor=2, mode="nearest")]
            ch //= 2
        self.body = nn.Sequential(*blocks)
        self.out = nn.Conv2d(ch, channels, 5, padding=2)

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.ch0, self.start, self.start)
        h = self.fc_norm(self.fc_act(h))
        return torch.tanh(self.out(self.body(h)))


class FIGRCritic(nn.Module):
    """conv5x5 -> LN -> PReLU, then S x [conv5x5 (2x channels) -> LN -> PReLU -> avgpool 2], then linear."""

    def __init__(self, *, image_size: int, channels: int, width: int, max_stages: int) -> None:
        super().__init__()
        start, stages = upsampling_plan(image_size, max_stages)
        ch = width
        layers = [nn.Conv2d(channels, ch, 5, padding=2), layer_norm(ch), nn.PReLU(ch)]
        for _ in range(stages):
            layers += [nn.Conv2d(ch, ch * 2, 5, padding=2), layer_norm(ch * 2), nn.PReLU(ch * 2), nn.AvgPool2d(2)]
            ch *= 2
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(ch * start * start, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x).flatten(1)).squeeze(1)


class FIGR(FewShotGenerator):
    """FIGR (Clouatre & Demers 2019). Keyword arguments = the ``method:`` keys of configs/methods/figr.yaml,
    which holds every default and says why."""

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int, z_dim: int, width: int,
                 max_stages: int, inner_steps: int, inner_lr: float, inner_batch: int, gp_weight: float,
                 gp_norm: str, meta_lr: float, meta_betas: tuple[float, float], adapt_steps: int,
                 vectorise_tasks: bool, adapt_chunk: int, adapt_seed: int) -> None:
        super().__init__(image_size=image_size, channels=channels, num_seen_classes=num_seen_classes, k_shot=k_shot)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.z_dim = int(z_dim)
        self.inner_steps = int(inner_steps)
        self.inner_lr = float(inner_lr)
        self.inner_batch = int(inner_batch)
        self.gp_weight = float(gp_weight)
        if gp_norm not in GP_NORMS:
            raise UserError(f"method.gp_norm must be one of {', '.join(GP_NORMS)}; got {gp_norm!r}")
        self.gp_norm = gp_norm
        self.meta_lr = float(meta_lr)
        self.meta_betas = tuple(float(b) for b in meta_betas)
        self.adapt_steps = int(adapt_steps)
        self.vectorise_tasks = bool(vectorise_tasks)
        self.adapt_chunk = max(1, int(adapt_chunk))
        self.adapt_seed = int(adapt_seed)
        if self.inner_steps < 1 or self.adapt_steps < 0 or self.inner_batch < 1:
            raise UserError("FIGR needs method.inner_steps >= 1, inner_batch >= 1 and adapt_steps >= 0")
        self.generator = FIGRGenerator(image_size=image_size, channels=channels, z_dim=self.z_dim, width=width,
                                       max_stages=max_stages)
        self.critic = FIGRCritic(image_size=image_size, channels=channels, width=width, max_stages=max_stages)
        # True on the copy that adapt() returns: its generate() samples without adapting again.
        self.is_adapted = False

    # -- functional WGAN-GP on a dict of fast weights --------------------------------------------------------
    def _fast_weights(self) -> tuple[dict, dict]:
        pg = {k: v.detach() for k, v in self.generator.named_parameters()}
        pd = {k: v.detach() for k, v in self.critic.named_parameters()}
        return pg, pd

    def _critic_loss(self, pd: dict, pg: dict, real: Tensor, z: Tensor, eps: Tensor):
        fake = functional_call(self.generator, pg, (z,)).detach()
        interp = eps * real + (1 - eps) * fake

        def critic_sum(x: Tensor) -> Tensor:
            # Samples are independent through the critic (per-sample LayerNorm), so the gradient of the sum
            # gives each interpolate its own input gradient.
            return functional_call(self.critic, pd, (x,)).sum()

        gx = grad(critic_sum)(interp)
        # ``pixel``: the release's norm over dim 1 (train.py L45: the channels of an NCHW gradient), one norm per
        # pixel; ``sample``: WGAN-GP's per-sample norm (Gulrajani et al. 2017).
        norms = gx.norm(dim=1) if self.gp_norm == "pixel" else gx.flatten(1).norm(dim=1)
        gp = ((norms - 1) ** 2).mean()
        wdist = functional_call(self.critic, pd, (real,)).mean() - functional_call(self.critic, pd, (fake,)).mean()
        loss = -wdist + self.gp_weight * gp
        return loss, (loss.detach(), wdist.detach())

    def _generator_loss(self, pg: dict, pd: dict, z: Tensor):
        loss = -functional_call(self.critic, pd, (functional_call(self.generator, pg, (z,)),)).mean()
        return loss, loss.detach()

    def _inner_step(self, pd: dict, pg: dict, real: Tensor, z_d: Tensor, eps: Tensor, z_g: Tensor):
        """One critic SGD step then one generator SGD step, on one task (vmapped over tasks in training)."""
        gd, (d_loss, wdist) = grad(self._critic_loss, has_aux=True)(pd, pg, real, z_d, eps)
        pd = {k: pd[k] - self.inner_lr * gd[k] for k in pd}
        gg, g_loss = grad(self._generator_loss, has_aux=True)(pg, pd, z_g)
        pg = {k: pg[k] - self.inner_lr * gg[k] for k in pg}
        return pd, pg, d_loss, g_loss, wdist

    def _task_inputs(self, support: Tensor, steps: int, generators: list | None) -> tuple[Tensor, ...]:
        """Real images and noise of ``steps`` inner steps for each task of ``support`` [T, K, C, H, W].

        ``generators`` is None (global RNG, training) or one torch.Generator per task: each task then draws
        from its own stream only, so its result does not depend on which other tasks share the batch.
        Returns real [T, steps, n, C, H, W], z_d and z_g [T, steps, n, z_dim], eps [T, steps, n, 1, 1, 1].
        """
        if generators is None:
            return self._draw(support, steps, None)
        parts = [self._draw(support[i:i + 1], steps, g) for i, g in enumerate(generators)]
        return tuple(torch.cat(p) for p in zip(*parts))

    def _draw(self, support: Tensor, steps: int, generator: torch.Generator | None) -> tuple[Tensor, ...]:
        t, k = support.shape[:2]
        n, dev = self.inner_batch, support.device
        # Each step sees the K images in a random cyclic order, repeated up to the inner batch (FIGR draws 4
        # images of the task's class per step; an episode holds K of them).
        start = _randint(k, (t, steps, 1), generator, dev)
        index = ((start + torch.arange(n, device=dev)) % k).flatten(1)               # [T, steps * n]
        real = torch.gather(support, 1, index[..., None, None, None].expand(-1, -1, *support.shape[2:]))
        real = real.view(t, steps, n, *support.shape[2:])
        z_d = _randn((t, steps, n, self.z_dim), generator, dev)
        eps = _rand((t, steps, n, 1, 1, 1), generator, dev)
        z_g = _randn((t, steps, n, self.z_dim), generator, dev)
        return real, z_d, eps, z_g

    def _run_inner_loops(self, support: Tensor, steps: int, generators: list | None = None):
        """Fast weights after ``steps`` inner steps on each task of ``support`` [T, K, C, H, W] (stacked on dim 0)."""
        t = support.shape[0]
        real, z_d, eps, z_g = self._task_inputs(support, steps, generators)
        pg, pd = self._fast_weights()
        stack = lambda params: {k: v.unsqueeze(0).expand(t, *v.shape).clone() for k, v in params.items()}
        pg, pd = stack(pg), stack(pd)
        zero = support.new_zeros(t)
        d_loss = g_loss = wdist = zero
        for s in range(steps):
            args = (real[:, s], z_d[:, s], eps[:, s], z_g[:, s])
            if self.vectorise_tasks:
                pd, pg, d_loss, g_loss, wdist = vmap(self._inner_step)(pd, pg, *args)
            else:
                outs = [self._inner_step({k: v[i] for k, v in pd.items()}, {k: v[i] for k, v in pg.items()},
                                         *(a[i] for a in args)) for i in range(t)]
                pd = {k: torch.stack([o[0][k] for o in outs]) for k in pd}
                pg = {k: torch.stack([o[1][k] for o in outs]) for k in pg}
                d_loss, g_loss, wdist = (torch.stack([o[j] for o in outs]) for j in (2, 3, 4))
        return pg, pd, {"d_loss": d_loss.mean(), "g_loss": g_loss.mean(), "wdist": wdist.mean()}

    # -- Lightning ------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        # Two Adam optimisers (as FIGR's meta_g_optim / meta_d_optim) over the Reptile direction.
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.meta_lr, betas=self.meta_betas)
        opt_d = torch.optim.Adam(self.critic.parameters(), lr=self.meta_lr, betas=self.meta_betas)
        return [opt_g, opt_d]

    def training_step(self, batch: dict, batch_idx: int):
        support = batch["support"]
        opt_g, opt_d = self.optimizers()
        pg, pd, logs = self._run_inner_loops(support, self.inner_steps)
        # Reptile: grad := theta - mean_tasks(theta'). One flat vector per network so that under DDP a single
        # all-reduce (strategy.reduce, mean over ranks) keeps every rank's meta-weights identical; the inner
        # loops never call backward on the wrapped module, so DDP's own gradient sync does not apply.
        for net, fast, opt in ((self.generator, pg, opt_g), (self.critic, pd, opt_d)):
            names = [k for k, _ in net.named_parameters()]
            params = [p for _, p in net.named_parameters()]
            delta = torch.cat([(p.detach() - fast[k].mean(0)).flatten() for k, p in zip(names, params)])
            delta = self.trainer.strategy.reduce(delta, reduce_op="mean") if self._trainer is not None else delta
            opt.zero_grad(set_to_none=True)
            offset = 0
            for p in params:
                p.grad = delta[offset:offset + p.numel()].view_as(p).to(p.dtype)
                offset += p.numel()
            opt.step()
        self.log_dict({f"figr/{k}": v.detach() for k, v in logs.items()}, on_step=True, on_epoch=False,
                      prog_bar=False, batch_size=support.shape[0])

    # -- the contract ---------------------------------------------------------------------------------------
    def adapt(self, support: Tensor, generator: torch.Generator | None = None) -> "FIGR":
        """A deep copy fine-tuned on one class's ``support`` ([K, C, H, W] or [1, K, C, H, W]).

        ``adapt_steps`` inner steps (critic + generator SGD) on the K images; the noise and image order come
        from ``generator``. Without one, a generator seeded with ``adapt_seed`` is used, so the adapted weights
        depend on the support only (the same on every rank and in every run, whatever ran before).
        The meta-weights are left as they are.
        """
        if support.ndim == 4:
            support = support.unsqueeze(0)
        self.check_support(support)
        if support.shape[0] != 1:
            raise ValueError(f"FIGR.adapt takes the support of one class ([1, K, C, H, W]); got {tuple(support.shape)}")
        with torch.inference_mode(False), torch.enable_grad():
            clone = copy.deepcopy(self)           # a LightningModule drops its trainer reference when copied
            clone.is_adapted = True
            if generator is None:
                generator = torch.Generator(device=self.device).manual_seed(self.adapt_seed)
            pg, pd = clone._adapted_weights(support, [generator])
            with torch.no_grad():
                for net, fast in ((clone.generator, pg), (clone.critic, pd)):
                    for k, p in net.named_parameters():
                        p.copy_(fast[k][0])
        return clone

    def _adapted_weights(self, support: Tensor, generators: list | None) -> tuple[dict, dict]:
        """Fast weights after ``adapt_steps`` on each episode of ``support`` [T, K, C, H, W] (stacked on dim 0)."""
        # The harness may call generate() under torch.inference_mode() or no_grad(); fine-tuning needs
        # autograd, and tensors made in inference mode cannot take part in it (hence the clone).
        with torch.inference_mode(False), torch.enable_grad():
            real = support.detach().clone().to(self.device)
            if self.adapt_steps == 0:
                pg, pd = self._fast_weights()
                t = real.shape[0]
                return ({k: v.unsqueeze(0).expand(t, *v.shape) for k, v in pg.items()},
                        {k: v.unsqueeze(0).expand(t, *v.shape) for k, v in pd.items()})
            pg, pd, _ = self._run_inner_loops(real, self.adapt_steps, generators)
            return {k: v.detach() for k, v in pg.items()}, {k: v.detach() for k, v in pd.items()}

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """[num, C, H, W] from z ~ N(0, I) with the current weights."""
        z = _randn((num, self.z_dim), generator, self.device)
        with torch.no_grad():
            return self.generator(z).clamp(-1, 1)

    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        """The adapted copy samples directly; the meta-model adapts one copy per episode first.

        On the meta-model, episode b gets its own generator seeded from ``generator``, and its result equals
        ``self.adapt(support[b:b+1], g_b).sample(num, g_b)``; the episodes' fine-tunings run together under
        vmap, ``adapt_chunk`` episodes at a time, which is the same computation on stacked weights.
        """
        self.check_support(support)
        b = support.shape[0]
        shape = (b, num, *support.shape[2:])
        if self.is_adapted:
            return self.sample(b * num, generator).view(shape).to(support.dtype)
        seeds = _randint(2 ** 62, (b,), generator, torch.device("cpu")).tolist()
        where = generator.device if generator is not None else self.device
        gens = [torch.Generator(device=where).manual_seed(int(seed)) for seed in seeds]
        out = []
        for lo in range(0, b, self.adapt_chunk):
            chunk = gens[lo:lo + self.adapt_chunk]
            pg, _ = self._adapted_weights(support[lo:lo + len(chunk)], chunk)
            z = torch.stack([_randn((num, self.z_dim), g, self.device) for g in chunk])
            with torch.no_grad():
                out.append(vmap(lambda p, zz: functional_call(self.generator, p, (zz,)))(pg, z).clamp(-1, 1))
        return torch.cat(out).view(shape).to(support.dtype)
