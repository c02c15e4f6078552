"""The generation stage: every image a rank's classes need, made once, brought to pixels, turned into features.

How a class is generated: its S support sets (K positions in its conditional pool, fixed by the EvalPlan) go
to ``model.generate`` as one batch ``[S, K, C, H, W]``, ``images_per_support`` images each, with a
``torch.Generator`` seeded from (plan seed, protocol seed, class id, purpose). So the images do not depend on
the feature batch size, the rank, the world size or the worker count. Few-shot shot sets and low-data
supports are generated the same way, once per class, never once per episode. Generated images are quantised
to uint8 by the protocol's rule (as if saved to PNG) and brought to the evaluation resolution before any
backbone sees them, like the real images.

The ``real`` reference row has no generator: :class:`HeldOutReal` returns, for every purpose, the scored
half of each class's held-out images (``ClassPlan.reference_split``); their support set is -1 (none).

Features are extracted in class groups of about one feature batch; metrics that need pixels (LPIPS) run
their per-class hook on each class's evaluation images, which are then dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from fsgen_bench.data.datamodule import to_unit_range
from fsgen_bench.eval.pixels import quantize, to_side

GRID_CLASSES = 6          # rows of eval_samples.png
GRID_GENERATED = 8        # generated images per row (after the K conditional images)

# Purposes of generation; part of each class's generator seed so the streams never overlap.
_EVAL, _FEWSHOT, _LOWDATA = 0, 1, 2


def class_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence mixes them; independent of Python's hash seed)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def generate_u8(model, supports: torch.Tensor, num: int, generator: torch.Generator, mode: str) -> torch.Tensor:
    """uint8 [B, num, C, H, W] from float supports [B, K, C, H, W] (pixels by the protocol's ``quantize``).

    The contract makes ``generate`` serve every support set of the batch on its own: an optimisation-based method
    (FIGR) adapts a copy per episode inside ``generate`` (vectorised over the batch), so the harness never loops
    over support sets and the meta-weights are never changed.
    """
    max_k = getattr(model, "max_k", None)
    if max_k is not None and supports.shape[1] > max_k:
        supports = supports[:, :max_k]
    out = model.generate(supports, num, generator=generator)
    b, _, c, h, w = supports.shape
    if tuple(out.shape) != (b, num, c, h, w):
        raise ValueError(f"{type(model).__name__}.generate returned shape {tuple(out.shape)}; the contract is "
                         f"[B, num, C, H, W] = {(b, num, c, h, w)}")
    return quantize(out, mode)


class ModelSource:
    """Images from a generator, per the plan's support sets."""

    def __init__(self, model, protocol, plan_seed: int, device: torch.device) -> None:
        self.model, self.protocol, self.plan_seed, self.device = model, protocol, plan_seed, device

    def _gen(self, class_id: int, purpose: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(
            class_seed(self.plan_seed, self.protocol.seed, class_id, purpose))

    def evaluation(self, cp, imgs: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 [G, C, H, W], support set of each image [G])."""
        fake = generate_u8(self.model, cond[torch.from_numpy(cp.supports).to(self.device)], cp.images_per_support,
                           self._gen(cp.class_id, _EVAL), self.protocol.quantize)
        support = torch.arange(fake.shape[0]).repeat_interleave(fake.shape[1])
        return fake.flatten(0, 1), support

    def fewshot(self, cp, imgs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """uint8 [T, M, C, H, W]: M images from each of the class's T shot sets."""
        shots = cond[torch.from_numpy(cp.shot_sets).to(self.device)]
        return generate_u8(self.model, shots, self.protocol.fewshot.generated_per_class,
                           self._gen(cp.class_id, _FEWSHOT), self.protocol.quantize)

    def lowdata(self, cp, imgs: torch.Tensor, ns: list[int]) -> torch.Tensor:
        """uint8 [len(ns), M, C, H, W]. Every low-data setting conditions on the first K of its n training images:
        the same K images for all n (the first n of one ordering), generated once per setting for its own M."""
        held = cp.heldout()
        first_k = to_unit_range(imgs[torch.from_numpy(held[: self.protocol.k_shot])].to(self.device))
        supports = torch.stack([first_k for _ in ns])
        return generate_u8(self.model, supports, self.protocol.fewshot.lowdata_generated_per_class,
                           self._gen(cp.class_id, _LOWDATA), self.protocol.quantize)


class HeldOutReal:
    """The ``real`` reference row: the scored half of each class's held-out images, for every purpose."""

    def __init__(self, scored: dict[int, np.ndarray], device: torch.device) -> None:
        self.scored, self.device = scored, device

    def _images(self, cp, imgs: torch.Tensor) -> torch.Tensor:
        return imgs[torch.from_numpy(self.scored[cp.class_id])].to(self.device)

    def evaluation(self, cp, imgs, cond):
        real = self._images(cp, imgs)
        return real, torch.full((real.shape[0],), -1, dtype=torch.long)

    def fewshot(self, cp, imgs, cond):
        return self._images(cp, imgs).unsqueeze(0).expand(len(cp.shot_sets), -1, -1, -1, -1)

    def lowdata(self, cp, imgs, ns):
        return self._images(cp, imgs).unsqueeze(0).expand(len(ns), -1, -1, -1, -1)


@dataclass
class LocalResults:
    """What this rank computed for its classes (CPU tensors per class id)."""

    gen: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)     # backbone -> class -> [G, D]
    gen_support: dict[int, torch.Tensor] = field(default_factory=dict)        # class -> [G]
    fewshot: dict[int, torch.Tensor] = field(default_factory=dict)            # class -> [T * M, D] (domain)
    lowdata: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)  # n -> class -> [M, D]
    per_class: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)  # family -> class -> value
    grid: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


