"""The embedded ``glyphs`` dataset: determinism, cache, split by script, no look-alike leak, shapes, sizes.

The full dataset is built once per session (a few seconds) by a session-scoped fixture; the other builds
are small (few drawers per class) so that the file runs in well under a minute on two busy cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

from fsgen_bench.data import DATASETS, glyph_split, load_dataset
from fsgen_bench.data.readers import glyph_drawing, glyphs
from fsgen_bench.data.source import resize_images
from fsgen_bench.errors import UserError


def _cfg(**over) -> dict:
    cfg = {"name": "glyphs", "image_size": 32, "channels": 1, "glyph_images_per_class": 20,
           "num_seen_classes": None}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The default dataset (32 px, 20 drawers), built once into its own cache dir."""
    cache = tmp_path_factory.mktemp("glyphs-a")
    return load_dataset(_cfg(), cache), cache


@pytest.fixture(scope="session")
def split_file() -> dict:
    return json.loads(glyphs.SPLIT_FILE.read_text(encoding="utf-8"))


# -- registration and the committed split -------------------------------------------------------------------

def test_registered_spec(split_file):
    spec = DATASETS.get("glyphs")
    assert spec.channels == 1
    assert spec.locate({}) == (True, "embedded")
    assert "nothing to download" in spec.obtain
    assert spec.standard_split == f"{split_file['num_seen']} seen / {split_file['num_unseen']} unseen (by script)"


def test_split_file_is_consistent(split_file):
    names, scripts, seen, unseen = glyphs.read_split()
    assert len(names) == len(set(names)) == split_file["num_seen"] + split_file["num_unseen"]
    assert 400 <= len(names) <= 900
    assert 0.20 <= len(unseen) / len(names) <= 0.25
    for script, entry in split_file["scripts"].items():
        assert [f"U+{ord(c):04X}" for c in entry["characters"]] == entry["codepoints"]
        assert all(len(c) == 1 for c in entry["characters"])
        assert entry["split"] == ("seen" if script in split_file["seen_scripts"] else "unseen")


def test_every_class_is_covered_by_enough_faces():
    """No tofu: each character is in the cmap of at least MIN_FACES of the faces the drawers use, and the
    LastResort face (a box for every code point) is not one of them."""
    from fontTools.ttLib import TTFont

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert not any("LastResort" in f.file for f in glyph_drawing.FACES)
    cmaps = {f.file: set(TTFont(str(ttf / f.file), lazy=True)["cmap"].getBestCmap()) for f in glyph_drawing.FACES}
    names, _, _, _ = glyphs.read_split()
    for name in names:
        cp = ord(name.split(":", 1)[1])
        assert sum(cp in cm for cm in cmaps.values()) >= glyph_split.MIN_FACES, name


# -- content -------------------------------------------------------------------------------------------------

def test_shapes_dtype_and_metadata(built, split_file):
    data, _ = built
    n = split_file["num_seen"] + split_file["num_unseen"]
    assert len(data.classes) == len(data.class_names) == len(data.extra["scripts"]) == n
    assert data.info.name == "glyphs" and data.info.channels == 1 and data.info.image_size == 32
    assert data.info.num_classes == n and data.info.num_seen == split_file["num_seen"]
    assert data.info.origin == "embedded (matplotlib fonts)"
    for name, script, arr in zip(data.class_names, data.extra["scripts"], data.classes):
        assert name.split(":", 1)[0] == script and len(name.split(":", 1)[1]) == 1
        assert arr.dtype == np.uint8 and arr.shape == (20, 32, 32, 1)
    stack = np.stack(data.classes)[..., 0]
    # Bright strokes on a dark background: the border is background, every image has saturated ink.
    border = np.concatenate([stack[..., 0, :], stack[..., -1, :], stack[..., :, 0], stack[..., :, -1]], -1)
    assert np.median(border) == 0 and (border.max(-1) > 128).mean() < 0.01
    assert (stack.reshape(*stack.shape[:2], -1).max(-1) == 255).all()


def test_images_fill_the_frame_and_are_centred(built):
    data, _ = built
    x = np.stack(data.classes)[..., 0].astype(np.float64) / 255.0      # [C, 20, 32, 32]
    ink = x.mean((-1, -2))
    assert 0.05 < np.median(ink) < 0.35 and ink.min() > 0.01           # strokes visible, not blobs
    ys, xs = np.mgrid[:32, :32]
    mass = x.sum((-1, -2))
    cy, cx = (x * ys).sum((-1, -2)) / mass, (x * xs).sum((-1, -2)) / mass
    assert abs(np.median(cy) - 15.5) < 1.5 and abs(np.median(cx) - 15.5) < 1.5
    rows, cols = (x > 0.5).any(-1), (x > 0.5).any(-2)
    extent = np.maximum(rows.sum(-1), cols.sum(-1))                      # longer side of the ink box
    assert 0.55 * 32 < np.median(extent) < 0.95 * 32


