"""Bad data files for the trainer and the evaluator (``training.datasets.load_problems``).

Every damage to a JSON, JSONL or Parquet file of problems gives either a ``DataFormatError`` naming the file,
the row and the field (``on_error="raise"``), or a counted skip of exactly the bad rows, each skip naming its
row and field, with every good row still loaded (``on_error="skip"``). Damage to the file as a whole (truncated,
not UTF-8 where the format cannot say which row) is an error naming the file and where it broke, in both
modes. Nothing is dropped silently and nothing crashes with a bare ``KeyError``/``UnicodeDecodeError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

datasets = pytest.importorskip(
    "training.datasets", reason="training.datasets (the real-data loaders) not merged yet"
)
DataFormatError = datasets.DataFormatError
load_problems = datasets.load_problems

GOOD = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(6)]

# name -> (row index, replacement row, field the error must name)
ROW_CASES = {
    "missing answer": (3, {"problem": "What is 3 + 3?"}, "answer"),
    "missing problem": (1, {"answer": "2"}, "problem"),
    "empty answer": (2, {"problem": "x?", "answer": "  "}, "answer"),
    "null answer": (4, {"problem": "x?", "answer": None}, "answer"),
    "empty problem": (0, {"problem": "", "answer": "1"}, "problem"),
    "answer of the wrong type": (5, {"problem": "x?", "answer": {"value": 3}}, "answer"),
    "problem of the wrong type": (2, {"problem": 17, "answer": "1"}, "problem"),
    "answer list of lists": (1, {"problem": "x?", "answer": [["1"], ["2"]]}, "answer"),
    "empty answer list": (3, {"problem": "x?", "answer": []}, "answer"),
}


def _rows(case: str) -> tuple[list, int, str]:
    i, bad, field = ROW_CASES[case]
    rows = [dict(r) for r in GOOD]
    rows[i] = bad
    return rows, i, field


def _write(path: Path, rows: list) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        # answers of mixed shapes cannot share one Parquet column type: store them as JSON text there
        norm = [{k: (v if isinstance(v, str | None) else json.dumps(v)) for k, v in r.items()} for r in rows]
        cols = sorted({k for r in norm for k in r})
        pq.write_table(
            pa.table({c: pa.array([r.get(c) for r in norm], type=pa.string()) for c in cols}), path
        )
    return path


def check_error(e: DataFormatError, path: Path, row: int | None, field: str | None) -> None:
    assert e.path == path and e.row == row and e.field == field, (e.path, e.row, e.field, str(e))
    text = str(e)
    assert str(path) in text
    if row is not None:
        assert f"row {row}" in text
    if field is not None:
        assert repr(field) in text


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("case", list(ROW_CASES))
def test_a_bad_row_is_named_or_skipped_and_counted(tmp_path, suffix, case):
    rows, i, field = _rows(case)
    path = _write(tmp_path / f"data{suffix}", rows)
    with pytest.raises(DataFormatError) as err:
        load_problems(path)
    check_error(err.value, path, i, field)
    report = load_problems(path, on_error="skip")
    assert [p.id for p in report.problems] == [k for k in range(len(rows)) if k != i]
    assert len(report.skipped) == 1
    check_error(report.skipped[0], path, i, err.value.field)


@pytest.mark.parametrize("case", ["missing answer", "empty answer", "null answer", "empty problem"])
def test_a_bad_parquet_row_is_named_or_skipped_and_counted(tmp_path, case):
    rows, i, field = _rows(case)
    path = _write(tmp_path / "data.parquet", rows)
    with pytest.raises(DataFormatError) as err:
        load_problems(path)
    check_error(err.value, path, i, field)
    report = load_problems(path, on_error="skip")
    assert len(report.problems) == len(rows) - 1 and [e.row for e in report.skipped] == [i]


def test_jsonl_lines_that_are_not_json_or_not_utf8_are_rows(tmp_path):
    lines = [json.dumps(r).encode() for r in GOOD]
    lines[1] = b'{"problem": "x?", "answer": '  # truncated line
    lines[3] = '{"problem": "caf\u00e9?", "answer": "1"}'.encode("latin-1")  # not UTF-8
    lines[4] = b"[1, 2, 3]"  # not an object
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataFormatError) as err:
        load_problems(path)
    check_error(err.value, path, 1, None)
    report = load_problems(path, on_error="skip")
    assert [p.id for p in report.problems] == [0, 2, 5]
    assert [e.row for e in report.skipped] == [1, 3, 4]
    assert "UTF-8" in str(report.skipped[1])


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_file_broken_as_a_whole_names_the_file_and_where(tmp_path, on_error):
    full = json.dumps(GOOD).encode()
    cases = {
        "truncated.json": (full[: len(full) // 2], r"malformed JSON at line 1, column \d+"),
        "latin1.json": (
            full.replace(b"What", "Wh\u00e4t".encode("latin-1"), 1),
            r"not UTF-8 text \(byte \d+",
        ),
        "object.json": (b'{"problem": "x", "answer": "1"}', "expected a JSON list"),
        "empty.json": (b"", "malformed JSON"),
        "deep.json": (b"[" * 100_000 + b"]" * 100_000, "malformed JSON|nested too deeply|row 0"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataFormatError, match=message) as err:
            load_problems(path, on_error=on_error)
        assert err.value.path == path and str(path) in str(err.value)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_truncated_or_foreign_parquet_file_is_named(tmp_path, on_error):
    good = _write(tmp_path / "good.parquet", GOOD)
    data = good.read_bytes()
    for name, content in {
        "cut.parquet": data[: len(data) // 2],
        "zero.parquet": b"",
        "text.parquet": b"a,b\n1,2",
    }.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataFormatError, match="not a readable Parquet file") as err:
            load_problems(path, on_error=on_error)
        assert err.value.path == path


def _raw_strings(texts: list[bytes]) -> pa.Array:
    """A string array holding ``texts`` as they are (pyarrow would refuse bytes that are not UTF-8)."""
    offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(texts), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(texts))]
    )


@pytest.mark.parametrize("layout", ["flat", "verl"])
def test_non_utf8_text_in_a_parquet_file_is_named_with_its_row_and_field(tmp_path, layout):
    """A foreign writer can store bytes that are not UTF-8 in a string column, flat (``problem``) or nested in a
    verl chat list (``prompt[0].content``): the row and the top-level column are named, and with
    ``on_error="skip"`` that row alone is skipped."""
    texts = [r["problem"].encode() for r in GOOD]
    texts[2] = b"caf\xe9?"
    if layout == "flat":
        columns = {"problem": _raw_strings(texts), "answer": [r["answer"] for r in GOOD]}
        field = "problem"
    else:
        chat = pa.StructArray.from_arrays(
            [pa.array(["user"] * len(texts)), _raw_strings(texts)], names=["role", "content"]
        )
        prompt = pa.ListArray.from_arrays(pa.array(range(len(texts) + 1), type=pa.int32()), chat)
        gold = pa.StructArray.from_arrays([pa.array([r["answer"] for r in GOOD])], names=["ground_truth"])
        columns = {"data_source": ["x"] * len(texts), "prompt": prompt, "reward_model": gold}
        field = "prompt"
    path = tmp_path / "latin1.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(DataFormatError, match=r"not UTF-8 text \(byte \d+") as err:
        load_problems(path)
    check_error(err.value, path, 2, field)
    report = load_problems(path, on_error="skip")
    assert [p.id for p in report.problems] == [0, 1, 3, 4, 5] and [e.row for e in report.skipped] == [2]
    assert report.problems[1].prompt.startswith(GOOD[1]["problem"])


def test_a_file_with_no_usable_row_is_an_error_even_when_skipping(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [{"problem": "x"}] * 3)
    with pytest.raises(DataFormatError, match="all 3 rows are bad"):
        load_problems(path, on_error="skip")
