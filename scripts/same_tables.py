"""Do two run directories hold the same logs, timings aside? ``python scripts/same_tables.py RUN_A RUN_B``.

Compares the metrics, rollouts and tokens tables step by step (every column of the files, the schema's and the
writer's extra ones, except wall times and throughput) and prints, per table, "identical", the columns only one
run has, or the columns that differ; exit code 1 if any differs. Used to check
that a refactoring changes nothing a run logs (docs/performance.md, "Behaviour unchanged").
"""

from __future__ import annotations

import sys

from workbench.runlog import measures_the_machine, open_run


def compare(a_dir: str, b_dir: str) -> bool:
    a, b = open_run(a_dir), open_run(b_dir)
    same = True
    for table in ("metrics", "rollouts", "tokens"):
        x, y = a.read_every_column(table), b.read_every_column(table)
        only = sorted(set(x.columns) ^ set(y.columns))
        cols = [c for c in x.columns if c in y.columns and not measures_the_machine(c)]
        differ = [c for c in cols if not x[c].equals(y[c])] if len(x) == len(y) else ["(row count)"]
        verdict = "identical" if not differ else "differ in " + ", ".join(differ)
        print(
            f"{table}: {len(x)} rows, {len(cols)} columns {verdict}"
            + (f"; only in one: {only}" if only else "")
        )
        same &= not differ and not only
    return same


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(0 if compare(sys.argv[1], sys.argv[2]) else 1)
