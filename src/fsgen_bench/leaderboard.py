"""Leaderboards: a pure function from MetricRecords to Markdown, CSV and plots.

``build(records_dir, out_dir)`` reads ``<results>/records/*.jsonl`` and writes, into ``out_dir``:

    leaderboard.md                         every table, a legend, sample grids where runs saved them
    leaderboard_<dataset>_<protocol>.csv   one long-format CSV per table (mean, std, ci95, n per cell)
    figures/leaderboard_<dataset>_<protocol>.png   bar charts with error bars, one panel per column
    README.md                              what is where and how to regenerate it

The same records always give the same bytes (the header names the records' count and the newest record's
code version, never the clock), so the output can be committed and diffed, and a golden test protects it.

One table per (dataset, protocol): numbers from two protocols are never comparable. Columns are
``metric/backbone[/setting]`` keys, so FID on Inception features and FID on the domain classifier never
share a column. Rows are (method, preset); the reference rows ``copy-support`` and ``noise`` come last, in
italics, and never count as the best.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from fsgen_bench.errors import UserError
from fsgen_bench.eval.records import MetricRecord, read_records

REFERENCE_METHODS = ("copy-support", "noise")
LOWER_IS_BETTER = frozenset({"fid", "kid"})
# Accuracy with real images only does not depend on the generator (same episodes for every method of a seed):
# it is shown as the baseline of the gain, never ranked.
UNRANKED = frozenset({"fewshot_acc_real", "lowdata_acc_real"})
# Preferred column order: quality, then diversity, then downstream use. Unknown names sort after, by name.
METRIC_ORDER = ("fid", "kid", "lpips", "diversity", "fewshot_acc_real", "fewshot_acc_gen", "fewshot_gain",
                "lowdata_acc_real", "lowdata_acc_gen", "lowdata_gain")
BACKBONE_ORDER = ("inception", "domain", "alex", "vgg")

METRIC_TEXT = {
    "fid": "Fréchet distance between features of generated and real unseen-class images",
    "kid": "kernel (MMD) distance between features of generated and real unseen-class images",
    "lpips": "mean LPIPS distance between images generated for the same class (diversity)",
    "diversity": "mean feature-space distance between images generated for the same class",
    "fewshot_acc_real": "few-shot classification accuracy with the real shots only",
    "fewshot_acc_gen": "few-shot classification accuracy with the real shots plus generated images",
    "fewshot_gain": "accuracy with generated images minus accuracy without them",
    "lowdata_acc_real": "all-unseen-class classification accuracy, trained on n real images per class",
    "lowdata_acc_gen": "all-unseen-class classification accuracy, trained on n real plus generated images per class",
    "lowdata_gain": "low-data accuracy with generated images minus accuracy without them",
}
BACKBONE_TEXT = {
    "inception": "the standard FID InceptionV3 (ImageNet weights)",
    "domain": "a classifier trained on the dataset's seen classes",
    "alex": "LPIPS on AlexNet",
    "vgg": "LPIPS on VGG16",
}
REFERENCE_TEXT = {
    "copy-support": "returns the conditional images themselves (memorisation: low FID, low diversity)",
    "noise": "returns uniform noise (every real method should beat it)",
}
_MISSING = "–"


def slug(text: str) -> str:
    """A file-name-safe form of a dataset or protocol id (``clean@v1`` -> ``clean-v1``)."""
    text = text.replace("@", "-").replace("+", "-")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _natural(text: str) -> tuple:
    """Sort ``5way5shot`` before ``10way5shot``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(name), "") if name in order else (len(order), name)


@dataclass(frozen=True)
class Column:
    metric: str
    backbone: str
    setting: str = ""

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.metric, self.backbone, self.setting) if p)

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    @property
    def arrow(self) -> str:
        return "↓" if self.lower_is_better else "↑"

    def sort_key(self) -> tuple:
        return (_rank(self.metric, METRIC_ORDER), _rank(self.backbone, BACKBONE_ORDER), _natural(self.setting))


