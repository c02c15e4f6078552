"""Weight files are found from an option, an environment variable or the hub cache, checked, and loaded for real.

The files are written by the tests (right keys and shapes, random values): the loading code is real, the
numbers are not claimed. Their hashes are not the standard ones, so a test that puts one in the hub cache
patches the registry's expected hash for that test (a file in the hub cache under a standard name must be the
standard file); files named by an option or variable are accepted as non-standard. The FID Inception file
(~96 MB, ~10 s to build and load on 2 cores) is marked slow.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from fsgen_bench.errors import UserError
from fsgen_bench.eval import weights as W
from fsgen_bench.eval.diversity import LpipsDistance
from test_eval_support import write_random_inception


@pytest.fixture
def no_weight_env(monkeypatch, tmp_path):
    for spec in W.REGISTRY.values():
        monkeypatch.delenv(spec.env_var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path


def _accept_as_standard(monkeypatch, name, path):
    """Make the registry expect ``path``'s hash, as if the test-made file were the published one."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(W.REGISTRY, name, dataclasses.replace(W.REGISTRY[name], sha256=digest[:8]))


def _hub(tmp_path):
    d = tmp_path / "torch-home" / "hub" / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_lookup_order_option_env_hub(no_weight_env, monkeypatch):
    tmp = no_weight_env
    spec = W.REGISTRY["inception"]
    hub_file = _hub(tmp) / W.INCEPTION_FILE
    hub_file.write_bytes(b"hub")
    env_file, opt_file = tmp / "env.pth", tmp / "opt.pth"
    env_file.write_bytes(b"env")
    opt_file.write_bytes(b"opt")
    assert W.locate(spec, None) == W.WeightsFile(hub_file, "hub")
    monkeypatch.setenv(W.INCEPTION_ENV, str(env_file))
    assert W.locate(spec, None) == W.WeightsFile(env_file, "env")
    assert W.locate(spec, str(opt_file)) == W.WeightsFile(opt_file, "option")


def test_registry_hashes_are_what_torch_hub_checks():
    from torch.hub import HASH_REGEX

    assert {"inception", "lpips-alex", "lpips-vgg", "dinov2", "clip"} <= set(W.REGISTRY)
    for spec in W.REGISTRY.values():
        if spec.sha256 is None:
            assert spec.name.startswith("dinov2") and "none published" in spec.hash_source
            continue
        # torch.hub.load_state_dict_from_url(check_hash=True) compares the digest with this part of the name.
        assert HASH_REGEX.search(spec.file).group(1) == spec.sha256
        assert spec.sha256 in spec.url and spec.option_key.startswith("eval.")
    assert len(W.REGISTRY["clip"].sha256) == 64
    assert W.LPIPS_BACKBONE_FILES == {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                                      "squeeze": "squeezenet1_1-b8a52dc0.pth"}


@pytest.mark.parametrize("name", ["lpips-alex", "lpips-vgg", "dinov2", "dinov2-s", "clip"])
def test_registry_knows_each_networks_keys_and_shapes(name):
    shapes = W.REGISTRY[name].shapes()
    n_params = sum(torch.Size(s).numel() for s in shapes.values())
    expected = {"lpips-alex": 61_100_840, "lpips-vgg": 138_357_544,        # torchvision's num_params
                "dinov2": 304_368_640, "dinov2-s": 22_056_576}           # ViT-L/14, ViT-S/14 incl. mask token
    if name in expected:
        assert n_params == expected[name]
    else:
        assert shapes["visual.conv1.weight"] == (1024, 3, 14, 14) and shapes["visual.proj"] == (1024, 768)
        assert shapes["visual.positional_embedding"] == (577, 1024)          # (336 / 14)^2 + 1


def test_a_hub_file_must_be_the_standard_file(no_weight_env, squeeze_state, monkeypatch):
    path = _hub(no_weight_env) / W.LPIPS_BACKBONE_FILES["squeeze"]
    torch.save(squeeze_state, path)
    with pytest.raises(UserError, match=r"damaged or not the standard .*expected sha256 b8a52dc0.*weights download "
                                        r"lpips-squeeze") as err:
        W.find_lpips_backbone_weights("squeeze", None)
    assert str(path) in str(err.value) and not isinstance(err.value, W.WeightsNotFound)
    _accept_as_standard(monkeypatch, "lpips-squeeze", path)
    found = W.find_lpips_backbone_weights("squeeze", None)
    assert W.verify(W.REGISTRY["lpips-squeeze"], found).standard is True


def test_a_named_file_may_differ_but_must_have_the_networks_structure(no_weight_env, squeeze_state):
    spec = W.REGISTRY["lpips-squeeze"]
    named = no_weight_env / "my-squeeze.pth"
    torch.save(squeeze_state, named)
    found = W.find_lpips_backbone_weights("squeeze", str(named))
    verdict = W.verify(spec, found)
    assert verdict.standard is False and verdict.sha256 == hashlib.sha256(named.read_bytes()).hexdigest()
    truncated = no_weight_env / "truncated.pth"
    truncated.write_bytes(named.read_bytes()[:100_000])
    with pytest.raises(UserError, match=r"not a loadable .*squeeze.*sha256 b8a52dc0"):
        W.find_lpips_backbone_weights("squeeze", str(truncated))
    other = no_weight_env / "other.pth"
    torch.save({k: v for k, v in squeeze_state.items() if not k.startswith("classifier")}, other)
    with pytest.raises(UserError, match=r"lacks 2 tensors \(e.g. classifier.1.weight\).*squeezenet1_1-b8a52dc0"):
        W.find_lpips_backbone_weights("squeeze", str(other))


