"""The evaluation harness: protocol -> generate -> features -> metrics -> MetricRecords.

``evaluate(model, datamodule, protocol=..., eval_cfg=..., cache_dir=..., run_meta=..., out_dir=...)`` scores one
trained generator on the unseen classes of a dataset under a named protocol and returns one
:class:`~fsgen_bench.eval.records.MetricRecord` per number:

=====================  ==================  ==========  ==================================================
metric                 backbone            setting     what
=====================  ==================  ==========  ==================================================
fid, kid               domain, inception               all unseen classes pooled (KID ci95 = 1.96 x std
                                                       over subsets)
lpips                  alex | vgg | squeeze            mean pairwise LPIPS per class, averaged over classes
diversity              domain                          the same with 1 - cos of domain features (offline)
fewshot_acc_real/_gen  domain              5way5shot   linear classifier on shots / shots + generated
fewshot_gain           domain              5way5shot   acc_gen - acc_real, mean over seeded episodes
lowdata_acc_real/_gen  domain              5real       all-class classifier, n real images per class
lowdata_gain           domain              5real
=====================  ==================  ==========  ==================================================

How a class is generated: its S support sets (K positions in its conditional pool, fixed by the EvalPlan) go
to ``model.generate`` as one batch ``[S, K, C, H, W]``, ``images_per_support`` images each, with a
``torch.Generator`` seeded from (plan seed, protocol seed, class id, purpose). So the images do not depend on
the feature batch size, the rank, the world size or the worker count. Few-shot shot sets and low-data
supports are generated the same way, once per class, never once per episode. Generated images are quantised
to uint8 (as if saved to PNG) before any backbone sees them, like the real images.

Features are extracted once per image set in batches on the model's device, with autocast disabled; real
features come from the on-disk cache after the first evaluation. LPIPS scores all pairs of a class with one
backbone pass per image (see :mod:`fsgen_bench.eval.diversity`).

DDP: when ``torch.distributed`` is initialised the unseen classes are sharded ``classes[rank::world]``;
features, per-class diversity and few-shot episode accuracies are gathered, ordered by class id (episode
index), and every rank computes every metric on the same full set: N ranks give one rank's numbers. The
domain backbone is loaded or trained on rank 0 and broadcast. Only ``out_dir``'s sample grid is rank 0's.

Missing pretrained weights: the Inception FID/KID or the LPIPS record is skipped with a printed note saying
where the weights were looked for; no other backbone is ever reported under its name.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fsgen_bench.data.datamodule import to_uint8, to_unit_range
from fsgen_bench.errors import UserError
from fsgen_bench.eval import records as rec
from fsgen_bench.eval.backbone import DomainBackbone, data_fingerprint, obtain_domain_backbone, show_progress
from fsgen_bench.eval.distributed import DistContext
from fsgen_bench.eval.diversity import LpipsDistance, cosine_distances, mean_over_pairs
from fsgen_bench.eval.features import InceptionFeatures, load_real_cache, real_cache_path, save_real_cache
from fsgen_bench.eval.fewshot import fewshot_episodes, lowdata_accuracy, mean_ci95
from fsgen_bench.eval.fid import frechet_distance, kernel_distance
from fsgen_bench.eval.protocols import Protocol, get_protocol
from fsgen_bench.eval.weights import WeightsNotFound, find_inception_weights, find_lpips_backbone_weights

KNOWN_BACKBONES = ("domain", "inception")
GRID_CLASSES = 6          # rows of eval_samples.png
GRID_GENERATED = 8        # generated images per row (after the K conditional images)

# Purposes of generation; part of each class's generator seed so the streams never overlap.
_EVAL, _FEWSHOT, _LOWDATA = 0, 1, 2


# -- small helpers -----------------------------------------------------------------------------------------

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


def _class_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence mixes them; independent of Python's hash seed)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _generate(model, supports: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, num, C, H, W] from float supports [B, K, C, H, W].

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
    return to_uint8(out)


@dataclass
class _Local:
    """What this rank computed for its classes (features on CPU, per class id)."""

    gen: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)   # backbone -> class -> [G, D]
    fewshot: dict[int, torch.Tensor] = field(default_factory=dict)          # class -> [T * M, D] (domain)
    lowdata: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)  # n_real -> class -> [M, D]
    lpips: dict[int, torch.Tensor] = field(default_factory=dict)            # class -> [1] mean pairwise LPIPS
    diversity: dict[int, torch.Tensor] = field(default_factory=dict)        # class -> [1]
    grid: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


# -- the harness -------------------------------------------------------------------------------------------

def evaluate(model, datamodule, *, protocol: Protocol | str, eval_cfg: dict, cache_dir: Path, run_meta: dict,
             out_dir: Path | None = None, log=print) -> list[rec.MetricRecord]:
    """Score ``model`` on the unseen classes of ``datamodule`` under ``protocol``; see the module docstring."""
    started = time.perf_counter()
    ctx = DistContext.current()
    say = log if ctx.is_main else (lambda *a, **k: None)
    eval_cfg = dict(eval_cfg or {})
    protocol = resolve_protocol(protocol, eval_cfg)
    backbones = list(eval_cfg.get("backbones") or ["domain"])
    unknown = [b for b in backbones if b not in KNOWN_BACKBONES]
    if unknown:
        raise UserError(f"eval.backbones: unknown backbone(s) {unknown}; known: {', '.join(KNOWN_BACKBONES)}")
    batch_size = max(1, int(eval_cfg.get("batch_size") or 128))
    cache_dir = Path(cache_dir)
    if datamodule.images is None:
        datamodule.setup()
    images = datamodule.images
    plan = datamodule.eval_plan(protocol)
    plans = {c.class_id: c for c in plan.classes}
    class_ids = sorted(plans)
    device = _device_of(model)
    notes: list[str] = []

    # Backbones. The domain one always: few-shot classification and the offline diversity use it.
    domain = obtain_domain_backbone(images, cfg=eval_cfg.get("domain_backbone") or {}, cache_dir=cache_dir,
                                    seed=datamodule.seed, device=device, ctx=ctx, log=say)
    extractors: dict[str, object] = {}
    if "domain" in backbones:
        extractors["domain"] = domain
    if "inception" in backbones:
        try:
            weights = find_inception_weights(eval_cfg.get("inception_weights"))
            inception = InceptionFeatures(weights, antialias=protocol.fid_antialias, resize=protocol.fid_resize,
                                          device=device)
            if not inception.standard:
                say(f"warning: {weights.path} is not the standard FID Inception file (sha256 {inception.sha256}...); "
                    f"its FID/KID are not comparable with published numbers")
            extractors["inception"] = inception
        except WeightsNotFound as exc:
            notes.append(f"fid/inception and kid/inception skipped: {exc}")
        if not ctx.all_true("inception" in extractors) and extractors.pop("inception", None) is not None:
            # Node-local hub caches can differ; every rank must run the same collectives, so all skip.
            notes.append("fid/inception and kid/inception skipped: the Inception weights are missing on some ranks")
    lpips_model = None
    try:
        lw = find_lpips_backbone_weights(protocol.lpips_net, eval_cfg.get("lpips_backbone_weights"))
        lpips_model = LpipsDistance(protocol.lpips_net, lw, device=device, size=protocol.lpips_size)
    except WeightsNotFound as exc:
        notes.append(f"lpips/{protocol.lpips_net} skipped (diversity/domain is reported instead): {exc}")
    if not ctx.all_true(lpips_model is not None) and lpips_model is not None:
        lpips_model = None
        notes.append(f"lpips/{protocol.lpips_net} skipped: its backbone weights are missing on some ranks")
    data_fp = data_fingerprint(images.classes, class_ids)
    plan_fp = plan.fingerprint()
    real, cond = _real_features(datamodule, plans, class_ids, extractors, domain, ctx=ctx, cache_dir=cache_dir,
                                protocol=protocol, plan_fp=plan_fp, data_fp=data_fp, batch_size=batch_size, say=say)

    fs_enabled = bool(eval_cfg.get("fewshot", True))
    ld_enabled = bool(eval_cfg.get("lowdata", True))
    ways = [w for w in protocol.fewshot.ways if w <= len(class_ids)] if fs_enabled else []
    for w in protocol.fewshot.ways:
        if fs_enabled and w > len(class_ids):
            notes.append(f"fewshot {w}way skipped: only {len(class_ids)} unseen classes")
    lowdata_ns = []
    if ld_enabled:
        smallest = min(len(plans[c].real_unique()) for c in class_ids)
        for n in protocol.fewshot.lowdata_real:
            if n < smallest and n >= protocol.k_shot:
                lowdata_ns.append(n)
            else:
                notes.append(f"lowdata {n}real skipped: needs {max(n, protocol.k_shot)} training images and at least "
                             f"one test image in every class's real pool (smallest real pool: {smallest})")
    for note in notes:
        say(f"note: {note}")

    was_training = model.training
    model.eval()
    try:
        local = _generate_and_extract(
            model, datamodule, plans, ctx.shard(class_ids), extractors, domain, lpips_model, protocol=protocol,
            plan_seed=plan.seed, device=device, batch_size=batch_size, fewshot=bool(ways), lowdata_ns=lowdata_ns,
            keep_grid=ctx.is_main and out_dir is not None, show=ctx.is_main and show_progress(),
        )
    finally:
        model.train(was_training)

    # Gather everything, ordered by class id, on every rank.
    gen = {name: ctx.gather_rows(local.gen.get(name, {})) for name in extractors}
    fs_gen = ctx.gather_rows(local.fewshot) if ways else {}
    low_gen = {n: ctx.gather_rows(local.lowdata.get(n, {})) for n in lowdata_ns}
    lpips_per_class = ctx.gather_rows(local.lpips) if lpips_model is not None else {}
    div_per_class = ctx.gather_rows(local.diversity)

    # Metrics (identical on every rank).
    results: list[tuple] = []   # (metric, backbone, setting, value, ci95, extra)
    n_real = sum(len(plans[c].real) for c in class_ids)
    real_domain = real["domain"]
    for name in extractors:
        feats = real[name]
        real_all = torch.cat([feats[c] for c in class_ids])
        fake_all = torch.cat([gen[name][c] for c in class_ids])
        bb_extra = _backbone_extra(name, extractors[name])
        counts = {"real_images": int(real_all.shape[0]), "generated_images": int(fake_all.shape[0])}
        results.append(("fid", name, "", frechet_distance(real_all, fake_all), None, {**counts, **bb_extra}))
        kid = kernel_distance(real_all, fake_all, subset_size=protocol.kid_subset_size, subsets=protocol.kid_subsets,
                              seed=protocol.seed)
        results.append(("kid", name, "", kid.mean, 1.96 * kid.std,
                        {**counts, **bb_extra, "kid_std": kid.std, "kid_subset_size": kid.subset_size,
                         "kid_subsets": kid.subsets}))
    pair_extra = {"pairs": protocol.lpips_pairs, "images_per_class": protocol.num_generated}
    if lpips_model is not None:
        values = np.array([float(lpips_per_class[c][0]) for c in class_ids])
        results.append(("lpips", protocol.lpips_net, "", float(np.nanmean(values)), None,
                        {**pair_extra, "size": protocol.lpips_size,
                         "input_side": lpips_model.input_side(images.info.image_size),
                         "weights": str(lpips_model.weights.path),
                         "weights_sha256": lpips_model.weights.sha256_prefix()}))
    div = np.array([float(div_per_class[c][0]) for c in class_ids])
    real_div = np.array([mean_over_pairs(cosine_distances(_unique_real(real_domain, plans[c], c)), "all")
                         for c in class_ids])
    results.append(("diversity", "domain", "", float(np.nanmean(div)), None,
                    {**pair_extra, "distance": "1 - cosine of domain features",
                     "real_pool_diversity": float(np.nanmean(real_div))}))

    fs = protocol.fewshot
    for w in ways:
        shots = {c: cond[c][torch.from_numpy(plans[c].shot_sets)] for c in class_ids}          # [T, S, D]
        gen_fs = {c: fs_gen[c].view(fs.shot_sets, fs.generated_per_class, -1) for c in class_ids}
        queries = {c: _unique_real(real_domain, plans[c], c)[: fs.queries] for c in class_ids}
        res = fewshot_episodes(shots, gen_fs, queries, ways=w, episodes=fs.episodes, seed=plan.seed,
                               protocol_seed=protocol.seed, c=fs.classifier_c, max_iter=fs.classifier_max_iter, ctx=ctx)
        setting = f"{w}way{fs.shots}shot"
        extra = {"episodes": fs.episodes, "ways": w, "shots": fs.shots, "queries_per_class": res.queries_per_class,
                 "added_generated_per_class": res.generated_per_class, "shot_sets": fs.shot_sets,
                 "classifier": f"LogisticRegression(C={fs.classifier_c}, max_iter={fs.classifier_max_iter}, solver=lbfgs)"}
        for metric, values in (("fewshot_acc_real", res.acc_real), ("fewshot_acc_gen", res.acc_gen),
                               ("fewshot_gain", res.gain)):
            mean, ci = mean_ci95(values)
            results.append((metric, "domain", setting, mean, ci, extra))
    for n in lowdata_ns:
        train = {c: _unique_real(real_domain, plans[c], c)[:n] for c in class_ids}
        test = {c: _unique_real(real_domain, plans[c], c)[n:] for c in class_ids}
        res = lowdata_accuracy(train, {c: low_gen[n][c] for c in class_ids}, test, n_real=n,
                               c=fs.classifier_c, max_iter=fs.classifier_max_iter)
        extra = {"train_images": res.train_images, "test_images": res.test_images,
                 "added_generated_per_class": res.generated_per_class, "k_shot": protocol.k_shot,
                 "classes": len(class_ids)}
        for metric, values in (("lowdata_acc_real", res.correct_real), ("lowdata_acc_gen", res.correct_gen),
                               ("lowdata_gain", res.correct_gen - res.correct_real)):
            mean, ci = mean_ci95(values)
            results.append((metric, "domain", f"{n}real", mean, ci, extra))

    if out_dir is not None and ctx.is_main and local.grid:
        save_sample_grid(local.grid, Path(out_dir) / "eval_samples.png")

    wall_s = time.perf_counter() - started
    common = {"classes": len(class_ids), "generated_per_class": protocol.num_generated, "k_shot": protocol.k_shot,
              "real_pool_images": n_real, "domain_val_acc": domain.meta.get("val_acc"),
              "domain_backbone": domain.key, "domain_backbone_cached": bool(domain.meta.get("cached")),
              "world_size": ctx.world}
    if notes:
        common["skipped"] = [n.split(":")[0] for n in notes]
    meta_extra = {k: v for k, v in run_meta.items()
                  if k not in ("run_id", "method", "dataset", "seed", "config_hash", "preset")}
    code, hw = rec.code_version(), rec.hardware()
    out = []
    for metric, backbone, setting, value, ci, extra in results:
        if not math.isfinite(value):
            # e.g. a diversity with one image per class: no pairs. A record must hold a number (strict JSON).
            say(f"note: {metric}/{backbone}{'/' + setting if setting else ''} is undefined here; no record written")
            continue
        if ci is not None and not math.isfinite(ci):
            ci = None
        out.append(rec.MetricRecord(
            run_id=str(run_meta.get("run_id", "")), method=str(run_meta.get("method", "")),
            dataset=str(run_meta.get("dataset", images.info.name)), protocol=protocol.id, metric=metric,
            backbone=backbone, value=float(value), ci95=None if ci is None else float(ci), setting=setting,
            seed=int(run_meta.get("seed", datamodule.seed)), config_hash=str(run_meta.get("config_hash", "")),
            code_version=code, hardware=hw, wall_time_s=round(wall_s, 3), preset=run_meta.get("preset"),
            extra={**common, **meta_extra, **extra},
        ))
    say(f"evaluation of {run_meta.get('method', 'model')} under {protocol.id}: {len(out)} records in {wall_s:.1f}s")
    return out


def _unique_real(real_feats: dict[int, torch.Tensor], cplan, class_id: int) -> torch.Tensor:
    """Rows of the class's distinct real-pool images, first-seen order (matches ClassPlan.real_unique)."""
    _, first = np.unique(cplan.real, return_index=True)
    return real_feats[class_id][torch.from_numpy(np.sort(first))]