@dataclass
class Cell:
    mean: float
    std: float | None         # sample std over seeds (n > 1)
    ci95: float | None        # the single record's own interval (n == 1)
    seeds: tuple[int, ...]
    best: bool = False

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def spread(self) -> float | None:
        return self.std if self.n > 1 else self.ci95


@dataclass
class Row:
    method: str
    preset: str | None
    label: str
    reference: bool
    cells: dict[str, Cell] = field(default_factory=dict)
    run_ids: dict[int, str] = field(default_factory=dict)   # seed -> run id (for sample grids)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.run_ids))

    @property
    def n(self) -> int:
        return len(self.run_ids)


@dataclass
class Table:
    dataset: str
    protocol: str
    columns: list[Column]
    rows: list[Row]
    decimals: dict[str, int]
    n_records: int

    @property
    def slug(self) -> str:
        return f"{slug(self.dataset)}_{slug(self.protocol)}"

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.protocol}"

    def wide(self) -> tuple[list[str], list[list]]:
        """(columns, rows) with a mean and a std column per key: what a wandb.Table or a DataFrame wants."""
        header = ["method", "preset", "reference", "n"]
        for col in self.columns:
            header += [col.key, f"{col.key} std"]
        data = []
        for row in self.rows:
            values: list = [row.method, row.preset or "", row.reference, row.n]
            for col in self.columns:
                cell = row.cells.get(col.key)
                values += [cell.mean, cell.spread] if cell else [None, None]
            data.append(values)
        return header, data


