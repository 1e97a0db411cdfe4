"""Do two run directories hold the same logs, timings aside? ``python scripts/same_tables.py RUN_A RUN_B``.

Compares the metrics, rollouts and tokens tables step by step (every column of the files, the schema's and the
writer's extra ones, except wall times and throughput) and prints, per table, "identical", the columns only one
run has, or the columns that differ; exit code 1 if any differs. Used to check
that a refactoring changes nothing a run logs (docs/performance.md, "Behaviour unchanged").
"""

from __future__ import annotations

import sys

import pandas as pd
import pyarrow.parquet as pq

from workbench.runlog import open_run

TIMINGS = ("time_", "tokens_per_s", "max_rss_mb")  # measurements of the machine, not of the run


def compare(a_dir: str, b_dir: str) -> bool:
    a, b = open_run(a_dir), open_run(b_dir)
    same = True
    for table in ("metrics", "rollouts", "tokens"):
        x, y = _read_all(a, table), _read_all(b, table)
        only = sorted(set(x.columns) ^ set(y.columns))
        cols = [c for c in x.columns if c in y.columns and not c.startswith(TIMINGS)]
        differ = [c for c in cols if not x[c].equals(y[c])] if len(x) == len(y) else ["(row count)"]
        verdict = "identical" if not differ else "differ in " + ", ".join(differ)
        print(
            f"{table}: {len(x)} rows, {len(cols)} columns {verdict}"
            + (f"; only in one: {only}" if only else "")
        )
        same &= not differ and not only
    return same


def _read_all(run, table: str) -> pd.DataFrame:
    """Every column of every complete step's file of ``table`` (the reader's ``read`` keeps the schema's only)."""
    return pd.concat([pq.read_table(f).to_pandas() for f in run.files(table)], ignore_index=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(0 if compare(sys.argv[1], sys.argv[2]) else 1)