def _backbone_extra(name: str, extractor) -> dict:
    if name == "inception":
        return {"antialias": extractor.antialias, "resize": extractor.resize, "weights": str(extractor.weights.path),
                "weights_sha256": extractor.sha256, "standard_weights": extractor.standard}
    return {"num_features": extractor.num_features}


def _real_features(datamodule, plans, class_ids, extractors, domain: DomainBackbone, *, ctx, cache_dir, protocol,
                   plan_fp, data_fp, batch_size, say) -> tuple[dict[str, dict[int, torch.Tensor]], dict[int, torch.Tensor]]:
    """Real-pool features per backbone (rows in ``ClassPlan.real`` order) and domain features of the cond pools.

    The domain backbone's real features are always computed (few-shot queries, low-data splits) even when
    ``domain`` is not a FID backbone. Each distinct image is extracted once; cached on disk per backbone.
    """
    wanted = dict(extractors)
    wanted.setdefault("domain", domain)
    real: dict[str, dict[int, torch.Tensor]] = {}
    cond: dict[int, torch.Tensor] = {}
    info = datamodule.images.info
    for name, ext in wanted.items():
        path = real_cache_path(cache_dir, dataset=info.name, protocol=protocol, backbone_token=ext.cache_token,
                               image_size=info.image_size, plan_fingerprint=plan_fp, data_fingerprint=data_fp)
        cached = load_real_cache(path, class_ids)
        if name == "domain" and cached is not None and sorted(cached.get("cond", {})) != sorted(class_ids):
            cached = None
        if ctx.all_true(cached is not None):
            real[name] = {int(c): t for c, t in cached["real"].items()}
            if name == "domain":
                cond = {int(c): t for c, t in cached["cond"].items()}
            continue
        local_real, local_cond = {}, {}
        for c in ctx.shard(class_ids):
            cp = plans[c]
            imgs = datamodule.class_images(c)
            uniq, inverse = np.unique(cp.real, return_inverse=True)
            if name == "domain":
                both = ext.extract(imgs[torch.from_numpy(np.concatenate([uniq, cp.cond]))], batch_size)
                local_real[c] = both[: len(uniq)][torch.from_numpy(inverse)]
                local_cond[c] = both[len(uniq):]
            else:
                local_real[c] = ext.extract(imgs[torch.from_numpy(uniq)], batch_size)[torch.from_numpy(inverse)]
        real[name] = ctx.gather_rows(local_real)
        payload = {"real": real[name], "protocol": protocol.id, "backbone": ext.cache_token}
        if name == "domain":
            cond = ctx.gather_rows(local_cond)
            payload["cond"] = cond
        if cached is None:
            save_real_cache(path, payload)   # every rank that missed writes (node-local caches); atomic
        say(f"real-pool features ({name}) computed and cached at {path}")
    return real, cond


