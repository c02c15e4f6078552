"""Dataset readers: every format built here in tmp_path, in its real on-disk layout.

Covers the .npy layouts of the F2GAN/LoFGAN family (uint8, floats, ragged, grayscale), image-folder trees and
their cache, the named datasets (Omniglot's torchvision tree and zips, EMNIST's raw idx files, Flowers102
through a stand-in class, VGGFace and Animal Faces), and the error message of every bad input.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets
from PIL import Image

from fsgen_bench.data.readers import decode
from fsgen_bench.data.source import DATASETS, load_dataset
from fsgen_bench.errors import UserError


def cfg(name: str, **over) -> dict:
    base = {
        "name": name, "path": None, "root": None, "download": False, "image_size": 16, "channels": None,
        "num_seen_classes": None,
    }
    base.update(over)
    return base


def load(data_cfg: dict, cache: Path):
    return load_dataset(data_cfg, cache)


def rng_images(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def save_png(path: Path, arr: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    img.save(path, format=fmt)


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# ------------------------------------------------------------------------------------------------------------
# .npy
# ------------------------------------------------------------------------------------------------------------


def test_npy_uint8_5d_exact_and_default_split(tmp_path):
    data = rng_images((5, 4, 16, 16, 3))
    path = tmp_path / "d.npy"
    np.save(path, data)
    before = listing(tmp_path)
    ci = load(cfg("npy", path=str(path)), tmp_path / "cache")
    assert len(ci.classes) == 5 and ci.seen == [0, 1, 2, 3] and ci.unseen == [4]
    for i in range(5):
        np.testing.assert_array_equal(ci.classes[i], data[i])
        assert ci.classes[i].flags.writeable and not isinstance(ci.classes[i], np.memmap)
    assert ci.info.channels == 3 and ci.info.image_size == 16 and ci.info.native_size == 16
    assert ci.info.num_classes == 5 and ci.info.num_seen == 4
    assert listing(tmp_path) == before  # nothing written next to the data


def test_npy_split_options(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, rng_images((6, 2, 8, 8, 1)))
    ci = load(cfg("npy", path=str(path), image_size=8, num_seen_classes=2), tmp_path)
    assert ci.seen == [0, 1] and ci.unseen == [2, 3, 4, 5]
    ci = load(cfg("npy", path=str(path), image_size=8, num_seen_classes=2, num_unseen_classes=3), tmp_path)
    assert ci.seen == [0, 1] and ci.unseen == [2, 3, 4]
    assert len(ci.classes) == 5 and ci.info.num_classes == 5  # the trailing class is never read
    assert ci.extra["classes_in_source"] == 6


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_npy_float_values_map_to_uint8(tmp_path, scale):
    data = rng_images((3, 2, 8, 8, 3), seed=1)
    data[0, 0, 0, 0] = [0, 255, 128]  # the range ends are present in class 0
    path = tmp_path / "f.npy"
    np.save(path, (data.astype(np.float32) / 255.0 * scale))
    ci = load(cfg("npy", path=str(path), image_size=8), tmp_path)
    for i in range(3):
        np.testing.assert_array_equal(ci.classes[i], data[i])


def test_npy_float_half_values(tmp_path):
    x = np.zeros((2, 1, 4, 4, 1), np.float64)
    x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 0, 2] = 1.0, 0.5, 0.25
    np.save(tmp_path / "f.npy", x)
    ci = load(cfg("npy", path=str(tmp_path / "f.npy"), image_size=4), tmp_path)
    assert ci.classes[0][0, 0, :3, 0].tolist() == [255, 128, 64]


def test_npy_ragged_object_array(tmp_path):
    per_class = [rng_images((3, 16, 16, 3), 2), rng_images((5, 16, 16, 3), 3), rng_images((2, 24, 24, 3), 4)]
    arr = np.empty(3, dtype=object)
    for i, c in enumerate(per_class):
        arr[i] = c
    path = tmp_path / "ragged.npy"
    np.save(path, arr, allow_pickle=True)
    ci = load(cfg("npy", path=str(path), num_seen_classes=2), tmp_path)
    assert [len(c) for c in ci.classes] == [3, 5, 2]
    np.testing.assert_array_equal(ci.classes[1], per_class[1])
    assert ci.classes[2].shape == (2, 16, 16, 3)  # 24 px class resized to 16
    assert ci.info.native_size is None  # sizes differ


def test_npy_4d_grayscale(tmp_path):
    data = rng_images((3, 2, 12, 12))
    np.save(tmp_path / "g.npy", data)
    ci = load(cfg("npy", path=str(tmp_path / "g.npy"), image_size=12), tmp_path)
    assert ci.classes[0].shape == (2, 12, 12, 1) and ci.info.channels == 1
    np.testing.assert_array_equal(ci.classes[2][..., 0], data[2])


def test_npy_resize_and_channel_conversion(tmp_path):
    data = np.zeros((2, 2, 16, 16, 3), np.uint8)
    data[0] = (200, 100, 50)
    data[1] = (10, 20, 30)
    np.save(tmp_path / "c.npy", data)
    ci = load(cfg("npy", path=str(tmp_path / "c.npy"), image_size=8, channels=1), tmp_path)
    assert ci.classes[0].shape == (2, 8, 8, 1) and ci.info.channels == 1 and ci.info.native_size == 16
    assert int(ci.classes[0][0, 3, 3, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    # gray -> RGB
    np.save(tmp_path / "g.npy", data[..., :1])
    ci = load(cfg("npy", path=str(tmp_path / "g.npy"), image_size=4, channels=3), tmp_path)
    assert ci.classes[0].shape == (2, 4, 4, 3) and (ci.classes[0] == 200).all()
    # RGBA with channels=None is served as RGB
    rgba = np.concatenate([data, np.full(data.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    np.save(tmp_path / "a.npy", rgba)
    ci = load(cfg("npy", path=str(tmp_path / "a.npy"), image_size=16), tmp_path)
    assert ci.info.channels == 3
    np.testing.assert_array_equal(ci.classes[0], data[0])


# ------------------------------------------------------------------------------------------------------------
# Image folders
# ------------------------------------------------------------------------------------------------------------


def make_tree(root: Path) -> dict[str, int]:
    counts = {"cats": 3, "dogs": 2, "emus": 2}
    for c, (name, n) in enumerate(sorted(counts.items())):
        for j in range(n):
            size = (20 + 4 * j, 16 + 8 * c)
            color = (40 * c, 60 * j, 90)
            ext = ".png" if j % 2 == 0 else ".JPG"
            img = Image.new("RGB", size, color)
            (root / name).mkdir(parents=True, exist_ok=True)
            img.save(root / name / f"img{j}{ext}", format="PNG" if ext == ".png" else "JPEG")
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / "emus" / "sub").mkdir()
    Image.new("L", (10, 10), 77).save(root / "emus" / "sub" / "gray.bmp")
    counts["emus"] += 1
    return counts


def test_folder_tree_sizes_channels_and_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    counts = make_tree(root)
    before = listing(root)
    cache = tmp_path / "cache"
    ci = load(cfg("folder", path=str(root), image_size=8, channels=3, num_seen_classes=2), cache)
    assert ci.class_names == ["cats", "dogs", "emus"]
    assert [len(c) for c in ci.classes] == [counts["cats"], counts["dogs"], counts["emus"]]
    assert all(c.shape[1:] == (8, 8, 3) for c in ci.classes)
    assert ci.seen == [0, 1] and ci.unseen == [2]
    assert tuple(ci.classes[0][0, 4, 4]) == (0, 0, 90)  # a flat PNG keeps its colour through resizing
    assert tuple(ci.classes[2][-1, 4, 4]) == (77, 77, 77)  # gray BMP in a sub-folder, converted to RGB
    assert ci.info.native_size is None
    assert listing(root) == before  # the cache lives in the cache dir, not beside the data
    assert len(list((cache / "folder").glob("*.npz"))) == 1

    # Second run: served from the cache, nothing decoded.
    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(decode, "decode_one", boom)
    again = load(cfg("folder", path=str(root), image_size=8, channels=3, num_seen_classes=2), cache)
    for a, b in zip(again.classes, ci.classes):
        np.testing.assert_array_equal(a, b)
    assert again.class_names == ci.class_names
    # Another size or channel count, or a changed file, is a different cache entry.
    with pytest.raises(AssertionError):
        load(cfg("folder", path=str(root), image_size=4, channels=3), cache)
    monkeypatch.undo()
    gray = load(cfg("folder", path=str(root), image_size=8, channels=1), cache)
    assert gray.info.channels == 1 and gray.classes[0].shape[-1] == 1
    Image.new("RGB", (9, 9), (1, 2, 3)).save(root / "cats" / "new.png")
    grown = load(cfg("folder", path=str(root), image_size=8, channels=3), cache)
    assert len(grown.classes[0]) == counts["cats"] + 1


def test_folder_channels_none_follows_files(tmp_path):
    root = tmp_path / "g"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.new("L", (12, 12), 100).save(root / c / "x.png")
    ci = load(cfg("folder", path=str(root), image_size=12, channels=None), tmp_path / "cache")
    assert ci.info.channels == 1 and ci.info.native_size == 12
    Image.new("RGB", (12, 12), (5, 6, 7)).save(root / "b" / "y.png")
    ci = load(cfg("folder", path=str(root), image_size=12, channels=None), tmp_path / "cache")
    assert ci.info.channels == 3 and tuple(ci.classes[0][0, 0, 0]) == (100, 100, 100)


# ------------------------------------------------------------------------------------------------------------
# Omniglot (torchvision's layout: root/omniglot-py/images_{background,evaluation}/<alphabet>/<character>/*.png)
# ------------------------------------------------------------------------------------------------------------

OMNI = {
    "images_background": {"Latin": ["character01", "character02"], "Greek": ["character01", "character02"]},
    "images_evaluation": {"Atlantean": ["character01", "character02"]},
}


def omniglot_image(value: int) -> Image.Image:
    img = Image.new("1", (21, 21), 1)
    img.putpixel((value % 21, 3), 0)
    return img


def make_omniglot_tree(root: Path, n: int = 3) -> None:
    k = 0
    for s, alphabets in OMNI.items():
        for alphabet, chars in alphabets.items():
            for char in chars:
                d = root / "omniglot-py" / s / alphabet / char
                d.mkdir(parents=True)
                for j in range(n):
                    omniglot_image(k).save(d / f"{k:04d}_{j:02d}.png")
                k += 1


def test_omniglot_tree_order_and_split(tmp_path):
    make_omniglot_tree(tmp_path)
    c = cfg("omniglot", root=str(tmp_path), image_size=21, channels=1, num_seen_classes=3, num_unseen_classes=2)
    assert DATASETS.get("omniglot").locate(c)[0]
    ci = load(c, tmp_path / "cache")
    # background first, alphabets and characters sorted by name (not the file system's listing order)
    assert ci.class_names == ["Greek/character01", "Greek/character02", "Latin/character01", "Latin/character02",
                              "Atlantean/character01"]
    assert ci.seen == [0, 1, 2] and ci.unseen == [3, 4] and ci.extra["classes_in_source"] == 6
    assert all(c.shape == (3, 21, 21, 1) for c in ci.classes)
    assert set(np.unique(ci.classes[0]).tolist()) == {0, 255}
    assert ci.classes[0][0, 3].tolist().count([0]) == 1  # one black pixel per row 3, as drawn
    assert "torchvision" in ci.info.origin


def test_omniglot_zips_and_npy_precedence(tmp_path):
    tree = tmp_path / "tree"
    make_omniglot_tree(tree)
    root = tmp_path / "root"
    (root / "omniglot-py").mkdir(parents=True)
    for s in OMNI:
        with zipfile.ZipFile(root / "omniglot-py" / f"{s}.zip", "w") as z:
            for f in sorted((tree / "omniglot-py" / s).rglob("*.png")):
                z.write(f, f.relative_to(tree / "omniglot-py").as_posix())
    c = cfg("omniglot", root=str(root), image_size=10, channels=1, num_seen_classes=4)
    from_zip = load(c, tmp_path / "cache")
    from_tree = load({**c, "root": str(tree)}, tmp_path / "cache")
    assert from_zip.class_names == from_tree.class_names
    for a, b in zip(from_zip.classes, from_tree.classes):
        np.testing.assert_array_equal(a, b)

    # DAGAN's npy under the root wins over the torchvision files unless data.source says otherwise.
    np.save(root / "omniglot_data.npy", np.ones((7, 2, 10, 10, 1), np.float32))
    ci = load(c, tmp_path / "cache")
    assert len(ci.classes) == 7 and ci.extra["source"] == "npy" and (ci.classes[0] == 255).all()
    ci = load({**c, "source": "torchvision"}, tmp_path / "cache")
    assert ci.extra["source"] == "torchvision" and len(ci.classes) == 6


def test_omniglot_download_only_when_asked(tmp_path, monkeypatch):
    calls = []

    class FakeOmniglot:
        def __init__(self, root, background=True, download=False, **kw):
            calls.append((background, download))
            if download and not (Path(root) / "omniglot-py" / "images_background").exists():
                make_omniglot_tree(Path(root))

    monkeypatch.setattr(torchvision.datasets, "Omniglot", FakeOmniglot)
    c = cfg("omniglot", root=str(tmp_path), image_size=8, channels=1, num_seen_classes=4)
    with pytest.raises(UserError) as err:
        load(c, tmp_path / "cache")
    msg = str(err.value)
    assert calls == []  # no network without data.download
    assert "omniglot_data.npy" in msg and "images_background" in msg and str(tmp_path) in msg
    assert "data.download=true" in msg
    ci = load({**c, "download": True}, tmp_path / "cache")
    assert calls == [(True, True), (False, True)] and len(ci.classes) == 6


# ------------------------------------------------------------------------------------------------------------
# EMNIST (torchvision's raw idx files, written here)
# ------------------------------------------------------------------------------------------------------------


def write_idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def test_emnist_raw_files_pooled_upright_split(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    n_classes = 40
    stored = {}
    for part, per in (("train", 2), ("test", 1)):
        labels = np.repeat(np.arange(n_classes), per).astype(np.uint8)
        images = np.zeros((len(labels), 28, 28), np.uint8)
        images[:, 2, :] = 255          # stored row 2: after transposing, column 2
        images[:, 0, 0] = labels       # tag each image with its label
        stored[part] = images
        write_idx(raw / f"emnist-balanced-{part}-images-idx3-ubyte", images)
        write_idx(raw / f"emnist-balanced-{part}-labels-idx1-ubyte", labels)
    c = cfg("emnist", root=str(tmp_path), image_size=28, channels=1, num_seen_classes=28, num_unseen_classes=10)
    assert DATASETS.get("emnist").locate(c)[0]
    ci = load(c, tmp_path / "cache")
    assert len(ci.classes) == 38 and ci.seen == list(range(28)) and ci.unseen == list(range(28, 38))
    assert all(len(x) == 3 for x in ci.classes)  # 2 train + 1 test pooled
    img = ci.classes[5][0, :, :, 0]
    assert (img[:, 2] == 255).all() and img[0, 0] == 5 and (img[2, 3:] == 0).all()  # upright: transposed
    assert ci.class_names[:3] == ["0", "1", "2"] and ci.class_names[10] == "A" and ci.class_names[36:] == ["a", "b"]
    small = load({**c, "image_size": 14}, tmp_path / "cache")
    assert small.classes[0].shape == (3, 14, 14, 1)


def test_emnist_corrupt_and_missing(tmp_path):
    c = cfg("emnist", root=str(tmp_path), image_size=28, channels=1, num_seen_classes=28, num_unseen_classes=10)
    with pytest.raises(UserError) as err:
        load(c, tmp_path / "cache")
    assert "emnist-balanced-train-images-idx3-ubyte" in str(err.value) and "data.download=true" in str(err.value)
    raw = tmp_path / "EMNIST" / "raw"
    for part in ("train", "test"):
        (raw).mkdir(parents=True, exist_ok=True)
        (raw / f"emnist-balanced-{part}-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
        (raw / f"emnist-balanced-{part}-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.raises(UserError, match="corrupt or incomplete"):
        load(c, tmp_path / "cache")


# ------------------------------------------------------------------------------------------------------------
# Flowers: torchvision's Flowers102 replaced by a stand-in (its files are md5-checked), and LoFGAN's npy
# ------------------------------------------------------------------------------------------------------------


class FakeFlowers102:
    classes = [f"flower{i}" for i in range(4)]
    calls: list = []

    def __init__(self, root, split="train", download=False, **kw):
        FakeFlowers102.calls.append((split, download))
        n = {"train": 4, "val": 4, "test": 6}[split]
        self.items = [(i % 4, (30 + i, 20 + 2 * i)) for i in range(n)]
        self.split = split

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        label, size = self.items[i]
        return Image.new("RGB", size, (50 * label, 10, 200)), label


def test_flowers_torchvision_pooled_by_label(tmp_path, monkeypatch):
    FakeFlowers102.calls = []
    monkeypatch.setattr(torchvision.datasets, "Flowers102", FakeFlowers102)
    c = cfg("flowers", root=str(tmp_path), image_size=8, channels=3, num_seen_classes=3)
    assert DATASETS.get("flowers").locate(c) == (False, f"{tmp_path / 'flower_c8189_s128_data_rgb.npy'} or "
                                                       f"{tmp_path / 'flowers-102'}")
    with pytest.raises(UserError) as err:
        load(c, tmp_path / "cache")
    assert "flower_c8189_s128_data_rgb.npy" in str(err.value) and "LoFGAN" in str(err.value)
    assert FakeFlowers102.calls == []
    base = tmp_path / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    (base / "imagelabels.mat").write_bytes(b"")
    (base / "setid.mat").write_bytes(b"")
    ci = load(c, tmp_path / "cache")
    assert [s for s, _ in FakeFlowers102.calls] == ["train", "val", "test"]
    assert ci.class_names == ["flower0", "flower1", "flower2", "flower3"]
    assert [len(x) for x in ci.classes] == [4, 4, 3, 3]  # all splits pooled, grouped by label
    assert tuple(ci.classes[2][0, 4, 4]) == (100, 10, 200)
    assert ci.seen == [0, 1, 2] and ci.unseen == [3]

    # LoFGAN's npy takes precedence when present.
    np.save(tmp_path / "flower_c8189_s128_data_rgb.npy", rng_images((5, 2, 8, 8, 3)))
    ci = load(c, tmp_path / "cache")
    assert ci.extra["source"] == "npy" and len(ci.classes) == 5


# ------------------------------------------------------------------------------------------------------------
# VGGFace and Animal Faces
# ------------------------------------------------------------------------------------------------------------


def test_vggface_npy_float_and_fallback_name(tmp_path):
    data = rng_images((4, 3, 8, 8, 3))
    np.save(tmp_path / "vgg_face_data.npy", data.astype(np.float32) / 255)
    c = cfg("vggface", root=str(tmp_path), image_size=8, channels=3, num_seen_classes=3)
    ci = load(c, tmp_path / "cache")
    np.testing.assert_array_equal(ci.classes[3], data[3])
    assert ci.seen == [0, 1, 2] and ci.unseen == [3]
    (tmp_path / "vggface").mkdir()
    np.save(tmp_path / "vggface" / "vgg_face_data_rgb.npy", data[:3])  # _rgb is preferred, also in root/vggface/
    ci = load({**c, "num_seen_classes": 2}, tmp_path / "cache")
    assert len(ci.classes) == 3 and ci.info.origin.endswith("vgg_face_data_rgb.npy")


def test_animalfaces_npy_or_folder(tmp_path):
    root = tmp_path / "root"
    make_tree(root / "animalfaces")
    c = cfg("animalfaces", root=str(root), image_size=8, channels=3, num_seen_classes=2)
    ci = load(c, tmp_path / "cache")
    assert ci.class_names == ["cats", "dogs", "emus"] and ci.extra["source"] == "folder"
    np.save(root / "animal_128.npy", rng_images((4, 2, 16, 16, 3)))
    ci = load(c, tmp_path / "cache")
    assert ci.extra["source"] == "npy" and ci.classes[0].shape == (2, 8, 8, 3)
    ci = load({**c, "source": "folder"}, tmp_path / "cache")
    assert ci.extra["source"] == "folder"


def test_specs_and_locate_absent(tmp_path):
    splits = {n: DATASETS.get(n).standard_split for n in ("omniglot", "emnist", "flowers", "vggface", "animalfaces")}
    assert splits["omniglot"] == "1200 seen / 212 unseen" and splits["emnist"] == "28 seen / 10 unseen"
    assert splits["flowers"] == "85 seen / 17 unseen" and splits["animalfaces"] == "119 seen / 30 unseen"
    assert splits["vggface"].startswith("1802 seen")
    empty = tmp_path / "nothing"
    for name in ("omniglot", "emnist", "flowers", "vggface", "animalfaces"):
        present, where = DATASETS.get(name).locate(cfg(name, root=str(empty)))
        assert present is False and str(empty) in where
        assert DATASETS.get(name).obtain
    assert DATASETS.get("npy").locate(cfg("npy", path=str(empty / "x.npy"))) == (False, str(empty / "x.npy"))
    assert DATASETS.get("npy").locate(cfg("npy"))[0] is False
    assert DATASETS.get("folder").locate(cfg("folder", path=str(empty)))[0] is False
    assert not empty.exists()  # locating writes nothing


# ------------------------------------------------------------------------------------------------------------
# Bad input: a UserError that names the problem and the fix
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,words", [
    ("omniglot", ["omniglot_data.npy", "images_background", "data.download=true", "FSGEN_DATA"]),
    ("emnist", ["EMNIST", "data.download=true"]),
    ("flowers", ["flower_c8189_s128_data_rgb.npy", "LoFGAN", "flowers-102"]),
    ("vggface", ["vgg_face_data_rgb.npy", "vgg_face_data.npy", "LoFGAN"]),
    ("animalfaces", ["animal_128.npy", "animalfaces", "LoFGAN"]),
])
def test_named_dataset_missing(tmp_path, name, words):
    with pytest.raises(UserError) as err:
        load(cfg(name, root=str(tmp_path)), tmp_path / "cache")
    msg = str(err.value)
    assert "not found" in msg and str(tmp_path) in msg
    for w in words:
        assert w in msg, (w, msg)


def bad_npy(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.npy"
    if kind == "garbage":
        path.write_bytes(b"this is not numpy at all" * 10)
    elif kind == "npz":
        with open(path, "wb") as fh:  # a file object keeps np.savez from appending ".npz"
            np.savez(fh, x=np.zeros(3))
    elif kind == "truncated":
        np.save(path, rng_images((4, 3, 8, 8, 3)))
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "truncated_object":
        arr = np.empty(2, dtype=object)
        arr[0], arr[1] = rng_images((2, 8, 8, 1)), rng_images((3, 8, 8, 1))
        np.save(path, arr, allow_pickle=True)
        path.write_bytes(path.read_bytes()[:-60])
    elif kind == "rank3":
        np.save(path, rng_images((4, 8, 8)))
    elif kind == "channels_first":
        np.save(path, rng_images((3, 2, 3, 8, 8)))
    elif kind == "one_class_4d":
        np.save(path, rng_images((5, 8, 8, 3)))
    elif kind == "above_255":
        np.save(path, np.full((3, 2, 4, 4, 1), 300.0))
    elif kind == "negative":
        np.save(path, np.full((3, 2, 4, 4, 1), -0.5))
    elif kind == "inconsistent":
        x = np.full((3, 2, 4, 4, 1), 0.5)
        x[2] = 200.0
        np.save(path, x)
    elif kind == "nan":
        x = np.full((3, 2, 4, 4, 1), 0.5)
        x[1, 0, 0, 0, 0] = np.nan
        np.save(path, x)
    elif kind == "one_class":
        np.save(path, rng_images((1, 4, 8, 8, 1)))
    elif kind == "no_images":
        np.save(path, rng_images((3, 0, 8, 8, 1)))
    elif kind == "strings":
        np.save(path, np.array([["a", "b"], ["c", "d"]]))
    return path


@pytest.mark.parametrize("kind,words", [
    ("garbage", ["not a readable .npy", "again"]),
    ("npz", ["zip archive", "np.save"]),
    ("truncated", ["truncated", "fetch the file again"]),
    ("truncated_object", ["truncated or corrupt"]),
    ("rank3", ["[classes, images, H, W, C]", "(4, 8, 8)"]),
    ("channels_first", ["channels-first", "np.moveaxis"]),
    ("one_class_4d", ["[classes, images, H, W, C]", "colour channels"]),
    ("above_255", ["[0, 255]", "300"]),
    ("negative", ["[-1, 1]", "(x + 1) / 2"]),
    ("inconsistent", ["class 2", "[0, 1]", "200"]),
    ("nan", ["NaN"]),
    ("one_class", ["at least 2"]),
    ("no_images", ["0 images"]),
    ("strings", ["unsupported element type"]),
])
def test_npy_bad_input(tmp_path, kind, words):
    path = bad_npy(tmp_path, kind)
    with pytest.raises(UserError) as err:
        load(cfg("npy", path=str(path), image_size=8), tmp_path / "cache")
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_npy_missing_path_and_split_out_of_range(tmp_path):
    with pytest.raises(UserError, match="npy:PATH"):
        load(cfg("npy"), tmp_path)
    with pytest.raises(UserError, match=r"missing.*\.npy file"):
        load(cfg("npy", path=str(tmp_path / "nope.npy")), tmp_path)
    np.save(tmp_path / "d.npy", rng_images((4, 2, 8, 8, 1)))
    with pytest.raises(UserError, match="num_seen_classes=4"):
        load(cfg("npy", path=str(tmp_path / "d.npy"), num_seen_classes=4), tmp_path)
    with pytest.raises(UserError, match="num_unseen_classes=3"):
        load(cfg("npy", path=str(tmp_path / "d.npy"), num_seen_classes=2, num_unseen_classes=3), tmp_path)
    with pytest.raises(UserError, match="data.channels"):
        load(cfg("npy", path=str(tmp_path / "d.npy"), channels=2), tmp_path)
    with pytest.raises(UserError, match="data.source"):
        load(cfg("flowers", root=str(tmp_path), source="web"), tmp_path)


def test_folder_bad_input(tmp_path):
    cache = tmp_path / "cache"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no class sub-folders.*empty"):
        load(cfg("folder", path=str(empty)), cache)
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("L", (4, 4)).save(loose / "a.png")
    with pytest.raises(UserError, match="lie directly in it"):
        load(cfg("folder", path=str(loose)), cache)
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "b").mkdir()
    Image.new("L", (4, 4)).save(tree / "a" / "x.png")
    (tree / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError) as err:
        load(cfg("folder", path=str(tree)), cache)
    assert "without images" in str(err.value) and str(tree / "b") in str(err.value)
    Image.new("L", (4, 4)).save(tree / "b" / "y.png")
    (tree / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError) as err:
        load(cfg("folder", path=str(tree)), cache)
    assert "cannot read image" in str(err.value) and "broken.jpg" in str(err.value)
    (tree / "b" / "broken.jpg").unlink()
    with pytest.raises(UserError, match="num_unseen_classes=5"):
        load(cfg("folder", path=str(tree), num_seen_classes=1, num_unseen_classes=5), cache)
    with pytest.raises(UserError, match="missing"):
        load(cfg("folder", path=str(tmp_path / "nowhere")), cache)
    only = tmp_path / "only"
    (only / "a").mkdir(parents=True)
    Image.new("L", (4, 4)).save(only / "a" / "x.png")
    with pytest.raises(UserError, match="at least 2"):
        load(cfg("folder", path=str(only)), cache)