def test_drawers_differ_within_each_class(built):
    data, _ = built
    for name, arr in zip(data.class_names, data.classes):
        distinct = {img.tobytes() for img in arr}
        assert len(distinct) == len(arr), f"{name}: identical drawer images"


# -- split -----------------------------------------------------------------------------------------------------

def test_split_is_disjoint_and_by_script(built, split_file):
    data, _ = built
    seen, unseen = set(data.seen), set(data.unseen)
    assert not seen & unseen and seen | unseen == set(range(len(data.classes)))
    scripts = data.extra["scripts"]
    seen_scripts = {scripts[i] for i in seen}
    unseen_scripts = {scripts[i] for i in unseen}
    assert not seen_scripts & unseen_scripts
    assert seen_scripts == set(split_file["seen_scripts"])
    assert unseen_scripts == set(split_file["unseen_scripts"])


# Characters that are drawn alike (in DejaVu Sans at least): at most one of each group may be a class.
LOOKALIKES = [
    ("latin:A", "greek:Α", "cyrillic:А"),
    ("latin:B", "greek:Β", "cyrillic:В"),
    ("latin:E", "greek:Ε", "cyrillic:Е"),
    ("latin:H", "greek:Η", "cyrillic:Н"),
    ("latin:I", "latin:l", "greek:Ι", "cyrillic:І", "cyrillic:Ӏ", "hebrew:ו", "hebrew:ן"),
    ("latin:O", "greek:Ο", "cyrillic:О", "armenian:Օ"),
    ("latin:o", "greek:ο", "cyrillic:о", "armenian:օ"),
    ("latin:P", "greek:Ρ", "cyrillic:Р"),
    ("latin:p", "greek:ρ", "cyrillic:р"),
    ("latin:S", "cyrillic:Ѕ", "armenian:Տ"),
    ("latin:U", "armenian:Ս"),
    ("latin:u", "armenian:ս"),
    ("latin:n", "armenian:ո"),
    ("latin:h", "cyrillic:һ", "armenian:հ"),
    ("latin:g", "armenian:ց"),
    ("latin:j", "greek:ϳ", "cyrillic:ј", "armenian:յ"),
    ("latin:L", "armenian:Լ"),
    ("greek:Φ", "armenian:Փ"),
]


def test_known_lookalikes_are_one_class(built):
    data, _ = built
    index = {n: i for i, n in enumerate(data.class_names)}
    unseen = set(data.unseen)
    for group in LOOKALIKES:
        present = [n for n in group if n in index]
        assert len(present) <= 1, f"look-alikes that are all classes: {present}"
        assert present and present[0] == group[0], f"{group[0]} should be the class kept for {group}"
        assert index[present[0]] not in unseen


def _independent_render(font, ch: str) -> np.ndarray:
    """DejaVu Sans, tight box scaled to 23 of 32 px, centred, blurred; standardised (an implementation
    independent of glyph_drawing.py: other resampling, other blur, other fill)."""
    im = Image.new("L", (400, 400))
    ImageDraw.Draw(im).text((100, 100), ch, font=font, fill=255)
    im = im.crop(im.getbbox())
    w, h = im.size
    k = 23 / max(w, h)
    im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR)
    out = Image.new("L", (32, 32))
    out.paste(im, ((32 - im.size[0]) // 2, (32 - im.size[1]) // 2))
    v = gaussian_filter(np.asarray(out, dtype=np.float64) / 255.0, 1.0).ravel()
    v -= v.mean()
    return v / np.linalg.norm(v)


def test_no_unseen_class_is_a_near_copy_of_a_seen_class(built):
    data, _ = built
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), 160)
    vecs = np.stack([_independent_render(font, n.split(":", 1)[1]) for n in data.class_names])
    # The check is sharp: known look-alikes that the dedup removed score >= 0.97 under it ...
    for a, b in [("A", "Α"), ("A", "А"), ("O", "Օ"), ("n", "ո"), ("h", "հ"), ("U", "Ս"), ("g", "ց"), ("c", "C")]:
        assert _independent_render(font, a) @ _independent_render(font, b) >= 0.97, (a, b)
    # ... while every unseen class stays clearly below that against every seen class.
    cross = vecs[data.unseen] @ vecs[data.seen].T
    u, s = np.unravel_index(np.argmax(cross), cross.shape)
    worst = f"{data.class_names[data.unseen[u]]} vs {data.class_names[data.seen[s]]}: r={cross[u, s]:.3f}"
    assert cross.max() < 0.95, worst
    # No two classes at all are copies of each other (the dedup also runs within each side).
    every = vecs @ vecs.T
    np.fill_diagonal(every, -1.0)
    assert every.max() < 0.98


