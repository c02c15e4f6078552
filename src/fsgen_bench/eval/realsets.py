"""The real-image stage: features of every class's real set and conditional pool, per backbone, cached.

Each distinct image is brought to the evaluation resolution and extracted once; rows are returned in
``ClassPlan.real`` order (repeats included, for a protocol that samples its real set with replacement) and
``ClassPlan.cond`` order. Held-out rows are a view of the real rows (``ClassPlan.heldout`` order). Real
features depend only on (dataset, data, protocol, backbone, served size, resolution, plan), never on the
method, so they are cached on disk (atomic writes) and computed once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fsgen_bench.eval.distributed import DistContext
from fsgen_bench.eval.features import load_real_cache, real_cache_path, save_real_cache
from fsgen_bench.eval.pixels import to_side


def heldout_rows(cp) -> torch.Tensor:
    """Positions in ``cp.real`` of the class's held-out images (first occurrence, ``cp.heldout()`` order)."""
    held = cp.heldout()
    first = {int(v): i for i, v in reversed(list(enumerate(cp.real)))}
    return torch.tensor([first[int(v)] for v in held], dtype=torch.long)


def real_features(datamodule, plans: dict, class_ids: list[int], extractors: dict, *, ctx: DistContext,
                  cache_dir: Path, protocol, plan_fp: str, data_fp: str, resolution: int, batch_size: int,
                  say) -> tuple[dict, dict]:
    """(real, cond): backbone -> class -> features of the real set / the conditional pool."""
    real: dict[str, dict[int, torch.Tensor]] = {}
    cond: dict[str, dict[int, torch.Tensor]] = {}
    info = datamodule.images.info
    for name, ext in extractors.items():
        path = real_cache_path(cache_dir, dataset=info.name, protocol=protocol, backbone_token=ext.cache_token,
                               image_size=info.image_size, resolution=resolution, plan_fingerprint=plan_fp,
                               data_fingerprint=data_fp)
        cached = load_real_cache(path, class_ids)
        if ctx.all_true(cached is not None):
            real[name] = {int(c): t for c, t in cached["real"].items()}
            cond[name] = {int(c): t for c, t in cached["cond"].items()}
            continue
        local_real, local_cond = {}, {}
        for c in ctx.shard(class_ids):
            cp = plans[c]
            imgs = datamodule.class_images(c)
            uniq, inverse = np.unique(cp.real, return_inverse=True)
            both = to_side(imgs[torch.from_numpy(np.concatenate([uniq, cp.cond]))], resolution)
            feats = ext.extract(both, batch_size)
            local_real[c] = feats[: len(uniq)][torch.from_numpy(inverse.reshape(-1))]
            local_cond[c] = feats[len(uniq):]
        real[name], cond[name] = ctx.gather_rows(local_real), ctx.gather_rows(local_cond)
        if cached is None:   # every rank that missed writes (node-local caches); atomic
            save_real_cache(path, {"real": real[name], "cond": cond[name], "protocol": protocol.id,
                                   "backbone": ext.cache_token})
        say(f"real-set features ({name}) computed and cached at {path}")
    return real, cond
