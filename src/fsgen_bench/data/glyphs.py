"""``glyphs``: the embedded default dataset, an Omniglot-like set of characters that needs no download.

What it is
    A class is one character of one script (``"greek:λ"``, ``"armenian:Ֆ"``). Its images (``data.
    glyph_images_per_class``, default 20, like Omniglot's 20 drawers) are renders of that character in the
    font faces that ship inside matplotlib's wheel (DejaVu Sans / Sans Mono / Serif in four styles each,
    STIX General in four, Computer Modern cmr/cmb/cmss/cmti/cmtt/cmmi: up to 22 faces), each drawer with
    its own random pen width (dilation/erosion), affine distortion (rotation, shear, anisotropic scale,
    translation) and smooth elastic jitter. Images are grayscale uint8 ``[n, S, S, 1]`` with BRIGHT strokes
    (255) on a DARK background (0), like MNIST/EMNIST; Omniglot's files are the inverse, but the suite's
    pipeline only needs consistency within a dataset.

Split
    Seen and unseen classes are split by SCRIPT, as Omniglot splits alphabets. The class list is fixed and
    committed in ``splits/glyphs.json``; :func:`write_split_file` regenerates it (``python -c "from
    fsgen_bench.data.glyphs import write_split_file as w; w()"``). The generator keeps letters (Unicode categories L*, not modifier letters,
    not precomposed letter+diacritic forms) that at least :data:`MIN_FACES` faces cover in their cmap tables
    (so every drawer is drawn from a face that really has the glyph: no tofu boxes), then deduplicates by
    rendered appearance: every candidate is rendered in one canonical face, normalised exactly as the
    dataset normalises its glyphs (tight box scaled to a fixed fill, centred), blurred and compared by
    correlation. Scripts are visited seen first, so a character that looks like an already kept one is
    dropped: Greek ``Α`` and Cyrillic ``А`` lose to Latin ``A``, Latin ``o`` to ``O``, Armenian ``Օ`` (unseen)
    to Latin ``O`` (seen). No unseen class therefore has a near-identical seen class, and no two classes
    are near-identical at all. Large scripts are thinned to :data:`MAX_CLASSES_PER_SCRIPT` (evenly over
    code points) so that no script dominates, as no alphabet dominates Omniglot.

Build
    Deterministic from the fixed :data:`BUILD_SEED` (the run seed is deliberately not used: every run and
    every method sees the same dataset). Each drawer's random parameters come from a generator seeded by
    ``(BUILD_SEED, crc32(class name))`` and do not depend on the image size, so 28, 32 and 64 px are the
    same drawers at different resolutions, and the first 20 drawers of a 30-drawer build are the 20 of
    the default. Each (face, character) is rendered once with PIL (FreeType) at a master resolution of 2-4x
    the output, the distortions run batched in torch (max-pool dilation, ``affine_grid`` + elastic field,
    ``grid_sample``) and the result is area-downsampled. The whole dataset builds in a few seconds and is
    cached atomically in ``cache_dir / "glyphs" / f"{key}.npz"``; the key encodes the format version, image
    size, drawers per class, build seed and a fingerprint of the split file and the font files. Renders are
    byte-identical on one machine; another FreeType or font version may move anti-aliased pixels slightly
    (the fingerprint then changes the key).
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
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
MAX_CLASSES_PER_SCRIPT = 100  # Omniglot's alphabets have 14-55 characters; a cap keeps Cyrillic/Canadian from dominating

# The glyph's longer side fills this fraction of the frame before distortion. With the largest random scale
# (1.08) and rotation (15 deg), a square glyph still stays inside the frame.
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
CANONICAL_FACE = "DejaVuSans.ttf"    # covers every script below; the dedup renders in it


@dataclass(frozen=True)
class Script:
    name: str
    ranges: tuple[tuple[int, int], ...]   # inclusive code-point ranges
    seen: bool


# The dedup keeps the first of two look-alikes and visits the seen side first, so a look-alike is removed
# from the unseen side (see generate_split for the order within a side). Armenian and Georgian are unseen
# (118 of 501 classes, 24%). Scripts the faces cover with fewer than MIN_FACES faces (N'Ko, Tifinagh, Ogham:
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

# Dedup: canonical render side (px), Gaussian blur sigma (px at that side; tolerates hairline differences
# between near-identical designs) and the correlation above which two characters count as the same shape.
# 0.90 merges A/Α/А, O/Օ, o/O, l/I (all >= 0.95) and keeps distinct letters such as E/F or Arabic ب/ت apart.
DEDUP_SIZE = 32
DEDUP_BLUR = 1.0
DEDUP_THRESHOLD = 0.90
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
# Pen width as a fraction of the output side, drawn per drawer: 1.4-2.9 px at 32 px, thick enough to stay
# visible after downsampling and in the range of Omniglot's strokes at 28 px.
PEN_WIDTH = (0.045, 0.09)
MAX_DILATE = 0.06            # at most this fraction of the output side added by dilation (per side)

_N_PARAMS = 8 + 2 * ELASTIC_GRID * ELASTIC_GRID   # uniform numbers drawn per drawer, see _drawer_params


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
    """Split file content and font files (names, sizes): a change in either changes the cache key."""
    h = hashlib.sha256(SPLIT_FILE.read_bytes())
    for face in FACES:
        path = font_dir() / face.file
        h.update(f"{face.file}:{path.stat().st_size if path.is_file() else -1};".encode())
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


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0)), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r)), k.view(1, 1, -1, 1))


def canonical_renders(chars: list[str], size: int = DEDUP_SIZE) -> np.ndarray:
    """Float [n, size*size] renders in the canonical face, normalised as the dataset normalises glyphs."""
    font = _font(CANONICAL_FACE, 8 * size)
    imgs = np.zeros((len(chars), size, size), dtype=np.float32)
    for i, ch in enumerate(chars):
        crop = _render_glyph(font, ch)
        if crop is not None:
            imgs[i] = _fit(crop, size) / 255.0
    return imgs


def _standardise(imgs: np.ndarray) -> np.ndarray:
    """Blur, then zero-mean unit-norm rows: a dot product of two rows is their correlation."""
    x = _blur(torch.from_numpy(imgs)[:, None], DEDUP_BLUR).flatten(1).numpy().astype(np.float64)
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
    A candidate whose canonical render correlates >= DEDUP_THRESHOLD with any kept one is dropped.
    """
    cmaps = _face_cmaps()
    if CANONICAL_FACE not in cmaps:
        raise RuntimeError(f"canonical face {CANONICAL_FACE} is missing from {font_dir()}")
    em_font = _font(CANONICAL_FACE, 100)
    dropped: dict[str, dict[str, str]] = {s.name: {} for s in SCRIPTS}
    kept: list[tuple[int, int, int]] = []             # (n_faces, script index, code point)
    kept_vecs = np.zeros((0, DEDUP_SIZE * DEDUP_SIZE))

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
        vecs = _standardise(canonical_renders([chr(c[2]) for c in cands]))
        survivors: list[int] = []
        for i, c in enumerate(cands):
            pool = np.concatenate([kept_vecs, vecs[survivors]])
            pool_names = [name(k) for k in kept] + [name(cands[j]) for j in survivors]
            if len(pool):
                corr = pool @ vecs[i]
                j = int(np.argmax(corr))
                if corr[j] >= DEDUP_THRESHOLD:
                    dropped[SCRIPTS[c[1]].name][chr(c[2])] = f"looks like {pool_names[j]} (r={corr[j]:.3f})"
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
        kept_vecs = np.concatenate([kept_vecs, vecs[order]])

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
            "dedup": {"face": CANONICAL_FACE, "size": DEDUP_SIZE, "blur_sigma": DEDUP_BLUR,
                      "fill": FILL, "threshold": DEDUP_THRESHOLD,
                      "order": "seen scripts first, then unseen; code-point order within a script"},
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
    tmp.write_text(json.dumps(split, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
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

def _supersample(size: int) -> int:
    # Distort at ss x the output side, then average-pool: 4x below 48 px (thin pens need the resolution),
    # 2x above (the output is already fine enough and 4x would cost 4x the time).
    return 4 if size <= 48 else 2


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
    """Mean stroke width in pixels: 2 * ink area / boundary length (a stroke of width w, length L has area
    wL and two edges of length L)."""
    ink = img >= 128
    inner = ink.copy()
    inner[1:] &= ink[:-1]
    inner[:-1] &= ink[1:]
    inner[:, 1:] &= ink[:, :-1]
    inner[:, :-1] &= ink[:, 1:]
    boundary = int((ink & ~inner).sum())
    return 2.0 * float(ink.sum()) / max(boundary, 1)


def _distort(masters: torch.Tensor, widths: np.ndarray, u: np.ndarray, size: int) -> torch.Tensor:
    """masters float [B, 1, M, M] in [0, 1] (M = ss * size), their stroke widths (px at M) and the drawers'
    uniform parameters [B, _N_PARAMS] -> float [B, 1, size, size] in [0, 1]."""
    b, _, m, _ = masters.shape
    # Pen: dilate (max-pool) or erode (min-pool) by an integer radius at master resolution.
    target = (PEN_WIDTH[0] + u[:, 0] * (PEN_WIDTH[1] - PEN_WIDTH[0])) * m
    radius = np.clip(np.round((target - widths) / 2.0), -max(1, m // 64), round(MAX_DILATE * m)).astype(int)
    # Erosion only where the stroke survives it comfortably.
    radius = np.where((radius < 0) & (widths + 2 * radius < 0.04 * m), 0, radius)
    x = masters.clone()
    for r in np.unique(radius):
        if r == 0:
            continue
        idx = torch.from_numpy(np.nonzero(radius == r)[0])
        k = 2 * abs(int(r)) + 1
        sel = x[idx]
        if r > 0:
            x[idx] = F.max_pool2d(sel, k, stride=1, padding=abs(int(r)))
        else:
            x[idx] = -F.max_pool2d(-sel, k, stride=1, padding=abs(int(r)))

    # Affine: output coords -> input coords (grid_sample convention), normalised [-1, 1].
    ang = np.deg2rad((2 * u[:, 1] - 1) * ROTATION_DEG)
    shear = (2 * u[:, 2] - 1) * SHEAR
    scale = SCALE[0] + u[:, 3] * (SCALE[1] - SCALE[0])
    aspect = np.exp((2 * u[:, 4] - 1) * ASPECT_LOG_SD)
    sx, sy = scale * aspect, scale / aspect
    tx, ty = (2 * u[:, 5] - 1) * TRANSLATE, (2 * u[:, 6] - 1) * TRANSLATE
    # forward map A = R(ang) @ Shear @ diag(sx, sy); the grid needs A^-1 applied to (p - t).
    cos, sin = np.cos(ang), np.sin(ang)
    fwd = np.empty((b, 2, 2))
    fwd[:, 0, 0] = cos * sx
    fwd[:, 0, 1] = (cos * shear - sin) * sy
    fwd[:, 1, 0] = sin * sx
    fwd[:, 1, 1] = (sin * shear + cos) * sy
    inv = np.linalg.inv(fwd)
    t = np.stack([tx, ty], axis=1)[:, :, None]
    theta = np.concatenate([inv, -inv @ t], axis=2)
    grid = F.affine_grid(torch.from_numpy(theta).float(), [b, 1, m, m], align_corners=False)
    # Elastic: a smooth random field (bicubic upsampling of a coarse grid of uniform offsets).
    g = ELASTIC_GRID
    coarse = torch.from_numpy((2 * u[:, 8:8 + 2 * g * g] - 1) * ELASTIC_AMPLITUDE).float().view(b, 2, g, g)
    field = F.interpolate(coarse, size=(m, m), mode="bicubic", align_corners=True)
    grid = grid + field.permute(0, 2, 3, 1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(out, m // size)


def build(size: int, per_class: int) -> tuple[np.ndarray, list[str], list[str], list[int], list[int]]:
    """Render the whole dataset: uint8 [classes, per_class, size, size] plus the split file's lists."""
    names, scripts, seen, unseen = read_split()
    cmaps = _face_cmaps()
    ss = _supersample(size)
    m = ss * size
    # Render at ~2x the master side and downsample: LANCZOS from a larger crop keeps hairlines smooth.
    font_px = 2 * m
    fonts: dict[str, object] = {}
    out = np.empty((len(names), per_class, size, size), dtype=np.uint8)
    # Classes per batch: bounded memory (the sampling grid is B x M x M x 2 floats).
    chunk = max(1, (1 << 22) // (per_class * m * m) * 4)
    for start in range(0, len(names), chunk):
        stop = min(start + chunk, len(names))
        masters, widths, params = [], [], []
        for c in range(start, stop):
            ch = names[c].split(":", 1)[1]
            faces = [f.file for f in FACES if f.file in cmaps and ord(ch) in cmaps[f.file]]
            renders: dict[str, tuple[np.ndarray, float]] = {}
            face_idx, u = _drawer_params(names[c], per_class, len(faces))
            for fi in face_idx:
                face = faces[fi]
                if face not in renders:
                    if face not in fonts:
                        fonts[face] = _font(face, font_px)
                    crop = _render_glyph(fonts[face], ch)
                    if crop is None:
                        raise RuntimeError(f"glyphs: face {face} maps {names[c]} but draws nothing")
                    img = _fit(crop, m)
                    renders[face] = (img, _stroke_width(img))
                img, w = renders[face]
                masters.append(img)
                widths.append(w)
            params.append(u)
        x = torch.from_numpy(np.stack(masters)).float().div_(255.0)[:, None]
        with torch.no_grad():
            y = _distort(x, np.asarray(widths), np.concatenate(params), size)
        y = y.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)[:, 0]
        out[start:stop] = y.view(stop - start, per_class, size, size).numpy()
    return out, names, scripts, seen, unseen


# -- cache and registry ------------------------------------------------------------------------------------------

def cache_key(size: int, per_class: int) -> str:
    return f"v{FORMAT_VERSION}-s{size}-n{per_class}-seed{BUILD_SEED}-{_fingerprint()}"


def cache_path(cache_dir: Path, size: int, per_class: int) -> Path:
    return Path(cache_dir) / "glyphs" / f"{cache_key(size, per_class)}.npz"


def _load_cached(path: Path, names: list[str]) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
            cached_names = z["class_names"].tolist()
    except Exception:      # a corrupt or foreign file: rebuild rather than fail
        return None
    return images if cached_names == names else None


def _save_atomic(path: Path, images: np.ndarray, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=images, class_names=np.array(names))
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
    images = _load_cached(path, names) if path.is_file() else None
    if images is None:
        images, _, _, _, _ = build(size, per_class)
        _save_atomic(path, images, names)
    classes = [images[i][..., None] for i in range(len(names))]
    if channels == 3:
        classes = [resize_images(arr, size, 3) for arr in classes]
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

