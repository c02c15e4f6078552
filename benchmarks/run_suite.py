"""Run (or resume) a benchmark suite, then rebuild the leaderboards: the same command as `fsgen-bench bench`.

    python benchmarks/run_suite.py configs/suites/glyphs-quick.yaml [--shard I/N] [--results DIR]
                                   [--logger csv|wandb|none] [--dry-run] [--fail-fast]

``--shard I/N`` runs shard I of N, 0-based (0/2 on one machine, 1/2 on another). Exit status: 0 when every cell
finished (or was already finished), 1 when a cell failed, 2 for a bad input.
"""

from __future__ import annotations

import sys

from fsgen_bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
