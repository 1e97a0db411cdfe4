"""The Runs page's disk cache of checked metrics (``app_lib.metrics_cache``): always ``Run.read("metrics")``'s
table, reading only the step files whose keys changed, and never an error of its own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app_lib import metrics_cache
from app_lib.metrics_cache import checked_metrics
from workbench.runlog import Run, RunFormatError, open_run, step_file
from workbench.synthetic_run import write_synthetic_run


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(metrics_cache.ENV_VAR, str(folder))
    return folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "real-s0"
    write_synthetic_run(path, method="real", steps=6, prompts=2, group_size=4, mean_len=6, seed=0)
    return path


class ReadSpy:
    """Records the steps each ``Run.read_files`` call (``Run.read`` goes through it) asked for; the real read
    runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[list[int] | None] = []
        real = Run.read_files

        def read_files(run: Run, table: str, steps=None, columns=None):
            self.calls.append(None if steps is None else list(steps))
            return real(run, table, steps, columns)

        monkeypatch.setattr(Run, "read_files", read_files)


def same(run_dir: Path) -> None:
    """The cached read equals the plain read: values, order, columns, types and schema metadata."""
    got = checked_metrics(open_run(run_dir))
    want = open_run(run_dir).read("metrics")
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.equals(want)


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "metrics").glob("*.arrow"))