def _decimals(values: Iterable[float]) -> int:
    """One precision per column, from its largest magnitude: FID ~ 100 gets 1 decimal, KID ~ 0.01 gets 4."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    top = max(finite, default=0.0)
    return 1 if top >= 100 else 2 if top >= 10 else 3 if top >= 1 else 4


def _newest_per_seed(records: list[MetricRecord]) -> dict[int, MetricRecord]:
    """One record per seed: re-running or re-evaluating a cell replaces its number instead of double-counting."""
    out: dict[int, MetricRecord] = {}
    for rec in sorted(records, key=lambda r: (r.timestamp, r.run_id, r.value)):
        out[int(rec.seed)] = rec
    return out


def compute_tables(records: Iterable[MetricRecord]) -> list[Table]:
    """Group records into one table per (dataset, protocol), sorted; cells aggregate over seeds."""
    by_table: dict[tuple[str, str], list[MetricRecord]] = {}
    for rec in records:
        by_table.setdefault((rec.dataset, rec.protocol), []).append(rec)
    tables = []
    for (dataset, protocol), recs in sorted(by_table.items()):
        columns = sorted({Column(r.metric, r.backbone, r.setting or "") for r in recs}, key=Column.sort_key)
        presets_of: dict[str, set] = {}
        for r in recs:
            presets_of.setdefault(r.method, set()).add(r.preset)
        grouped: dict[tuple[str, str | None], dict[str, list[MetricRecord]]] = {}
        for r in recs:
            grouped.setdefault((r.method, r.preset), {}).setdefault(r.key, []).append(r)

        rows = []
        for (method, preset), per_key in grouped.items():
            several = len(presets_of[method]) > 1
            label = f"{method} [{preset or 'no preset'}]" if several else method
            row = Row(method=method, preset=preset, label=label, reference=method in REFERENCE_METHODS)
            for key, key_recs in per_key.items():
                per_seed = _newest_per_seed(key_recs)
                seeds = tuple(sorted(per_seed))
                values = [float(per_seed[s].value) for s in seeds]
                std = statistics.stdev(values) if len(values) > 1 else None
                ci95 = per_seed[seeds[0]].ci95 if len(values) == 1 else None
                row.cells[key] = Cell(mean=statistics.fmean(values), std=std,
                                      ci95=None if ci95 is None else float(ci95), seeds=seeds)
                for s in seeds:
                    row.run_ids.setdefault(s, per_seed[s].run_id)
            rows.append(row)
        # real methods first, by name; then the reference rows in their fixed order
        rows.sort(key=lambda r: (r.reference, _rank(r.method, REFERENCE_METHODS) if r.reference else (0, r.method),
                                 r.preset or ""))

        decimals = {c.key: _decimals(row.cells[c.key].mean for row in rows if c.key in row.cells) for c in columns}
        for col in (c for c in columns if c.metric not in UNRANKED):
            contenders = [row.cells[col.key] for row in rows
                          if not row.reference and col.key in row.cells and math.isfinite(row.cells[col.key].mean)]
            if len(contenders) < 2:  # "best" of one is no claim
                continue
            shown = [round(c.mean, decimals[col.key]) for c in contenders]
            target = min(shown) if col.lower_is_better else max(shown)
            for cell, value in zip(contenders, shown):
                cell.best = value == target
        tables.append(Table(dataset=dataset, protocol=protocol, columns=columns, rows=rows,
                            decimals=decimals, n_records=len(recs)))
    return tables


def format_cell(cell: Cell | None, decimals: int, row_n: int) -> str:
    if cell is None:
        return _MISSING
    text = f"{cell.mean:.{decimals}f}"
    if cell.spread is not None:
        text += f" ± {cell.spread:.{decimals}f}"
    if cell.n < row_n:
        text += f" (n={cell.n})"
    return f"**{text}**" if cell.best else text


def _column_text(col: Column) -> str:
    metric = METRIC_TEXT.get(col.metric, f"metric `{col.metric}`")
    backbone = BACKBONE_TEXT.get(col.backbone, f"backbone `{col.backbone}`")
    text = f"{metric}; features: {backbone}"
    if col.setting:
        episodes = re.fullmatch(r"(\d+)way(\d+)shot", col.setting)
        lowdata = re.fullmatch(r"(\d+)real", col.setting)
        if episodes:
            text += f"; {episodes.group(1)}-way {episodes.group(2)}-shot episodes"
        elif lowdata:
            text += f"; n = {lowdata.group(1)} real images per class"
        else:
            text += f"; setting `{col.setting}`"
    direction = "lower is better" if col.lower_is_better else "higher is better"
    return f"{text} ({direction})"


def _markdown_table(table: Table) -> str:
    header = ["method", "n"] + [f"{c.key} {c.arrow}" for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|:---|---:|" + "---:|" * len(table.columns)]
    for row in table.rows:
        label = f"*{row.label}* (ref)" if row.reference else row.label
        cells = [format_cell(row.cells.get(c.key), table.decimals[c.key], row.n) for c in table.columns]
        lines.append("| " + " | ".join([label, str(row.n)] + cells) + " |")
    return "\n".join(lines)


def _header(records: list[MetricRecord], records_label: str) -> list[str]:
    newest = max(records, key=lambda r: (r.timestamp, r.code_version))
    versions = sorted({r.code_version or "unknown" for r in records})
    return [
        "<!-- Generated by `fsgen-bench leaderboard` from the records; do not edit by hand. -->",
        "",
        "Generated by `fsgen-bench leaderboard`; do not edit by hand (rerun the command instead).",
        f"Source: {len(records)} records in `{records_label}`; newest record's code version: "
        f"`{newest.code_version or 'unknown'}`; all code versions: {', '.join(f'`{v}`' for v in versions)}.",
    ]


def render_markdown(tables: list[Table], records: list[MetricRecord], records_label: str,
                    samples: dict[str, list[tuple[str, int, str]]] | None = None,
                    figures: set[str] | None = None) -> str:
    """leaderboard.md: header, how to read, one captioned table per (dataset, protocol), legend, samples."""
    lines = ["# fsgen-bench leaderboard", ""] + _header(records, records_label) + [""]
    lines += [
        "Each table is one dataset under one evaluation protocol; numbers from different tables are not",
        "comparable. Cells: mean ± sample standard deviation over seeds (with one seed: ± the metric's own",
        "95% interval where it has one). n: seeds in the row; a cell with fewer seeds says (n=k).",
        "**Bold**: best real method in the column (not for accuracy with real images only, which does not depend",
        "on the generator). *Italic* rows marked (ref) are reference rows, never ranked.",
        "",
    ]
    for i, table in enumerate(tables, 1):
        links = f"[CSV](leaderboard_{table.slug}.csv)"
        if figures and table.slug in figures:
            links += f" · [plot](figures/leaderboard_{table.slug}.png)"
        lines += [
            f"## {table.title}",
            "",
            f"Table {i}: dataset `{table.dataset}`, protocol `{table.protocol}` ({table.n_records} records). {links}",
            "",
            _markdown_table(table),
            "",
        ]
    columns = sorted({c for t in tables for c in t.columns}, key=Column.sort_key)
    lines += ["## Legend", "", "Columns are `metric/backbone[/setting]`; ↓ lower is better, ↑ higher is better.", ""]
    lines += [f"- `{c.key}` {c.arrow}: {_column_text(c)}." for c in columns]
    refs = sorted({r.method for t in tables for r in t.rows if r.reference}, key=lambda m: _rank(m, REFERENCE_METHODS))
    lines += [f"- *{m}* (ref): {REFERENCE_TEXT.get(m, 'a reference row')}." for m in refs]
    lines.append("")
    if samples:
        lines += ["## Samples", "", "Evaluation samples of each method's lowest seed that saved them: each row holds",
                  "a class's conditional images, then the images generated from them.", ""]
        for table in tables:
            entries = samples.get(table.slug) or []
            if not entries:
                continue
            lines += [f"### {table.title}", ""]
            for label, seed, link in entries:
                alt = label.replace("[", "(").replace("]", ")")   # brackets would end the alt text early
                lines += [f"**{label}** (seed {seed})", "", f"![{alt} samples]({link})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


CSV_COLUMNS = ("dataset", "protocol", "method", "preset", "label", "reference", "key", "metric", "backbone",
               "setting", "direction", "mean", "std", "ci95", "n", "seeds", "best")


def _num(value: float | None) -> str:
    # 10 significant digits: more than any metric means, and the last-ulp differences between Python versions'
    # statistics modules cannot change the file
    return "" if value is None else format(value, ".10g")


def render_csv(table: Table) -> str:
    """Long format: one line per (row, column) that has a value; 10 significant digits."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        for col in table.columns:
            cell = row.cells.get(col.key)
            if cell is None:
                continue
            writer.writerow([
                table.dataset, table.protocol, row.method, row.preset or "", row.label,
                "true" if row.reference else "false", col.key, col.metric, col.backbone, col.setting,
                "lower" if col.lower_is_better else "higher", _num(cell.mean), _num(cell.std), _num(cell.ci95),
                cell.n, ";".join(str(s) for s in cell.seeds), "true" if cell.best else "false",
            ])
    return buf.getvalue()


