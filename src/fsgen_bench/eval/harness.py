"""The evaluation harness: protocol -> plan -> real features -> generate -> gather -> metrics -> MetricRecords.

``evaluate(model, datamodule, protocol=..., eval_cfg=..., cache_dir=..., run_meta=..., out_dir=...)`` scores one
trained generator on the unseen classes of a dataset under a named protocol and returns one
:class:`~fsgen_bench.eval.records.MetricRecord` per number. What is computed, and how each metric is defined,
is the metric registry's business (:mod:`fsgen_bench.eval.metrics`): the harness asks each registered family
what it needs (features, the conditioning set, the generated pixels, few-shot or low-data images), produces
exactly that, and calls the family once. The stages:

1. setup: resolve the protocol, check it fits the dataset, build the plan (for the ``real`` reference row:
   the held-out images halved, see :meth:`~fsgen_bench.data.evalplan.ClassPlan.reference_split`);
2. backbones: the domain backbone (always: few-shot, diversity) and the FID Inception when its weights exist;
3. real features (cached), 4. generation and feature extraction (:mod:`fsgen_bench.eval.generation`),
5. gather across ranks, 6. the metric families, 7. records.

DDP: when ``torch.distributed`` is initialised the unseen classes are sharded ``classes[rank::world]``;
features and per-class values are gathered, ordered by class id, and every rank computes every metric on the
same full set: N ranks give one rank's numbers. The domain backbone is loaded or trained on rank 0 and
broadcast. Only ``out_dir``'s sample grid is rank 0's.

Missing pretrained weights: the Inception records or the LPIPS record are skipped with a printed note saying
where the weights were looked for; no other backbone is ever reported under their name.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fsgen_bench.data.evalplan import ClassPlan, EvalPlan
from fsgen_bench.errors import UserError
from fsgen_bench.eval import records as rec
from fsgen_bench.eval.backbone import DomainBackbone, data_fingerprint, obtain_domain_backbone, show_progress
from fsgen_bench.eval.distributed import DistContext
from fsgen_bench.eval.features import AtSide, InceptionFeatures
from fsgen_bench.eval.generation import HeldOutReal, ModelSource, generate_and_extract
from fsgen_bench.eval.metrics import FAMILIES, MetricFamily, Value
from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.preflight import check_protocol_fits
from fsgen_bench.eval.pretrained import PRETRAINED_BACKBONES, build_pretrained_extractor
from fsgen_bench.eval.protocols import Protocol, get_protocol
from fsgen_bench.eval.realsets import heldout_rows, real_features
from fsgen_bench.eval.weights import WeightsNotFound, find_inception_weights

KNOWN_BACKBONES = ("domain", "inception", *PRETRAINED_BACKBONES)
#: run_meta keys that become record fields or are the record's identity (never copied into ``extra``).
_META_FIELDS = ("run_id", "method", "dataset", "seed", "config_hash", "preset", "variant", "reference")


def resolve_protocol(protocol: Protocol | str, eval_cfg: dict) -> Protocol:
    """A Protocol as given, or a protocol id with ``eval.num_generated`` / ``eval.fewshot_episodes`` applied."""
    if isinstance(protocol, Protocol):
        return protocol.validate()
    proto = get_protocol(str(protocol))
    changes: dict = {}
    if eval_cfg.get("num_generated"):
        n = int(eval_cfg["num_generated"])
        s = min(proto.supports_per_class, n)
        while n % s:
            s -= 1
        changes.update(num_generated=n, supports_per_class=s)
    if eval_cfg.get("fewshot_episodes"):
        changes["fewshot"] = {"episodes": int(eval_cfg["fewshot_episodes"])}
    return proto.with_overrides(**changes)


def _device_of(model) -> torch.device:
    if isinstance(getattr(model, "device", None), torch.device):
        return model.device
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@dataclass
class _Run:
    """Everything the stages share about one evaluation."""

    protocol: Protocol
    eval_cfg: dict
    ctx: DistContext
    say: Callable
    datamodule: object
    plan: EvalPlan
    plans: dict[int, ClassPlan]            # what this evaluation scores against (the reference split for `real`)
    scored: dict[int, np.ndarray] | None   # the `real` row's held-out images scored as if generated
    class_ids: list[int]
    device: torch.device
    served: int
    resolution: int
    batch_size: int
    cache_dir: Path
    families: list[MetricFamily]
    lowdata_ns: list[int]
    data_fp: str
    notes: list[str] = field(default_factory=list)

    def needs(self, what: str) -> bool:
        return any(what in f.needs for f in self.families)


# -- the harness -------------------------------------------------------------------------------------------

def evaluate(model, datamodule, *, protocol: Protocol | str, eval_cfg: dict, cache_dir: Path, run_meta: dict,
             out_dir: Path | None = None, log=print) -> list[rec.MetricRecord]:
    """Score ``model`` on the unseen classes of ``datamodule`` under ``protocol``; see the module docstring."""
    started = time.perf_counter()
    run = _setup(model, datamodule, protocol, eval_cfg, cache_dir, log)
    domain, extractors, backbone_extra = _backbones(run)
    states, hooks = _prepare_families(run)
    real, cond = real_features(datamodule, run.plans, run.class_ids, extractors, ctx=run.ctx, cache_dir=run.cache_dir,
                               protocol=run.protocol, plan_fp=_fingerprint(run), data_fp=run.data_fp,
                               resolution=run.resolution, batch_size=run.batch_size, say=run.say)
    for note in run.notes:
        run.say(f"note: {note}")
    source = (HeldOutReal(run.scored, run.device) if run.scored is not None
              else ModelSource(model, run.protocol, run.plan.seed, run.device))
    was_training = model.training
    model.eval()
    try:
        local = generate_and_extract(
            source, datamodule, run.plans, run.ctx.shard(run.class_ids), extractors, protocol=run.protocol,
            device=run.device, resolution=run.resolution, batch_size=run.batch_size, fewshot=run.needs("fewshot"),
            lowdata_ns=run.lowdata_ns, pixel_hooks=hooks, keep_grid=run.ctx.is_main and out_dir is not None,
            show=run.ctx.is_main and show_progress(),
        )
    finally:
        model.train(was_training)
    inputs = _gather(run, local, real, cond, [b for b in extractors if b in _reported(run)], states, backbone_extra)
    values = [v for family in run.families for v in family.compute(inputs)]
    if out_dir is not None and run.ctx.is_main and local.grid:
        save_sample_grid(local.grid, Path(out_dir) / "eval_samples.png")
    records = _records(run, model, values, run_meta, domain, time.perf_counter() - started)
    run.say(f"evaluation of {run_meta.get('method', 'model')} under {run.protocol.id}: {len(records)} records in "
            f"{time.perf_counter() - started:.1f}s")
    return records


def _setup(model, datamodule, protocol, eval_cfg, cache_dir, log) -> _Run:
    ctx = DistContext.current()
    eval_cfg = dict(eval_cfg or {})
    protocol = resolve_protocol(protocol, eval_cfg)
    unknown = [b for b in _backbone_names(eval_cfg) if b not in KNOWN_BACKBONES]
    if unknown:
        raise UserError(f"eval.backbones: unknown backbone(s) {unknown}; known: {', '.join(KNOWN_BACKBONES)}")
    if datamodule.images is None:
        datamodule.setup()
    images = datamodule.images
    check_protocol_fits(protocol, images)
    plan = datamodule.eval_plan(protocol)
    plans = {c.class_id: c for c in plan.classes}
    scored = None
    if getattr(model, "scores_held_out_real", False):
        plans, scored = _reference_view(plans, protocol)
    class_ids = sorted(plans)
    skip = {"fewshot"} if not eval_cfg.get("fewshot", True) else set()
    skip |= {"lowdata"} if not eval_cfg.get("lowdata", True) else set()
    families = sorted((f for f in FAMILIES.values() if f.name not in skip), key=lambda f: min(s.order for s in f.specs))
    run = _Run(protocol=protocol, eval_cfg=eval_cfg, ctx=ctx, say=log if ctx.is_main else (lambda *a, **k: None),
               datamodule=datamodule, plan=plan, plans=plans, scored=scored, class_ids=class_ids,
               device=_device_of(model), served=int(images.info.image_size),
               resolution=protocol.resolution_for(images.info.name, int(images.info.image_size)),
               batch_size=max(1, int(eval_cfg.get("batch_size") or 128)), cache_dir=Path(cache_dir),
               families=families, lowdata_ns=[], data_fp=data_fingerprint(images))
    if any(f.name == "lowdata" for f in families):
        smallest = min(len(plans[c].heldout()) for c in class_ids)
        for n in protocol.fewshot.lowdata_real:
            if protocol.k_shot <= n < smallest:
                run.lowdata_ns.append(n)
            else:
                run.notes.append(f"lowdata {n}real skipped: needs {max(n, protocol.k_shot)} training images and at "
                                 f"least one test image among every class's held-out images (smallest: {smallest})")
        if not run.lowdata_ns:
            run.families = [f for f in run.families if f.name != "lowdata"]
    if run.resolution > run.served:
        run.notes.append(f"images served at {run.served} px are upsampled to the protocol's {run.resolution} px; "
                         f"serve {run.resolution} px (data.image_size) for numbers comparable with "
                         f"{protocol.source or protocol.name}")
    return run


def _reference_view(plans: dict[int, ClassPlan], protocol: Protocol) -> tuple[dict, dict]:
    """For the ``real`` row: each class's held-out images halved; the second half takes the real set's role."""
    view, scored = {}, {}
    for c, cp in plans.items():
        a, b = cp.reference_split()
        if len(a) < 1 or len(b) < 2:
            raise UserError(f"the real reference row needs at least 3 held-out images per class under protocol "
                            f"{protocol.id} (class {c} has {len(cp.heldout())})")
        view[c] = ClassPlan(cp.class_id, cp.cond, b, cp.supports, cp.images_per_support, cp.shot_sets)
        scored[c] = a
    return view, scored


def _fingerprint(run: _Run) -> str:
    return EvalPlan(run.plan.protocol_id, run.plan.dataset, run.plan.seed,
                    [run.plans[c] for c in run.class_ids]).fingerprint()


def _backbone_names(eval_cfg: dict) -> list[str]:
    return list(eval_cfg.get("backbones") or ["domain"])


def _reported(run: _Run) -> list[str]:
    return _backbone_names(run.eval_cfg)


def _backbones(run: _Run) -> tuple[DomainBackbone, dict, dict]:
    """The domain backbone (always) and every other asked-for backbone whose weights are found on every rank."""
    images = run.datamodule.images
    domain = obtain_domain_backbone(images, cfg=run.eval_cfg.get("domain_backbone") or {}, cache_dir=run.cache_dir,
                                    seed=run.datamodule.seed, device=run.device, ctx=run.ctx, log=run.say,
                                    data_fp=run.data_fp)
    extractors: dict = {"domain": AtSide(domain, run.served)}
    extra = {"domain": {"num_features": domain.num_features}}
    for name in _reported(run):
        if name == "domain":
            continue
        try:
            extractors[name], extra[name] = _pretrained_backbone(run, name)
        except WeightsNotFound as exc:
            run.notes.append(f"{name} records (fid, kid, novelty, ...) skipped: {exc}")
        if not run.ctx.all_true(name in extractors) and extractors.pop(name, None) is not None:
            # Node-local hub caches can differ; every rank must run the same collectives, so all skip.
            run.notes.append(f"{name} records skipped: its weights are missing on some ranks")
    return domain, extractors, extra


def _pretrained_backbone(run: _Run, name: str) -> tuple[object, dict]:
    """(extractor, what its records say about it) for a backbone with published weights; WeightsNotFound when
    its file is nowhere, a UserError when the file is damaged or wrong."""
    if name == "inception":
        weights = find_inception_weights(run.eval_cfg.get("inception_weights"))
        inception = InceptionFeatures(weights, fid_input=run.protocol.fid_input,
                                      antialias=run.protocol.fid_antialias, device=run.device)
        extractor, extra = inception, {"fid_input": inception.fid_input, "antialias": inception.antialias,
                                       "weights": str(weights.path), "weights_sha256": inception.sha256,
                                       "standard_weights": inception.standard}
    else:
        extractor = build_pretrained_extractor(name, run.eval_cfg, device=run.device)
        extra = extractor.record_extra()
    if not extra["standard_weights"]:
        run.say(f"warning: {extra['weights']} is not the standard {name} weights file (sha256 "
                f"{extra['weights_sha256']}...); its FID/KID are not comparable with published numbers")
    return extractor, extra


def _prepare_families(run: _Run) -> tuple[dict, dict]:
    """States of the families with a per-class pixel hook (LPIPS), and the hooks; a family whose weights are
    missing (on any rank) is dropped with a note."""
    states, hooks = {}, {}
    for family in list(run.families):
        if family.prepare is None:
            continue
        state, note = family.prepare(run.protocol, run.eval_cfg, run.device)
        if not run.ctx.all_true(state is not None):
            run.notes.append(note or f"{family.name} skipped: its weights are missing on some ranks")
            run.families.remove(family)
            continue
        states[family.name] = state
        hooks[family.name] = (lambda images, _s=state, _f=family: _f.per_class(_s, images, run.protocol,
                                                                              run.batch_size))
    return states, hooks


def _gather(run: _Run, local, real: dict, cond: dict, backbones: list[str], states: dict,
            backbone_extra: dict) -> MetricInputs:
    ctx = run.ctx
    gen = {name: ctx.gather_rows(local.gen.get(name, {})) for name in real}
    fewshot = {}
    if run.needs("fewshot"):
        fewshot = {c: t.view(len(run.plans[c].shot_sets), -1, t.shape[-1])
                   for c, t in ctx.gather_rows(local.fewshot).items()}
    heldout = {b: {c: rows[heldout_rows(run.plans[c])] for c, rows in table.items()} for b, table in real.items()}
    return MetricInputs(
        protocol=run.protocol, plans=run.plans, class_ids=run.class_ids, resolution=run.resolution,
        backbones=backbones, real=real, heldout=heldout, cond=cond, gen=gen,
        gen_support=ctx.gather_rows(local.gen_support), fewshot_gen=fewshot,
        lowdata_gen={n: ctx.gather_rows(local.lowdata.get(n, {})) for n in run.lowdata_ns}, lowdata_ns=run.lowdata_ns,
        per_class={name: ctx.gather_rows(values) for name, values in local.per_class.items()},
        family_state=states, backbone_extra=backbone_extra, plan_seed=run.plan.seed, ctx=ctx,
    )


def _records(run: _Run, model, values: list[Value], run_meta: dict, domain: DomainBackbone,
             wall_s: float) -> list[rec.MetricRecord]:
    images = run.datamodule.images
    common = {"classes": len(run.class_ids), "generated_per_class": run.protocol.num_generated,
              "k_shot": run.protocol.k_shot, "real_pool_images": sum(len(run.plans[c].real) for c in run.class_ids),
              "served_px": run.served, "domain_val_acc": domain.meta.get("val_acc"), "domain_backbone": domain.key,
              "domain_backbone_cached": bool(domain.meta.get("cached")), "world_size": run.ctx.world}
    if run.scored is not None:
        common["real_reference"] = ("held-out real images scored as if generated: each class's held-out images "
                                    "halved, the first half scored against the second (which replaces the real set)")
    if run.notes:
        common["skipped"] = [n.split(":")[0] for n in run.notes]
    meta_extra = {k: v for k, v in run_meta.items() if k not in _META_FIELDS}
    reference = run_meta.get("reference")
    if reference is None:
        reference = not getattr(model, "trainable", True)
    code, hw = rec.code_version(), rec.hardware()
    out = []
    for v in values:
        if not math.isfinite(v.value):
            # e.g. a diversity with one image per class: no pairs. A record must hold a number (strict JSON).
            run.say(f"note: {v.metric}/{v.backbone}{'/' + v.setting if v.setting else ''} is undefined here; "
                    f"no record written")
            continue
        ci = v.ci95 if v.ci95 is not None and math.isfinite(v.ci95) else None
        out.append(rec.MetricRecord(
            run_id=str(run_meta.get("run_id", "")), method=str(run_meta.get("method", "")),
            dataset=str(run_meta.get("dataset", images.info.name)), protocol=run.protocol.id, metric=v.metric,
            backbone=v.backbone, value=float(v.value), ci95=None if ci is None else float(ci), setting=v.setting,
            seed=int(run_meta.get("seed", run.datamodule.seed)), config_hash=str(run_meta.get("config_hash", "")),
            code_version=code, hardware=hw, wall_time_s=round(wall_s, 3), preset=run_meta.get("preset"),
            resolution=run.resolution, variant=run_meta.get("variant"), reference=bool(reference),
            extra={**common, **meta_extra, **v.extra},
        ))
    return out


# -- output ------------------------------------------------------------------------------------------------

def save_sample_grid(rows: list[tuple[torch.Tensor, torch.Tensor]], path: Path) -> Path:
    """One row per class: its K conditional images, a gray separator tile, then generated ones, as a PNG."""
    from torchvision.utils import save_image

    width = max(c.shape[0] + 1 + g.shape[0] for c, g in rows)
    tiles = []
    for c, g in rows:
        gap = torch.full((1, *c.shape[1:]), 128, dtype=torch.uint8)
        row = torch.cat([c, gap, g])
        if row.shape[0] < width:
            row = torch.cat([row, torch.zeros((width - row.shape[0], *row.shape[1:]), dtype=row.dtype)])
        tiles.append(row)
    grid = torch.cat(tiles).float() / 255.0
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path), nrow=width, padding=2, pad_value=0.5)
    return path


def format_table(records: list[rec.MetricRecord]) -> str:
    """A plain-text table: one block per (method, dataset, protocol, resolution), one line per metric."""
    if not records:
        return "(no records)"
    lines = []
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r.method, r.dataset, r.protocol, r.resolution), []).append(r)
    for (method, dataset, protocol, resolution), rs in groups.items():
        wall = max(r.wall_time_s for r in rs)
        at = f" at {resolution} px" if resolution else ""
        lines.append(f"{method} on {dataset}, protocol {protocol}{at} ({wall:.1f}s)")
        width = max(len(r.key) for r in rs)
        for r in rs:
            value = _fmt(r.value)
            ci = f" ± {_fmt(r.ci95)}" if r.ci95 is not None and math.isfinite(r.ci95) else ""
            lines.append(f"  {r.key:<{width}}  {value}{ci}")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "nan"
    if abs(x) < 1e-9:
        x = 0.0      # FID of identical sets comes out as -0.000 from eigenvalue noise
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:.1f}"
