"""What the CLI shows and checks about a protocol before anything trains.

* :func:`check_protocol_fits` raises a UserError (exit status 2) naming what the protocol needs when it cannot
  run on a dataset: too few images per unseen class for its pools, more ways than unseen classes, more shots
  (or K) than the conditional pool holds.
* :func:`render_plan_summary` is what ``--protocol NAME --dry-run`` prints: the pools, draws, resolution and
  settings the protocol would use on a dataset, class by class in summary.
* :func:`render_protocols_markdown` is ``fsgen-bench protocols``: every protocol's settings side by side, a
  Markdown table a user can paste into a paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fsgen_bench.data.evalplan import EvalPlan
from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocol_spec import ALL_WAYS, Protocol
from fsgen_bench.eval.protocols import PROTOCOLS


@dataclass(frozen=True)
class DatasetShape:
    """What a preflight check needs to know about a dataset (no pixels)."""

    name: str
    image_size: int
    unseen_sizes: tuple[int, ...]      # images per unseen class, in unseen-class order
    unseen_ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, dataset: Any) -> "DatasetShape":
        """From a DatasetShape, a ClassImages, or an EpisodicDataModule (set up on demand)."""
        if isinstance(dataset, DatasetShape):
            return dataset
        images = getattr(dataset, "images", None) if not hasattr(dataset, "classes") else dataset
        if images is None and hasattr(dataset, "setup"):
            dataset.setup()
            images = dataset.images
        if images is None or not hasattr(images, "unseen"):
            raise TypeError(f"expected a DatasetShape, ClassImages or EpisodicDataModule, got {type(dataset).__name__}")
        return cls(name=images.info.name, image_size=int(images.info.image_size),
                   unseen_sizes=tuple(int(n) for n in images.counts(images.unseen)),
                   unseen_ids=tuple(int(c) for c in images.unseen))


def check_protocol_fits(protocol: Protocol, dataset: Any) -> None:
    """Raise a UserError naming the limit when ``protocol`` cannot run on ``dataset`` (see the module doc)."""
    shape = DatasetShape.of(dataset)
    p, fs = protocol, protocol.fewshot
    pool = p.cond_pool_for(shape.name)
    where = f"protocol {p.id} on {shape.name!r}"
    if p.k_shot > pool:
        raise UserError(f"{where}: K={p.k_shot} conditional images per support set, but the conditional pool holds "
                        f"{pool}; lower K or use a protocol with a larger pool")
    if fs.shots > pool:
        raise UserError(f"{where}: few-shot episodes take {fs.shots} shots per class from the conditional pool, "
                        f"which holds {pool}; use fewer shots (fewshot.shots) or a larger pool")
    n_classes = len(shape.unseen_sizes)
    if n_classes < 2:
        raise UserError(f"{where}: evaluation needs at least 2 unseen classes (found {n_classes}); set "
                        f"data.num_seen_classes lower")
    too_many = [w for w in fs.ways if w != ALL_WAYS and w > n_classes]
    if too_many:
        raise UserError(f"{where}: {max(too_many)}-way few-shot episodes need {max(too_many)} unseen classes, the "
                        f"dataset has {n_classes}; use fewer ways (fewshot.ways, 0 = all unseen classes) or a "
                        f"dataset with more unseen classes")
    need = pool + 1
    small = [(i, n) for i, n in enumerate(shape.unseen_sizes) if n < need]
    if small:
        i, n = small[0]
        cid = shape.unseen_ids[i] if shape.unseen_ids else i
        raise UserError(f"{where}: each unseen class needs at least {need} images (a conditional pool of {pool} plus "
                        f"at least one held-out image); class {cid} has {n} ({len(small)} classes are too small); "
                        f"use another protocol or a dataset with more images per class")


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        if not value:
            return "–"
        if all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return ", ".join(f"{k}: {v}" for k, v in value) or "–"
        return "(" + ", ".join("all" if v == ALL_WAYS and isinstance(v, int) else str(v) for v in value) + ")"
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_protocols_markdown(protocols: dict[str, Protocol] | None = None) -> str:
    """Every protocol's settings side by side: one row per setting, one column per protocol (Markdown)."""
    protocols = PROTOCOLS if protocols is None else protocols
    names = list(protocols)
    cols = [protocols[n] for n in names]
    lines = ["| setting | " + " | ".join(f"`{p.id}`" for p in cols) + " |",
             "|:---|" + ":---|" * len(cols),
             "| follows | " + " | ".join(p.source or "–" for p in cols) + " |"]
    settings = [p.settings() for p in cols]
    for key in settings[0]:
        values = [_fmt(s[key]).replace("|", "\\|") for s in settings]
        lines.append(f"| `{key}` | " + " | ".join(values) + " |")
    lines += ["", "`fewshot.ways`: all = every unseen class of the dataset. `resolution` – : the served size. "
              "Each protocol's docstring (src/fsgen_bench/eval/protocol_defs.py) lists what it reproduces of its "
              "peer's code and what it does not."]
    return "\n".join(lines) + "\n"