def test_missing_weights_say_where_they_looked(no_weight_env):
    with pytest.raises(W.WeightsNotFound) as err:
        W.find_inception_weights(None)
    msg = str(err.value)
    assert "eval.inception_weights" in msg and W.INCEPTION_ENV in msg and W.INCEPTION_FILE in msg
    assert str(W.hub_checkpoints_dir()) in msg
    with pytest.raises(W.WeightsNotFound, match="alexnet-owt-7be5be79.pth"):
        W.find_lpips_backbone_weights("alex", None)


def test_a_configured_path_that_does_not_exist_is_a_user_error(no_weight_env, monkeypatch):
    with pytest.raises(UserError, match="does not exist") as err:
        W.find_inception_weights(str(no_weight_env / "nope.pth"))
    assert not isinstance(err.value, W.WeightsNotFound)     # not silently skipped: the user asked for it
    monkeypatch.setenv(W.LPIPS_ENV, str(no_weight_env / "nope.pth"))
    with pytest.raises(UserError, match=W.LPIPS_ENV):
        W.find_lpips_backbone_weights("vgg", None)


@pytest.fixture(scope="module")
def squeeze_state():
    import torchvision

    torch.manual_seed(1)
    return torchvision.models.squeezenet1_1(weights=None).state_dict()


@pytest.mark.parametrize("source", ["option", "env", "hub"])
def test_lpips_backbone_loads_from_each_source(source, squeeze_state, no_weight_env, monkeypatch):
    tmp = no_weight_env
    name = W.LPIPS_BACKBONE_FILES["squeeze"]
    path = (_hub(tmp) if source == "hub" else tmp) / name
    torch.save(squeeze_state, path)
    if source == "hub":
        _accept_as_standard(monkeypatch, "lpips-squeeze", path)
    if source == "env":
        monkeypatch.setenv(W.LPIPS_ENV, str(path))
    found = W.find_lpips_backbone_weights("squeeze", str(path) if source == "option" else None)
    assert found.source == source
    dist = LpipsDistance("squeeze", found, device=torch.device("cpu"), size=16)
    # The backbone really holds the file's tensors (first conv of torchvision's features).
    assert torch.equal(dist.model.net.slice1[0].weight, squeeze_state["features.0.weight"])
    d = dist.pairwise(torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8))
    assert d.shape == (3, 3) and float(d[0, 1]) > 0


def test_lpips_rejects_a_file_of_the_wrong_network(squeeze_state, tmp_path):
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(squeeze_state, path)
    with pytest.raises(UserError, match="not a torchvision alex state_dict"):
        LpipsDistance("alex", W.WeightsFile(path, "option"), device=torch.device("cpu"), size=None)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a loadable"):
        LpipsDistance("squeeze", W.WeightsFile(bad, "option"), device=torch.device("cpu"), size=None)


@pytest.mark.slow
def test_lpips_alexnet_from_the_hub_cache(no_weight_env, monkeypatch):
    import torchvision

    path = _hub(no_weight_env) / W.LPIPS_BACKBONE_FILES["alex"]
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)      # ~233 MB
    _accept_as_standard(monkeypatch, "lpips-alex", path)
    dist = LpipsDistance("alex", W.find_lpips_backbone_weights("alex", None), device=torch.device("cpu"), size=None)
    assert dist.pairwise(torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)).shape == (3, 3)


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    return write_random_inception(tmp_path_factory.mktemp("inception") / W.INCEPTION_FILE)


@pytest.mark.slow
def test_inception_loads_from_option_env_and_hub(random_inception_file, no_weight_env, monkeypatch):
    from fsgen_bench.eval.features import InceptionFeatures

    hub_file = _hub(no_weight_env) / W.INCEPTION_FILE
    hub_file.symlink_to(random_inception_file)
    with pytest.raises(UserError, match="expected sha256 6726825d"):     # not the published file
        W.find_inception_weights(None)
    _accept_as_standard(monkeypatch, "inception", random_inception_file)
    found = [W.find_inception_weights(None)]
    monkeypatch.setenv(W.INCEPTION_ENV, str(random_inception_file))
    found.append(W.find_inception_weights(None))
    found.append(W.find_inception_weights(str(random_inception_file)))
    assert [f.source for f in found] == ["hub", "env", "option"]
    assert W.verify(W.REGISTRY["inception"], found[0]).standard is True       # (the patched hash)
    ext = InceptionFeatures(found[2], fid_input="torch-fidelity", antialias=False, device=torch.device("cpu"))
    assert not ext.standard          # features.py compares with the file name's suffix: random weights are flagged
    feats = ext.extract(torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32


def test_inception_rejects_a_file_that_is_not_inception(tmp_path):
    from fsgen_bench.eval.features import InceptionFeatures

    path = tmp_path / W.INCEPTION_FILE
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError, match="is not the FID Inception weights"):
        InceptionFeatures(W.WeightsFile(path, "option"), fid_input="torch-fidelity", antialias=False,
                          device=torch.device("cpu"))