def generate_and_extract(source, datamodule, plans: dict, my_classes: list[int], extractors: dict, *,
                         protocol, device: torch.device, resolution: int, batch_size: int, fewshot: bool,
                         lowdata_ns: list[int], pixel_hooks: dict, keep_grid: bool, show: bool) -> LocalResults:
    """Generate every image this rank's classes need, once, and extract their features in class groups.

    ``extractors`` maps backbone name -> extractor (``domain`` always present; it also serves few-shot and
    low-data); ``pixel_hooks`` maps family name -> ``fn(images_u8) -> Tensor`` run on each class's images.
    """
    local = LocalResults(gen={name: {} for name in extractors})
    pending: list[tuple[int, dict[str, torch.Tensor]]] = []
    pending_images = 0

    def flush() -> None:
        nonlocal pending, pending_images
        if not pending:
            return
        # Domain features of every image of the group in one batched pass; other backbones on the evaluation set.
        parts = [(c, kind, t) for c, sets in pending for kind, t in sets.items()]
        feats = extractors["domain"].extract(torch.cat([t for _, _, t in parts]), batch_size)
        offset, by_class = 0, {}
        for c, kind, t in parts:
            by_class.setdefault(c, {})[kind] = feats[offset:offset + t.shape[0]]
            offset += t.shape[0]
        for c, _ in pending:
            local.gen["domain"][c] = by_class[c]["eval"]
            if fewshot:
                local.fewshot[c] = by_class[c]["fewshot"]
            for n in lowdata_ns:
                local.lowdata.setdefault(n, {})[c] = by_class[c][f"low{n}"]
        for name, ext in extractors.items():
            if name == "domain":
                continue
            evals = ext.extract(torch.cat([sets["eval"] for _, sets in pending]), batch_size)
            offset = 0
            for c, sets in pending:
                n = sets["eval"].shape[0]
                local.gen[name][c] = evals[offset:offset + n]
                offset += n
        pending, pending_images = [], 0

    bar = tqdm(total=len(my_classes), desc="evaluating classes", disable=not show, leave=False)
    with torch.no_grad():
        for c in my_classes:
            cp = plans[c]
            imgs = datamodule.class_images(c)
            cond = to_unit_range(imgs[torch.from_numpy(cp.cond)].to(device))
            fake, support = source.evaluation(cp, imgs, cond)
            sets = {"eval": to_side(fake, resolution)}
            local.gen_support[c] = support.cpu()
            for fam, hook in pixel_hooks.items():
                local.per_class.setdefault(fam, {})[c] = hook(sets["eval"])
            if keep_grid and len(local.grid) < GRID_CLASSES:
                shown = imgs[torch.from_numpy(cp.cond[cp.supports[0]])]
                local.grid.append((to_side(shown, resolution), sets["eval"][:GRID_GENERATED].cpu()))
            if fewshot:
                sets["fewshot"] = to_side(source.fewshot(cp, imgs, cond).flatten(0, 1), resolution)
            if lowdata_ns:
                low = source.lowdata(cp, imgs, lowdata_ns)
                for i, n in enumerate(lowdata_ns):
                    sets[f"low{n}"] = to_side(low[i], resolution)
            pending.append((c, sets))
            pending_images += sum(t.shape[0] for t in sets.values())
            if pending_images >= batch_size:
                flush()
            bar.update(1)
        flush()
    bar.close()
    return local
