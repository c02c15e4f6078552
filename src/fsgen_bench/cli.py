"""The ``fsgen-bench`` command line. The only place in the package that reads argv.

    fsgen-bench datasets                                   # registered datasets, present or not, how to get them
    fsgen-bench run --method f2gan --dataset glyphs        # train + evaluate + record (quick preset on CPU)
    fsgen-bench eval --method copy-support --dataset glyphs
    fsgen-bench sample --run results/runs/<run>            # figures from a trained run
    fsgen-bench leaderboard                                # results/*.md, *.csv, figures from the records
    fsgen-bench bench configs/suites/glyphs-quick.yaml     # a grid of runs, resumable

Bad input (unknown names, missing or malformed files, unknown config keys, an unwritable results folder) ends
with exit status 2 and one message that names the problem and the fix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from fsgen_bench.errors import UserError


def _default_preset() -> str:
    import torch

    # CPU: the quick preset gives a real result in minutes; with a GPU, the paper's scale.
    return "paper" if torch.cuda.is_available() else "quick"


def _add_common(p: argparse.ArgumentParser, *, needs_method: bool = True) -> None:
    if needs_method:
        p.add_argument("--method", required=True, help="a registered method (fsgen-bench run --help lists them)")
    p.add_argument("--dataset", default="glyphs",
                   help="a registered dataset, npy:PATH or folder:PATH (default: glyphs, embedded)")
    p.add_argument("--preset", default=None, help="smoke | quick | paper (default: quick on CPU, paper on GPU)")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="extra YAML layer (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one config key, e.g. --set train.max_epochs=2 (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default: run.seed = 0)")
    p.add_argument("--results", default=None, metavar="DIR", help="results folder (default: results/)")
    p.add_argument("--protocol", default=None, help="evaluation protocol: clean (default) | lofgan | f2gan")
    p.add_argument("--devices", default=None, help="devices per node (e.g. 2)")
    p.add_argument("--num-nodes", type=int, default=None)
    p.add_argument("--accelerator", default=None, help="cpu | cuda | auto")
    p.add_argument("--strategy", default=None, help="auto | ddp")
    p.add_argument("--logger", default=None, choices=["csv", "wandb", "none"], help="where training logs go")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fsgen-bench", description="Few-shot image generation benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("datasets", help="list registered datasets, whether they are present, and how to get them")

    p = sub.add_parser("run", help="train a method on a dataset, evaluate it and append records")
    _add_common(p)
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and dataset summary, then exit")
    p.add_argument("--fresh", action="store_true", help="start the run again even if it finished or has checkpoints")

    p = sub.add_parser("eval", help="evaluate a method (a checkpoint, a finished run, or a reference row)")
    _add_common(p)
    p.add_argument("--ckpt", default=None, help="checkpoint to evaluate (default: the run's last checkpoint)")

    p = sub.add_parser("sample", help="write figures (PNG) from a trained run or checkpoint")
    p.add_argument("--run", default=None, metavar="DIR", help="a run folder under results/runs")
    p.add_argument("--ckpt", default=None, help="a checkpoint (its run folder's config.yaml is used)")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write (default: <run>/figures)")
    p.add_argument("--classes", type=int, default=8, help="unseen classes in the grid")

    p = sub.add_parser("leaderboard", help="generate results/leaderboard*.md/.csv and plots from the records")
    p.add_argument("--records", default="results/records", metavar="DIR")
    p.add_argument("--out", default="results", metavar="DIR")

    p = sub.add_parser("bench", help="run a suite (methods x datasets x seeds x presets), resumable")
    p.add_argument("suite", help="suite YAML (e.g. configs/suites/glyphs-quick.yaml) or a shipped suite's name "
                                 "(glyphs-quick, paper)")
    p.add_argument("--results", default=None, metavar="DIR")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only shard I of N of the cells, 0-based (0/2 here, 1/2 on another machine)")
    p.add_argument("--fail-fast", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether each is finished")
    p.add_argument("--logger", default=None, choices=["csv", "wandb", "none"],
                   help="where each cell's training logs go (wandb: also the leaderboard as a Table at the end)")
    return parser


def _overrides_from_flags(args) -> tuple[list[str], list[str]]:
    """(user overrides that name the run, infrastructure overrides that do not)."""
    from fsgen_bench.config import is_watch_only

    # watch-only --set keys (logger, results folder) stay out of the run id: switching the logger resumes the run
    user, infra = [], []
    for item in args.overrides:
        (infra if is_watch_only(item.split("=", 1)[0].strip()) else user).append(item)
    if args.results is not None:
        infra.append(f"run.results_dir={args.results}")
    if args.protocol is not None:
        from fsgen_bench.config import configs_dir, load_yaml

        default = load_yaml(configs_dir() / "defaults.yaml")["eval"]["protocol"]
        # Like suite cells: only a non-default protocol names a different run folder.
        (user if args.protocol != default else infra).append(f"eval.protocol={args.protocol}")
    if args.devices is not None:
        infra.append(f"train.devices={args.devices}")
    if args.num_nodes is not None:
        infra.append(f"train.num_nodes={args.num_nodes}")
    if args.accelerator is not None:
        infra.append(f"train.accelerator={args.accelerator}")
    if args.strategy is not None:
        infra.append(f"train.strategy={args.strategy}")
    if args.logger is not None:
        infra.append(f"logger.kind={args.logger}")
    return user, infra


def resolve_from_args(args) -> dict:
    from fsgen_bench.config import resolve
    from fsgen_bench.methods import METHODS
    from fsgen_bench.run import cell_run_id

    if args.method not in METHODS:
        METHODS.get(args.method)  # raises a UserError listing the known methods
    preset = args.preset or _default_preset()
    user, infra = _overrides_from_flags(args)
    cfg = resolve(method=args.method, dataset=args.dataset, preset=preset, config_files=args.config,
                  overrides=user + infra, seed=args.seed)
    if not cfg["run"].get("name"):
        naming = [f"--config {c}" for c in args.config] + user
        cfg["run"]["name"] = cell_run_id(args.method, args.dataset, preset, cfg["run"]["seed"], naming)
    return cfg


def cmd_datasets(args) -> int:
    import fsgen_bench.data  # noqa: F401  (registers the readers)
    from fsgen_bench.config import configs_dir, load_yaml
    from fsgen_bench.data.source import DATASETS

    rows = []
    for name in DATASETS.names():
        if name in ("npy", "folder"):
            continue
        spec = DATASETS.get(name)
        ds_file = configs_dir() / "datasets" / f"{name}.yaml"
        data_cfg = load_yaml(configs_dir() / "defaults.yaml")["data"]
        if ds_file.is_file():
            data_cfg.update(load_yaml(ds_file).get("data", {}))
        present, where = spec.locate(data_cfg)
        rows.append((name, "yes" if present else "no", spec.standard_split, f"{spec.channels}ch",
                     str(spec.native_size or "-"), where, spec.obtain))
    header = ("dataset", "present", "split (seen/unseen)", "channels", "native px", "where", "how to obtain")
    print_table(header, rows)
    print("\nAlso: --dataset npy:PATH ([classes, images, H, W, C] .npy) and --dataset folder:PATH (one sub-folder "
          "per class), with --set data.num_seen_classes=N --set data.image_size=S.")
    return 0


def print_table(header, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    widths[-1] = min(widths[-1], 200)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for row in rows:
        print(fmt.format(*row))


def cmd_run(args) -> int:
    from fsgen_bench.run import build_datamodule, check_results_dir, run_experiment

    cfg = resolve_from_args(args)
    if args.dry_run:
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        print(yaml.safe_dump(cfg, sort_keys=False), end="")
        print("# dataset summary")
        print(yaml.safe_dump(datamodule.summary(), sort_keys=False), end="")
        return 0
    check_results_dir(Path(cfg["run"]["results_dir"]))
    result = run_experiment(cfg, fresh=args.fresh)
    print(f"run folder: {result.run_dir}")
    return 0


def cmd_eval(args) -> int:
    import torch

    from fsgen_bench.config import cache_dir, config_hash
    from fsgen_bench.eval.harness import evaluate, format_table
    from fsgen_bench.eval.records import append_records, records_path
    from fsgen_bench.methods import METHODS
    from fsgen_bench.run import _is_global_zero, build_datamodule, build_method, build_protocol, check_results_dir
    from fsgen_bench.suite import dataset_slug

    cfg = resolve_from_args(args)
    results_dir = Path(cfg["run"]["results_dir"])
    check_results_dir(results_dir)
    run_dir = results_dir / "runs" / cfg["run"]["name"]
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    protocol = build_protocol(cfg)
    cls = METHODS.get(cfg["run"]["method"])
    ckpt = Path(args.ckpt) if args.ckpt else run_dir / "checkpoints" / "last.ckpt"
    if getattr(cls, "trainable", True):
        if not ckpt.is_file():
            raise UserError(
                f"no checkpoint for {cfg['run']['method']}: {ckpt} does not exist; pass --ckpt PATH or train first "
                f"with `fsgen-bench run --method {cfg['run']['method']} --dataset {args.dataset}`"
            )
        try:
            model = cls.load_from_checkpoint(str(ckpt), map_location="cpu")
        except Exception as exc:  # a foreign or corrupt file
            raise UserError(f"cannot load checkpoint {ckpt} as {cls.__name__}: {exc}") from None
        run_id = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else cfg["run"]["name"]
    else:
        model = build_method(cfg, datamodule.info)
        run_id = cfg["run"]["name"]

    fabric = _maybe_launch_ddp(cfg)
    if fabric is not None:
        model = model.to(fabric.device)
    elif torch.cuda.is_available() and cfg["train"]["accelerator"] in ("auto", "cuda"):
        model = model.to("cuda")
    run_meta = {
        "run_id": run_id,
        "method": cfg["run"]["method"],
        "dataset": datamodule.info.name if ":" not in args.dataset else dataset_slug(args.dataset),
        "seed": int(cfg["run"]["seed"]),
        "config_hash": config_hash(cfg),
        "preset": cfg["run"]["preset"],
    }
    out_dir = results_dir / "runs" / run_id
    records = evaluate(model, datamodule, protocol=protocol, eval_cfg=cfg["eval"], cache_dir=cache_dir(cfg),
                       run_meta=run_meta, out_dir=out_dir if _is_global_zero() else None)
    if _is_global_zero():
        append_records(records, records_path(results_dir, run_meta["dataset"], protocol.id))
        print(format_table(records))
        print(f"records appended to {records_path(results_dir, run_meta['dataset'], protocol.id)}")
    return 0


def _maybe_launch_ddp(cfg: dict):
    """For evaluation on several devices: launch the ranks with Lightning Fabric (the harness shards classes)."""
    devices = cfg["train"]["devices"]
    n = int(devices) if str(devices).isdigit() else 1
    if n <= 1 and int(cfg["train"]["num_nodes"]) <= 1:
        return None
    import lightning as L

    accelerator = cfg["train"]["accelerator"]
    strategy = cfg["train"]["strategy"]
    fabric = L.Fabric(accelerator=accelerator, devices=n, num_nodes=int(cfg["train"]["num_nodes"]),
                      strategy="ddp" if strategy == "auto" else strategy)
    fabric.launch()
    return fabric


def cmd_sample(args) -> int:
    from fsgen_bench.sample import write_figures

    if not args.run and not args.ckpt:
        raise UserError("fsgen-bench sample needs --run DIR or --ckpt PATH")
    paths = write_figures(run_dir=Path(args.run) if args.run else None, ckpt=Path(args.ckpt) if args.ckpt else None,
                          out_dir=Path(args.out) if args.out else None, num_classes=args.classes)
    for p in paths:
        print(p)
    return 0


def cmd_leaderboard(args) -> int:
    from fsgen_bench.leaderboard import build

    records = Path(args.records)
    if not records.is_dir():
        raise UserError(f"records folder {records} does not exist; run `fsgen-bench run ...` first or pass --records")
    for p in build(records, Path(args.out)):
        print(p)
    return 0


def cmd_bench(args) -> int:
    from fsgen_bench.suite import parse_shard, run_suite

    result = run_suite(Path(args.suite), results_dir=Path(args.results) if args.results else None,
                       shard=parse_shard(args.shard) if args.shard else None, dry_run=args.dry_run,
                       fail_fast=args.fail_fast, logger=args.logger)
    return result.exit_code


COMMANDS = {
    "datasets": cmd_datasets,
    "run": cmd_run,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "leaderboard": cmd_leaderboard,
    "bench": cmd_bench,
}


class _DropLitLoggerTip:
    """A logging filter for the advertisement Lightning 2.6 prints at every Trainer construction."""

    def filter(self, record) -> bool:
        return "litlogger" not in record.getMessage()


def _quiet_known_noise() -> None:
    """Silence two messages that every run printed and that no user can act on: Lightning's own use of a torch
    pytree API that torch deprecated (lightning/pytorch/utilities/_pytree.py), and the litlogger tip. Real
    warnings stay visible. Only the command line does this; the library leaves the caller's settings alone."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLitLoggerTip) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLitLoggerTip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_known_noise()
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"fsgen-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fsgen-bench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
