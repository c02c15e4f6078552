"""The pretrained feature backbones beyond Inception: one constructor per name, found like the Inception file.

``build_pretrained_extractor(name, eval_cfg, device=...)`` locates the backbone's weight file (option
``eval.<name>_weights``, its environment variable, the torch hub cache), checks it, and returns an extractor
with the interface of ``features.InceptionFeatures`` (``extract``, ``name``, ``num_features``, ``cache_token``,
``weights``, ``standard``) plus ``record_extra()``, the fields a FID/KID record carries. A missing file raises
:class:`~fsgen_bench.eval.weights.WeightsNotFound`: the harness skips the metric with the note; a damaged or
wrong file raises a plain UserError (exit 2).
"""

from __future__ import annotations

import torch

from fsgen_bench.eval.weights import get_spec, locate


def _dinov2(weights, *, name, device):
    from fsgen_bench.eval.dinov2 import DinoV2Features
    return DinoV2Features(weights, name=name, device=device)


def _clip(weights, *, name, device):
    from fsgen_bench.eval.clip import ClipFeatures
    return ClipFeatures(weights, name=name, device=device)


#: backbone name -> constructor ``(WeightsFile, *, name, device) -> extractor``; each name is a registry entry.
PRETRAINED_BACKBONES = {"dinov2": _dinov2, "dinov2-s": _dinov2, "clip": _clip}


def build_pretrained_extractor(name: str, eval_cfg: dict, *, device: torch.device):
    """Find, check and load backbone ``name``'s weights; WeightsNotFound when the file is nowhere.

    The extractor checks the file (:func:`~fsgen_bench.eval.weights.verify`) as it loads it, so it is read once.
    """
    spec = get_spec(name)
    weights = locate(spec, (eval_cfg or {}).get(spec.option_field))
    return PRETRAINED_BACKBONES[name](weights, name=name, device=device)
