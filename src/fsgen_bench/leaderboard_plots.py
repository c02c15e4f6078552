"""The leaderboard's figures: a bar chart per table (one panel per column), a fidelity-novelty scatter, and the
copies of each row's evaluation sample grid.

Both take a :class:`fsgen_bench.leaderboard.Table` and write a PNG atomically, with matplotlib's
object-oriented API on an Agg canvas (no pyplot state, no backend switch for the whole process) and no
timestamp in the file, so the same records give the same bytes.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from fsgen_bench.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from fsgen_bench.leaderboard import Table

_SCATTER_BACKBONES = ("domain", "inception")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, metadata={"Software": None})
    return path


def plot_table(table: "Table", path: Path) -> Path:
    """Bar charts with error bars, one panel per column; reference rows hatched and grey."""
    ncols = min(3, len(table.columns))
    nrows = math.ceil(len(table.columns) / ncols)
    fig = _figure(4.2 * ncols, 3.4 * nrows + 0.6)
    for i, col in enumerate(table.columns):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        rows = [r for r in table.rows if col.key in r.cells]
        means = [r.cells[col.key].mean for r in rows]
        errs = [r.cells[col.key].spread or 0.0 for r in rows]
        colors = ["0.75" if r.reference else ("tab:orange" if r.cells[col.key].best else "tab:blue") for r in rows]
        bars = ax.bar(range(len(rows)), means, yerr=errs, color=colors, capsize=3)
        for bar, row in zip(bars, rows):
            if row.reference:
                bar.set_hatch("//")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r.label for r in rows], rotation=40, ha="right", fontsize=8)
        title = f"{col.key} {col.arrow}"
        positive = [m for m in means if m > 0]
        if len(positive) == len(means) >= 2 and max(positive) / min(positive) > 100:
            ax.set_yscale("log")   # e.g. FID of the noise row is ~100x the methods': a linear axis hides them
            title += " (log scale)"
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"{table.title}  (mean ± std over seeds; orange: best; grey: reference rows)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def scatter_axes(table: "Table") -> tuple[str, str] | None:
    """(novelty column key, class fidelity column key) on the first backbone that has both, or None."""
    keys = {c.key for c in table.columns}
    for backbone in _SCATTER_BACKBONES:
        x, y = f"novelty/{backbone}", f"class_fidelity/{backbone}"
        if x in keys and y in keys:
            return x, y
    return None


def plot_scatter(table: "Table", path: Path) -> Path:
    """Class fidelity (y) against novelty (x): a point per row with seed error bars; reference rows grey squares."""
    xkey, ykey = scatter_axes(table)
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.axvline(1.0, color="0.6", linestyle="--", linewidth=0.8)
    for i, row in enumerate(r for r in table.rows if xkey in r.cells and ykey in r.cells):
        x, y = row.cells[xkey], row.cells[ykey]
        style = dict(color="0.45", marker="s") if row.reference else dict(color=f"C{i % 10}", marker="o")
        ax.errorbar(x.mean, y.mean, xerr=x.spread or 0.0, yerr=y.spread or 0.0, capsize=3, markersize=7,
                    linestyle="none", **style)
        ax.annotate(row.label + (" (ref)" if row.reference else ""), (x.mean, y.mean), textcoords="offset points",
                    xytext=(6, 5), fontsize=8, color=style["color"])
    ax.set_xlabel(f"{xkey}  (0: copies of the conditioning images; 1: as new as held-out real images)", fontsize=8)
    ax.set_ylabel(f"{ykey}  (share recognised as its own class)", fontsize=8)
    ax.set_ylim(bottom=0.0)
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
    ax.tick_params(labelsize=8)
    ax.set_title(f"{table.title}\nclass fidelity against novelty (mean ± std over seeds; squares: reference rows)",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def slug(text: str) -> str:
    """A file-name-safe form of a dataset, protocol id or row label (``clean@v1`` -> ``clean-v1``)."""
    text = text.replace("@", "-").replace("+", "-")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def sample_links(tables: list[Table], runs_dir: Path, out_dir: Path) -> dict[str, list[tuple[str, int, str]]]:
    """Per table, (row label, seed, link) of the evaluation sample grid of each row's lowest seed that has one.

    Run folders are not committed (checkpoints), so the grid is copied to
    ``figures/samples/<table>/<label>_s<seed>.png`` and the Markdown links the copy. Without the run folder (a
    fresh clone rebuilding its tables), a copy made earlier is linked instead; copies no row links are removed.
    """
    out: dict[str, list[tuple[str, int, str]]] = {}
    keep: set[Path] = set()
    root = out_dir / "figures" / "samples"
    for table in tables:
        folder = root / table.slug
        for row in table.rows:
            for seed in row.seeds:
                copy = folder / f"{slug(row.label)}_s{seed}.png"
                image = runs_dir / row.run_ids[seed] / "eval_samples.png"
                if image.is_file():
                    folder.mkdir(parents=True, exist_ok=True)
                    if not copy.is_file() or copy.read_bytes() != image.read_bytes():
                        with atomic_path(copy) as tmp:
                            shutil.copyfile(image, tmp)
                if copy.is_file():
                    keep.add(copy)
                    out.setdefault(table.slug, []).append((row.label, seed, copy.relative_to(out_dir).as_posix()))
                    break
    for stale in root.glob("*/*.png"):
        if stale not in keep:
            stale.unlink()
    return out
