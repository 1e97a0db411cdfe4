"""workbench.curves: Fig. 1 for every method, closed forms against autograd through the real objectives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.curves import (
    CurveParams,
    advantage_rewards,
    autograd_weight,
    check_points,
    curve_weight,
    method_overview,
)
from workbench.groups import GroupLayout, group_advantages
from workbench.methods import METHODS
from workbench.methods.real import curve_log_c


@pytest.mark.parametrize("a", [0.05, 0.5, 1.0, 1.7, 3.0, 7.5, -0.3, -2.2])
def test_advantage_rewards_give_exactly_that_advantage(a: float) -> None:
    r = torch.tensor(advantage_rewards(a), dtype=torch.float64)
    adv = group_advantages(r, GroupLayout.from_ids(torch.zeros(len(r), dtype=torch.long)), adv_eps=0.0)
    assert float(adv[0]) == pytest.approx(a, abs=1e-12)


params = st.builds(
    CurveParams,
    eps_low=st.floats(0.0, 0.6),
    eps_high=st.floats(0.0, 0.8),
    advantage=st.floats(0.1, 3.0),
    clip_mode=st.sampled_from(["vanilla", "bidirectional", "none"]),
    tau=st.floats(0.1, 2.0),
    c_pos=st.floats(1.0, 20.0),
    c_neg=st.floats(1.0, 20.0),
    other_class_mass=st.floats(0.1, 10.0),
)


@settings(max_examples=40, deadline=None)
@given(p=params)
def test_autograd_matches_the_closed_form_curve(p: CurveParams) -> None:
    recs = check_points(list(METHODS), p, -2.0, 2.0, 9)
    assert {r["method"] for r in recs} == set(METHODS)
    for r in recs:
        assert r["autograd"] == pytest.approx(r["closed_form"], rel=1e-9, abs=1e-12), r


def test_the_check_can_fail_when_the_formula_is_wrong() -> None:
    """The appendix's sign slip (1 + C e^{-s/tau} for correct rollouts) is caught by the autograd points."""
    p = CurveParams()
    s, auto = autograd_weight("real", np.linspace(-1, 1, 5), True, p)
    wrong = (1 / p.tau) / (1 + p.c_pos * np.exp(-s / p.tau))
    assert np.abs(auto - wrong).max() > 0.1
    assert np.abs(auto - curve_weight("real", s, True, p)).max() < 1e-12


def test_curves_have_the_papers_shape() -> None:
    p = CurveParams()
    s = np.linspace(-2, 2, 401)
    grpo_pos, grpo_neg = curve_weight("grpo", s, True, p), curve_weight("grpo", s, False, p)
    assert grpo_pos[s > math.log(1.2) + 1e-9].max() == 0  # clipped above 1 + eps for A > 0
    assert grpo_neg[-1] == pytest.approx(math.exp(2.0))  # unbounded growth for A < 0
    for m in ("real", "real_bce", "real_no_anchor"):
        pos, neg = curve_weight(m, s, True, p), curve_weight(m, s, False, p)
        assert (np.diff(pos) < 0).all() and (np.diff(neg) > 0).all() and max(pos.max(), neg.max()) < 1 / p.tau


def test_no_anchor_constant_and_bce() -> None:
    p = CurveParams(c_pos=4.0, c_neg=2.5, other_class_mass=1.0)
    assert curve_log_c("no_anchor", True, p.scenario()) == pytest.approx(math.log(4.0))  # M = 1: same as REAL
    p2 = CurveParams(c_pos=4.0, other_class_mass=0.25)
    assert curve_log_c("no_anchor", True, p2.scenario()) == pytest.approx(math.log(3.0 + 4.0))
    assert curve_log_c("bce", False, p2.scenario()) == 0.0
    with pytest.raises(ValueError):
        CurveParams(c_pos=0.5)


def test_points_at_a_clip_boundary_are_skipped() -> None:
    p = CurveParams()
    s, w = autograd_weight("grpo", np.array([math.log(1.2), 0.0]), True, p)
    assert list(s) == [0.0] and w[0] == pytest.approx(1.0)


def test_method_overview_has_every_method_and_reads_their_curves() -> None:
    """The Learn page's comparison: one row per registered method; GRPO's wrong-rollout weight grows as e^s
    (e^5 |A| at s = 5), REAL's stays below 1/tau, CISPO's is capped at |A| w_max; GRPO gives a correct token at
    s = -1 the weight e^-1 of s = 0, REAL more than at s = 0."""
    from workbench.methods import LABELS

    rows = {r["method"]: r for r in method_overview()}
    assert set(rows) == set(LABELS.values())
    wrong = next(k for k in rows["GRPO"] if k.startswith("wrong"))
    assert rows["GRPO"][wrong] == pytest.approx(math.exp(5.0), rel=1e-9)
    assert rows["REAL"][wrong] < 1 / CurveParams().tau
    assert rows["CISPO"][wrong] == pytest.approx(5.0)
    ratio = "correct: W(s=-1) / W(s=0)"
    assert rows["GRPO"][ratio] == pytest.approx(math.exp(-1.0))
    assert rows["REAL"][ratio] > 1.0
