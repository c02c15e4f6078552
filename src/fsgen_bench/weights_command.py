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

import os

from fsgen_bench.errors import UserError


def run(args) -> int:
    """``args``: ``action`` (None or "download"), ``names``, ``all``, ``timeout_s`` (None: the default), ``no_progress``
    (the CLI's ``weights`` subcommand builds them)."""
    if args.action == "download":
        return _download(args)
    if args.names or args.all:
        raise UserError("to fetch weights, say `fsgen-bench weights download NAME ...` (or `download --all`)")
    _print_table(_rows())
    return 0


def _download(args) -> int:
    from fsgen_bench.eval.weights import REGISTRY
    from fsgen_bench.eval.weights_download import DEFAULT_TIMEOUT_S, download_many

    if args.all and args.names:
        raise UserError("give weight names or --all, not both")
    names = list(REGISTRY) if args.all else list(args.names)
    if not names:
        raise UserError(f"name the weights to download ({', '.join(REGISTRY)}) or pass --all")
    timeout_s = DEFAULT_TIMEOUT_S if args.timeout_s is None else args.timeout_s
    if not timeout_s > 0:
        raise UserError(f"--timeout-s must be positive, got {timeout_s}")
    download_many(names, timeout_s=timeout_s, progress=not args.no_progress, log=print)
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
