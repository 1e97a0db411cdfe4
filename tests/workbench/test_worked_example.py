"""workbench.worked_example: GRPO and REAL weights of one group, and the appendix erratum."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.worked_example import group_weights, rollout_arithmetic


def test_real_weights_equal_autograd_and_the_appendix_does_not() -> None:
    df = group_weights([0.3, -0.6, 0.5, -0.2, 0.1], [True, True, False, False, False], tau=0.5)
    np.testing.assert_allclose(df["real_weight"], df["real_autograd"], rtol=1e-12, atol=1e-14)
    assert (np.abs(df["appendix_weight"] - df["real_autograd"]) > 1e-3).all()
    assert (df["real_weight"] <= 2.0).all()
    # by hand, rollout 1 (correct, s=-0.6): C+ = 1 + e^{-0.3/0.5}, W = 2 / (1 + C+ e^{-0.6/0.5})
    c = 1 + np.exp(-0.6)
    assert df.loc[1, "c"] == pytest.approx(c)
    assert df.loc[1, "real_weight"] == pytest.approx(2 / (1 + c * np.exp(-1.2)))


def test_grpo_weights_follow_eq3() -> None:
    df = group_weights([0.1, 0.5, -0.1], [True, False, False], eps_low=0.2, eps_high=0.2)
    a = df["advantage"].to_numpy()
    assert a[0] > 0 > a[1]
    assert df.loc[0, "grpo_weight"] == pytest.approx(abs(a[0]) * np.exp(0.1))
    assert df.loc[1, "grpo_weight"] == pytest.approx(abs(a[1]) * np.exp(0.5))  # A < 0 is never clipped high
    df2 = group_weights([0.5, 0.0], [True, False])
    assert df2.loc[0, "grpo_weight"] == 0.0  # A > 0 with ratio e^0.5 > 1.2: clipped


def test_single_label_groups_carry_no_weight() -> None:
    df = group_weights([0.2, -0.3], [True, True])
    assert (df["real_weight"] == 0).all() and (df["grpo_weight"] == 0).all() and not df["used"].any()
    assert (df["appendix_weight"] == 0).all()  # the appendix column agrees: the group is left out
    with pytest.raises(ValueError):
        group_weights([0.1], [True, False])


S_BAR, LABELS = [0.3, -0.6, 0.5, -0.2, 0.1], [True, True, False, False, False]


@pytest.mark.parametrize("method", ["real", "real_bce", "real_no_anchor"])
def test_rollout_arithmetic_terms_add_up_to_the_closed_form(method: str) -> None:
    for k in range(len(S_BAR)):
        a = rollout_arithmetic(S_BAR, LABELS, k, method, {"tau": 0.5})
        assert a.c_from_terms == pytest.approx(a.c, rel=1e-12)
        assert a.weight_from_terms == pytest.approx(a.weight, rel=1e-12)
        assert a.sign == (1 if LABELS[k] else -1)


def test_rollout_arithmetic_by_hand() -> None:
    # wrong rollout 2 (s = 0.5): C- = 1 + e^{-0.2/0.5} + e^{0.1/0.5}; exponent -s/tau
    a = rollout_arithmetic(S_BAR, LABELS, 2, "real", {"tau": 0.5})
    c = 1 + np.exp(-0.4) + np.exp(0.2)
    assert [i for i, *_ in a.same] == [3, 4] and a.c == pytest.approx(c)
    assert a.weight == pytest.approx(2 / (1 + c * np.exp(-1.0)))
    # no anchor, correct rollout 0: C+ = e^{0.6/0.5} + 1 / (e^{1} + e^{-0.4} + e^{0.2})
    b = rollout_arithmetic(S_BAR, LABELS, 0, "real_no_anchor", {"tau": 0.5})
    assert b.c == pytest.approx(np.exp(1.2) + 1 / (np.exp(1.0) + np.exp(-0.4) + np.exp(0.2)))
    # a group of one label is left out (group_filter mixed), kept with group_filter all
    assert rollout_arithmetic([0.2, -0.3], [True, True], 0).weight == 0.0
    kept = rollout_arithmetic([0.2, -0.3], [True, True], 0, "real", {"group_filter": "all"})
    assert kept.used and kept.weight == pytest.approx(2 / (1 + (1 + np.exp(0.6)) * np.exp(0.4)))
    with pytest.raises(ValueError, match="REAL-family"):
        rollout_arithmetic(S_BAR, LABELS, 0, "grpo")
    with pytest.raises(ValueError, match="outside the group"):
        rollout_arithmetic(S_BAR, LABELS, 5)


@pytest.mark.parametrize("method", ["real", "real_no_anchor", "real_bce"])
def test_rollout_arithmetic_of_a_far_off_policy_rollout_overflows_to_its_limit(method: str) -> None:
    """|s_bar| / tau beyond ~710 (a stale rollout, a small tau): e^{...} is infinite, not an OverflowError that
    stops the Learn page; the worked weight is its limit and agrees with the closed form (computed in logs)."""
    from app_lib.teaching import aligned, c_lines, weight_lines

    s, labels = [400.0, 0.1, -400.0, 0.2], [True, True, False, False]
    for k in range(len(s)):
        a = rollout_arithmetic(s, labels, k, method, {"tau": 0.5})
        assert a.weight_from_terms == pytest.approx(a.weight, abs=1e-12), (k, a.weight_from_terms, a.weight)
        assert "infty" in aligned(c_lines(a) + weight_lines(a)) or abs(a.s_bar) < 1


def test_a_formula_number_that_is_not_a_number_is_never_written_as_minus_infinity() -> None:
    from app_lib.teaching import num

    assert num(float("nan")) == r"\mathrm{NaN}"
    assert (num(float("inf")), num(-float("inf")), num(-1.5)) == (r"\infty", r"-\infty", "{-}1.5")