def render_readme(tables: list[Table], figures: set[str]) -> str:
    lines = [
        "# results/",
        "",
        "Generated by `fsgen-bench leaderboard` from the records in `records/`; do not edit by hand.",
        "",
        "- [leaderboard.md](leaderboard.md): every table, with a legend",
    ]
    for table in tables:
        entry = f"- {table.title}: [CSV](leaderboard_{table.slug}.csv)"
        if table.slug in figures:
            entry += f", [plot](figures/leaderboard_{table.slug}.png)"
        lines.append(entry)
    lines += [
        "",
        "Layout: `records/*.jsonl` hold one MetricRecord per line (the source of truth); `figures/` the plots and,",
        "under `figures/samples/`, copies of the evaluation sample grids; `runs/<run_id>/` (not committed: it",
        "holds checkpoints) each run's resolved config, checkpoints, logs and sample grids.",
        "",
        "Regenerate:",
        "",
        "    fsgen-bench bench configs/suites/glyphs-quick.yaml   # run (or resume) a suite; appends records",
        "    fsgen-bench leaderboard                              # rebuild these tables from the records",
        "",
    ]
    return "\n".join(lines)


def plot_table(table: Table, path: Path) -> Path:
    """Bar charts with error bars, one panel per column; reference rows hatched and grey."""
    # The object-oriented API with an Agg canvas: no pyplot state, no backend switch for the whole process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(3, len(table.columns))
    nrows = math.ceil(len(table.columns) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.6))
    FigureCanvasAgg(fig)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100, metadata={"Software": None})
    tmp.replace(path)
    return path


