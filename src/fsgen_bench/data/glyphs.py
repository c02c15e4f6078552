"""``glyphs``: the embedded default dataset, an Omniglot-like set of characters that needs no download.

What it is
    A class is one character of one script (``"greek:λ"``, ``"armenian:Ֆ"``). Its images (``data.
    glyph_images_per_class``, default 20, like Omniglot's 20 drawers) are renders of that character in the
    font faces that ship inside matplotlib's wheel (DejaVu Sans / Sans Mono / Serif in four styles each,
    STIX General in four, Computer Modern cmr/cmb/cmss/cmti/cmtt/cmmi: up to 22 faces), each drawer with
    its own random pen width (thickening/thinning), affine distortion (rotation, shear, anisotropic scale,
    translation) and smooth elastic jitter. Images are grayscale uint8 ``[n, S, S, 1]`` with BRIGHT strokes
    (255) on a DARK background (0), like MNIST/EMNIST; Omniglot's files are the inverse, but the suite's
    pipeline only needs consistency within a dataset.

Split
    Seen and unseen classes are split by SCRIPT, as Omniglot splits alphabets. The class list is fixed and
    committed in ``splits/glyphs.json``; :func:`write_split_file` regenerates it
    (``python -c "from fsgen_bench.data.glyphs import write_split_file as w; w()"``). The generator keeps
    letters (Unicode categories L*, not modifier letters, not precomposed letter+diacritic forms) that at
    least :data:`MIN_FACES` faces cover in their cmap tables (every drawer is drawn from a face that really
    has the glyph: no tofu boxes), then deduplicates by rendered appearance: every candidate is rendered in
    DejaVu Sans (and Serif and Sans Mono where they have it), normalised exactly as the dataset normalises
    its glyphs (tight box scaled to a fixed fill, centred), blurred and compared by correlation (averaged
    over the common faces). The seen side is visited first, so a character that looks like an already kept
    one is dropped: Greek ``Α`` and Cyrillic ``А`` lose to Latin ``A``, Latin ``c`` to ``C``, Armenian ``Օ``
    (unseen) to Latin ``O`` (seen); an unseen character must moreover keep a margin from every seen one.
    No unseen class therefore has a near-identical seen class, and no two classes are near-identical at
    all. Large scripts (Cyrillic, Canadian syllabics) are cut to :data:`MAX_CLASSES_PER_SCRIPT`, keeping the
    characters most faces cover, so that no script dominates.

Build
    Deterministic from the fixed :data:`BUILD_SEED` (the run seed is deliberately not used: every run and
    every method sees the same dataset). Each drawer's random parameters come from a generator seeded by
    ``(BUILD_SEED, crc32(class name))`` and do not depend on the image size, so 28, 32 and 64 px are the
    same drawers at different resolutions, and the first 20 drawers of a 30-drawer build are the 20 of
    the default. Each (face, character) is rendered once with PIL (FreeType) at twice the output side and
    blurred; the drawers are then drawn in torch batches: one ``grid_sample`` per image through an affine
    map plus an elastic field, and a pen drawn as a level set of the blurred glyph (see :func:`_distort`).
    The whole dataset (496 classes x 20 drawers at 32 px) takes about 5 CPU-seconds and is cached
    atomically in ``cache_dir / "glyphs" / f"{key}.npz"``; the key encodes the format version, image size,
    drawers per class, build seed and a fingerprint of the split file, the font files and the versions of
    the libraries that draw (PIL, FreeType, torch). A build is byte-identical for the same fingerprint
    (and thread count does not matter); another FreeType may move anti-aliased pixels slightly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fsgen_bench.data.source import DATASETS, ClassImages, DatasetInfo, DatasetSpec, resize_images
from fsgen_bench.errors import UserError

# -- constants ------------------------------------------------------------------------------------------------

FORMAT_VERSION = 1          # bump when the rendering or distortion changes: it is part of the cache key
BUILD_SEED = 0              # fixed on purpose: the dataset is the same for every run seed
SPLIT_FILE = Path(__file__).parent / "splits" / "glyphs.json"
MIN_SIZE, MAX_SIZE = 16, 128
MIN_FACES = 4               # a class needs this many faces covering it, so its drawers differ in face
# Omniglot's alphabets have 14-55 characters; without a cap the Canadian syllabics (310 after dedup) would
# make up most of the classes (Cyrillic, 114, loses a few too).
MAX_CLASSES_PER_SCRIPT = 100

# The glyph's longer side fills this fraction of the frame before distortion: with the largest random scale
# (1.08), rotation (12 deg) and shift, fewer than 0.5% of the images touch the border at 32 px.
FILL = 0.72


@dataclass(frozen=True)
class Face:
    file: str                        # file name in matplotlib's mpl-data/fonts/ttf
    latin_only: bool = False         # Computer Modern: TeX encodings; only its ASCII letters are reliable


# Every text face in matplotlib's wheel. Left out: DejaVu*Display (a few dozen glyphs), STIXNonUni* and
# STIXSiz* (math symbols/big delimiters), cmex10/cmsy10 (symbols in letter positions), LastResortHE (draws a
# box for every code point: exactly the tofu we must avoid).
FACES: tuple[Face, ...] = (
    Face("DejaVuSans.ttf"), Face("DejaVuSans-Bold.ttf"), Face("DejaVuSans-Oblique.ttf"),
    Face("DejaVuSans-BoldOblique.ttf"),
    Face("DejaVuSansMono.ttf"), Face("DejaVuSansMono-Bold.ttf"), Face("DejaVuSansMono-Oblique.ttf"),
    Face("DejaVuSansMono-BoldOblique.ttf"),
    Face("DejaVuSerif.ttf"), Face("DejaVuSerif-Bold.ttf"), Face("DejaVuSerif-Italic.ttf"),
    Face("DejaVuSerif-BoldItalic.ttf"),
    Face("STIXGeneral.ttf"), Face("STIXGeneralBol.ttf"), Face("STIXGeneralItalic.ttf"),
    Face("STIXGeneralBolIta.ttf"),
    Face("cmr10.ttf", latin_only=True), Face("cmb10.ttf", latin_only=True), Face("cmss10.ttf", latin_only=True),
    Face("cmti10.ttf", latin_only=True), Face("cmtt10.ttf", latin_only=True), Face("cmmi10.ttf", latin_only=True),
)
CANONICAL_FACE = "DejaVuSans.ttf"    # covers every script below: a candidate must be in it
# The dedup compares two characters in each of these designs that covers both (DejaVu Sans always does) and
# averages: one design's quirk (Sans Mono squeezes every letter to one width) neither merges nor separates
# two characters on its own.
DEDUP_FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")


@dataclass(frozen=True)
class Script:
    name: str
    ranges: tuple[tuple[int, int], ...]   # inclusive code-point ranges
    seen: bool


# The dedup keeps the first of two look-alikes and visits the seen side first, so a look-alike is removed
# from the unseen side (see generate_split for the order within a side). Armenian and Georgian are unseen
# (105 of 496 classes, 21%). Scripts the faces cover with fewer than MIN_FACES faces (N'Ko, Tifinagh, Ogham:
# DejaVu Sans and its bold only) are left out; so are Lisu and Old Italic, mostly turned or mirrored
# Latin/Greek capitals, and Braille (dot patterns, not drawn strokes).
SCRIPTS: tuple[Script, ...] = (
    Script("latin", ((0x41, 0x5A), (0x61, 0x7A)), seen=True),
    Script("greek", ((0x370, 0x3E1), (0x3F0, 0x3FF)), seen=True),
    Script("coptic", ((0x3E2, 0x3EF),), seen=True),          # the Coptic letters of the Greek block
    Script("cyrillic", ((0x400, 0x52F),), seen=True),
    Script("arabic", ((0x620, 0x64A), (0x671, 0x6D3)), seen=True),
    Script("canadian", ((0x1400, 0x167F),), seen=True),      # Unified Canadian Aboriginal Syllabics
    Script("lao", ((0xE80, 0xEFF),), seen=True),
    Script("hebrew", ((0x5D0, 0x5EA),), seen=True),
    Script("armenian", ((0x531, 0x587),), seen=False),
    Script("georgian", ((0x10A0, 0x10FF),), seen=False),
)

# Dedup: render side (px), Gaussian blur sigma (px at that side; tolerates hairline differences between
# near-identical designs) and the correlation from which two characters count as the same shape. In DejaVu
# Sans, 0.90 merges A/Α/А, O/Օ, l/I (r = 1.0), c/C (0.98) and keeps distinct letters such as y/Y (0.85),
# E/F (0.84) or Arabic ب/ت (0.33) apart. An unseen character must keep a margin from every seen one: mean
# similarity below 0.85 AND below 0.90 in every single common face (a leak would flatter every method's
# unseen score, while a lost class costs little). The margin also removes characters that are similar
# rather than identical, such as Armenian գ (q-like), շ (like Coptic Ϩ) or Georgian Ⴍ (Q-like in Sans).
DEDUP_SIZE = 32
DEDUP_BLUR = 1.0
DEDUP_THRESHOLD = 0.90
DEDUP_THRESHOLD_UNSEEN = 0.85
DEDUP_THRESHOLD_UNSEEN_ANY = 0.90
# Glyphs whose longer side is below this fraction of the em are marks (Canadian finals, dots), not letters:
# scaled up to fill the frame they would become blobs.
MIN_GLYPH_EM = 0.30

# Distortion ranges (per drawer). Rotation and shear are kept mild so that turned letters of other scripts
# stay distinct classes; the translation is a fraction of the half-frame (normalised coordinates).
ROTATION_DEG = 12.0
SHEAR = 0.18
SCALE = (0.86, 1.08)
ASPECT_LOG_SD = 0.08         # log of the x/y scale ratio, uniform in +-this
TRANSLATE = 0.07
ELASTIC_GRID = 5             # control points per side of the smooth displacement field
ELASTIC_AMPLITUDE = 0.045    # displacement of a control point, in normalised coordinates (2 = frame side)
# Pen width as a fraction of the output side, drawn per drawer: 1.6-3.2 px at 32 px, clearly visible at
# 28-32 px yet thin enough that small features (Arabic dots, Lao loops) stay apart.
PEN_WIDTH = (0.05, 0.10)
# The pen is a level set of the blurred glyph (see _distort); this blur (sigma, fraction of the side) lets
# an edge move by up to 1.65 sigma = 3.3% of the side either way (the level is kept in [0.05, 0.95]):
# enough to bring cmr10's thin strokes up to the pen, while blurring away little detail.
PEN_BLUR = 0.02
MAX_ERODE = 0.25             # thinning removes at most this fraction of a face's mean stroke width

# Uniform numbers drawn per drawer: pen, rotation, shear, scale, aspect, shift x, shift y, then the elastic
# field's control offsets (x then y).
_N_SCALARS = 7
_N_PARAMS = _N_SCALARS + 2 * ELASTIC_GRID * ELASTIC_GRID


# -- fonts --------------------------------------------------------------------------------------------------

def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _face_cmaps() -> dict[str, set[int]]:
    """Code points each face really has a glyph for (its best cmap table)."""
    from fontTools.ttLib import TTFont

    cmaps = {}
    for face in FACES:
        path = font_dir() / face.file
        if not path.is_file():
            continue
        cmap = TTFont(str(path), lazy=True)["cmap"].getBestCmap() or {}
        cps = set(cmap)
        if face.latin_only:
            cps = {c for c in cps if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A}
        cmaps[face.file] = cps
    return cmaps


def _fingerprint() -> str:
    """Split file content, font files (names, sizes) and the drawing libraries' versions: a change in any
    of them may change the pixels, so it changes the cache key."""
    import PIL
    from PIL import features

    h = hashlib.sha256(SPLIT_FILE.read_bytes())
    for face in FACES:
        path = font_dir() / face.file
        h.update(f"{face.file}:{path.stat().st_size if path.is_file() else -1};".encode())
    h.update(f"PIL {PIL.__version__}; freetype {features.version('freetype2')}; torch {torch.__version__}".encode())
    return h.hexdigest()[:12]


def _render_glyph(font, ch: str) -> np.ndarray | None:
    """Tightly cropped uint8 ink image of one character (None when the face draws nothing)."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(ch)
    pad = 4
    w, h = max(1, right - left + 2 * pad), max(1, bottom - top + 2 * pad)
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).text((pad - left, pad - top), ch, font=font, fill=255)
    box = im.getbbox()
    if box is None:
        return None
    return np.asarray(im.crop(box))


