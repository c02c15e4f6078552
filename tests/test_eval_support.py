"""Shared helpers for the evaluation tests: a tiny synthetic dataset, a tiny protocol, tiny settings.

Also imported by the DDP worker processes (torch.multiprocessing spawn passes sys.path on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fsgen_bench.data.datamodule import ClassStore, EpisodicDataModule
from fsgen_bench.data.source import ClassImages, DatasetInfo
from fsgen_bench.eval.protocols import get_protocol

SIZE = 16
SEEN, UNSEEN = 10, 6
PER_SEEN, PER_UNSEEN = 12, 14

#: Small enough for a CPU test: 8 images per class from 2 support sets, 6 five-way 3-shot episodes.
TINY_PROTOCOL = dict(
    num_generated=8, supports_per_class=2, kid_subsets=10,
    fewshot={"ways": (5,), "episodes": 6, "shot_sets": 2, "generated_per_class": 4, "queries": 4,
             "lowdata_real": (3,), "lowdata_generated_per_class": 4},
)
TINY_EVAL_CFG = {
    "backbones": ["domain"], "batch_size": 16,
    "domain_backbone": {"epochs": 1, "width": 8, "batch_size": 32, "lr": 0.003},
}
RUN_META = {"run_id": "test-run", "method": "copy-support", "dataset": "tiny", "seed": 0, "config_hash": "abc",
            "preset": "smoke"}


def tiny_protocol(**more):
    spec = {**TINY_PROTOCOL, **more}
    return get_protocol("clean").with_overrides(**spec)


def tiny_images() -> ClassImages:
    """Classes are smooth random patterns; images are shifted, noisy copies (learnable, deterministic)."""
    rng = np.random.default_rng(1234)
    classes = []
    for c in range(SEEN + UNSEEN):
        base = torch.from_numpy(rng.random((1, 1, 4, 4)).astype(np.float32))
        base = torch.nn.functional.interpolate(base, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0]
        n = PER_SEEN if c < SEEN else PER_UNSEEN
        imgs = []
        for _ in range(n):
            shifted = torch.roll(base, shifts=(int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), dims=(0, 1))
            noisy = shifted.numpy() + rng.normal(0, 0.05, size=(SIZE, SIZE))
            imgs.append(np.clip(noisy * 255, 0, 255).astype(np.uint8)[..., None])
        classes.append(np.stack(imgs))
    info = DatasetInfo(name="tiny", channels=1, image_size=SIZE, native_size=None, num_classes=SEEN + UNSEEN,
                       num_seen=SEEN, origin="synthetic (tests)")
    return ClassImages(info=info, classes=classes, class_names=[f"c{i}" for i in range(SEEN + UNSEEN)],
                       seen=list(range(SEEN)), unseen=list(range(SEEN, SEEN + UNSEEN)))


def tiny_datamodule(cache_dir: Path, seed: int = 0) -> EpisodicDataModule:
    dm = EpisodicDataModule({"name": "tiny", "k_shot": 3, "batch_size": 4, "episodes_per_epoch": 8,
                             "num_workers": 0}, cache_dir=Path(cache_dir), seed=seed)
    dm.images = tiny_images()            # an in-memory dataset: setup() keeps what is there
    dm.seen_store = ClassStore(dm.images, dm.images.seen)
    return dm


def copy_support():
    from fsgen_bench.baselines.reference import CopySupport

    return CopySupport(image_size=SIZE, channels=1, num_seen_classes=SEEN, k_shot=3)


def noise():
    from fsgen_bench.baselines.reference import Noise

    return Noise(image_size=SIZE, channels=1, num_seen_classes=SEEN, k_shot=3)


def real_row():
    from fsgen_bench.baselines.reference_real import HeldOutReal

    return HeldOutReal(image_size=SIZE, channels=1, num_seen_classes=SEEN, k_shot=3)


def write_random_inception(path: Path) -> Path:
    """torch-fidelity's FeatureExtractorInceptionV3 with random weights, saved like the FID weights file (~96 MB).

    Its download is patched out: right keys and shapes, meaningless values.
    """
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


def test_tiny_dataset_is_deterministic():
    a, b = tiny_images(), tiny_images()
    assert all(np.array_equal(x, y) for x, y in zip(a.classes, b.classes))
    assert a.classes[0].shape == (PER_SEEN, SIZE, SIZE, 1)
    assert torch.is_tensor(tiny_datamodule(Path("/nonexistent")).class_images(SEEN))
