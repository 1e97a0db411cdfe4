"""Gold normalisation (``training.gold``): each rule on the real gold answers that needed it, and the grader's
verdicts on them before (``normalize_gold=False``) and after."""

from __future__ import annotations

import pytest

from training.datasets import load_problems
from training.gold import explain_gold, normalize_gold, numbers, prose_words, words_dropped
from training.grader_config import GraderConfig

RAW = GraderConfig(normalize_gold=False)

OLY_SET = "(-\\infty, 0) \\cup\\{1\\}."  # OlympiadBench row 76
OLY_PROSE = ("f(x)=a x+b, where b is an arbitrary integer, and a is an arbitrary positive integer with "
             "\\mho(a)=0")  # fmt: skip  # OlympiadBench row 73 (its $...$ removed by the loader)


@pytest.mark.parametrize(
    "gold, normalised, rules",
    [
        (OLY_SET, "(-\\infty, 0) \\cup\\{1\\}", ["trailing_punctuation"]),
        (OLY_PROSE, "f(x)=a x+b", ["prose_after_formula"]),
        ("10,\\! 080", "10080", ["thousands_separator"]),  # as quoted in the issue
        ("10,\\!080", "10080", ["thousands_separator"]),  # MATH500 row 198
        ("11,\\! 111,\\! 111,\\! 100", "11111111100", ["thousands_separator"]),  # MATH500 row 217
        ("\\$32,\\!348", "\\$32348", ["thousands_separator"]),  # MATH500 row 242
        ("10{,}080", "10080", ["thousands_separator"]),
        ("\\text{(E)},", "\\text{(E)}", ["trailing_punctuation"]),  # MATH train
        ("7\\text{ hours}.", "7\\text{ hours}", ["trailing_punctuation"]),  # MATH train
        ("x \\in [1,2] for all x.", "x \\in [1,2]", ["prose_after_formula"]),
        # left alone: a plain-comma triple, a pair of numbers, an ellipsis, a letter, words inside \text{}
        ("(2,251,252)", "(2,251,252)", []),
        ("2500,7500", "2500,7500", []),
        ("1, 2, \\ldots", "1, 2, \\ldots", []),
        ("1, 2, 3, ...", "1, 2, 3, ...", []),
        ("6m", "6m", []),
        ("5\\text{ for each}", "5\\text{ for each}", []),
        ("\\frac{1}{2}", "\\frac{1}{2}", []),
    ],
)
def test_rules_on_real_golds(gold, normalised, rules):
    assert explain_gold(gold) == (normalised, rules)
    assert normalize_gold(gold) == normalised
    assert normalize_gold(normalised) == normalised  # idempotent


def test_helpers_that_build_the_audit_probes():
    assert prose_words(OLY_PROSE)[:3] == ["where", "is", "an"] and prose_words("\\text{where} x+1") == []
    assert prose_words("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}") == []
    assert numbers("10,\\! 080") == ["10080"] and numbers("-3+2.5x") == ["-3", "2.5"]
    assert words_dropped("7\\text{ hours}") == "7"
    assert words_dropped(OLY_PROSE) == "f(x)=a x+b, b , a \\mho(a)=0"
    assert (
        words_dropped("\\begin{pmatrix} 4 \\\\ -3 \\end{pmatrix}")
        == "\\begin{pmatrix} 4 \\\\ -3 \\end{pmatrix}"
    )


@pytest.mark.parametrize(
    "gold, response, raw, normalised",
    [
        (OLY_SET, "\\boxed{0}", 1.0, 0.0),  # the false positive: with the period the gold parsed as 0
        (OLY_SET, "\\boxed{(-\\infty, 0) \\cup \\{1\\}}", 0.0, 1.0),  # and the right answer was refused
        (OLY_PROSE, "\\boxed{0}", 1.0, 0.0),  # the false positive: the gold parsed as \mho(a)=0's right side
        (OLY_PROSE, "\\boxed{f(x)=ax+b}", 0.0, 1.0),
        (
            "10,\\! 080",
            "\\boxed{10080}",
            1.0,
            1.0,
        ),  # math-verify read the separator already: correct both ways
        ("11,\\! 111,\\! 111,\\! 100", "\\boxed{11111111100}", 1.0, 1.0),
        ("10,\\! 080", "\\boxed{10}", 0.0, 0.0),
        ("6m", "\\boxed{6}", 1.0, 1.0),  # no rule: math-verify reads m as metres (the audit lists it)
    ],
)
def test_grader_verdicts_before_and_after(grader, gold, response, raw, normalised):
    assert grader.grade([response], [gold], config=RAW).rewards == [raw]
    assert grader.grade([response], [gold]).rewards == [normalised]


def test_the_quoted_golds_are_the_shipped_ones(shared_data, grader):
    """The cases above are the shipped data's, read by the loader; graded now, the two false positives are gone."""
    oly = {p.id: p for p in load_problems(shared_data / "benchmarks" / "olympiad_bench.json").problems}
    math500 = {p.id: p for p in load_problems(shared_data / "benchmarks" / "math.json").problems}
    assert oly[76].answers == (OLY_SET,) and oly[73].answers == (OLY_PROSE,) and oly[117].answers == ("6m",)
    assert math500[198].answers == ("10,\\!080",) and math500[217].answers == ("11,\\! 111,\\! 111,\\! 100",)
    golds = [oly[76].gold, oly[73].gold, math500[198].gold, math500[217].gold]
    assert grader.grade(["\\boxed{0}"] * 4, golds).rewards == [0.0] * 4
    assert grader.grade(["\\boxed{0}"] * 2, golds[:2], config=RAW).rewards == [1.0, 1.0]