def _fit(crop: np.ndarray, side: int, fill: float = FILL) -> np.ndarray:
    """Scale a crop so that its longer side is ``fill * side`` (aspect kept) and centre it on a dark square."""
    from PIL import Image

    h, w = crop.shape
    k = fill * side / max(h, w)
    nw, nh = max(1, round(w * k)), max(1, round(h * k))
    small = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.LANCZOS))
    out = np.zeros((side, side), dtype=np.uint8)
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


def _font(face_file: str, px: int):
    from PIL import ImageFont

    # BASIC layout draws exactly the cmap glyph of the code point (no shaping), which is what the coverage
    # check verified; Arabic letters thus appear in their isolated forms.
    return ImageFont.truetype(str(font_dir() / face_file), px, layout_engine=ImageFont.Layout.BASIC)


# -- split file generation (run once; the output is committed) ------------------------------------------------

def _is_letter(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat.startswith("L") and cat != "Lm" and not unicodedata.decomposition(ch)


def canonical_renders(chars: list[str], size: int = DEDUP_SIZE, face: str = CANONICAL_FACE) -> np.ndarray:
    """Float [n, size, size] renders in one face, normalised as the dataset normalises glyphs. For a
    character outside the face's cmap FreeType draws the .notdef box: callers mask those by coverage."""
    font = _font(face, 8 * size)
    imgs = np.zeros((len(chars), size, size), dtype=np.float32)
    for i, ch in enumerate(chars):
        crop = _render_glyph(font, ch)
        if crop is not None:
            imgs[i] = _fit(crop, size) / 255.0
    return imgs


def _standardise(imgs: np.ndarray) -> np.ndarray:
    """Blur, then zero-mean unit-norm rows: a dot product of two rows is their correlation."""
    k = _gauss_matrix(imgs.shape[-1], DEDUP_BLUR)
    x = (k @ torch.from_numpy(imgs) @ k).flatten(1).numpy().astype(np.float64)
    x -= x.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    return x


def _cap(cands: list[tuple[int, int, int]], cap: int) -> list[tuple[int, int, int]]:
    """At most ``cap`` of one script's (n_faces, script, code point) survivors: those that more faces cover
    first (more varied drawers, and the script's core letters), evenly over code points within a tie."""
    if len(cands) <= cap:
        return cands
    chosen: list[tuple[int, int, int]] = []
    for n_faces in sorted({c[0] for c in cands}, reverse=True):
        tier = sorted(c for c in cands if c[0] == n_faces)
        room = cap - len(chosen)
        if len(tier) > room:
            tier = [tier[i] for i in np.linspace(0, len(tier) - 1, room).round().astype(int)]
        chosen += tier
        if len(chosen) == cap:
            break
    return chosen


def generate_split() -> dict:
    """The committed split: scripts, their side and their (deduplicated, covered) characters.

    Greedy dedup over all candidates of the seen side, then of the unseen side, each ordered by the number
    of faces covering the character (most first: Cyrillic ``И`` keeps its class rather than the archaic
    Greek ``Ͷ`` drawn alike, which fewer faces have), then script order, then code point (``O`` before ``o``).
    A candidate is dropped when its similarity (mean over DEDUP_FACES) to a kept character reaches
    DEDUP_THRESHOLD; an unseen candidate also when its similarity to a seen character reaches
    DEDUP_THRESHOLD_UNSEEN, or DEDUP_THRESHOLD_UNSEEN_ANY in any single common face.
    """
    cmaps = _face_cmaps()
    for face in (CANONICAL_FACE, *DEDUP_FACES):
        if face not in cmaps:
            raise RuntimeError(f"font face {face} is missing from {font_dir()}")
    em_font = _font(CANONICAL_FACE, 100)
    dropped: dict[str, dict[str, str]] = {s.name: {} for s in SCRIPTS}
    # Kept characters: (n_faces, script index, code point), their standardised renders per dedup face
    # (zero rows where the face lacks the character) and coverage masks.
    kept: list[tuple[int, int, int]] = []
    kept_seen: list[bool] = []
    kept_vecs = {f: np.zeros((0, DEDUP_SIZE * DEDUP_SIZE)) for f in DEDUP_FACES}
    kept_cov = {f: np.zeros(0, dtype=bool) for f in DEDUP_FACES}

    def name(c: tuple[int, int, int]) -> str:
        return f"{SCRIPTS[c[1]].name}:{chr(c[2])}"

    for side in (True, False):
        cands: list[tuple[int, int, int]] = []
        for si, script in enumerate(SCRIPTS):
            if script.seen != side:
                continue
            for lo, hi in script.ranges:
                for cp in range(lo, hi + 1):
                    if not _is_letter(chr(cp)):
                        continue
                    n_faces = sum(cp in cps for cps in cmaps.values())
                    if n_faces < MIN_FACES or cp not in cmaps[CANONICAL_FACE]:
                        continue
                    crop = _render_glyph(em_font, chr(cp))
                    if crop is None or max(crop.shape) < MIN_GLYPH_EM * 100:
                        dropped[script.name][chr(cp)] = "mark-like (too small in the em)"
                        continue
                    cands.append((n_faces, si, cp))
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        chars = [chr(c[2]) for c in cands]
        vecs = {f: _standardise(canonical_renders(chars, face=f)) for f in DEDUP_FACES}
        cov = {f: np.array([c[2] in cmaps[f] for c in cands], dtype=bool) for f in DEDUP_FACES}
        survivors: list[int] = []
        for i, c in enumerate(cands):
            pool_names = [name(k) for k in kept] + [name(cands[j]) for j in survivors]
            if pool_names:
                total = np.zeros(len(pool_names))
                count = np.zeros(len(pool_names))
                best = np.full(len(pool_names), -1.0)
                for f in DEDUP_FACES:
                    if not cov[f][i]:
                        continue
                    pv = np.concatenate([kept_vecs[f], vecs[f][survivors]])
                    pc = np.concatenate([kept_cov[f], cov[f][survivors]])
                    r = pv @ vecs[f][i]
                    total += np.where(pc, r, 0.0)
                    count += pc
                    best = np.where(pc, np.maximum(best, r), best)
                sim = total / np.maximum(count, 1)      # DejaVu Sans covers all, so count >= 1
                pool_seen = np.array(kept_seen + [side] * len(survivors))
                if side:
                    hit = sim >= DEDUP_THRESHOLD
                else:
                    cross = pool_seen
                    hit = np.where(cross, (sim >= DEDUP_THRESHOLD_UNSEEN) | (best >= DEDUP_THRESHOLD_UNSEEN_ANY),
                                   sim >= DEDUP_THRESHOLD)
                hits = np.nonzero(hit)[0]
                if len(hits):
                    j = int(hits[np.argmax(np.maximum(sim[hits], best[hits]))])
                    where = "seen " if pool_seen[j] and not side else ""
                    dropped[SCRIPTS[c[1]].name][chars[i]] = (
                        f"looks like {where}{pool_names[j]} (r={sim[j]:.3f}, max over faces {best[j]:.3f})")
                    continue
            survivors.append(i)
        # Per-script cap. A capped-out character may have blocked a look-alike above: that only loses a
        # class, it never lets a duplicate in.
        selected: set[int] = set()
        for si in {cands[i][1] for i in survivors}:
            mine = [cands[i] for i in survivors if cands[i][1] == si]
            chosen = set(_cap(mine, MAX_CLASSES_PER_SCRIPT))
            for c in mine:
                if c not in chosen:
                    dropped[SCRIPTS[si].name][chr(c[2])] = f"script capped at {MAX_CLASSES_PER_SCRIPT} classes"
            selected |= {i for i in survivors if cands[i] in chosen}
        order = [i for i in survivors if i in selected]
        kept += [cands[i] for i in order]
        kept_seen += [side] * len(order)
        for f in DEDUP_FACES:
            kept_vecs[f] = np.concatenate([kept_vecs[f], vecs[f][order]])
            kept_cov[f] = np.concatenate([kept_cov[f], cov[f][order]])

    scripts: dict[str, dict] = {}
    for si, script in enumerate(SCRIPTS):
        chars = [chr(cp) for _, s, cp in sorted(kept, key=lambda c: c[2]) if s == si]
        scripts[script.name] = {
            "split": "seen" if script.seen else "unseen",
            "characters": chars,
            "codepoints": [f"U+{ord(ch):04X}" for ch in chars],
            "dropped": dict(sorted(dropped[script.name].items())),
        }
    n_seen = sum(len(v["characters"]) for v in scripts.values() if v["split"] == "seen")
    n_unseen = sum(len(v["characters"]) for v in scripts.values() if v["split"] == "unseen")
    return {
        "format": 1,
        "dataset": "glyphs",
        "generated_by": "fsgen_bench.data.glyphs.write_split_file",
        "rules": {
            "letters": "Unicode categories L* except Lm, no precomposed (decomposable) forms",
            "min_faces": MIN_FACES,
            "min_glyph_em": MIN_GLYPH_EM,
            "dedup": {"faces": list(DEDUP_FACES), "size": DEDUP_SIZE, "blur_sigma": DEDUP_BLUR,
                      "fill": FILL, "threshold": DEDUP_THRESHOLD,
                      "threshold_unseen_vs_seen": DEDUP_THRESHOLD_UNSEEN,
                      "threshold_unseen_vs_seen_any_face": DEDUP_THRESHOLD_UNSEEN_ANY,
                      "order": "seen side first, then unseen; within a side: more covering faces first, "
                               "then script order, then code point"},
            "max_classes_per_script": MAX_CLASSES_PER_SCRIPT,
        },
        "num_seen": n_seen,
        "num_unseen": n_unseen,
        "seen_scripts": [s.name for s in SCRIPTS if s.seen],
        "unseen_scripts": [s.name for s in SCRIPTS if not s.seen],
        "scripts": scripts,
    }


def write_split_file(path: Path = SPLIT_FILE) -> dict:
    """Regenerate the committed split file (atomically). Returns its content."""
    split = generate_split()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(split, ensure_ascii=False, indent=1)
    # Lists of names/characters on one line each (their items hold no whitespace): a reviewable diff.
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda mt: "[" + " ".join(mt.group(1).split()) + "]", text)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return split


