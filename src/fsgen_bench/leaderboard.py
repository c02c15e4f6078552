"""Leaderboards: a pure function from MetricRecords to Markdown, CSV and plots.

``build(records_dir, out_dir)`` reads ``<results>/records/*.jsonl`` and writes, into ``out_dir``:

    leaderboard.md                          every table, its scatter, a legend, sample grids where runs saved them
    leaderboard_<table>.csv                 one long-format CSV per table (mean, std, ci95, n per cell)
    figures/leaderboard_<table>.png         bar charts with error bars, one panel per column
    figures/scatter_<table>.png             class fidelity against novelty, a point per row
    README.md                               what is where and how to regenerate it

``<table>`` is ``<dataset>_<protocol>_<resolution>px``. The same records always give the same bytes (the header
names the records' count and the newest record's code version, never the clock), so the output can be
committed and diffed, and a golden test protects it.

One table per (dataset, protocol, evaluation resolution): numbers from two protocols or two resolutions are
never comparable. Columns are ``metric/backbone[/setting]`` keys, so FID on Inception features and FID on the
domain classifier never share a column; their order, direction, description and whether they are ranked come
from the metric registry (:mod:`fsgen_bench.eval.metrics`). Rows are (method, variant, preset); a row is a
reference row when its records say so (``reference``): those come last, in italics, and are never ranked.
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

from fsgen_bench.atomic import write_text_atomic
from fsgen_bench.errors import UserError
from fsgen_bench.eval.metrics import QUESTION_TEXT, QUESTIONS, MetricSpec, spec_of
from fsgen_bench.eval.records import MetricRecord, read_records
from fsgen_bench.leaderboard_plots import plot_scatter, plot_table, sample_links, scatter_axes, slug

BACKBONE_ORDER = ("inception", "domain", "alex", "vgg", "squeeze")
BACKBONE_TEXT = {
    "inception": "the standard FID InceptionV3 (ImageNet weights)",
    "domain": "a classifier trained on the dataset's seen classes",
    "alex": "LPIPS on AlexNet",
    "vgg": "LPIPS on VGG16",
    "squeeze": "LPIPS on SqueezeNet",
}
_MISSING = "–"


def _natural(text: str) -> tuple:
    """Sort ``5way5shot`` before ``10way5shot``, and ``allway`` after the numbered ones."""
    return tuple((1, int(p), "") if p.isdigit() else (2, 0, p) for p in re.split(r"(\d+)", text) if p)


def _rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(name), "") if name in order else (len(order), name)


def metric_spec(metric: str) -> MetricSpec:
    """The registered spec, or an unranked stand-in for a metric the registry does not know (old records)."""
    return spec_of(metric) or MetricSpec(metric, "downstream", "higher", False, f"metric `{metric}`", order=10_000)


@dataclass(frozen=True)
class Column:
    metric: str
    backbone: str
    setting: str = ""

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.metric, self.backbone, self.setting) if p)

    @property
    def spec(self) -> MetricSpec:
        return metric_spec(self.metric)

    @property
    def arrow(self) -> str:
        return self.spec.arrow

    @property
    def lower_is_better(self) -> bool:
        return self.spec.direction == "lower"

    def sort_key(self) -> tuple:
        return (self.spec.order, self.metric, _rank(self.backbone, BACKBONE_ORDER), _natural(self.setting))


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
    variant: str | None = None
    note: str | None = None                                # the runner's row_note, printed under the table
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
    resolution: int | None
    columns: list[Column]
    rows: list[Row]
    decimals: dict[str, int]
    n_records: int

    @property
    def slug(self) -> str:
        at = f"_{self.resolution}px" if self.resolution else ""
        return f"{slug(self.dataset)}_{slug(self.protocol)}{at}"

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.protocol} · " + (f"{self.resolution} px" if self.resolution else
                                                         "resolution not recorded")

    def wide(self) -> tuple[list[str], list[list]]:
        """(columns, rows) with a mean and a std column per key: what a wandb.Table or a DataFrame wants."""
        header = ["method", "preset", "reference", "n", "variant", "resolution"]
        for col in self.columns:
            header += [col.key, f"{col.key} std"]
        data = []
        for row in self.rows:
            values: list = [row.method, row.preset or "", row.reference, row.n, row.variant or "", self.resolution]
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


def _row_label(method: str, variant: str | None, default_variant: str | None, preset: str | None,
               several_presets: bool) -> str:
    label = method
    if variant is not None and variant != default_variant:
        label += f" ({variant})"
    if several_presets:
        label += f" [{preset or 'no preset'}]"
    return label


def _rows(recs: list[MetricRecord]) -> list[Row]:
    presets_of: dict[tuple, set] = {}
    grouped: dict[tuple, dict[str, list[MetricRecord]]] = {}
    for r in recs:
        presets_of.setdefault((r.method, r.variant), set()).add(r.preset)
        grouped.setdefault((r.method, r.variant, r.preset), {}).setdefault(r.key, []).append(r)
    rows = []
    for (method, variant, preset), per_key in grouped.items():
        every = [r for rs in per_key.values() for r in rs]
        newest = max(every, key=lambda r: (r.timestamp, r.run_id, r.metric, r.value))
        label = _row_label(method, variant, newest.extra.get("default_variant"), preset,
                           len(presets_of[(method, variant)]) > 1)
        note = newest.extra.get("row_note") or newest.extra.get("real_reference")
        row = Row(method=method, preset=preset, label=label, reference=any(r.reference for r in every),
                  variant=variant, note=str(note) if note else None)
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
    # methods first, by name; then the reference rows, by name
    rows.sort(key=lambda r: (r.reference, r.method, r.variant or "", r.preset or ""))
    return rows


def _mark_best(columns: list[Column], rows: list[Row], decimals: dict[str, int]) -> None:
    for col in (c for c in columns if c.spec.ranked):
        contenders = [row.cells[col.key] for row in rows
                      if not row.reference and col.key in row.cells and math.isfinite(row.cells[col.key].mean)]
        if len(contenders) < 2:  # "best" of one is no claim
            continue
        badness = [col.spec.badness(round(c.mean, decimals[col.key])) for c in contenders]
        target = min(badness)
        if not math.isfinite(target):
            continue
        for cell, value in zip(contenders, badness):
            cell.best = value == target


def compute_tables(records: Iterable[MetricRecord]) -> list[Table]:
    """Group records into one table per (dataset, protocol, resolution), sorted; cells aggregate over seeds."""
    by_table: dict[tuple, list[MetricRecord]] = {}
    for rec in records:
        by_table.setdefault((rec.dataset, rec.protocol, rec.resolution), []).append(rec)
    tables = []
    for (dataset, protocol, resolution), recs in sorted(by_table.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                                           kv[0][2] or 0)):
        columns = sorted({Column(r.metric, r.backbone, r.setting or "") for r in recs}, key=Column.sort_key)
        rows = _rows(recs)
        decimals = {c.key: _decimals(row.cells[c.key].mean for row in rows if c.key in row.cells) for c in columns}
        _mark_best(columns, rows, decimals)
        tables.append(Table(dataset=dataset, protocol=protocol, resolution=resolution, columns=columns, rows=rows,
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
    spec = col.spec
    backbone = BACKBONE_TEXT.get(col.backbone, f"backbone `{col.backbone}`")
    text = f"{spec.description}; features: {backbone}"
    if col.setting:
        episodes = re.fullmatch(r"(\d+|all)way(\d+)shot", col.setting)
        lowdata = re.fullmatch(r"(\d+)real", col.setting)
        if episodes:
            ways = "all-unseen-class" if episodes.group(1) == "all" else f"{episodes.group(1)}-way"
            text += f"; {ways} {episodes.group(2)}-shot episodes"
        elif lowdata:
            text += f"; n = {lowdata.group(1)} real images per class"
        else:
            text += f"; setting `{col.setting}`"
    ranked = "" if spec.ranked else "; not ranked"
    return f"{text} ({spec.direction_text}{ranked})"


def _markdown_table(table: Table) -> list[str]:
    header = ["method", "n"] + [f"{c.key} {c.arrow}" for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|:---|---:|" + "---:|" * len(table.columns)]
    notes: list[str] = []
    for row in table.rows:
        label = f"*{row.label}* (ref)" if row.reference else row.label
        if row.note:
            notes.append(row.note)
            label += f"<sup>{len(notes)}</sup>"
        cells = [format_cell(row.cells.get(c.key), table.decimals[c.key], row.n) for c in table.columns]
        lines.append("| " + " | ".join([label, str(row.n)] + cells) + " |")
    if notes:
        lines.append("")
        lines += [f"<sup>{i}</sup> {note}" + ("  " if i < len(notes) else "") for i, note in enumerate(notes, 1)]
    return lines


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


#: The line under every scatter: how to read the trade-off.
SCATTER_CAPTION = ("How to read it: right is newer (0 = copies of the conditioning images, 1 = as far from them "
                   "as held-out real photos), up is more often recognised as its own class; a good generator sits "
                   "near the *real* (ref) point, a copier far left, an off-class one low.")


def render_markdown(tables: list[Table], records: list[MetricRecord], records_label: str,
                    samples: dict[str, list[tuple[str, int, str]]] | None = None,
                    figures: set[str] | None = None, scatters: dict[str, str] | None = None) -> str:
    """leaderboard.md: header, how to read, one captioned table (and scatter) per table, legend, samples."""
    lines = ["# fsgen-bench leaderboard", ""] + _header(records, records_label) + [""]
    lines += [
        "Each table is one dataset under one evaluation protocol at one evaluation resolution; numbers from",
        "different tables are not comparable. Columns answer, left to right: "
        + "; ".join(f"{QUESTION_TEXT[q]} ({q})" for q in QUESTIONS) + ".",
        "Cells: mean ± sample standard deviation over seeds (with one seed: ± the metric's own 95% interval",
        "where it has one). n: seeds in the row; a cell with fewer seeds says (n=k). **Bold**: best method in a",
        "ranked column (→1: closest to 1 is best). *Italic* rows marked (ref) are reference rows, never ranked.",
        "",
    ]
    scatters = scatters or {}
    for i, table in enumerate(tables, 1):
        links = f"[CSV](leaderboard_{table.slug}.csv)"
        if figures and table.slug in figures:
            links += f" · [plot](figures/leaderboard_{table.slug}.png)"
        lines += [f"## {table.title}", "",
                  f"Table {i}: dataset `{table.dataset}`, protocol `{table.protocol}`, "
                  f"{f'{table.resolution} px' if table.resolution else 'resolution not recorded'} "
                  f"({table.n_records} records). {links}", ""]
        lines += _markdown_table(table) + [""]
        if table.slug in scatters:
            lines += [f"![class fidelity against novelty, {table.title}]({scatters[table.slug]})", "",
                      SCATTER_CAPTION, ""]
    columns = sorted({c for t in tables for c in t.columns}, key=Column.sort_key)
    lines += ["## Legend", "", "Columns are `metric/backbone[/setting]`; ↓ lower is better, ↑ higher is better, "
              "→1 closest to 1 is best.", ""]
    lines += [f"- `{c.key}` {c.arrow}: {_column_text(c)}." for c in columns]
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


CSV_COLUMNS = ("dataset", "protocol", "resolution", "method", "variant", "preset", "label", "reference", "key",
               "metric", "backbone", "setting", "direction", "ranked", "mean", "std", "ci95", "n", "seeds", "best")


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
            spec = col.spec
            direction = spec.direction if spec.direction != "target" else f"target {spec.target:g}"
            writer.writerow([
                table.dataset, table.protocol, table.resolution or "", row.method, row.variant or "",
                row.preset or "", row.label, "true" if row.reference else "false", col.key, col.metric, col.backbone,
                col.setting, direction, "true" if spec.ranked else "false", _num(cell.mean), _num(cell.std),
                _num(cell.ci95), cell.n, ";".join(str(s) for s in cell.seeds), "true" if cell.best else "false",
            ])
    return buf.getvalue()


def render_readme(tables: list[Table], figures: set[str], scatters: dict[str, str] | None = None) -> str:
    scatters = scatters or {}
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
        if table.slug in scatters:
            entry += f", [scatter]({scatters[table.slug]})"
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


def _write(path: Path, text: str) -> Path:
    """Atomic: a reader (or a concurrent shard) sees the old file or the new one, never half of one."""
    return write_text_atomic(path, text)


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
    samples = sample_links(tables, records_dir.parent / "runs", out_dir)

    written = []
    csvs = {out_dir / f"leaderboard_{t.slug}.csv" for t in tables}
    for table in tables:
        written.append(_write(out_dir / f"leaderboard_{table.slug}.csv", render_csv(table)))
    figures: set[str] = set()
    scatters: dict[str, str] = {}
    for table in (t for t in tables if plots):
        if table.columns:
            written.append(plot_table(table, out_dir / "figures" / f"leaderboard_{table.slug}.png"))
            figures.add(table.slug)
        if scatter_axes(table) is not None:
            scatters[table.slug] = f"figures/scatter_{table.slug}.png"
            written.append(plot_scatter(table, out_dir / scatters[table.slug]))
    written.insert(0, _write(out_dir / "leaderboard.md",
                             render_markdown(tables, records, records_label, samples, figures, scatters)))
    written += [out_dir / link for entries in samples.values() for _, _, link in entries]
    # Tables whose records are gone must not linger next to the fresh ones (only our own file patterns).
    for stale in out_dir.glob("leaderboard_*.csv"):
        if stale not in csvs:
            stale.unlink()
    if plots:
        keep = {f"leaderboard_{s}" for s in figures} | {Path(link).stem for link in scatters.values()}
        for stale in [*(out_dir / "figures").glob("leaderboard_*.png"), *(out_dir / "figures").glob("scatter_*.png")]:
            if stale.stem not in keep:
                stale.unlink()
    written.append(_write(out_dir / "README.md", render_readme(tables, figures, scatters)))
    return written