def _write(path: Path, text: str) -> Path:
    """Atomic: a reader (or a concurrent shard) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _sample_links(tables: list[Table], runs_dir: Path, out_dir: Path) -> dict[str, list[tuple[str, int, str]]]:
    """Per table, (row label, seed, link) of the evaluation sample grid of each row's lowest seed that has one.

    Run folders are not committed (checkpoints), so the grid is copied to
    ``figures/samples/<table>/<label>_s<seed>.png`` and the Markdown links the copy. Without the run folder (a
    fresh clone rebuilding its tables), a copy made earlier is linked instead; copies no row links are removed.
    """
    import shutil

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
                        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
                        shutil.copyfile(image, tmp)
                        tmp.replace(copy)
                if copy.is_file():
                    keep.add(copy)
                    out.setdefault(table.slug, []).append((row.label, seed, copy.relative_to(out_dir).as_posix()))
                    break
    for stale in root.glob("*/*.png"):
        if stale not in keep:
            stale.unlink()
    return out


def build(records_dir: Path, out_dir: Path, *, plots: bool = True) -> list[Path]:
    """Write leaderboard.md, one CSV per table, figures and README.md into ``out_dir``; return the paths."""
    records_dir, out_dir = Path(records_dir), Path(out_dir)
    if not records_dir.is_dir():
        raise UserError(f"records folder {records_dir} does not exist; run `fsgen-bench run ...` or "
                        f"`fsgen-bench bench configs/suites/glyphs-quick.yaml` first, or pass --records DIR")
    records = read_records(records_dir)
    if not records:
        raise UserError(f"no records in {records_dir}/*.jsonl; run `fsgen-bench run ...` or "
                        f"`fsgen-bench bench configs/suites/glyphs-quick.yaml` first")
    tables = compute_tables(records)
    records_label = Path(os.path.relpath(records_dir, out_dir)).as_posix() + "/"
    samples = _sample_links(tables, records_dir.parent / "runs", out_dir)

    written = []
    csvs = {out_dir / f"leaderboard_{t.slug}.csv" for t in tables}
    for table in tables:
        written.append(_write(out_dir / f"leaderboard_{table.slug}.csv", render_csv(table)))
    figures: set[str] = set()
    if plots:
        for table in tables:
            if table.columns:
                written.append(plot_table(table, out_dir / "figures" / f"leaderboard_{table.slug}.png"))
                figures.add(table.slug)
    written.insert(0, _write(out_dir / "leaderboard.md",
                             render_markdown(tables, records, records_label, samples, figures)))
    written += [out_dir / link for entries in samples.values() for _, _, link in entries]
    # Tables whose records are gone must not linger next to the fresh ones (only our own file patterns).
    for stale in out_dir.glob("leaderboard_*.csv"):
        if stale not in csvs:
            stale.unlink()
    if plots:
        for stale in (out_dir / "figures").glob("leaderboard_*.png"):
            if stale.stem.removeprefix("leaderboard_") not in figures:
                stale.unlink()
    written.append(_write(out_dir / "README.md", render_readme(tables, figures)))
    return written
