"""Layered YAML configuration.

Resolution order (later wins):
    configs/defaults.yaml
    configs/datasets/<dataset>.yaml      (a generic ``npy:``/``folder:`` dataset uses configs/datasets/<kind>.yaml)
    configs/methods/<method>.yaml
    presets, each layer's ``presets.<preset>`` section in the same order as above,
        after configs/presets/<preset>.yaml
    --config FILE (repeatable)
    --set key=value (repeatable)

A key that no layer defines is an error (typos must not be silently ignored). The resolved config is a plain
nested dict; ``config_hash`` fingerprints it for records.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from fsgen_bench.atomic import atomic_write
from fsgen_bench.errors import UserError


def configs_dir() -> Path:
    """The configs/ folder: the checkout's (next to src/ in a checkout or editable install), else the copy a
    wheel installs as the data-only package ``fsgen_bench.configs``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "configs" / "defaults.yaml"
        if candidate.is_file():
            return candidate.parent
    installed = here.parent / "configs"          # site-packages/fsgen_bench/configs in a wheel install
    if (installed / "defaults.yaml").is_file():
        return installed
    raise UserError(
        "cannot find configs/defaults.yaml (neither in a checkout nor in the installed package); reinstall "
        "fsgen-bench, e.g. `pip install -e .` from a checkout"
    )


def load_yaml(path: Path) -> dict:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    return data


def deep_merge(base: dict, override: dict, *, strict: bool, where: str) -> dict:
    """Merge ``override`` into a copy of ``base``. With ``strict``, keys must already exist in ``base``."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if strict and key not in out:
            known = ", ".join(sorted(out)) or "(none)"
            raise UserError(f"unknown config key {where}{key!r} (known here: {known})")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, strict=strict, where=f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """Parse a --set value with YAML rules (numbers, booleans, null, lists)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_set(cfg: dict, assignment: str) -> dict:
    if "=" not in assignment:
        raise UserError(f"--set expects key=value, got {assignment!r} (example: --set train.max_steps=100)")
    dotted, _, raw = assignment.partition("=")
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise UserError(f"--set {assignment!r} has an empty key")
    override: dict = {}
    node = override
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = parse_value(raw)
    return deep_merge(cfg, override, strict=True, where="")


def _split_presets(layer: dict) -> tuple[dict, dict]:
    layer = dict(layer)
    presets = layer.pop("presets", {}) or {}
    return layer, presets


def dataset_config_name(dataset: str) -> str:
    """``npy:/path`` -> ``npy``; ``folder:/path`` -> ``folder``; a registered name -> itself."""
    return dataset.split(":", 1)[0] if ":" in dataset else dataset


def resolve(
    *,
    method: str,
    dataset: str,
    preset: str | None,
    config_files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    seed: int | None = None,
    root: Path | None = None,
) -> dict:
    root = root or configs_dir()
    base, base_presets = _split_presets(load_yaml(root / "defaults.yaml"))
    ds_name = dataset_config_name(dataset)
    ds_file = root / "datasets" / f"{ds_name}.yaml"
    m_file = root / "methods" / f"{method}.yaml"
    if not ds_file.is_file():
        known = sorted(p.stem for p in (root / "datasets").glob("*.yaml"))
        raise UserError(f"unknown dataset {dataset!r}; known datasets: {', '.join(known)} (or npy:PATH, folder:PATH)")
    # Imported here: the methods pull in Lightning, and the CLI reads configs (`datasets`) without them.
    from fsgen_bench.methods import METHODS

    if method not in METHODS:
        METHODS.get(method)  # raises a UserError that lists the registered methods
    if not m_file.is_file():
        raise UserError(f"method {method!r} is registered but has no config file {m_file}")
    ds_layer, ds_presets = _split_presets(load_yaml(ds_file))
    m_layer, m_presets = _split_presets(load_yaml(m_file))

    # Dataset and method files may add keys under data/method/eval (they own those sections); the section
    # `method` is introduced by the method file, so the merge there is not strict.
    cfg = deep_merge(base, ds_layer, strict=False, where="")
    cfg = deep_merge(cfg, m_layer, strict=False, where="")
    if preset is not None:
        p_file = root / "presets" / f"{preset}.yaml"
        if not p_file.is_file():
            known = sorted(p.stem for p in (root / "presets").glob("*.yaml"))
            raise UserError(f"unknown preset {preset!r}; known presets: {', '.join(known)}")
        cfg = deep_merge(cfg, load_yaml(p_file), strict=True, where="")
        for layer_presets, label in ((base_presets, "defaults"), (ds_presets, ds_name), (m_presets, method)):
            if preset in layer_presets:
                cfg = deep_merge(cfg, layer_presets[preset] or {}, strict=True, where=f"[{label}.presets.{preset}] ")
    for extra in config_files:
        cfg = deep_merge(cfg, load_yaml(Path(extra)), strict=True, where=f"[{extra}] ")
    for assignment in overrides:
        cfg = apply_set(cfg, assignment)
    cfg["run"]["method"] = method
    cfg["run"]["dataset"] = dataset
    cfg["run"]["preset"] = preset
    if seed is not None:
        cfg["run"]["seed"] = int(seed)
    if ":" in dataset:
        cfg["data"]["path"] = dataset.split(":", 1)[1]
    return cfg


# Config entries that choose where results go or how a run is watched, not what it computes: they stay out of
# the config hash and out of run ids (a --set on them resumes the same run). Sections or dotted keys.
WATCH_ONLY_KEYS = ("logger", "run.results_dir")


def is_watch_only(key: str) -> bool:
    """True for ``logger.kind``, ``run.results_dir`` and the like (see WATCH_ONLY_KEYS)."""
    return any(key == k or key.startswith(k + ".") for k in WATCH_ONLY_KEYS)


def config_hash(cfg: dict) -> str:
    """A short fingerprint of the resolved config: what determines the numbers. The watch-only entries (where
    results are written, the logger) and the run folder's name are left out."""
    stripped = copy.deepcopy(cfg)
    for key in WATCH_ONLY_KEYS + ("run.name",):
        *parents, leaf = key.split(".")
        node = stripped
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    blob = json.dumps(stripped, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def dump(cfg: dict, path: Path) -> None:
    """The resolved config as YAML, written atomically (a run folder's config.yaml)."""
    with atomic_write(path) as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)


def cache_dir(cfg: dict | None = None) -> Path:
    """Where derived data is cached: ``run.cache_dir``, else $FSGEN_CACHE, else ~/.cache/fsgen-bench."""
    if cfg is not None and cfg.get("run", {}).get("cache_dir"):
        return Path(cfg["run"]["cache_dir"]).expanduser()
    if os.environ.get("FSGEN_CACHE"):
        return Path(os.environ["FSGEN_CACHE"]).expanduser()
    return Path.home() / ".cache" / "fsgen-bench"