def read_split(path: Path = SPLIT_FILE) -> tuple[list[str], list[str], list[int], list[int]]:
    """(class names, scripts per class, seen indices, unseen indices) from the committed split file."""
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
        names, scripts, seen, unseen = [], [], [], []
        for script, entry in split["scripts"].items():
            side = entry["split"]
            if side not in ("seen", "unseen"):
                raise ValueError(f"script {script}: split must be seen or unseen, not {side!r}")
            for ch in entry["characters"]:
                (seen if side == "seen" else unseen).append(len(names))
                names.append(f"{script}:{ch}")
                scripts.append(script)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise RuntimeError(f"glyphs split file {path} is missing or malformed ({err}); it ships with the "
                           f"package; regenerate it with fsgen_bench.data.glyphs.write_split_file()") from err
    if len(set(names)) != len(names) or not seen or not unseen:
        raise RuntimeError(f"glyphs split file {path}: duplicate classes or an empty side")
    return names, scripts, seen, unseen


# -- build ----------------------------------------------------------------------------------------------------

def _master_side(size: int) -> int:
    # Glyphs are rendered (and their pen blurred) at 2x the output side: fine enough for hairlines and the
    # pen's level set; the blurred render is smooth enough to be sampled at the output size.
    return 2 * size


def _rbf_basis(n_out: int, n_ctrl: int) -> torch.Tensor:
    """[n_out, n_ctrl] smooth interpolation weights (Gaussian bumps one control spacing wide, rows summing
    to 1) from control points spread over [-1, 1] to the sampling positions: the elastic field is
    basis @ coarse @ basis.T, two small matmuls instead of a bicubic upsampling per image."""
    pos = (torch.arange(n_out, dtype=torch.float64) + 0.5) / n_out * 2 - 1
    ctrl = torch.linspace(-1, 1, n_ctrl, dtype=torch.float64)
    w = torch.exp(-0.5 * ((pos[:, None] - ctrl[None, :]) / (2.0 / (n_ctrl - 1))) ** 2)
    return (w / w.sum(1, keepdim=True)).float()


