"""Do two run directories hold the same logs, timings aside? ``python scripts/same_tables.py RUN_A RUN_B``.

Compares the metrics, rollouts and tokens tables step by step (every column both runs have, except wall times and
throughput) and prints, per table, "identical" or the columns that differ; exit code 1 if any differs. Used to check
that a refactoring changes nothing a run logs (docs/performance.md, "Behaviour unchanged").
"""

from __future__ import annotations

import sys

from workbench.runlog import open_run

TIMINGS = ("time_", "tokens_per_s")


def compare(a_dir: str, b_dir: str) -> bool:
    a, b = open_run(a_dir), open_run(b_dir)
    same = True
    for table in ("metrics", "rollouts", "tokens"):
        x, y = a.read(table).to_pandas(), b.read(table).to_pandas()
        cols = [c for c in x.columns if c in y.columns and not c.startswith(TIMINGS)]
        differ = [c for c in cols if not x[c].equals(y[c])] if len(x) == len(y) else ["(row count)"]
        print(f"{table}: {len(x)} rows, {'identical' if not differ else 'differ in ' + ', '.join(differ)}")
        same &= not differ
    return same


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(0 if compare(sys.argv[1], sys.argv[2]) else 1)
