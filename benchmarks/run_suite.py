"""Run (or resume) a benchmark suite, then rebuild the leaderboards; the same as `fsgen-bench bench SUITE`.

    python benchmarks/run_suite.py configs/suites/glyphs-quick.yaml [--shard 1/2] [--results DIR]
                                   [--dry-run] [--fail-fast]

Exit status: 0 when every cell finished (or was already finished), 1 when a cell failed, 2 for a bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fsgen_bench.errors import UserError
from fsgen_bench.suite import parse_shard, run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="suite YAML, e.g. configs/suites/glyphs-quick.yaml")
    parser.add_argument("--shard", default=None, help="run shard i of n of the cells (1-based), e.g. 1/4")
    parser.add_argument("--results", type=Path, default=None,
                        help="results folder (default: the configs' run.results_dir)")
    parser.add_argument("--dry-run", action="store_true", help="resolve every config and list the cells; run nothing")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell")
    args = parser.parse_args(argv)
    try:
        result = run_suite(args.suite, results_dir=args.results, dry_run=args.dry_run, fail_fast=args.fail_fast,
                           shard=parse_shard(args.shard) if args.shard else None)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