def render_plan_summary(protocol: Protocol, dataset: Any, *, seed: int = 0) -> str:
    """The plan ``protocol`` would use on ``dataset`` (a ClassImages or EpisodicDataModule): what a dry run prints.

    Raises the preflight's UserError when the protocol cannot run there.
    """
    shape = DatasetShape.of(dataset)
    check_protocol_fits(protocol, shape)
    p, fs = protocol, protocol.fewshot
    ids = list(shape.unseen_ids) or list(range(len(shape.unseen_sizes)))
    plan = EvalPlan.build(dataset=shape.name, unseen=ids, class_sizes=list(shape.unseen_sizes), protocol=p, seed=seed)
    real = np.array([len(c.real) for c in plan.classes])
    uniq = np.array([len(c.real_unique()) for c in plan.classes])
    held = np.array([len(c.heldout()) for c in plan.classes])
    res = p.resolution_for(shape.name, shape.image_size)

    def span(a: np.ndarray) -> str:
        return f"{a.min()}" if a.min() == a.max() else f"{a.min()}-{a.max()}"

    ways = ", ".join(f"{n}-way{' (all)' if w == ALL_WAYS else ''}" for w, n in zip(fs.ways, fs.ways_for(len(ids))))
    lowdata = [n for n in fs.lowdata_real if p.k_shot <= n < held.min()]
    first = plan.classes[0]
    lines = [
        f"protocol {p.id} on {shape.name} (seed {seed}; plan fingerprint {plan.fingerprint()})",
        f"  follows:        {p.source or '-'}",
        f"  unseen classes: {len(ids)} with {span(np.array(shape.unseen_sizes))} images each",
        f"  pools:          conditional {p.cond_pool_for(shape.name)} per class "
        f"({'seeded permutation' if p.permute else 'file order'}); real set {span(real)} per class "
        f"({span(uniq)} distinct{', includes the conditional pool' if p.real_includes_cond else ''}"
        f"{', drawn with replacement' if p.real_sampling == 'replace' else ''}); held-out {span(held)} per class",
        f"  generation:     {p.num_generated} per class = {p.supports_per_class} support sets x "
        f"{p.num_generated // p.supports_per_class} images, K={p.k_shot} "
        f"({'distinct' if p.support_draw == 'distinct' else 'drawn with replacement'}); "
        f"pixels {'rounded' if p.quantize == 'round' else 'truncated'} to uint8",
        f"  resolution:     {res} px (served {shape.image_size} px)",
        f"  FID input:      {p.fid_input}; KID {p.kid_subsets} subsets of {p.kid_subset_size}",
        f"  LPIPS:          {p.lpips_net} at {p.lpips_size or res} px ({p.lpips_resize}), input range "
        f"{tuple(p.lpips_range)}, pairs {p.lpips_pairs}",
        f"  few-shot:       {ways}; {fs.shots} shots, {fs.episodes} episodes, {fs.generated_per_class} generated "
        f"per shot set ({fs.generated_weight} weight), {fs.queries} queries max",
        f"  low-data:       {', '.join(f'{n} real' for n in lowdata) or 'none fits'} "
        f"(+{fs.lowdata_generated_per_class} generated, {fs.generated_weight} weight)",
        f"  first class {first.class_id}: conditional {first.cond[:12].tolist()}"
        f"{' ...' if len(first.cond) > 12 else ''}; first support sets {first.supports[:3].tolist()}",
    ]
    return "\n".join(lines) + "\n"
