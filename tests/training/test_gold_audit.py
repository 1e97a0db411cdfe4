"""The gold audit (``training.gold_audit``) with the real grader: verdicts on the shipped golds quoted in issue 18,
before and after gold normalisation, its cache, ``audit_rows`` and its columns in ``check-data``."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from tests.training.conftest import run_main
from training.datacheck import format_results, run_check
from training.gold_audit import (
    ARGUABLE,
    FLAGGED,
    PASS,
    audit_problems,
    audit_rows,
    cache_key,
    gold_value,
    probe_answers,
)
from training.grader_config import GraderConfig
from training.rewards import Grader
from training.task import Problem

RAW = GraderConfig(normalize_gold=False)
OLY_SET = "(-\\infty, 0) \\cup\\{1\\}."
OLY_PROSE = ("f(x)=a x+b, where b is an arbitrary integer, and a is an arbitrary positive integer with "
             "\\mho(a)=0")  # fmt: skip
MINERVA_264 = "\\hbar \\omega(v+1 / 2)-\\frac{E_{0}^{2} e^{2}}{2 m \\omega^{2}}"

# (row, gold, verdict with the paper's grader, kind) - rows as in the shipped files where the gold comes from one
GOLDS = [
    (76, OLY_SET, PASS, ""),  # OlympiadBench: accepted \boxed{0} before the period was removed
    (73, OLY_PROSE, PASS, ""),  # OlympiadBench: accepted \boxed{0} through its last equation
    (117, "6m", ARGUABLE, "unit_letter"),  # OlympiadBench: m is the problem's variable
    (
        285,
        "-2,-2",
        FLAGGED,
        "accepts_other_value",
    ),  # OlympiadBench "determine a and b": parsed as the set {-2}
    (198, "10,\\!080", PASS, ""),  # MATH500: accepts 10080, its own value
    (30, "52_8", ARGUABLE, "base_subscript"),  # MATH500
    (264, MINERVA_264, FLAGGED, "accepts_other_value"),  # Minerva: math-verify parses it as 2
    (900, "7\\text{ hours}.", PASS, ""),  # MATH train: a unit and a full stop
    (901, "f(x)=1", PASS, ""),  # accepts 1, the equation's value
    (902, "\\text{}", FLAGGED, "refuses_itself"),  # nothing math-verify can read
]


def problems_of(golds) -> list[Problem]:
    return [Problem(row, "p", gold) for row, gold, *_ in golds]


def test_probes_of_a_gold():
    assert probe_answers(OLY_SET, GraderConfig()) == {"0": "0", "1": "1", "-1": "-1", "empty": ""}
    assert probe_answers("2\\sqrt{3}+5", GraderConfig()) == {
        "0": "0", "1": "1", "-1": "-1", "first": "2", "last": "5", "empty": ""}  # fmt: skip
    hours = probe_answers("7\\text{ hours}.", GraderConfig())  # words dropped: "7", the first number again
    assert hours == {"0": "0", "1": "1", "-1": "-1", "first": "7", "empty": ""}
    assert "words" in probe_answers(OLY_PROSE, RAW) and "words" not in probe_answers(
        OLY_PROSE, GraderConfig()
    )


def test_gold_value_sets_units_and_left_sides_aside():
    assert gold_value("7\\text{ hours}") == 7 and gold_value("864 \\mbox{ inches}^2") == 864
    assert gold_value("\\$32348") == 32348 and gold_value("30^\\circ") == 30 and gold_value("+2") == 2
    assert gold_value("x=-\\frac{1}{2}") == Fraction(-1, 2) and gold_value("\\frac{270}7") == Fraction(270, 7)
    assert gold_value("f(x)=1") == 1 and gold_value("2.5\\%") == Fraction(5, 2)
    for not_a_number in ("6m", "2\\sqrt{2}", "-2,-2", OLY_SET, "52_8"):
        assert gold_value(not_a_number) is None, not_a_number


def test_verdicts_on_the_quoted_golds(grader):
    res = audit_problems(problems_of(GOLDS), grader, cache_dir=None)
    got = {f["row"]: f for f in res.findings}
    for row, _gold, verdict, kind in GOLDS:
        if verdict == PASS:
            assert row not in got, got.get(row)
        else:
            assert (got[row]["verdict"], got[row]["kind"]) == (verdict, kind), got[row]
    assert got[117]["accepted"] == {"first": "6"} and got[30]["accepted"] == {"first": "52"}
    assert got[264]["accepted"] == {"last": "2"} and got[264]["parsed"].startswith("2;")
    assert res.counts == {PASS: 5, ARGUABLE: 2, FLAGGED: 3, "unaudited": 0}
    assert res.flagged_rows == [264, 285, 902]


def test_without_normalisation_the_two_false_positives_are_flagged(grader):
    res = audit_problems(problems_of(GOLDS[:2] + GOLDS[4:5]), grader, config=RAW, cache_dir=None)
    got = {f["row"]: f for f in res.findings}
    assert sorted(got) == [73, 76]  # 10,\!080 accepting 10080 is its own value either way
    for row in (73, 76):
        assert got[row]["verdict"] == FLAGGED and got[row]["accepted"] == {"0": "0"}
        assert got[row]["parsed"].startswith("0;")


def test_audit_is_cached_by_file_digest_and_settings(grader, tmp_path):
    data = tmp_path / "golds.jsonl"
    data.write_text("".join(json.dumps({"problem": "p", "answer": g}) + "\n" for _, g, *_ in GOLDS[:4]))
    from training.datasets import load_problems

    problems = load_problems(data).problems
    first = audit_problems(problems, grader, path=data, cache_dir=tmp_path / "cache")
    assert not first.cached and list((tmp_path / "cache" / "gold_audit").glob("*.json"))
    with Grader(workers=1) as closed:
        closed.close()  # a cached audit grades nothing: a closed grader would raise
        again = audit_problems(problems, closed, path=data, cache_dir=tmp_path / "cache")
        assert audit_rows(problems, closed, path=data, cache_dir=tmp_path / "cache") == [3]
    assert again.cached and again.findings == first.findings and again.counts == first.counts
    assert cache_key(problems, RAW, data) != cache_key(problems, GraderConfig(), data)
    before = cache_key(problems, GraderConfig(), data)
    data.write_text(data.read_text() + "\n")  # same golds, other bytes: the file digest changes
    assert cache_key(problems, GraderConfig(), data) != before


def test_check_data_shows_the_audit_columns_and_findings(grader, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # check-data caches under ./cache
    data = tmp_path / "golds.jsonl"
    data.write_text("".join(json.dumps({"problem": "p", "answer": g}) + "\n" for _, g, *_ in GOLDS[:4]))
    results, _ = run_check([str(data)], workers=1, cache_dir=None)
    table = format_results(results)
    assert "audit pass" in table.splitlines()[0] and "flagged" in table.splitlines()[0]
    assert results[0].audit["counts"] == {PASS: 2, ARGUABLE: 1, FLAGGED: 1, "unaudited": 0}
    assert not results[0].audit_ok and results[0].self_ok
    assert (
        "golds.jsonl: row 3: gold audit flagged (accepts_other_value): gold '-2,-2' accepted \\boxed{-2}"
        in table
    )
    assert "golds.jsonl: row 2: gold audit arguable (unit_letter)" in table
    r = run_main(["check-data", str(data)], capsys)
    assert "gold audit flagged (accepts_other_value)" in r.stdout
    assert list((tmp_path / "cache" / "gold_audit").glob("*.json"))  # the CLI's default cache root


# MATH train golds the audit flags (docs/data.md): a ratio read as its first term, a matrix with \phantom, a
# \frac without braces read as 2, a plane's equation read as its right side, two equal angles read as one.
MATH_TRAIN_FLAGGED = {3130: "3:1", 6768: None, 6792: "2007 + \\frac\\pi 2", 7200: "x + y + z = 0",
                      7297: "75^\\circ, 75^\\circ"}  # fmt: skip


@pytest.mark.slow
def test_training_sets_pass_the_audit_or_are_listed(shared_data, tmp_path):
    """DAPO-Math-17K (17,398 golds, 2,251 distinct) passes whole; MATH train's golds pass but for the listed ones
    (about 2 minutes on 2 shared cores, most of it MATH train)."""
    from training.datasets import load_problems

    train = shared_data / "train"
    with Grader(workers=2) as g:
        dapo = audit_problems(load_problems(train / "dapo-math-17k.parquet").problems, g, cache_dir=tmp_path)
        math = load_problems(train / "math.json", on_error="skip").problems
        res = audit_problems(math, g, path=train / "math.json", cache_dir=tmp_path)
    assert (
        dapo.counts == {PASS: 17_398, ARGUABLE: 0, FLAGGED: 0, "unaudited": 0} and dapo.distinct_golds == 2251
    )
    flagged = {f["row"]: f["gold"] for f in res.findings if f["verdict"] == FLAGGED}
    assert sorted(flagged) == sorted(MATH_TRAIN_FLAGGED)
    assert all(gold == MATH_TRAIN_FLAGGED[row] for row, gold in flagged.items() if MATH_TRAIN_FLAGGED[row])
    arguable = [f for f in res.findings if f["verdict"] == ARGUABLE]
    assert {f["kind"] for f in arguable} == {"unit_letter", "base_subscript"} and len(arguable) == 39
    assert res.counts[PASS] == len(math) - 44


def test_screen_problems_refuses_or_skips_flagged_golds(grader, tmp_path):
    from training.datasets import DataFormatError
    from training.gold_audit import screen_problems

    problems = problems_of(GOLDS[:4])  # row 285 '-2,-2' is flagged, 117 '6m' only arguable
    with pytest.raises(DataFormatError) as err:
        screen_problems(problems, grader, path="data.jsonl", cache_dir=tmp_path)
    assert str(err.value).startswith(
        "data.jsonl: the gold audit flags 1 gold answer(s) (first: row 285 '-2,-2' accepts \\boxed{-2}: "
    ) and str(err.value).endswith("; --bad-rows skip leaves them out")
    kept, info = screen_problems(problems, grader, bad_rows="skip", cache_dir=tmp_path)
    assert [p.id for p in kept] == [76, 73, 117] and info["flagged_rows"] == [285] and info["skipped"] == 1
    assert info["cached"] and info["counts"][ARGUABLE] == 1  # the second call read the first one's audit
    with pytest.raises(ValueError, match="bad_rows must be"):
        screen_problems(problems, grader, bad_rows="drop")
