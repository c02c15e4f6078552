"""``fsgen-bench weights``: which pretrained weight files are here, and ``weights download`` to fetch them.

    fsgen-bench weights                      # every backbone file: where it was looked for, found, size, SHA-256
    fsgen-bench weights download inception   # one or more names from the table
    fsgen-bench weights download --all       # everything (about 3 GB), then a normal run reports them all

The table looks where a run looks (its environment variable, then the torch hub cache); a run's
``eval.<name>_weights`` option, when set, comes first and is checked when the run starts. Downloads go to the
torch hub cache (``$TORCH_HOME/hub/checkpoints``), verified and atomic (see
:mod:`fsgen_bench.eval.weights_download`); without a network the command stops within seconds with exit 2.
"""

from __future__ import annotations

import argparse
import os

from fsgen_bench.errors import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``weights`` (and its ``download`` sub-command) to the CLI's sub-parsers."""
    from fsgen_bench.eval.weights import REGISTRY
    from fsgen_bench.eval.weights_download import DEFAULT_TIMEOUT_S

    p = subparsers.add_parser("weights", help="list the pretrained weight files (found or missing, SHA-256 check); "
                                              "`weights download NAME|--all` fetches them")
    sub = p.add_subparsers(dest="weights_command", metavar="{download}")
    d = sub.add_parser("download", help="fetch weight files into the torch hub cache (verified, atomic)")
    d.add_argument("names", nargs="*", metavar="NAME", help=f"one or more of: {', '.join(REGISTRY)}")
    d.add_argument("--all", action="store_true", help="every file in the `fsgen-bench weights` table")
    d.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds for a connection and for each read (default {DEFAULT_TIMEOUT_S:g})")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    if getattr(args, "weights_command", None) == "download":
        return _download(args)
    _print_table(_rows())
    return 0


def _download(args) -> int:
    from fsgen_bench.eval.weights import REGISTRY
    from fsgen_bench.eval.weights_download import download_many

    if args.all and args.names:
        raise UserError("give weight names or --all, not both")
    names = list(REGISTRY) if args.all else list(args.names)
    if not names:
        raise UserError(f"name the weights to download ({', '.join(REGISTRY)}) or pass --all")
    if not args.timeout_s > 0:
        raise UserError(f"--timeout-s must be positive, got {args.timeout_s}")
    download_many(names, timeout_s=args.timeout_s, progress=not args.no_progress, log=print)
    return 0


def _rows() -> list[tuple[str, ...]]:
    from fsgen_bench.eval.weights import REGISTRY, WeightsNotFound, locate, verify

    rows = []
    for spec in REGISTRY.values():
        env = os.environ.get(spec.env_var)
        looked = f"${spec.env_var}" + ("" if env else " (not set)") + ", hub cache"
        try:
            found = locate(spec, None)
        except WeightsNotFound:
            rows.append((spec.name, spec.file, looked, "missing", f"~{spec.size_mib:.0f} MiB", "-"))
            continue
        except UserError as exc:          # the variable names a file that does not exist
            rows.append((spec.name, spec.file, looked, "BROKEN", "-", str(exc)))
            continue
        where = "hub cache" if found.source == "hub" else f"${spec.env_var}={found.path}"
        size = f"{found.path.stat().st_size / 2**20:.1f} MiB"
        try:
            verdict = verify(spec, found)
        except UserError as exc:
            rows.append((spec.name, spec.file, looked, where, size, f"FAILED: {exc}"))
            continue
        check = {"match": f"ok ({spec.hash_text})",
                 "nonstandard": f"not the standard file ({spec.hash_text}); keys and shapes ok, used as "
                                f"non-standard (sha256 {verdict.sha256[:16]}...)",
                 "unpublished": f"keys and shapes ok; no published hash (sha256 {verdict.sha256[:16]}...)"}
        rows.append((spec.name, spec.file, looked, where, size, check[verdict.status]))
    return rows


def _print_table(rows) -> None:
    from fsgen_bench.eval.weights import REGISTRY, hub_checkpoints_dir

    header = ("name", "file", "looked at", "found", "size", "SHA-256 check")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for row in rows:
        print(fmt.format(*row))
    missing = [r[0] for r in rows if r[3] == "missing"]
    options = ", ".join(dict.fromkeys(s.option_key for s in REGISTRY.values()))
    print(f"\ntorch hub cache: {hub_checkpoints_dir()}. A run's option, when set, comes first: {options} "
          f"(--set KEY=PATH).")
    if missing:
        print(f"Missing: {', '.join(missing)}. With a network: fsgen-bench weights download {' '.join(missing)} "
              f"(or --all).")
