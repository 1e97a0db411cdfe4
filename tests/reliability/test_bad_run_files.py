"""Bad files in run directories: each gives a ``RunFormatError`` that names the file (and the row and field where
there is one), from the reader, the statistics and the figure CLI alike. Nothing crashes with a bare
``KeyError``/``UnicodeDecodeError``/``ArrowException``, and nothing is read as if it were fine.

Every case starts from a real run written by ``RunWriter`` (the trainer's logging path, ``edge_runs``) and
damages one file the way disks, editors and other tools do: truncated, emptied, overwritten, hand-edited JSON,
a column dropped or retyped, a value emptied, NaN or inf where the schema has none, bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.reliability.edge_runs import write_edge_run
from workbench import stats
from workbench.figures.__main__ import main as figures_main
from workbench.runlog import RunFormatError, open_run, step_file


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_edge_run(tmp_path_factory.mktemp("runs"), "real")


@pytest.fixture
def run_dir(pristine, tmp_path) -> Path:
    out = tmp_path / "runs" / pristine.name
    shutil.copytree(pristine, out)
    return out


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _with_value(table: pa.Table, name: str, row: int, value, typ=None) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return _set(table, name, pa.array(values, type=typ or table.schema.field(name).type))


def _invalid_utf8(n: int, row: int) -> pa.Array:
    """A string column whose ``row`` holds the bytes ``\\xff\\xfe`` (Arrow builds it unchecked, as a foreign
    writer would)."""
    texts = [b"fine"] * n
    texts[row] = b"\xff\xfe bad"
    offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(texts))]
    )


# ------------------------------------------------------------------------------------------------ run.json

RUN_JSON_CASES = {
    "truncated": (lambda b: b[: len(b) // 2], r"run\.json: not valid UTF-8 JSON", None),
    "empty file": (lambda b: b"", r"run\.json: not valid UTF-8 JSON", None),
    "not UTF-8": (lambda b: b.replace(b'"real"', b'"r\xe9al"', 1), r"run\.json: not valid UTF-8 JSON", None),
    "a list": (lambda b: b"[1, 2]", r"run\.json: must hold a JSON object", None),
    "missing method": (lambda b: _edit(b, method=None), r"run\.json, field 'method': missing", "method"),
    "empty method": (lambda b: _edit(b, method=""), r"run\.json, field 'method': is empty", "method"),
    "empty name": (lambda b: _edit(b, name="  "), r"run\.json, field 'name': is empty", "name"),
    "version as text": (lambda b: _edit(b, schema_version="1"), r"field 'schema_version': must be int", "schema_version"),
    "config a list": (lambda b: _edit(b, config=[]), r"field 'config': must be dict", "config"),
    "newer version": (lambda b: _edit(b, schema_version=99), r"schema version 99 is newer", "schema_version"),
}  # fmt: skip


def _edit(raw: bytes, **changes) -> bytes:
    meta = json.loads(raw)
    for k, v in changes.items():
        if v is None:
            del meta[k]
        else:
            meta[k] = v
    return json.dumps(meta).encode()


@pytest.mark.parametrize("case", list(RUN_JSON_CASES))
def test_bad_run_json(run_dir, case):
    damage, message, field = RUN_JSON_CASES[case]
    path = run_dir / "run.json"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RunFormatError, match=message) as err:
        open_run(run_dir)
    assert err.value.path == path and err.value.field == field
    with pytest.raises(RunFormatError, match=message):  # the statistics read runs through the same check
        stats.training_dynamics(run_dir)


def test_missing_run_json(run_dir):
    (run_dir / "run.json").unlink()
    with pytest.raises(RunFormatError, match="not a run directory"):
        open_run(run_dir)


@pytest.mark.parametrize(
    "content", [b"{\"state\": \"runn", b"\xff\xfe{}", b"[\"running\"]", b""], ids=["truncated", "not UTF-8", "list", "empty"]
)  # fmt: skip
def test_bad_status_json(run_dir, content):
    (run_dir / "status.json").write_bytes(content)
    with pytest.raises(RunFormatError, match=r"status\.json: ") as err:
        open_run(run_dir).status()
    assert err.value.path == run_dir / "status.json"


def test_missing_status_json_reads_as_unknown(run_dir):
    (run_dir / "status.json").unlink()
    assert open_run(run_dir).status()["state"] == "unknown"


# ------------------------------------------------------------------------------------------------ step files

STEP = 3  # the all-wrong step of the edge run


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


PARQUET_CASES: dict[str, tuple[str, Callable[[Path], None], str, str | None, int | None]] = {
    # table, damage, message, field, row
    "truncated": ("tokens", _truncate, "not a readable Parquet file", None, None),
    "zero bytes": ("rollouts", lambda p: p.write_bytes(b""), "not a readable Parquet file", None, None),
    "garbage": ("metrics", lambda p: p.write_bytes(b"PAR1" + bytes(range(256)) * 4), "not a readable Parquet file", None, None),
    "JSON instead": ("metrics", lambda p: p.write_text('{"step": 3}'), "not a readable Parquet file", None, None),
    "column missing": ("rollouts", lambda p: _rewrite(p, lambda t: t.drop_columns(["s_bar"])), "required column missing", "s_bar", None),
    "text in a float column": ("tokens", lambda p: _rewrite(p, lambda t: _set(t, "s", pa.array(["x"] * len(t)))), "has type string, expected float", "s", None),
    "float in an int column": ("rollouts", lambda p: _rewrite(p, lambda t: _set(t, "group", pa.array(np.zeros(len(t))))), "has type double, expected int32", "group", None),
    "empty reward": ("rollouts", lambda p: _rewrite(p, lambda t: _with_value(t, "reward", 5, None)), "is empty", "reward", 5),
    "empty response": ("rollouts", lambda p: _rewrite(p, lambda t: _with_value(t, "response", 2, None)), "is empty", "response", 2),
    "empty step": ("metrics", lambda p: _rewrite(p, lambda t: _with_value(t, "loss", 0, None)), "is empty", "loss", 0),
    "NaN weight": ("tokens", lambda p: _rewrite(p, lambda t: _with_value(t, "weight", 7, float("nan"))), "non-finite value nan", "weight", 7),
    "inf log_c": ("rollouts", lambda p: _rewrite(p, lambda t: _with_value(t, "log_c", 4, float("inf"))), "non-finite value inf", "log_c", 4),
    "-inf logp": ("tokens", lambda p: _rewrite(p, lambda t: _with_value(t, "logp", 0, float("-inf"))), "non-finite value -inf", "logp", 0),
    "non-UTF-8 response": ("rollouts", lambda p: _rewrite(p, lambda t: _set(t, "response", _invalid_utf8(len(t), 3))), "not valid UTF-8", "response", 3),
    "non-UTF-8 token": ("tokens", lambda p: _rewrite(p, lambda t: _set(t, "token", _invalid_utf8(len(t), 11))), "not valid UTF-8", "token", 11),
    "file gone": ("tokens", lambda p: p.unlink(), "missing \\(the step is marked complete", None, None),
}  # fmt: skip


def _reader(table: str) -> Callable:
    return {
        "metrics": lambda r: r.metrics(),
        "rollouts": lambda r: r.rollouts(),
        "tokens": lambda r: r.tokens(),
    }[table]


@pytest.mark.parametrize("case", list(PARQUET_CASES))
def test_bad_step_file(run_dir, case):
    table, damage, message, field, row = PARQUET_CASES[case]
    path = step_file(run_dir, table, STEP)
    damage(path)
    run = open_run(run_dir)
    assert STEP in run.steps()
    with pytest.raises(RunFormatError, match=message) as err:
        _reader(table)(run)
    e = err.value
    assert e.path == path and e.field == field and e.row == row
    assert str(path) in str(e)
    if row is not None:
        assert f"row {row}, field {field!r}" in str(e)
    other = [s for s in run.steps() if s != STEP]
    assert len(run.read(table, other)) > 0  # the other steps still read


@pytest.mark.parametrize("case", ["truncated", "NaN weight", "column missing", "inf log_c", "empty reward"])
def test_statistics_and_figures_name_the_bad_file(edge_suite, tmp_path, case, capsys):
    """The studies read through the same checks: a statistic raises the reader's error, and the figure CLI, given
    every variant it needs with one damaged file, exits with code 2 and a one-line message naming the file."""
    table, damage, message, _, _ = PARQUET_CASES[case]
    runs = [tmp_path / p.name for p in edge_suite]
    for src, dst in zip(edge_suite, runs, strict=True):
        shutil.copytree(src, dst)
    bad = next(r for r in runs if r.name == "real-s0")
    path = step_file(bad, table, STEP)
    damage(path)
    # a statistic and a figure that read the damaged column
    stat, figure = (
        (stats.gradient_allocation, "allocation") if table == "tokens" else (stats.real_weights, "c-dynamics")
    )
    with pytest.raises(RunFormatError, match=message):
        stat(bad, minibatches="all")
    code = figures_main([figure, "--runs", *map(str, runs), "--out-dir", str(tmp_path / "fig")])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(re.escape(str(path)) + ".*" + message, err), err


# ------------------------------------------------------------------------------------------------ checkpoints


def _logs(run_dir: Path, steps: list[int]) -> dict:
    from tests.training.conftest import machine_column

    out = {}
    for table in ("metrics", "rollouts", "tokens"):
        for step in steps:
            df = open_run(run_dir).read_every_column(table, [step])
            out[(table, step)] = df.drop(columns=[c for c in df.columns if machine_column(c)])
    return out


def test_a_damaged_checkpoint_is_named_and_passed_over_on_resume(tmp_path, capsys):
    """Checkpoints damaged after they were written (a truncated ``model.pt``, a ``meta.json`` that is not JSON):
    ``--resume`` names each one, passes over it to the newest checkpoint that loads, and redoes the later steps
    identically. When no checkpoint loads, resume stops (exit 2) naming every file instead of restarting the
    run from step 0."""
    from tests.training.conftest import small_config
    from training.cli import main as train_main
    from training.loop import Trainer
    from training.rewards import Grader

    settings = dict(warmstart=False, steps=3, batch_prompts=2, group_size=2, minibatch_prompts=1,
                    max_new_tokens=8, val_every=0, val_prompts=2, n_train=16, n_val=4, n_test=4, n_sft=4, save_every=1,
                    keep_checkpoints=3, save_final_model=False)  # fmt: skip
    out = tmp_path / "run"
    with Grader(workers=1, timeout=5.0) as grader:
        Trainer(small_config("real", tmp_path / "cache", **settings), out, grader=grader, log=print).run()
        before = _logs(out, [1, 2, 3])
        ck = out / "checkpoints"
        model3 = ck / "step_000003" / "model.pt"
        model3.write_bytes(model3.read_bytes()[:1000])
        meta2 = ck / "step_000002" / "meta.json"
        meta2.write_text('{"step": ')
        capsys.readouterr()
        cfg = small_config("real", tmp_path / "cache", **{**settings, "steps": 4})
        Trainer(cfg, out, resume=True, grader=grader, log=print).run()
    said = capsys.readouterr().out
    assert f"warning: {model3}: not a readable checkpoint file" in said, said
    assert f"warning: {meta2}: not a checkpoint's meta.json" in said, said
    assert "resuming" in said and "from step 1" in said
    run = open_run(out)
    assert run.steps() == [1, 2, 3, 4] and run.status()["state"] == "finished"
    after = _logs(out, [1, 2, 3])
    for key, df in before.items():  # the steps after the checkpoint used were redone identically
        pd.testing.assert_frame_equal(df, after[key], check_exact=True, obj=str(key))
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    bad = [e["path"] for e in events if e["event"] == "bad_checkpoint"]
    assert bad == [str(model3), str(meta2)]

    for step in (2, 3, 4):  # now every checkpoint is damaged
        (ck / f"step_{step:06d}" / "optimizer.pt").write_bytes(b"not a tensor file")
    code = train_main(["train", "--out", str(out), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "none of the 3 checkpoints loads" in err and err.count("not a readable checkpoint file") == 3
    for step in (2, 3, 4):
        assert str(ck / f"step_{step:06d}" / "optimizer.pt") in err
    assert open_run(out).steps() == [1, 2, 3, 4]  # nothing was dropped
