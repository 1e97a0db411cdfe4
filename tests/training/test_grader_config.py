"""``GraderConfig``: validation, round trip, and for each setting a case written for it whose verdict it changes
(graded by the real grader: math-verify in worker processes)."""

from __future__ import annotations

import json

import pytest

from training.grader_config import EXTRACTIONS, GraderConfig
from training.rewards import OK, TIMEOUT, Grader, grade, last_boxed


def test_defaults_are_the_paper_grader_and_round_trip_through_json():
    cfg = GraderConfig()
    assert (cfg.extraction, cfg.float_rounding, cfg.set_relation, cfg.strict, cfg.timeout) == (
        "latex", 6, False, True, 5.0)  # fmt: skip
    assert cfg.normalize_gold and cfg.describe() == "paper defaults"
    other = GraderConfig(extraction="latex+expr", float_rounding=3, set_relation=True, strict=False,
                         timeout=2, normalize_gold=False)  # fmt: skip
    for c in (cfg, other):
        assert GraderConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert other.timeout == 2.0 and isinstance(other.timeout, float)
    assert "extraction='latex+expr'" in other.describe() and "timeout=2.0" in other.describe()
    assert GraderConfig.from_dict({"strict": False}) == GraderConfig(strict=False)  # older records: defaults
    assert GraderConfig.from_dict(None) == cfg
    assert set(EXTRACTIONS) == {"boxed", "latex", "latex+expr"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"extraction": "plain"}, "extraction must be one of boxed, latex, latex\\+expr, got 'plain'"),
        ({"float_rounding": 2.5}, "float_rounding must be an int"),
        ({"float_rounding": True}, "float_rounding must be an int"),
        ({"float_rounding": -1}, "float_rounding must be in 0..15"),
        ({"set_relation": "yes"}, "set_relation must be true or false"),
        ({"strict": 1}, "strict must be true or false"),
        ({"normalize_gold": None}, "normalize_gold must be true or false"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0"),
        ({"timeout": float("nan")}, "timeout must be a number"),
        ({"timeout": "5"}, "timeout must be a number"),
    ],
)
def test_bad_settings_fail_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GraderConfig(**kwargs)


def test_from_dict_refuses_unknown_settings_and_non_mappings():
    with pytest.raises(ValueError, match="unknown grader setting\\(s\\) rounding; known: extraction"):
        GraderConfig.from_dict({"rounding": 3})
    with pytest.raises(ValueError, match="must be a mapping, got list"):
        GraderConfig.from_dict([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="config must be a GraderConfig"):
        Grader(workers=1, config={"strict": False})  # type: ignore[arg-type]


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        GraderConfig().strict = False  # type: ignore[misc]


# Each row: (setting, gold, response, verdict with the default, the changed config, verdict with it).
CASES = [
    ("extraction boxed", "18", "The answer is $18$.", 1.0, GraderConfig(extraction="boxed"), 0.0),
    ("extraction latex+expr", "18", "the answer is 18", 0.0, GraderConfig(extraction="latex+expr"), 1.0),
    ("float_rounding", "3.14159", "\\boxed{3.1416}", 0.0, GraderConfig(float_rounding=3), 1.0),
    ("set_relation", "(-\\infty,3)", "\\boxed{x<3}", 0.0, GraderConfig(set_relation=True), 1.0),
    ("strict", "x+1", "\\boxed{y+1}", 0.0, GraderConfig(strict=False), 1.0),
    (
        "normalize_gold",
        "(-\\infty, 0) \\cup\\{1\\}.",
        "\\boxed{0}",
        0.0,
        GraderConfig(normalize_gold=False),
        1.0,
    ),
]


@pytest.mark.parametrize("name, gold, response, default, changed, verdict", CASES, ids=[c[0] for c in CASES])
def test_each_setting_changes_the_verdict_on_its_case(
    grader, name, gold, response, default, changed, verdict
):
    assert grader.grade([response], [gold]).rewards == [default]
    assert grader.grade([response], [gold], config=changed).rewards == [verdict]
    # the cache keys on the settings: the same pair again under each config keeps its own verdict
    again = grader.grade([response, response], [gold, gold])
    assert again.rewards == [default, default] and again.cache_hits == 2
    assert grade([response], [gold], config=changed) == [verdict]


def test_a_grader_built_with_a_config_uses_it_by_default():
    with Grader(workers=1, config=GraderConfig(extraction="latex+expr")) as g:
        assert g.grade(["the answer is 18"], ["18"]).rewards == [1.0]
        assert g.grade(["the answer is 18"], ["18"], config=GraderConfig()).rewards == [0.0]
        assert g.config.extraction == "latex+expr" and g.timeout == 5.0
    with Grader(workers=1, timeout=3.0, config=GraderConfig(strict=False)) as g:
        assert g.config == GraderConfig(strict=False, timeout=3.0)  # an explicit timeout wins


def test_timeout_setting_changes_the_verdict_on_a_slow_comparison():
    """``4^{2^{25}}`` against ``2^{2^{26}}`` builds two 67-million-bit integers (about 1 s here): correct with time
    to finish, a timeout (reward 0, the worker's own timer or a kill) with 0.2 s."""
    gold, response = "2^{2^{26}}", "\\boxed{4^{2^{25}}}"
    with Grader(workers=1) as g:
        short = g.grade([response], [gold], config=GraderConfig(timeout=0.2))
        long = g.grade([response], [gold], config=GraderConfig(timeout=60))
    assert short.rewards == [0.0] and short.status == [TIMEOUT]
    assert long.rewards == [1.0] and long.status == [OK]


def test_boxed_extraction_reads_the_last_balanced_box():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\boxed{\\frac{1}{2}}"
    assert last_boxed("\\fbox{3} then \\boxed{4}") == "\\boxed{4}"
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None
    responses = ["\\boxed{17} no wait, \\boxed{18}", "\\boxed{18} no wait, \\boxed{17}"]
    assert grade(responses, ["18", "18"], config=GraderConfig(extraction="boxed")) == [1.0, 0.0]


def test_trl_style_reward_function_grades_with_its_config():
    from training.rewards import reward_function

    plain = reward_function(GraderConfig(extraction="latex+expr"))
    chat = [[{"role": "assistant", "content": "the answer is 18"}], "\\boxed{17}"]
    assert plain(prompts=["p", "q"], completions=chat, answer=["18", "18"]) == [1.0, 0.0]
    assert reward_function()(completions=chat, answer=["18", "18"]) == [0.0, 0.0]  # the paper's: LaTeX only
    assert plain.__name__ == "math_verify_latex_expr" and plain.grader_config["extraction"] == "latex+expr"
    assert reward_function()(completions=["\\boxed{0.5}"], answer=[["1/3", "0.5"]]) == [1.0]  # alternatives
    with pytest.raises(ValueError, match="needs completions and the data set's 'answer' column"):
        plain(completions=["x"], solution=["1"])
