from __future__ import annotations

import pytest

from fsgen_bench.config import apply_set, config_hash, resolve
from fsgen_bench.errors import UserError


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