# -- determinism and cache -----------------------------------------------------------------------------------

def test_build_is_deterministic_and_cached(built, tmp_path_factory, monkeypatch):
    data, cache_a = built
    cache_b = tmp_path_factory.mktemp("glyphs-b")
    other = load_dataset(_cfg(), cache_b)
    file_a = glyphs.cache_path(cache_a, 32, 20)
    file_b = glyphs.cache_path(cache_b, 32, 20)
    assert file_a.parent == cache_a / "glyphs" and file_a.name.startswith(f"v{glyphs.FORMAT_VERSION}-s32-n20-seed0-")
    assert file_a.read_bytes() == file_b.read_bytes()
    assert all(np.array_equal(x, y) for x, y in zip(data.classes, other.classes))
    assert not list((cache_a / "glyphs").glob(".*tmp"))          # the atomic write left no temporary file

    # A second load reads the cache: nothing is drawn, the images are identical.
    def no_build(*args, **kwargs):
        raise AssertionError("the cached dataset was rebuilt")

    monkeypatch.setattr(glyphs, "draw_dataset", no_build)
    again = load_dataset(_cfg(), cache_a)
    assert again.class_names == data.class_names and again.seen == data.seen and again.unseen == data.unseen
    assert all(np.array_equal(x, y) for x, y in zip(data.classes, again.classes))


def test_corrupt_cache_is_rebuilt(tmp_path):
    cfg = _cfg(image_size=16, glyph_images_per_class=2)
    path = glyphs.cache_path(tmp_path, 16, 2)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    data = load_dataset(cfg, tmp_path)
    assert data.classes[0].shape == (2, 16, 16, 1)
    with np.load(path) as z:
        assert z["images"].shape == (len(data.classes), 2, 16, 16)


# -- sizes, drawers and channels -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [28, 64])
def test_other_sizes_draw_the_same_drawers(built, size, tmp_path_factory):
    data, _ = built
    small = load_dataset(_cfg(image_size=size, glyph_images_per_class=3), tmp_path_factory.mktemp(f"g{size}"))
    assert small.info.image_size == size and small.class_names == data.class_names
    assert all(arr.shape == (3, size, size, 1) and arr.dtype == np.uint8 for arr in small.classes)
    # Drawer parameters depend on neither the size nor the number of drawers: the same three drawers as
    # the first three of the 32 px build, at another resolution.
    a = resize_images(np.concatenate(small.classes), 32, 1).astype(np.float64).reshape(len(small.classes) * 3, -1)
    b = np.concatenate([arr[:3] for arr in data.classes]).astype(np.float64).reshape(len(data.classes) * 3, -1)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    corr = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert np.median(corr) > 0.9 and np.percentile(corr, 5) > 0.75


def test_fewer_drawers_are_a_prefix(built, tmp_path):
    data, _ = built
    few = load_dataset(_cfg(glyph_images_per_class=3), tmp_path)
    for x, y in zip(few.classes, data.classes):
        assert np.abs(x.astype(int) - y[:3].astype(int)).max() <= 1


def test_three_channels_replicate_gray(built):
    data, cache = built
    rgb = load_dataset(_cfg(channels=3), cache)
    assert rgb.info.channels == 3
    for gray, col in zip(data.classes[:20], rgb.classes[:20]):
        assert col.shape == (20, 32, 32, 3)
        assert (col == gray).all()


@pytest.mark.parametrize("over, words", [
    ({"image_size": 8}, "16..128"),
    ({"image_size": 256}, "16..128"),
    ({"channels": 2}, "grayscale"),
    ({"glyph_images_per_class": 0}, "glyph_images_per_class"),
    ({"num_seen_classes": 100}, "split by script"),
    ({"num_unseen_classes": 10}, "split by script"),
])
def test_bad_settings_are_user_errors(tmp_path, over, words):
    with pytest.raises(UserError, match=words):
        load_dataset(_cfg(**over), tmp_path)
    assert not (tmp_path / "glyphs").exists()           # rejected before anything was built


# -- the split generator is maintenance, not runtime -----------------------------------------------------------

def test_nothing_in_the_package_imports_the_split_generator():
    from test_imports import import_graph

    graph, _ = import_graph()
    importers = sorted(name for name, targets in graph.items() if "fsgen_bench.data.glyph_split" in targets)
    assert importers == [] and "fsgen_bench.data.readers.glyphs" in graph


@pytest.mark.slow
def test_regenerating_the_split_gives_the_committed_file():
    """The generator (about 20 s) still produces exactly the committed split: same classes, same order."""
    assert glyph_split.generate_split() == json.loads(glyphs.SPLIT_FILE.read_text(encoding="utf-8"))
