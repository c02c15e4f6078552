"""The ``fsgen-bench`` command line. The only place in the package that reads argv: it parses, resolves the
config and calls the runner.

    fsgen-bench datasets                                   # registered datasets, present or not, how to get them
    fsgen-bench run --method f2gan --dataset glyphs        # train + evaluate + record (quick preset on CPU)
    fsgen-bench eval --method copy-support --dataset glyphs
    fsgen-bench sample --run outputs/runs/<run>            # figures from a trained run
    fsgen-bench leaderboard                                # results/*.md, *.csv, figures from the records
    fsgen-bench bench configs/suites/glyphs-quick.yaml     # a grid of runs, resumable
    fsgen-bench weights [download NAME ...|--all]          # pretrained weight files: present? fetch them

A subcommand is one function decorated with ``@command(name, help, *arguments)``; the parser is built from
those. Command functions import the runner when they run, so that ``fsgen-bench --help`` does not load
Lightning. Bad input (unknown names, missing or malformed files, unknown config keys, an unwritable results
folder) ends with exit status 2 and one message that names the problem and the fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from fsgen_bench.config import configs_dir, is_watch_only, load_yaml, resolve
from fsgen_bench.errors import UserError

# ----------------------------------------------------------------------------------------------- subcommands


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: tuple[tuple[tuple, dict], ...]     # (flags, keyword arguments) for ArgumentParser.add_argument
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def arg(*flags: str, **kwargs) -> tuple[tuple, dict]:
    """One argument of a subcommand, as ``ArgumentParser.add_argument`` takes it."""
    return flags, kwargs


def command(name: str, help: str, *arguments: tuple[tuple, dict]):
    """Register the decorated function as ``fsgen-bench <name>``; it returns the exit status."""
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is defined twice")
        COMMANDS[name] = Command(name, help, tuple(arguments), fn)
        return fn
    return register


# The options of every command that resolves a run's config (run, eval).
RUN_OPTIONS = (
    arg("--method", required=True, help="a registered method (an unknown name lists them)"),
    arg("--dataset", default="glyphs", help="a registered dataset, npy:PATH or folder:PATH (default: glyphs, embedded)"),
    arg("--preset", default=None, help="smoke | quick | paper (default: quick on CPU, paper on GPU)"),
    arg("--config", action="append", default=[], metavar="FILE", help="extra YAML layer (repeatable)"),
    arg("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="override one config key, e.g. --set train.max_epochs=2 (repeatable)"),
    arg("--seed", type=int, default=None, help="run seed (default: run.seed = 0)"),
    arg("--results", default=None, metavar="DIR",
        help="results folder (default: run.results_dir = outputs/, which git ignores; the committed suite's "
             "records and tables are in results/)"),
    arg("--protocol", default=None,
        help="evaluation protocol: clean (default) | lofgan | lofgan-paper | f2gan (see `fsgen-bench protocols`)"),
    arg("--devices", default=None, help="devices per node (e.g. 2)"),
    arg("--num-nodes", type=int, default=None),
    arg("--accelerator", default=None, help="cpu | cuda | auto"),
    arg("--strategy", default=None, help="auto | ddp"),
    arg("--logger", default=None, choices=["csv", "wandb", "none"], help="where training logs go"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fsgen-bench", description="Few-shot image generation benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        for flags, kwargs in cmd.arguments:
            p.add_argument(*flags, **kwargs)
    return parser


# ----------------------------------------------------------------------------------------------- resolving


def _default_preset() -> str:
    import torch  # here, not at the top: `fsgen-bench --help` and `datasets` need no torch

    # CPU: the quick preset gives a real result in minutes; with a GPU, the paper's scale.
    return "paper" if torch.cuda.is_available() else "quick"


def _overrides_from_flags(args) -> tuple[list[str], list[str]]:
    """(user overrides that name the run, infrastructure overrides that do not)."""
    # watch-only --set keys (logger, results folder) stay out of the run id: switching the logger resumes the run
    user, infra = [], []
    for item in args.overrides:
        (infra if is_watch_only(item.split("=", 1)[0].strip()) else user).append(item)
    if args.results is not None:
        infra.append(f"run.results_dir={args.results}")
    if args.protocol is not None:
        default = load_yaml(configs_dir() / "defaults.yaml")["eval"]["protocol"]
        # Like suite cells: only a non-default protocol names a different run folder.
        (user if args.protocol != default else infra).append(f"eval.protocol={args.protocol}")
    for flag, key in (("devices", "train.devices"), ("num_nodes", "train.num_nodes"),
                      ("accelerator", "train.accelerator"), ("strategy", "train.strategy"), ("logger", "logger.kind")):
        if getattr(args, flag) is not None:
            infra.append(f"{key}={getattr(args, flag)}")
    return user, infra


def resolve_from_args(args) -> dict:
    """The resolved config of ``run``/``eval``, with ``run.name`` set to the run id these flags name."""
    from fsgen_bench.runner.identity import cell_run_id   # loads torch: not for --help

    preset = args.preset or _default_preset()
    user, infra = _overrides_from_flags(args)
    cfg = resolve(method=args.method, dataset=args.dataset, preset=preset, config_files=args.config,
                  overrides=user + infra, seed=args.seed)
    if not cfg["run"].get("name"):
        naming = [f"--config {c}" for c in args.config] + user
        cfg["run"]["name"] = cell_run_id(args.method, args.dataset, preset, cfg["run"]["seed"], naming)
    return cfg


def print_table(header, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    widths[-1] = min(widths[-1], 200)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for row in rows:
        print(fmt.format(*row))


# ----------------------------------------------------------------------------------------------- commands


@command("datasets", "list registered datasets, whether they are present, and how to get them")
def cmd_datasets(args) -> int:
    from fsgen_bench.data import DATASETS   # registers the readers (numpy, torch): not for --help

    defaults = load_yaml(configs_dir() / "defaults.yaml")["data"]
    rows = []
    for name in DATASETS.names():
        if name in ("npy", "folder"):
            continue
        spec = DATASETS.get(name)
        ds_file = configs_dir() / "datasets" / f"{name}.yaml"
        data_cfg = {**defaults, **(load_yaml(ds_file).get("data", {}) if ds_file.is_file() else {})}
        present, where = spec.locate(data_cfg)
        rows.append((name, "yes" if present else "no", spec.standard_split, f"{spec.channels}ch",
                     str(spec.native_size or "-"), where, spec.obtain))
    print_table(("dataset", "present", "split (seen/unseen)", "channels", "native px", "where", "how to obtain"), rows)
    print("\nAlso: --dataset npy:PATH ([classes, images, H, W, C] .npy) and --dataset folder:PATH (one sub-folder "
          "per class), with --set data.num_seen_classes=N --set data.image_size=S.")
    return 0


@command("run", "train a method on a dataset, evaluate it and append records", *RUN_OPTIONS,
         arg("--dry-run", action="store_true",
             help="print the resolved config, the dataset summary and the protocol's evaluation plan, then exit"),
         arg("--fresh", action="store_true", help="start the run again even if it finished or has checkpoints"))
def cmd_run(args) -> int:
    from fsgen_bench.eval.preflight import render_plan_summary
    from fsgen_bench.runner.build import build_datamodule, build_protocol
    from fsgen_bench.runner.run import run_experiment

    cfg = resolve_from_args(args)
    if args.dry_run:
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        print(yaml.safe_dump(cfg, sort_keys=False), end="")
        print("# dataset summary")
        print(yaml.safe_dump(datamodule.summary(), sort_keys=False), end="")
        plan = render_plan_summary(build_protocol(cfg), datamodule, seed=datamodule.seed)
        print("# evaluation plan\n" + "".join(f"# {line}\n" for line in plan.splitlines()), end="")  # still YAML
        return 0
    result = run_experiment(cfg, fresh=args.fresh)
    print(f"run folder: {result.run_dir}")
    return 0


@command("eval", "evaluate a method (a checkpoint, a finished run, or a reference row) and append records",
         *RUN_OPTIONS,
         arg("--ckpt", default=None, help="checkpoint to evaluate (default: the run's last checkpoint)"))
def cmd_eval(args) -> int:
    from fsgen_bench.runner.run import evaluate_saved

    evaluate_saved(resolve_from_args(args), ckpt=Path(args.ckpt) if args.ckpt else None)
    return 0


@command("sample", "write figures (PNG) from a trained run or checkpoint",
         arg("--run", default=None, metavar="DIR", help="a run folder (<results>/runs/<run_id>)"),
         arg("--ckpt", default=None, help="a checkpoint (its run folder's config.yaml is used)"),
         arg("--out", default=None, metavar="DIR", help="where to write (default: <run>/figures)"),
         arg("--classes", type=int, default=8, help="unseen classes in the grid"))
def cmd_sample(args) -> int:
    from fsgen_bench.sample import write_figures

    if not args.run and not args.ckpt:
        raise UserError("fsgen-bench sample needs --run DIR or --ckpt PATH")
    paths = write_figures(run_dir=Path(args.run) if args.run else None, ckpt=Path(args.ckpt) if args.ckpt else None,
                          out_dir=Path(args.out) if args.out else None, num_classes=args.classes)
    for p in paths:
        print(p)
    return 0


@command("leaderboard", "generate leaderboard*.md/.csv and plots from the records of a results folder",
         arg("--results", default="results", metavar="DIR",
             help="read DIR/records, write the tables into DIR (default: results, the committed suite's; "
                  "--results outputs for your own runs)"),
         arg("--records", default=None, metavar="DIR", help="records folder (default: <results>/records)"),
         arg("--out", default=None, metavar="DIR", help="where the tables go (default: <results>)"))
def cmd_leaderboard(args) -> int:
    from fsgen_bench.leaderboard import build
    from fsgen_bench.runner.identity import check_results_dir

    records = Path(args.records) if args.records else Path(args.results) / "records"
    out = Path(args.out) if args.out else Path(args.results)
    if not records.is_dir():
        raise UserError(f"records folder {records} does not exist; run `fsgen-bench run ...` first or pass "
                        f"--results DIR (or --records DIR)")
    check_results_dir(out)
    for p in build(records, out):
        print(p)
    return 0


@command("protocols", "print every evaluation protocol's settings side by side (a Markdown table)")
def cmd_protocols(args) -> int:
    from fsgen_bench.eval.preflight import render_protocols_markdown

    print(render_protocols_markdown(), end="")
    return 0


@command("weights", "list the pretrained weight files (found or missing, SHA-256 check); `weights download "
                    "NAME ...|--all` fetches them into the torch hub cache (verified, atomic)",
         arg("action", nargs="?", choices=["download"], help="download: fetch the named files (or --all)"),
         arg("names", nargs="*", metavar="NAME", help="names from the `fsgen-bench weights` table"),
         arg("--all", action="store_true", help="with download: every file in the table"),
         arg("--timeout-s", type=float, default=None, help="with download: seconds for a connection and for each "
                                                          "read (default 15)"),
         arg("--no-progress", action="store_true", help="with download: no progress bar"))
def cmd_weights(args) -> int:
    from fsgen_bench import weights_command

    return weights_command.run(args)


@command("bench", "run a suite (methods x datasets x seeds x presets), resumable",
         arg("suite", help="suite YAML (e.g. configs/suites/glyphs-quick.yaml) or a shipped suite's name "
                           "(glyphs-quick, paper)"),
         arg("--results", default=None, metavar="DIR",
             help="results folder (default: the suite's results_dir:, else run.results_dir)"),
         arg("--shard", default=None, metavar="I/N",
             help="run only shard I of N of the cells, 0-based (0/2 here, 1/2 on another machine)"),
         arg("--fail-fast", action="store_true"),
         arg("--dry-run", action="store_true", help="list the cells and whether each is finished"),
         arg("--logger", default=None, choices=["csv", "wandb", "none"],
             help="where each cell's training logs go (wandb: also the leaderboard as a Table at the end)"))
def cmd_bench(args) -> int:
    from fsgen_bench.runner.run import run_experiment
    from fsgen_bench.runner.suite import parse_shard, run_suite

    result = run_suite(Path(args.suite), run_experiment, results_dir=Path(args.results) if args.results else None,
                       shard=parse_shard(args.shard) if args.shard else None, dry_run=args.dry_run,
                       fail_fast=args.fail_fast, logger=args.logger)
    return result.exit_code


# ----------------------------------------------------------------------------------------------- main


class _DropLitLoggerTip:
    """A logging filter for the advertisement Lightning 2.6 prints at every Trainer construction."""

    def filter(self, record) -> bool:
        return "litlogger" not in record.getMessage()


def _quiet_known_noise() -> None:
    """Silence two messages that every run printed and that no user can act on: Lightning's own use of a torch
    pytree API that torch deprecated (lightning/pytorch/utilities/_pytree.py), and the litlogger tip. Real
    warnings stay visible. Only the command line does this; the library leaves the caller's settings alone."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLitLoggerTip) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLitLoggerTip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_known_noise()
    try:
        return COMMANDS[args.command].run(args)
    except UserError as exc:
        print(f"fsgen-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fsgen-bench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
