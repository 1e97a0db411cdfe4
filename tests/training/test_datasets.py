"""Data loaders on the shared files and on bad files; answer normalisation; prompts; several accepted answers."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.datasets import (
    BENCHMARKS,
    BUNDLED_DATA_DIR,
    PROMPT_SUFFIX,
    DataFormatError,
    fingerprint,
    load_problems,
    normalize_answer,
    resolve,
    with_suffix,
)
from training.task import Problem, encode_prompt, prompt_text
from training.tokenizer import build_chat_tokenizer, build_tokenizer

SIZES = {"aime": 30, "aime25": 30, "amc": 83, "math": 500, "minerva": 272, "olympiad_bench": 675}


# ------------------------------------------------------------------------------------------------ shared files


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_loads_in_full(shared_data, name):
    report = load_problems(shared_data / "benchmarks" / f"{name}.json")
    assert len(report.problems) == SIZES[name] and not report.skipped
    assert [p.id for p in report.problems] == list(range(SIZES[name]))
    raw = json.loads((shared_data / "benchmarks" / f"{name}.json").read_text())
    for p, row in zip(report.problems, raw, strict=True):
        assert p.prompt == f"{row['problem'].strip()}\n\n{PROMPT_SUFFIX}" and p.source == name
        assert p.answer and all(a and a == a.strip() for a in p.answers)
        assert len(set(p.answers)) == len(p.answers)


def test_the_shipped_benchmarks_are_the_shared_files(shared_data):
    for name in BENCHMARKS:
        shipped = BUNDLED_DATA_DIR / "benchmarks" / f"{name}.json"
        assert shipped.read_bytes() == (shared_data / "benchmarks" / f"{name}.json").read_bytes(), name
        assert fingerprint(shipped) in (BUNDLED_DATA_DIR / "README.md").read_text()  # the README's checksums


def test_answer_shapes_of_the_benchmarks(shared_data):
    bench = {n: load_problems(shared_data / "benchmarks" / f"{n}.json").problems for n in BENCHMARKS}
    raw = {n: json.loads((shared_data / "benchmarks" / f"{n}.json").read_text()) for n in BENCHMARKS}
    # AMC: floats written as text; AIME 2025: ints; AIME 2024: strings kept as written ('025')
    assert raw["amc"][0]["answer"] == 142.0 and bench["amc"][0].answer == "142"
    assert raw["aime25"][0]["answer"] == 70 and bench["aime25"][0].answer == "70"
    assert bench["aime"][1].answer == "025"
    # Minerva: lists of alternatives with trailing newlines; duplicates after stripping collapse
    by_raw = {tuple(r["answer"]): p for r, p in zip(raw["minerva"], bench["minerva"], strict=True)}
    assert by_raw[("0.01\n", "0.02\n")].answers == ("0.01", "0.02")
    assert by_raw[("2\n", "2")].answers == ("2",)
    distinct = [len({a.strip() for a in r["answer"]}) for r in raw["minerva"]]
    assert [len(p.answers) for p in bench["minerva"]] == distinct and sum(d > 1 for d in distinct) == 40
    # OlympiadBench: one-element lists of $...$ strings, multi-part answers kept as one answer
    ob = {r["answer"][0]: p for r, p in zip(raw["olympiad_bench"], bench["olympiad_bench"], strict=True)}
    assert ob["$69$,$84$"].answers == ("69,84",)
    assert ob["$\\frac{1}{2 n+2}$"].answers == ("\\frac{1}{2 n+2}",)
    assert all(not p.alternatives for p in bench["olympiad_bench"])


def test_the_training_files_load_and_report_their_bad_rows(shared_data):
    math_train = shared_data / "train" / "math.json"
    with pytest.raises(DataFormatError) as err:
        load_problems(math_train)
    assert err.value.row == 886 and err.value.field == "answer" and str(math_train) in str(err.value)
    report = load_problems(math_train, on_error="skip")
    assert len(report.problems) == 7470 and [e.row for e in report.skipped] == [886, 1009, 5328, 5330]
    assert "4 rows skipped" in report.summary()
    intervals = {p.answer for p in report.problems if p.answer.startswith("[")}
    assert "[-9, 9]" in intervals  # a bracket of numbers is an interval, not a list of alternatives

    dapo = load_problems(shared_data / "train" / "dapo-math-17k.parquet")
    assert len(dapo.problems) == 17398 and not dapo.skipped
    table = pq.read_table(shared_data / "train" / "dapo-math-17k.parquet", columns=["prompt", "reward_model"])
    first = table.slice(0, 1).to_pylist()[0]
    assert dapo.problems[0].prompt == first["prompt"][0]["content"].strip()  # the suffix is not added twice
    assert dapo.problems[0].prompt.count(PROMPT_SUFFIX) == 1
    assert dapo.problems[0].answer == first["reward_model"]["ground_truth"]


def test_resolve_names_and_paths(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("REAL_DATA_DIR", raising=False)  # the copy shipped in the package
    assert resolve("aime, minerva") == [
        ("aime", BUNDLED_DATA_DIR / "benchmarks" / "aime.json"),
        ("minerva", BUNDLED_DATA_DIR / "benchmarks" / "minerva.json"),
    ]
    monkeypatch.setenv("REAL_DATA_DIR", str(shared_data))  # the override
    assert resolve("aime, minerva") == [
        ("aime", shared_data / "benchmarks" / "aime.json"),
        ("minerva", shared_data / "benchmarks" / "minerva.json"),
    ]
    assert resolve(str(tmp_path / "x.jsonl")) == [("x", tmp_path / "x.jsonl")]
    with pytest.raises(ValueError, match="unknown benchmark 'aime24'"):
        resolve("aime24")


# ------------------------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (142.0, ("142",)),
        (2.5, ("2.5",)),
        (70, ("70",)),
        ("025", ("025",)),
        ("  \\frac{1}{2} ", ("\\frac{1}{2}",)),
        ("$\\frac{1}{2}$", ("\\frac{1}{2}",)),
        (["0.01\n", "0.02\n"], ("0.01", "0.02")),
        (["4", "4\n"], ("4",)),
        ("['9.6\\n']", ("9.6",)),
        ("['9.6\\n', '9.6 \\\\times 1']", ("9.6", "9.6 \\times 1")),
        (["$69$,$84$"], ("69,84",)),
        (["$(1,1), (3,2)$"], ("(1,1), (3,2)",)),
        ("[-9, 9]", ("[-9, 9]",)),
        ("[0,3)", ("[0,3)",)),
        ("\\$18.90", ("\\$18.90",)),
        ("\\$5 and \\$6", ("\\$5 and \\$6",)),
        (["", "3"], ("3",)),
    ],
)
def test_normalize_answer(value, expected):
    assert normalize_answer(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "$$",
        [],
        ["", "\n"],
        None,
        True,
        math.nan,
        math.inf,
        {"a": 1},
        [["1"]],
        [{"a": 1}, "3"],
        [None, "3"],
    ],
)
def test_normalize_answer_rejects_empty_and_foreign_values(value):
    with pytest.raises(ValueError):
        normalize_answer(value)


def test_the_suffix_is_appended_once_and_can_be_turned_off():
    assert with_suffix("What is 1+1?") == f"What is 1+1?\n\n{PROMPT_SUFFIX}"
    assert with_suffix(f"What is 1+1?\n\n{PROMPT_SUFFIX}") == f"What is 1+1?\n\n{PROMPT_SUFFIX}"
    assert with_suffix("What is 1+1? ", "") == "What is 1+1?"


def test_chat_template_wraps_prompts_when_the_tokenizer_has_one():
    problem = Problem(0, "1+1=?", "2")
    chat, plain = build_chat_tokenizer(), build_tokenizer()
    assert prompt_text(chat, "{prompt}", problem) == "<|user|>1+1=?<|end|><|assistant|>"
    assert prompt_text(chat, "{prompt}", problem, chat=False) == "1+1=?"
    assert prompt_text(plain, "{prompt}\n", problem) == "1+1=?\n"  # no template: the text as it is
    ids = encode_prompt(chat, "{prompt}", problem)
    role = chat.convert_tokens_to_ids(["<|user|>", "<|end|>", "<|assistant|>"])
    assert ids[0] == role[0] and ids[-2:] == role[1:] and len(ids) == 5 + 3  # one id per role marker


# ------------------------------------------------------------------------------------------------ bad files


def _expect(path, match: str, row: int | None = None, field: str | None = None):
    with pytest.raises(DataFormatError, match=match) as err:
        load_problems(path)
    e = err.value
    assert str(path) in str(e) and e.row == row and e.field == field, str(e)
    if row is not None:
        assert f"row {row}" in str(e)
    if field is not None:
        assert repr(field) in str(e)
    return e


def test_bad_json_files_name_file_row_and_field(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[{"problem": "a", "answer": "1"}, {"problem": "b"')
    _expect(p, "malformed JSON at line 1")
    p.write_bytes(b'[{"problem": "caf\xe9", "answer": "1"}]')
    _expect(p, "not UTF-8")
    p.write_text('{"problem": "a"}')
    _expect(p, "expected a JSON list")
    p.write_text("[]")
    _expect(p, "holds no rows")
    p.write_text("")
    _expect(p, "malformed JSON")
    rows = [{"problem": "ok", "answer": "1"}, {"problem": "no answer"}]
    p.write_text(json.dumps(rows))
    _expect(p, "missing", row=1, field="answer")
    for bad, field, match in [
        ({"answer": "1"}, "problem", "missing"),
        ({"problem": "", "answer": "1"}, "problem", "empty problem"),
        ({"problem": 7, "answer": "1"}, "problem", "must be a string"),
        ({"problem": "x", "answer": None}, "answer", "empty answer"),
        ({"problem": "x", "answer": "  "}, "answer", "empty answer"),
        ({"problem": "x", "answer": []}, "answer", "empty answer list"),
        ({"problem": "x", "answer": {"v": 1}}, "answer", "must be a number, a string or a list"),
        ({"problem": "x", "answer": True}, "answer", "not an answer"),
        ({"prompt": [{"role": "system", "content": "s"}], "answer": "1"}, "prompt", "without a user message"),
        ({"prompt": 3, "answer": "1"}, "prompt", "must be a string or a chat list"),
        ({"problem": "x", "reward_model": {"ground_truth": ""}}, "reward_model.ground_truth", "empty answer"),
    ]:
        p.write_text(json.dumps([{"problem": "ok", "answer": "1"}, bad]))
        _expect(p, match, row=1, field=field)
    p.write_text(json.dumps([{"problem": "ok", "answer": "1"}, ["not", "an", "object"]]))
    _expect(p, "must be an object", row=1)


def test_skip_counts_every_bad_row(tmp_path):
    p = tmp_path / "mixed.json"
    p.write_text(json.dumps([{"problem": "a", "answer": "1"}, {"problem": "b"}, {"problem": "c", "answer": ""},
                             {"problem": "d", "answer": 4.0}]))  # fmt: skip
    report = load_problems(p, on_error="skip")
    assert [q.id for q in report.problems] == [0, 3] and report.problems[1].answer == "4"
    assert [(e.row, e.field) for e in report.skipped] == [(1, "answer"), (2, "answer")]
    assert report.rows == 4 and "2 rows skipped" in report.summary()
    p.write_text(json.dumps([{"problem": "b"}]))
    with pytest.raises(DataFormatError, match="no usable row"):
        load_problems(p, on_error="skip")


def test_bad_jsonl_rows_are_named_by_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"problem": "a", "answer": "1"}\n\n{"problem": "b", "answer": \n'
                  b'{"problem": "c\xff", "answer": "2"}\n{"problem": "d", "answer": "3"}\n')  # fmt: skip
    _expect(p, "malformed JSON", row=2)
    report = load_problems(p, on_error="skip")
    assert [q.id for q in report.problems] == [0, 4]
    assert [e.row for e in report.skipped] == [2, 3] and "not UTF-8" in str(report.skipped[1])


def test_bad_parquet_files(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table(
            {"prompt": [[{"role": "user", "content": "1+1?"}]], "reward_model": [{"ground_truth": "2"}]}
        ),
        good,
    )
    assert load_problems(good).problems[0].answer == "2"
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect(truncated, "not a readable Parquet file")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"\xff\xfe not parquet at all")
    _expect(garbage, "not a readable Parquet file")
    no_answer = tmp_path / "no_answer.parquet"
    pq.write_table(pa.table({"problem": ["x", "y"], "other": [1, 2]}), no_answer)
    _expect(no_answer, "missing", row=0, field="answer")
    typed = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"problem": ["x", "y"], "answer": [1.5, None]}), typed)
    _expect(typed, "empty answer", row=1, field="answer")


def test_unreadable_paths(tmp_path):
    _expect(tmp_path / "absent.json", "no such file")
    _expect(tmp_path, "not a file")
    other = tmp_path / "x.csv"
    other.write_text("problem,answer\n")
    _expect(other, "unknown format")


# ------------------------------------------------------------------------------------------------ grading


def test_the_grader_accepts_any_of_several_answers(grader):
    responses = ["so \\boxed{0.02}", "so \\boxed{0.01}", "so \\boxed{0.03}", "so \\boxed{0.02}"]
    golds = [("0.01", "0.02"), ("0.01", "0.02"), ("0.01", "0.02"), "0.01"]
    assert grader.grade(responses, golds).rewards == [1.0, 1.0, 0.0, 0.0]
    # a one-element tuple is the plain answer (same cache entry), a list works like a tuple
    report = grader.grade(["so \\boxed{0.02}", "so \\boxed{0.01}"], [("0.01",), ["0.01", "0.02"]])
    assert report.rewards == [0.0, 1.0] and report.cache_hits == 2
    with pytest.raises(ValueError, match="answer 0"):
        grader.grade(["x"], [()])
    with pytest.raises(ValueError, match="answer 0"):
        grader.grade(["x"], [("1", 2)])


def test_problem_gold_is_the_answer_or_the_tuple():
    assert Problem(0, "p", "1").gold == "1"
    p = Problem(0, "p", "1", alternatives=("1.0", "one"))
    assert p.gold == ("1", "1.0", "one") and p.answers == p.gold