def test_second_read_comes_from_the_cache(
    cache: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same(run_dir)
    assert len(entries(cache)) == 1
    spy = ReadSpy(monkeypatch)
    table = checked_metrics(open_run(run_dir))
    assert spy.calls == []  # no step file read
    assert table.equals(open_run(run_dir).read("metrics"))
    assert table.column("step").to_pylist() == [1, 2, 3, 4, 5, 6]


def test_a_new_step_reads_only_that_step(cache: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = run_dir.parent / "held"
    held.mkdir()
    last = step_file(run_dir, "metrics", 6)
    shutil.move(last, held / last.name)
    same(run_dir)  # 5 steps cached
    shutil.move(held / last.name, last)  # the step lands
    spy = ReadSpy(monkeypatch)
    table = checked_metrics(open_run(run_dir))
    assert spy.calls == [[6]]
    assert table.column("step").to_pylist() == [1, 2, 3, 4, 5, 6]
    monkeypatch.undo()
    same(run_dir)


def test_removed_steps(cache: Path, run_dir: Path) -> None:
    same(run_dir)
    step_file(run_dir, "metrics", 6).unlink()  # the last one: the cached rows are cut
    same(run_dir)
    step_file(run_dir, "metrics", 2).unlink()  # one in the middle: read again from there
    same(run_dir)
    assert open_run(run_dir).read("metrics").column("step").to_pylist() == [1, 3, 4, 5]


def test_a_damaged_file_raises_as_the_reader_does(cache: Path, run_dir: Path) -> None:
    same(run_dir)
    bad = step_file(run_dir, "metrics", 3)
    tmp = bad.with_suffix(".tmp")
    tmp.write_bytes(b"not parquet")
    os.replace(tmp, bad)  # as the writer replaces files: a new inode
    with pytest.raises(RunFormatError) as want:
        open_run(run_dir).read("metrics")
    with pytest.raises(RunFormatError) as got:
        checked_metrics(open_run(run_dir))
    assert str(got.value) == str(want.value)
    assert "step_000003" in str(got.value)


def test_a_rewritten_file_is_read_again(cache: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same(run_dir)
    f = step_file(run_dir, "metrics", 4)
    data = f.read_bytes()
    f.unlink()
    f.write_bytes(data)  # same bytes, a new file: read again (from step 4 on)
    spy = ReadSpy(monkeypatch)
    checked_metrics(open_run(run_dir))
    assert spy.calls == [[4, 5, 6]]


def test_corrupt_or_foreign_cache_is_rebuilt(cache: Path, run_dir: Path) -> None:
    same(run_dir)
    (entry,) = entries(cache)
    entry.write_bytes(b"garbage")
    same(run_dir)
    assert entry.read_bytes() != b"garbage"
    # the cache of another run folder at this name (a hash collision, a moved cache) is not used
    other = run_dir.parent / "other"
    shutil.copytree(run_dir, other)
    same(other)
    (other_entry,) = [e for e in entries(cache) if e != entry]
    shutil.copy(other_entry, entry)
    step_file(other, "metrics", 1).unlink()
    same(run_dir)


def test_off_and_unwritable(tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics_cache.ENV_VAR, "off")
    assert metrics_cache.cache_dir() is None
    same(run_dir)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv(metrics_cache.ENV_VAR, str(blocker))
    same(run_dir)  # nothing written, no error
    assert blocker.is_file()


def test_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(metrics_cache.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert metrics_cache.cache_dir() == tmp_path / "xdg" / "real-workbench"


def rewrite(f: Path, table) -> None:
    """Replace a step file as the writer does (a new file renamed into place)."""
    import pyarrow.parquet as pq

    tmp = f.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, f)


def test_rows_are_counted_by_file_not_by_step(cache: Path, run_dir: Path) -> None:
    """Hand-made files: step 5's file holds two rows, one naming step 6, and step 6's file none. The cache
    counts rows per file, so replacing step 6's file later keeps both of step 5's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f5, f6 = step_file(run_dir, "metrics", 5), step_file(run_dir, "metrics", 6)
    t5, t6 = pq.read_table(f5), pq.read_table(f6)
    rewrite(f5, pa.concat_tables([t5, t6]))
    rewrite(f6, t6.slice(0, 0))
    same(run_dir)
    assert len(entries(cache)) == 1
    rewrite(f6, t6)
    same(run_dir)
    assert checked_metrics(open_run(run_dir)).column("step").to_pylist() == [1, 2, 3, 4, 5, 6, 6]


def test_types_merged_across_files_are_not_cached(cache: Path, run_dir: Path) -> None:
    """Two files where one column is int32 and four where it is int64: the reader widens the column for the
    whole run. Cut to the int32 files it would read int32; a cache of the merged table must not answer then."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for s in (1, 2):
        f = step_file(run_dir, "metrics", s)
        t = pq.read_table(f)
        i = t.schema.get_field_index("step")
        rewrite(f, t.set_column(i, pa.field("step", pa.int32()), t.column(i).cast(pa.int32())))
    want = open_run(run_dir).read("metrics")
    assert want.schema.field("step").type == pa.int64()
    same(run_dir)
    assert entries(cache) == []
    for s in (3, 4, 5, 6):
        step_file(run_dir, "metrics", s).unlink()
    assert open_run(run_dir).read("metrics").schema.field("step").type == pa.int32()
    same(run_dir)


def test_a_damaged_cache_entry_is_not_served(cache: Path, run_dir: Path) -> None:
    """An entry that still parses but holds a value the reader refuses (a NaN where a finite number belongs)
    is rebuilt from the step files."""
    import pyarrow as pa

    same(run_dir)
    (entry,) = entries(cache)
    table = pa.ipc.open_file(pa.py_buffer(entry.read_bytes())).read_all()
    i = table.schema.get_field_index("loss")
    bad = table.set_column(i, table.schema.field(i), pa.array([float("nan")] * table.num_rows))
    with pa.OSFile(str(entry), "wb") as f, pa.ipc.new_file(f, bad.schema) as w:
        w.write_table(bad)
    same(run_dir)


def test_prune_keeps_the_newest_half(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    monkeypatch.setattr(metrics_cache, "MAX_ENTRIES", 4)
    for k in range(6):
        p = folder / f"{k}.arrow"
        p.write_bytes(b"x")
        os.utime(p, (1_000 + k, 1_000 + k))
    stale = folder / ".0.arrow.123.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (1_000, 1_000))
    metrics_cache._prune(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["3.arrow", "4.arrow", "5.arrow"]


def test_the_runs_page_after_a_restart(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app fills the cache (one entry per run); after a restart (in-memory caches emptied) a metrics file
    damaged meanwhile is still reported on the run's card, and the good run still draws."""
    import streamlit as st

    from tests.app.conftest import make_good_root
    from tests.app.test_app_pages import open_app

    root = make_good_root(tmp_path / "runs")
    st.cache_data.clear()
    at = open_app(root, monkeypatch, "runs")
    assert len(entries(cache)) == 2
    assert not at.error
    bad = step_file(root / "grpo-s0", "metrics", 4)
    tmp = bad.with_suffix(".tmp")
    tmp.write_bytes(b"not parquet")
    os.replace(tmp, bad)
    st.cache_data.clear()
    at = open_app(root, monkeypatch, "runs")
    at.multiselect(key="runs_pick").set_value(["grpo-s0", "real-s0"]).run()
    assert not at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "grpo-s0" in errors and "step_000004" in errors and "not a readable Parquet file" in errors
    assert list(at.dataframe[0].value.index) == ["real-s0"]
