from __future__ import annotations

import pytest

from fsgen_bench.config import apply_set, config_hash, resolve
from fsgen_bench.errors import UserError
from fsgen_bench.methods import METHODS as REGISTRY


def test_layers_apply_in_order():
    cfg = resolve(method="copy-support", dataset="glyphs", preset="smoke", overrides=["data.batch_size=2"])
    assert cfg["data"]["name"] == "glyphs"          # dataset layer
    assert cfg["data"]["episodes_per_epoch"] == 8   # preset layer beats defaults
    assert cfg["data"]["batch_size"] == 2           # --set beats the preset
    assert cfg["run"]["method"] == "copy-support" and cfg["run"]["preset"] == "smoke"


def test_generic_dataset_sets_path():
    cfg = resolve(method="noise", dataset="npy:/tmp/x.npy", preset=None)
    assert cfg["data"]["name"] == "npy" and cfg["data"]["path"] == "/tmp/x.npy"


@pytest.mark.parametrize("bad", ["data.batch_sise=3", "nosuch.key=1"])
def test_unknown_keys_are_errors(bad):
    cfg = resolve(method="noise", dataset="glyphs", preset=None)
    with pytest.raises(UserError, match="unknown config key"):
        apply_set(cfg, bad)


def test_unknown_names_list_known_ones():
    with pytest.raises(UserError, match="known methods:.*f2gan"):
        resolve(method="nosuch", dataset="glyphs", preset=None)
    with pytest.raises(UserError, match="known datasets:.*glyphs"):
        resolve(method="noise", dataset="nosuch", preset=None)
    with pytest.raises(UserError, match="known presets:.*quick"):
        resolve(method="noise", dataset="glyphs", preset="huge")


def test_set_parses_yaml_values_and_hash_changes():
    cfg = resolve(method="noise", dataset="glyphs", preset=None)
    c2 = apply_set(cfg, "eval.backbones=[domain]")
    assert c2["eval"]["backbones"] == ["domain"]
    assert config_hash(cfg) != config_hash(c2)
    c3 = apply_set(cfg, "run.results_dir=/elsewhere")
    assert config_hash(cfg) == config_hash(c3)   # where results go does not change what is computed
    c4 = apply_set(cfg, "logger.kind=wandb")
    assert config_hash(cfg) == config_hash(c4)   # nor does the logger that watches the run


def test_generic_data_keys_are_declared_in_defaults(tmp_path):
    """Every data key a reader understands for any dataset is declared (with its default) in defaults.yaml, so
    `--set data.num_unseen_classes=N` works for npy/folder too, and does what it says."""
    from fsgen_bench.data import load_dataset
    from helpers import make_npy

    path = make_npy(tmp_path / "ten.npy", classes=10, images=4, size=8)
    cfg = resolve(method="noise", dataset=f"npy:{path}", preset=None,
                  overrides=["data.num_seen_classes=6", "data.num_unseen_classes=2"])
    images = load_dataset(cfg["data"], tmp_path / "cache")
    assert images.seen == list(range(6)) and images.unseen == [6, 7]     # classes 8 and 9 are never read
    plain = resolve(method="noise", dataset="glyphs", preset=None)
    assert plain["data"]["num_unseen_classes"] is None and plain["run"]["results_dir"] == "outputs"


# -- no layer line that changes nothing -------------------------------------------------------------------------

DATASETS = ["glyphs", "omniglot", "emnist", "vggface", "flowers", "animalfaces", "npy:/x.npy", "folder:/x"]
METHODS = REGISTRY.names()           # every registered method: a new one needs no edit here


def _leaves(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,)


def _drop(tree: dict, keys: tuple) -> None:
    for key in keys[:-1]:
        tree = tree[key]
    del tree[keys[-1]]


def test_no_preset_or_dataset_line_restates_what_the_layers_below_give(monkeypatch):
    """Each line of configs/presets/*.yaml and of a dataset file's `presets:` section changes the resolved config
    of at least one (dataset, method) pair; a line that changes none (paper's k_shot: 3, the default) is noise
    that hides which values the preset really sets."""
    import copy
    import functools
    from pathlib import Path

    from fsgen_bench import config

    root = config.configs_dir()
    read = functools.lru_cache(maxsize=None)(config.load_yaml)
    dropped: dict[Path, tuple] = {}

    def load(path):
        data = copy.deepcopy(read(Path(path)))
        if Path(path) in dropped:
            _drop(data, dropped[Path(path)])
        return data

    monkeypatch.setattr(config, "load_yaml", load)
    lines = [(root / "presets" / f"{p}.yaml", keys, p) for p in ("smoke", "quick", "paper")
             for keys in _leaves(read(root / "presets" / f"{p}.yaml"))]
    for ds in DATASETS:
        ds_file = root / "datasets" / f"{config.dataset_config_name(ds)}.yaml"
        for preset, section in (read(ds_file).get("presets") or {}).items():
            lines += [(ds_file, ("presets", preset, *keys), preset) for keys in _leaves(section)]
    full = {(ds, m, p): config.resolve(method=m, dataset=ds, preset=p)
            for ds in DATASETS for m in METHODS for p in {line[2] for line in lines}}
    dead = []
    for path, keys, preset in lines:
        pairs = [(ds, m) for ds in DATASETS for m in METHODS
                 if path.parent.name == "presets" or config.dataset_config_name(ds) == path.stem]
        dropped[path] = keys
        without = [config.resolve(method=m, dataset=ds, preset=preset) for ds, m in pairs]
        del dropped[path]
        if [full[ds, m, preset] for ds, m in pairs] == without:
            dead.append(f"{path.relative_to(root)}: {'.'.join(keys)}")
    assert not dead, "lines that change no resolved config (remove them):\n  " + "\n  ".join(dead)
