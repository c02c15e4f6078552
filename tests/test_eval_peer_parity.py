"""The LoFGAN protocols compute what LoFGAN's script computes, checked against the peers' own libraries.

* FID input: pytorch-fid's own code (``pytorch_fid.fid_score.get_activations`` reading PNG files, its
  ``InceptionV3`` with the FID Inception) gives the same features as ``InceptionFeatures(fid_input=
  "pytorch-fid")`` on the same images, with one weights file (random values, written by the test) loaded into
  both. pytorch-fid is a test-only dependency (the ``dev`` extra).
* LPIPS: the ``lpips`` package called the way LoFGAN's main_metric.py calls it (``lpips.im2tensor`` then
  ``model(a, b, normalize=True)``, VGG, 32 px) equals the batched ``LpipsDistance`` with the lofgan protocols'
  settings, to 1e-5; the cv2 resize is checked by hand always and against cv2 itself where cv2 is installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsgen_bench.eval.diversity import LpipsDistance
from fsgen_bench.eval.pixels import cv2_linear_u8, pytorch_fid_input, quantize
from fsgen_bench.eval.protocols import get_protocol
from fsgen_bench.eval.weights import WeightsFile
from test_eval_support import write_random_inception


def _images(n: int, side: int, seed: int) -> torch.Tensor:
    """Smooth random RGB images (uint8 [n, 3, side, side]): structure for the networks, not just noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 6, 6), generator=g)
    x = torch.nn.functional.interpolate(low, size=(side, side), mode="bicubic", align_corners=False)
    x = x + 0.08 * torch.rand((n, 3, side, side), generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return write_random_inception(tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth")


def test_lofgan_paper_fid_features_equal_pytorch_fid_on_the_same_png_files(inception_file, tmp_path, monkeypatch):
    pytest.importorskip("pytorch_fid")
    from PIL import Image
    from pytorch_fid import inception as pf_inception
    from pytorch_fid.fid_score import get_activations

    from fsgen_bench.eval.features import InceptionFeatures

    proto = get_protocol("lofgan-paper")
    images = _images(3, 128, seed=1)       # Flowers / Animal Faces: PNGs at 128 px
    files = []
    for i, img in enumerate(images):
        path = tmp_path / f"0_{i:03d}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
        files.append(str(path))
    # pytorch-fid builds its FID Inception from this file instead of downloading (one state dict, both networks)
    state = torch.load(inception_file, weights_only=False)
    monkeypatch.setattr(pf_inception, "load_state_dict_from_url", lambda *a, **k: state)
    model = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    theirs = torch.from_numpy(get_activations(files, model, batch_size=2, dims=2048, device="cpu", num_workers=0))

    ours = InceptionFeatures(WeightsFile(inception_file, "option"), fid_input=proto.fid_input, antialias=False,
                             device=torch.device("cpu"))
    feats = ours.extract(images, batch_size=2).double()

    def rel(a, b):   # random weights give small activations: compare relative to the features' scale
        return float((a - b).abs().max() / b.abs().max())

    assert theirs.abs().max() > 0 and rel(feats, theirs) < 1e-4, rel(feats, theirs)
    # the check can fail: torch-fidelity's TF1 resize and (x - 128) / 128 give other features on the same images
    other = InceptionFeatures(WeightsFile(inception_file, "option"), fid_input="torch-fidelity", antialias=False,
                              device=torch.device("cpu")).extract(images, batch_size=2).double()
    assert rel(other, theirs) > 1e-3, rel(other, theirs)


def test_pytorch_fid_input_resizes_before_scaling_to_minus_one_one():
    x = _images(2, 64, seed=2)
    prepared = pytorch_fid_input(x)
    assert prepared.shape == (2, 3, 299, 299) and prepared.min() >= -1 - 1e-6 and prepared.max() <= 1 + 1e-6
    expected = torch.nn.functional.interpolate(x.float() / 255, size=(299, 299), mode="bilinear",
                                               align_corners=False) * 2 - 1
    assert torch.equal(prepared, expected)


@pytest.fixture(scope="module")
def lpips_pair(tmp_path_factory):
    """The lpips package's VGG LPIPS (random backbone, the shipped v0.1 heads) and a torchvision-format file of
    that backbone, for LpipsDistance to load."""
    import lpips

    torch.manual_seed(0)
    ref = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    state = {}
    for key, value in ref.net.state_dict().items():          # slice<k>.<i>.<param> -> features.<i>.<param>
        _, index, *rest = key.split(".")
        state[f"features.{index}." + ".".join(rest)] = value
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(state, path)
    return ref, WeightsFile(path, "option")


def _ours(weights, proto):
    return LpipsDistance(proto.lpips_net, weights, device=torch.device("cpu"), size=proto.lpips_size,
                         resize=proto.lpips_resize, input_range=proto.lpips_range)


def test_lofgan_lpips_equals_lpips_called_as_lofgan_calls_it(lpips_pair):
    """main_metric.py: lpips.im2tensor(img) (to [-1, 1]) then model(img1, img2, normalize=True): [-3, 1]."""
    import lpips

    ref, weights = lpips_pair
    proto = get_protocol("lofgan-paper")
    images = _images(4, 32, seed=3)        # already 32 px: this test is about the range and the network
    tensors = [lpips.im2tensor(img.permute(1, 2, 0).numpy()) for img in images]
    with torch.no_grad():
        theirs = [[float(ref(tensors[i], tensors[j], normalize=True)) if j > i else 0.0 for j in range(4)]
                  for i in range(4)]
    ours = _ours(weights, proto).pairwise(images, batch_size=2)
    i, j = np.triu_indices(4, k=1)
    assert np.allclose(ours.numpy()[i, j], np.asarray(theirs)[i, j], rtol=0, atol=1e-5)
    # the check can fail: the [-1, 1] range (lofgan@v1, clean) gives other numbers
    plain = _ours(weights, proto.with_overrides(lpips_range=(-1, 1))).pairwise(images)
    assert not np.allclose(plain.numpy()[i, j], np.asarray(theirs)[i, j], rtol=0, atol=1e-3)


def test_cv2_linear_resize_by_hand():
    """128 -> 32 (and 64 -> 32): cv2's INTER_LINEAR takes source pixels 4d+1 and 4d+2 (2d and 2d+1) with equal
    weights, i.e. the mean of a 2x2 block, rounded half up."""
    x = _images(2, 128, seed=4)
    out = cv2_linear_u8(x, 32)
    block = x[:, :, 1::4, :][:, :, :, 1::4].double() + x[:, :, 2::4, :][:, :, :, 1::4].double() \
        + x[:, :, 1::4, :][:, :, :, 2::4].double() + x[:, :, 2::4, :][:, :, :, 2::4].double()
    assert torch.equal(out, torch.floor(block / 4 + 0.5).to(torch.uint8))
    y = _images(1, 64, seed=5)
    block = sum(y[:, :, a::2, :][:, :, :, b::2].double() for a in (0, 1) for b in (0, 1))
    assert torch.equal(cv2_linear_u8(y, 32), torch.floor(block / 4 + 0.5).to(torch.uint8))


def test_cv2_linear_resize_equals_cv2_and_the_whole_lofgan_lpips_path(lpips_pair, tmp_path):
    cv2 = pytest.importorskip("cv2")
    import lpips
    from PIL import Image

    for side in (128, 64):
        x = _images(3, side, seed=6)
        theirs = np.stack([cv2.resize(img.permute(1, 2, 0).numpy(), (32, 32)) for img in x])
        assert np.array_equal(cv2_linear_u8(x, 32).permute(0, 2, 3, 1).numpy(), theirs), side
    # the script end to end: PNG files at 128 px, lpips.load_image, cv2.resize, im2tensor, normalize=True
    ref, weights = lpips_pair
    images = _images(4, 128, seed=7)
    tensors = []
    for k, img in enumerate(images):
        path = tmp_path / f"0_{k:03d}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
        tensors.append(lpips.im2tensor(cv2.resize(lpips.load_image(str(path)), (32, 32))))
    with torch.no_grad():
        theirs = np.array([[float(ref(a, b, normalize=True)) for b in tensors] for a in tensors])
    ours = _ours(weights, get_protocol("lofgan")).pairwise(images).numpy()
    i, j = np.triu_indices(4, k=1)
    assert np.allclose(ours[i, j], theirs[i, j], rtol=0, atol=1e-5)


def test_lofgan_pixels_truncate_like_to_pil_image():
    """LoFGAN's unloader: ToPILImage((x + 1) / 2), whose float path is mul(255).byte() (truncation)."""
    from torchvision.transforms.functional import to_pil_image

    x = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)
    theirs = torch.from_numpy(np.asarray(to_pil_image((x[0] + 1) / 2))).permute(2, 0, 1)
    assert torch.equal(quantize(x, "floor")[0], theirs)
    assert not torch.equal(quantize(x, "round")[0], theirs)
