"""Weight files are found from an option, an environment variable or the hub cache, and loaded for real.

The files are written by the tests (right keys and shapes, random values): the loading code is real, the
numbers are not claimed. The FID Inception file (~96 MB, ~10 s to build and load on 2 cores) is marked slow.
"""

from __future__ import annotations

import pytest
import torch

from fsgen_bench.errors import UserError
from fsgen_bench.eval import weights as W
from fsgen_bench.eval.diversity import LpipsDistance
from test_eval_support import write_random_inception


@pytest.fixture
def no_weight_env(monkeypatch, tmp_path):
    monkeypatch.delenv(W.INCEPTION_ENV, raising=False)
    monkeypatch.delenv(W.LPIPS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path


def _hub(tmp_path):
    d = tmp_path / "torch-home" / "hub" / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_lookup_order_option_env_hub(no_weight_env, monkeypatch):
    tmp = no_weight_env
    hub_file = _hub(tmp) / W.INCEPTION_FILE
    hub_file.write_bytes(b"hub")
    env_file, opt_file = tmp / "env.pth", tmp / "opt.pth"
    env_file.write_bytes(b"env")
    opt_file.write_bytes(b"opt")
    assert W.find_inception_weights(None).source == "hub"
    monkeypatch.setenv(W.INCEPTION_ENV, str(env_file))
    assert W.find_inception_weights(None) == W.WeightsFile(env_file, "env")
    assert W.find_inception_weights(str(opt_file)) == W.WeightsFile(opt_file, "option")


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
def test_lpips_alexnet_from_the_hub_cache(no_weight_env):
    import torchvision

    path = _hub(no_weight_env) / W.LPIPS_BACKBONE_FILES["alex"]
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)      # ~233 MB
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
    found = [W.find_inception_weights(None)]
    monkeypatch.setenv(W.INCEPTION_ENV, str(random_inception_file))
    found.append(W.find_inception_weights(None))
    found.append(W.find_inception_weights(str(random_inception_file)))
    assert [f.source for f in found] == ["hub", "env", "option"]
    ext = InceptionFeatures(found[0], fid_input="torch-fidelity", antialias=False, device=torch.device("cpu"))
    assert not ext.standard          # random weights: flagged as not the standard file
    feats = ext.extract(torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32


def test_inception_rejects_a_file_that_is_not_inception(tmp_path):
    from fsgen_bench.eval.features import InceptionFeatures

    path = tmp_path / W.INCEPTION_FILE
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError, match="is not the FID Inception weights"):
        InceptionFeatures(W.WeightsFile(path, "option"), fid_input="torch-fidelity", antialias=False,
                          device=torch.device("cpu"))