def _drawer_params(name: str, n: int, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: a face index per drawer and uniform [0, 1) parameters [n, _N_PARAMS] per drawer.

    Seeded by (BUILD_SEED, crc32(name)) only, so a class's drawers depend neither on the class order, nor
    on the image size, nor (for the first n) on how many drawers are built.
    """
    rng = np.random.default_rng([BUILD_SEED, zlib.crc32(name.encode("utf-8"))])
    perm = rng.permutation(n_faces)
    u = rng.random((n, _N_PARAMS))
    return perm[np.arange(n) % n_faces], u


def _stroke_width(img: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * ink area / perimeter (a stroke of width w and length L has area wL
    and two edges of length L). The perimeter is Crofton's estimate from the ink/background transitions
    along rows, columns and both diagonals, which counts slanted edges at their true length."""
    ink = (img >= 128).astype(np.int8)
    h = np.abs(np.diff(ink, axis=1)).sum()
    v = np.abs(np.diff(ink, axis=0)).sum()
    d = np.abs(ink[1:, 1:] - ink[:-1, :-1]).sum() + np.abs(ink[1:, :-1] - ink[:-1, 1:]).sum()
    # Crofton with 4 directions: each direction sees an edge twice over a half-turn, hence pi/8.
    perimeter = np.pi / 8 * (h + v + d / np.sqrt(2))
    return 2.0 * float(ink.sum()) / max(float(perimeter), 1.0)


def _max3(x: torch.Tensor) -> torch.Tensor:
    """3x3 max filter of [B, 1, H, W] (zero padding), as maxima of shifted views: far faster than
    max_pool2d on CPU."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 0, 0))
    r = torch.maximum(torch.maximum(p[..., :, 0:w], p[..., :, 1:w + 1]), p[..., :, 2:w + 2])
    p = F.pad(r, (0, 0, 1, 1))
    return torch.maximum(torch.maximum(p[..., 0:h, :], p[..., 1:h + 1, :]), p[..., 2:h + 2, :])


def _gauss_matrix(n: int, sigma: float) -> torch.Tensor:
    """[n, n] symmetric Gaussian blur matrix with zero padding (the background is 0)."""
    i = torch.arange(n, dtype=torch.float64)
    r = max(1, int(np.ceil(3 * sigma)))
    w = torch.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
    w[(i[:, None] - i[None, :]).abs() > r] = 0
    # normalise as the full (untruncated, unpadded) kernel, so a stroke near the border is not brightened
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    return (w / torch.exp(-0.5 * (t / sigma) ** 2).sum()).float()


def _distort(masters: torch.Tensor, widths: np.ndarray, which: np.ndarray, u: np.ndarray,
             size: int) -> torch.Tensor:
    """Draw the drawers' images.

    masters: uint8 [R, 1, M, M] renders (M = 2 * size) and their mean stroke widths [R] (px at M); which:
    the render of each drawer [B]; u: the drawers' uniform parameters [B, _N_PARAMS].
    Returns float [B, 1, size, size] in [0, 1].

    1. Per render (shared by the drawers that use it): a 3x3 max filter, so that hairlines (cmr10, STIX)
       are >= ~3 px and survive step 3 (a line of width h blurs to a peak of 2 Phi(h / 2 sigma) - 1, below
       0.5 for h < 1.35 sigma), then a Gaussian blur with sigma = PEN_BLUR * M.
    2. Per drawer: one sampling grid, affine (rotation, shear, anisotropic scale, translation) plus a smooth
       elastic field, sampled bilinearly at the output size (the blurred render is smooth, so sampling it at
       half its resolution does not alias).
    3. Pen: keep the level set ``blurred >= t``, drawn with a one-output-pixel linear ramp across the edge
       (analytic anti-aliasing). A blurred edge crosses level t at sigma * Phi^-1(1 - t) outside the
       original edge, so t sets the stroke width continuously (t < 0.5 thickens, t > 0.5 thins) and gives
       every face uniform, pen-like strokes.
    """
    m = masters.shape[-1]
    b = len(which)
    sigma = PEN_BLUR * m
    k = _gauss_matrix(m, sigma)
    # separable blur as two matmuls: far faster than a one-channel conv2d on CPU
    blurred = k @ _max3(masters.float().div_(255.0)) @ k

    # Affine, output coords -> input coords (grid_sample convention, normalised [-1, 1]): the forward map
    # is p -> R(ang) @ Shear @ diag(sx, sy) @ p + t, the grid needs its inverse.
    ang = np.deg2rad((2 * u[:, 1] - 1) * ROTATION_DEG)
    shear = (2 * u[:, 2] - 1) * SHEAR
    scale = SCALE[0] + u[:, 3] * (SCALE[1] - SCALE[0])
    aspect = np.exp((2 * u[:, 4] - 1) * ASPECT_LOG_SD)
    sx, sy = scale * aspect, scale / aspect
    tx, ty = (2 * u[:, 5] - 1) * TRANSLATE, (2 * u[:, 6] - 1) * TRANSLATE
    cos, sin = np.cos(ang), np.sin(ang)
    fwd = np.empty((b, 2, 2))
    fwd[:, 0, 0] = cos * sx
    fwd[:, 0, 1] = (cos * shear - sin) * sy
    fwd[:, 1, 0] = sin * sx
    fwd[:, 1, 1] = (sin * shear + cos) * sy
    inv = np.linalg.inv(fwd)
    theta = torch.from_numpy(np.concatenate([inv, -inv @ np.stack([tx, ty], axis=1)[:, :, None]], axis=2))
    pos = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1   # pixel centres (align_corners=False)
    base = torch.stack([pos.view(1, -1).expand(size, size), pos.view(-1, 1).expand(size, size),
                        torch.ones(size, size, dtype=torch.float64)], dim=-1)          # [S, S, 3] (x, y, 1)
    grid = (base.view(1, size * size, 3) @ theta.transpose(1, 2)).float().view(b, size, size, 2)
    # Elastic: a smooth random displacement field from a coarse grid of uniform offsets.
    g = ELASTIC_GRID
    coarse = torch.from_numpy((2 * u[:, _N_SCALARS:] - 1) * ELASTIC_AMPLITUDE).float().view(b, 2, g, g)
    basis = _rbf_basis(size, g)
    grid += (basis @ coarse @ basis.T).permute(0, 2, 3, 1)
    y = F.grid_sample(blurred[torch.from_numpy(which)], grid, mode="bilinear", padding_mode="zeros",
                      align_corners=False)

    # Pen, in master pixels (the glyph's frame): one output pixel spans (M / size) / scale of them.
    px_per_out = (m / size) / scale
    width = widths[which] + 2.0                      # the max filter added a pixel on each side
    target = (PEN_WIDTH[0] + u[:, 0] * (PEN_WIDTH[1] - PEN_WIDTH[0])) * size * px_per_out
    shift = np.maximum((target - width) / 2.0, -MAX_ERODE * width / 2.0)   # per edge, + = outwards
    # Level for that shift; clipped away from 0/1, where the ramp would pick up blur tails / lose strokes.
    level = torch.special.ndtr(torch.from_numpy(-shift / sigma)).clamp(0.05, 0.95).numpy()
    # Change of the blurred image per output pixel across an edge at that level: the ramp's slope.
    z = torch.special.ndtri(torch.from_numpy(level)).numpy()
    slope = np.exp(-0.5 * z ** 2) / (np.sqrt(2 * np.pi) * sigma) * px_per_out
    # The ramp runs over [lo, lo + slope] around the level, kept inside (0.02, 0.98): the background (blur 0)
    # stays black and a wide stroke's inside (blur 1) stays white whatever the level.
    lo = np.clip(level - slope / 2, 0.02, 0.98 - slope)
    lo_t = torch.from_numpy(lo).float().view(b, 1, 1, 1)
    sl = torch.from_numpy(slope).float().view(b, 1, 1, 1)
    return y.sub_(lo_t).div_(sl).clamp_(0.0, 1.0)


def build(size: int, per_class: int) -> tuple[np.ndarray, list[str], list[str], list[int], list[int]]:
    """Render the whole dataset: uint8 [classes, per_class, size, size] plus the split file's lists."""
    names, scripts, seen, unseen = read_split()
    cmaps = _face_cmaps()
    m = _master_side(size)
    # Render at 2x the master side: most glyphs are 0.5-1 em, so their crops are then shrunk (not
    # enlarged) to FILL * m, which keeps edges smooth.
    font_px = 2 * m
    fonts: dict[str, object] = {}
    out = np.empty((len(names), per_class, size, size), dtype=np.uint8)
    # Classes per batch: ~2^24 master pixels gathered for grid_sample (64 MB as floats) at any size.
    chunk = max(1, (1 << 24) // (per_class * m * m))
    for start in range(0, len(names), chunk):
        stop = min(start + chunk, len(names))
        masters: list[np.ndarray] = []
        widths: list[float] = []
        which: list[int] = []
        params = []
        for c in range(start, stop):
            ch = names[c].split(":", 1)[1]
            faces = [f.file for f in FACES if f.file in cmaps and ord(ch) in cmaps[f.file]]
            if not faces:
                raise RuntimeError(f"glyphs: no font face covers {names[c]} (fonts in {font_dir()})")
            face_idx, u = _drawer_params(names[c], per_class, len(faces))
            index: dict[int, int] = {}
            for fi in face_idx:
                if fi not in index:
                    face = faces[fi]
                    if face not in fonts:
                        fonts[face] = _font(face, font_px)
                    crop = _render_glyph(fonts[face], ch)
                    if crop is None:
                        raise RuntimeError(f"glyphs: face {face} maps {names[c]} but draws nothing")
                    img = _fit(crop, m)
                    index[fi] = len(masters)
                    masters.append(img)
                    widths.append(_stroke_width(img))
                which.append(index[fi])
            params.append(u)
        x = torch.from_numpy(np.stack(masters))[:, None]
        with torch.no_grad():
            y = _distort(x, np.asarray(widths), np.asarray(which), np.concatenate(params), size)
        y = y.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)[:, 0]
        out[start:stop] = y.view(stop - start, per_class, size, size).numpy()
    return out, names, scripts, seen, unseen


# -- cache and registry ------------------------------------------------------------------------------------------

def cache_key(size: int, per_class: int) -> str:
    return f"v{FORMAT_VERSION}-s{size}-n{per_class}-seed{BUILD_SEED}-{_fingerprint()}"


def cache_path(cache_dir: Path, size: int, per_class: int) -> Path:
    return Path(cache_dir) / "glyphs" / f"{cache_key(size, per_class)}.npz"


def _load_cached(path: Path, names: list[str], shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
            cached_names = z["class_names"].tolist()
    except Exception:      # a corrupt or foreign file: rebuild rather than fail
        return None
    if cached_names != names or images.shape != shape or images.dtype != np.uint8:
        return None
    return images


def _save_atomic(path: Path, images: np.ndarray, names: list[str]) -> None:
    """An .npz (readable by np.load) written to a temporary file and renamed into place, so a reader never
    sees a partial file. Written by hand rather than with np.savez so that the zip entries carry a fixed
    timestamp: the same build gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # compresslevel 1: the images are mostly background, level 1 already shrinks them ~5x, and fast.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for key, arr in (("images", images), ("class_names", np.array(names))):
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _validate(data_cfg: dict) -> tuple[int, int, int]:
    try:
        size = int(data_cfg.get("image_size", 32))
        per_class = int(data_cfg.get("glyph_images_per_class", 20))
        channels = int(data_cfg.get("channels", 1))
    except (TypeError, ValueError) as err:
        raise UserError(f"glyphs: data.image_size, data.glyph_images_per_class and data.channels must be "
                        f"integers ({err})") from err
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"glyphs: data.image_size={size} is not supported; use a size in {MIN_SIZE}..{MAX_SIZE} "
                        f"(28, 32 and 64 are the usual ones)")
    if not 1 <= per_class <= 1000:
        raise UserError(f"glyphs: data.glyph_images_per_class={per_class}; use 1..1000 (default 20)")
    if channels not in (1, 3):
        raise UserError(f"glyphs: data.channels={channels}; glyphs are grayscale: use 1 (or 3 to replicate)")
    if data_cfg.get("num_seen_classes") is not None:
        # An error rather than silently ignoring it: a user who sets it expects a different split and would
        # otherwise get results that do not match what they asked for.
        raise UserError(
            f"glyphs: data.num_seen_classes={data_cfg['num_seen_classes']} does not apply: glyphs is split by "
            f"script (as Omniglot splits alphabets), from the committed file {SPLIT_FILE.name}; leave "
            f"data.num_seen_classes null"
        )
    return size, per_class, channels


def load(data_cfg: dict, cache_dir: Path) -> ClassImages:
    """Read (or build and cache) the glyphs dataset at ``data.image_size``."""
    size, per_class, channels = _validate(data_cfg)
    names, scripts, seen, unseen = read_split()
    path = cache_path(cache_dir, size, per_class)
    images = _load_cached(path, names, (len(names), per_class, size, size)) if path.is_file() else None
    if images is None:
        images, _, _, _, _ = build(size, per_class)
        _save_atomic(path, images, names)
    if channels == 3:
        # one call over all images: per class calls cost ~10x more in per-call overhead
        flat = resize_images(images.reshape(-1, size, size, 1), size, 3)
        images = flat.reshape(len(names), per_class, size, size, 3)
    else:
        images = images[..., None]
    classes = [images[i] for i in range(len(names))]
    info = DatasetInfo(name="glyphs", channels=channels, image_size=size, native_size=None,
                       num_classes=len(names), num_seen=len(seen), origin="embedded (matplotlib fonts)")
    return ClassImages(info=info, classes=classes, class_names=names, seen=seen, unseen=unseen,
                       extra={"scripts": scripts, "cache_path": str(path)})


def locate(data_cfg: dict) -> tuple[bool, str]:
    return True, "embedded"


def _standard_split_text() -> str:
    try:
        _, _, seen, unseen = read_split()
        return f"{len(seen)} seen / {len(unseen)} unseen (by script)"
    except RuntimeError:
        return "seen / unseen by script"


DATASETS.register("glyphs", DatasetSpec(
    name="glyphs",
    description="Omniglot-like characters of 10 scripts rendered from matplotlib's fonts with per-image "
                "pen, affine and elastic distortions; seen/unseen split by script",
    channels=1,
    native_size=None,   # rendered at any size in 16..128
    standard_split=_standard_split_text(),
    obtain="embedded: rendered from the fonts in matplotlib's wheel; nothing to download",
    load=load,
    locate=locate,
))

