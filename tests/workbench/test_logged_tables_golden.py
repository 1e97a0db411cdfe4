"""Behaviour pinned: the tables a fixed-seed run logs, against a committed copy (``tests/workbench/golden/``).

One SYNTHETIC run per registered method (``workbench.synthetic_run``: seeded inputs, then the real objectives,
``update_records`` and the one step builder ``workbench.step_tables.build_step``, written and read back through
``workbench.runlog``) must log, column by column, what the committed Parquet files hold: every column of the
files, the schema's and the writers' extra ones. A refactoring of any of those modules that changes a logged
value, a column or a row fails here. What it does not cover: the model's forward (the trainer's own log-probs),
pinned by the resume-exactness tests; a trainer run before and after a change is compared by
``scripts/same_tables.py`` (docs/performance.md, "Behaviour unchanged").

When a change of the logged values is intended: ``python tests/workbench/test_logged_tables_golden.py --update``
rewrites the copy; say in the commit why the values changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.methods import SPECS
from workbench.runlog import open_run
from workbench.synthetic_run import write_synthetic_run

GOLDEN = Path(__file__).parent / "golden"
TABLES = ("metrics", "rollouts", "tokens")
SIZES = {"steps": 3, "prompts": 4, "group_size": 4, "minibatches": 2, "mean_len": 8, "seed": 3}


def logged_tables(root: Path) -> dict[str, pd.DataFrame]:
    """Every column of every step file of each table, for one synthetic run per method (``method`` column)."""
    out: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for method in SPECS:
        run = open_run(write_synthetic_run(root / method, method=method, **SIZES))
        for table in TABLES:
            frame = run.read_every_column(table)
            out[table].append(frame.assign(method=method))
    return {t: pd.concat(parts, ignore_index=True) for t, parts in out.items()}


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict[str, pd.DataFrame]:
    return logged_tables(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("table", TABLES)
def test_a_fixed_seed_run_logs_the_committed_tables(logged, table):
    got = logged[table]
    want = pd.read_parquet(GOLDEN / f"synthetic_{table}.parquet")
    assert sorted(got.columns) == sorted(want.columns), "columns added or lost"
    assert len(got) == len(want), "rows added or lost"
    for col in want.columns:
        a, b = got[col].to_numpy(), want[col].to_numpy()
        if want[col].dtype.kind == "f":
            # float32 on disk; float64 arithmetic may differ in its last bits on another CPU
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-5, atol=1e-7, err_msg=col)
        else:
            assert (a == b).all(), f"{table}.{col} differs"


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in logged_tables(Path(tmp)).items():
            frame.to_parquet(GOLDEN / f"synthetic_{name}.parquet", index=False)
            print(f"{GOLDEN / f'synthetic_{name}.parquet'}: {len(frame)} rows, {len(frame.columns)} columns")
