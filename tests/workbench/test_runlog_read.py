"""``Run.read`` reads a run's step files in one pass when they share a schema and pass the checks, and file by
file otherwise: either way the table is the per-file read's, and a bad value is named by file, row and field."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workbench.runlog import RunFormatError, open_run, read_table_file, step_file
from workbench.synthetic_run import write_synthetic_run


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return write_synthetic_run(tmp_path / "r", method="real", steps=4, prompts=2, group_size=4, mean_len=8)


def per_file(run_dir: Path, table: str, columns: list[str] | None = None) -> pa.Table:
    run = open_run(run_dir)
    parts = [read_table_file(f, table, columns) for f in run.files(table)]
    return pa.concat_tables(parts, promote_options="permissive")


@pytest.mark.parametrize(
    ("table", "columns"), [("metrics", None), ("rollouts", ["step", "reward", "prompt"])]
)
def test_one_pass_read_is_the_per_file_read(run_dir: Path, table: str, columns: list[str] | None) -> None:
    assert open_run(run_dir).read(table, columns=columns).equals(per_file(run_dir, table, columns))


def test_differing_types_across_files_are_promoted_as_before(run_dir: Path) -> None:
    """Step 2's ``grader_timeouts`` written as int32 (step 1's as int64): the per-file path's promotion."""
    f = step_file(run_dir, "metrics", 2)
    t = pq.read_table(f)
    i = t.schema.get_field_index("grader_timeouts")
    pq.write_table(t.set_column(i, "grader_timeouts", t.column(i).cast(pa.int32())), f)
    got = open_run(run_dir).read("metrics")
    assert got.equals(per_file(run_dir, "metrics")) and got.schema.field("grader_timeouts").type == pa.int64()


def test_a_bad_value_in_a_later_file_is_named_by_file_row_and_field(run_dir: Path) -> None:
    f = step_file(run_dir, "rollouts", 3)
    t = pq.read_table(f)
    i = t.schema.get_field_index("reward")
    values = t.column(i).to_pylist()
    values[2] = float("nan")
    pq.write_table(t.set_column(i, "reward", pa.array(values, t.schema.field(i).type)), f)
    with pytest.raises(RunFormatError) as e:
        open_run(run_dir).read("rollouts", columns=["step", "reward"])
    assert str(f) in str(e.value) and "row 2" in str(e.value) and "reward" in str(e.value), str(e.value)
