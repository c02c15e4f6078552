"""One source per default: configs/methods/<name>.yaml (section ``method``) holds every method default.

For every registered method (new ones are covered without edits) the YAML section and the constructor must name
the same keys; a constructor default, where a method still has one, must equal the YAML value; every key carries
a comment that says why; a method with variants names its default variant in both places alike.
"""

from __future__ import annotations

import inspect
import re

import pytest
from helpers import method_defaults

from fsgen_bench.config import configs_dir
from fsgen_bench.methods import METHODS

#: supplied by the data, not by the method's config
DATA_KEYS = {"image_size", "channels", "num_seen_classes", "k_shot"}


def _normalise(value):
    return [_normalise(v) for v in value] if isinstance(value, (list, tuple)) else value


def _keyword_parameters(cls) -> tuple[dict, bool]:
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    own = {k: p for k, p in params.items() if k != "self" and k not in DATA_KEYS
           and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    return own, takes_any


@pytest.mark.parametrize("name", METHODS.names())
def test_yaml_and_constructor_name_the_same_keys_with_the_same_defaults(name):
    cls = METHODS.get(name)
    yaml_params = method_defaults(name)
    own, takes_any = _keyword_parameters(cls)
    missing = sorted(set(own) - set(yaml_params))
    assert not missing, f"{name}: constructor keys without a default in configs/methods/{name}.yaml: {missing}"
    if not takes_any:
        unknown = sorted(set(yaml_params) - set(own))
        assert not unknown, f"{name}: configs/methods/{name}.yaml keys the constructor does not take: {unknown}"
    for key, p in own.items():
        if p.default is not inspect.Parameter.empty:
            assert _normalise(p.default) == _normalise(yaml_params[key]), (
                f"{name}: method.{key} is {yaml_params[key]!r} in the YAML but {p.default!r} in the constructor")


@pytest.mark.parametrize("name", METHODS.names())
def test_every_default_is_commented_where_it_is_defined(name):
    text = (configs_dir() / "methods" / f"{name}.yaml").read_text()
    section = text.split("\nmethod:\n", 1)[1].split("\n\n", 1)[0].split("\npresets:", 1)[0]
    bare = [m.group(1) for line in section.splitlines()
            if (m := re.match(r"^  (\w+):", line)) and m.group(1) != "name" and "#" not in line]
    assert not bare, f"{name}: method keys without a comment saying why: {bare}"


@pytest.mark.parametrize("name", METHODS.names())
def test_default_variant_matches_the_yaml(name):
    cls = METHODS.get(name)
    yaml_params = method_defaults(name)
    if not cls.variants:
        assert cls.default_variant is None and "variant" not in yaml_params, name
        return
    assert yaml_params.get("variant") == cls.default_variant, (
        f"{name}: default_variant {cls.default_variant!r} but method.variant {yaml_params.get('variant')!r} in YAML")
    assert cls.default_variant in cls.variants
