"""Maintenance: regenerate the committed glyphs split file (``src/fsgen_bench/data/splits/glyphs.json``).

    python -m fsgen_bench.data.glyph_split          # rewrites the file; review the diff, commit it

Nothing at run time imports this module: the dataset reads the committed file (:mod:`.readers.glyphs`).

The generator keeps letters (Unicode categories L*, not modifier letters, not precomposed letter+diacritic
forms) that at least :data:`MIN_FACES` faces cover in their cmap tables (every drawer is drawn from a face that
really has the glyph: no tofu boxes), then deduplicates by rendered appearance: every candidate is rendered in
DejaVu Sans (and Serif and Sans Mono where they have it), normalised exactly as the dataset normalises its
glyphs (tight box scaled to a fixed fill, centred), blurred and compared by correlation (averaged over the
common faces). The seen side is visited first, so a character that looks like an already kept one is dropped:
Greek ``Α`` and Cyrillic ``А`` lose to Latin ``A``, Latin ``c`` to ``C``, Armenian ``Օ`` (unseen) to Latin
``O`` (seen); an unseen character must moreover keep a margin from every seen one. No unseen class therefore
has a near-identical seen class, and no two classes are near-identical at all. Large scripts (Cyrillic,
Canadian syllabics) are cut to :data:`MAX_CLASSES_PER_SCRIPT`, keeping the characters most faces cover, so
that no script dominates.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fsgen_bench.atomic import write_text_atomic
from fsgen_bench.data.readers.glyph_drawing import (FILL, face_cmaps, fit_glyph, font_dir, gauss_matrix, load_font,
                                                    render_glyph)
from fsgen_bench.data.readers.glyphs import SPLIT_FILE

MIN_FACES = 4               # a class needs this many faces covering it, so its drawers differ in face
# Omniglot's alphabets have 14-55 characters; without a cap the Canadian syllabics (310 after dedup) would
# make up most of the classes (Cyrillic, 114, loses a few too).
MAX_CLASSES_PER_SCRIPT = 100

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


def _is_letter(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat.startswith("L") and cat != "Lm" and not unicodedata.decomposition(ch)


def canonical_renders(chars: list[str], size: int = DEDUP_SIZE, face: str = CANONICAL_FACE) -> np.ndarray:
    """Float [n, size, size] renders in one face, normalised as the dataset normalises glyphs. For a
    character outside the face's cmap FreeType draws the .notdef box: callers mask those by coverage."""
    font = load_font(face, 8 * size)
    imgs = np.zeros((len(chars), size, size), dtype=np.float32)
    for i, ch in enumerate(chars):
        crop = render_glyph(font, ch)
        if crop is not None:
            imgs[i] = fit_glyph(crop, size) / 255.0
    return imgs


def _standardise(imgs: np.ndarray) -> np.ndarray:
    """Blur, then zero-mean unit-norm rows: a dot product of two rows is their correlation."""
    k = gauss_matrix(imgs.shape[-1], DEDUP_BLUR)
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
    cmaps = face_cmaps()
    for face in (CANONICAL_FACE, *DEDUP_FACES):
        if face not in cmaps:
            raise RuntimeError(f"font face {face} is missing from {font_dir()}")
    em_font = load_font(CANONICAL_FACE, 100)
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
                    crop = render_glyph(em_font, chr(cp))
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
        "generated_by": "fsgen_bench.data.glyph_split.write_split_file",
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
    text = json.dumps(split, ensure_ascii=False, indent=1)
    # Lists of names/characters on one line each (their items hold no whitespace): a reviewable diff.
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda mt: "[" + " ".join(mt.group(1).split()) + "]", text)
    write_text_atomic(path, text + "\n")
    return split



if __name__ == "__main__":
    written = write_split_file()
    print(f"{SPLIT_FILE}: {written['num_seen']} seen / {written['num_unseen']} unseen classes")
