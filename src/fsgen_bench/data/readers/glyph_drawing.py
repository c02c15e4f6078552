"""Drawing the ``glyphs`` dataset: font faces, glyph renders, and the per-drawer distortions.

A class is one character; its images are its "drawers" (``data.glyph_images_per_class``, like Omniglot's 20
drawers). Each drawer renders the character in one of the font faces that ship inside matplotlib's wheel
(DejaVu Sans / Sans Mono / Serif in four styles each, STIX General in four, Computer Modern cmr/cmb/cmss/cmti/
cmtt/cmmi: up to 22 faces) with its own random pen width (thickening/thinning), affine distortion (rotation,
shear, anisotropic scale, translation) and smooth elastic jitter. Images are grayscale with BRIGHT strokes
(255) on a DARK background (0), like MNIST/EMNIST.

Deterministic from the fixed :data:`BUILD_SEED` (the run seed is deliberately not used: every run and every
method sees the same dataset). Each drawer's random parameters come from a generator seeded by
``(BUILD_SEED, crc32(class name))`` and do not depend on the image size, so 28, 32 and 64 px are the same
drawers at different resolutions, and the first 20 drawers of a 30-drawer build are the 20 of the default.
Each (face, character) is rendered once with PIL (FreeType) at twice the output side and blurred; the drawers
are then drawn in torch batches: one ``grid_sample`` per image through an affine map plus an elastic field,
and a pen drawn as a level set of the blurred glyph (see :func:`_distort`). A build is byte-identical for the
same fonts and libraries (and thread count does not matter); another FreeType may move anti-aliased pixels
slightly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

BUILD_SEED = 0              # fixed on purpose: the dataset is the same for every run seed

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
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def face_cmaps() -> dict[str, set[int]]:
    """Code points each face really has a glyph for (its best cmap table)."""
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



def render_glyph(font, ch: str) -> np.ndarray | None:
    """Tightly cropped uint8 ink image of one character (None when the face draws nothing)."""
    left, top, right, bottom = font.getbbox(ch)
    pad = 4
    w, h = max(1, right - left + 2 * pad), max(1, bottom - top + 2 * pad)
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).text((pad - left, pad - top), ch, font=font, fill=255)
    box = im.getbbox()
    if box is None:
        return None
    return np.asarray(im.crop(box))


def fit_glyph(crop: np.ndarray, side: int, fill: float = FILL) -> np.ndarray:
    """Scale a crop so that its longer side is ``fill * side`` (aspect kept) and centre it on a dark square."""
    h, w = crop.shape
    k = fill * side / max(h, w)
    nw, nh = max(1, round(w * k)), max(1, round(h * k))
    small = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.LANCZOS))
    out = np.zeros((side, side), dtype=np.uint8)
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


def load_font(face_file: str, px: int):
    # BASIC layout draws exactly the cmap glyph of the code point (no shaping), which is what the coverage
    # check verified; Arabic letters thus appear in their isolated forms.
    return ImageFont.truetype(str(font_dir() / face_file), px, layout_engine=ImageFont.Layout.BASIC)


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


def gauss_matrix(n: int, sigma: float) -> torch.Tensor:
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
    k = gauss_matrix(m, sigma)
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


def draw_dataset(names: list[str], size: int, per_class: int) -> np.ndarray:
    """Draw every class of ``names`` (``"<script>:<character>"``): uint8 [classes, per_class, size, size]."""
    cmaps = face_cmaps()
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
                        fonts[face] = load_font(face, font_px)
                    crop = render_glyph(fonts[face], ch)
                    if crop is None:
                        raise RuntimeError(f"glyphs: face {face} maps {names[c]} but draws nothing")
                    img = fit_glyph(crop, m)
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
    return out