def _generate_and_extract(model, datamodule, plans, my_classes, extractors, domain: DomainBackbone,
                          lpips_model: LpipsDistance | None, *, protocol: Protocol, plan_seed: int,
                          device: torch.device, batch_size: int, fewshot: bool, lowdata_ns: list[int],
                          keep_grid: bool, show: bool) -> _Local:
    """Generate every image this rank's classes need, once, and extract their features in class groups."""
    local = _Local(gen={name: {} for name in extractors})
    fs = protocol.fewshot
    pending: list[tuple[int, dict[str, torch.Tensor]]] = []
    pending_images = 0

    def flush():
        nonlocal pending, pending_images
        if not pending:
            return
        # Domain features of every generated image of the group in one batched pass.
        parts = [(c, kind, t) for c, sets in pending for kind, t in sets.items()]
        feats = domain.extract(torch.cat([t for _, _, t in parts]), batch_size) if parts else None
        offset = 0
        by_class: dict[int, dict[str, torch.Tensor]] = {}
        for c, kind, t in parts:
            by_class.setdefault(c, {})[kind] = feats[offset:offset + t.shape[0]]
            offset += t.shape[0]
        for c, sets in pending:
            f = by_class[c]
            if "domain" in extractors:
                local.gen["domain"][c] = f["eval"]
            local.diversity[c] = torch.tensor([mean_over_pairs(cosine_distances(f["eval"]), protocol.lpips_pairs)],
                                              dtype=torch.float64)
            if fewshot:
                local.fewshot[c] = f["fewshot"]
            for n in lowdata_ns:
                local.lowdata.setdefault(n, {})[c] = f[f"low{n}"]
            if lpips_model is not None:
                d = lpips_model.pairwise(sets["eval"], batch_size)
                local.lpips[c] = torch.tensor([mean_over_pairs(d, protocol.lpips_pairs)], dtype=torch.float64)
        if "inception" in extractors:
            evals = torch.cat([sets["eval"] for _, sets in pending])
            incep = extractors["inception"].extract(evals, batch_size)
            offset = 0
            for c, sets in pending:
                n = sets["eval"].shape[0]
                local.gen["inception"][c] = incep[offset:offset + n]
                offset += n
        pending, pending_images = [], 0

    bar = tqdm(total=len(my_classes), desc="evaluating classes", disable=not show, leave=False)
    with torch.no_grad():
        for c in my_classes:
            cp = plans[c]
            imgs = datamodule.class_images(c)
            cond = to_unit_range(imgs[torch.from_numpy(cp.cond)].to(device))
            sets: dict[str, torch.Tensor] = {}
            gen = torch.Generator(device=device).manual_seed(_class_seed(plan_seed, protocol.seed, c, _EVAL))
            fake = _generate(model, cond[torch.from_numpy(cp.supports).to(device)], cp.images_per_support, gen)
            sets["eval"] = fake.flatten(0, 1)
            if keep_grid and len(local.grid) < GRID_CLASSES:
                local.grid.append((to_uint8(cond[torch.from_numpy(cp.supports[0]).to(device)]).cpu(),
                                   sets["eval"][:GRID_GENERATED].cpu()))
            if fewshot:
                gen = torch.Generator(device=device).manual_seed(_class_seed(plan_seed, protocol.seed, c, _FEWSHOT))
                shots = cond[torch.from_numpy(cp.shot_sets).to(device)]
                sets["fewshot"] = _generate(model, shots, fs.generated_per_class, gen).flatten(0, 1)
            if lowdata_ns:
                gen = torch.Generator(device=device).manual_seed(_class_seed(plan_seed, protocol.seed, c, _LOWDATA))
                uniq = cp.real_unique()
                supports = torch.stack([to_unit_range(imgs[torch.from_numpy(uniq[: protocol.k_shot])].to(device))
                                        for _ in lowdata_ns])
                # Every low-data setting conditions on the first K of its n training images: the same K images
                # for all n (they are the first n of one ordering), generated once per setting for its own M.
                low = _generate(model, supports, fs.lowdata_generated_per_class, gen)
                for i, n in enumerate(lowdata_ns):
                    sets[f"low{n}"] = low[i]
            pending.append((c, sets))
            pending_images += sum(t.shape[0] for t in sets.values())
            if pending_images >= batch_size:
                flush()
            bar.update(1)
        flush()
    bar.close()
    return local


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
    """A plain-text table: one block per (method, dataset, protocol), one line per metric."""
    if not records:
        return "(no records)"
    lines = []
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r.method, r.dataset, r.protocol), []).append(r)
    for (method, dataset, protocol), rs in groups.items():
        wall = max(r.wall_time_s for r in rs)
        lines.append(f"{method} on {dataset}, protocol {protocol} ({wall:.1f}s)")
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
