"""Gradient allocation on hand-made runs: top-1% shares, Gini and correlations computable by hand."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.stats import gradient_allocation
from workbench.stats.segments import seg_gini_top, seg_pearson


def gini_by_pairs(w) -> float:
    """Gini as mean absolute difference over twice the mean (independent of the sorted formula)."""
    w = np.asarray(w, dtype=float)
    return float(np.abs(w[:, None] - w[None, :]).sum() / (2 * len(w) ** 2 * w.mean()))


@pytest.fixture
def concentrated(make_run):
    """100 used tokens in 4 rollouts of 25: one token weighs 10, the other 99 weigh 1.

    A fifth rollout is out of the loss (used = False) and carries weight 50 on each token: it must not count.
    """
    r0 = [(0.1, 10.0)] + [(0.1, 1.0)] * 24
    other = [(0.1, 1.0)] * 25
    rows = [
        {"reward": 1.0, "tokens": r0},
        {"reward": 0.0, "tokens": other},
        {"reward": 1.0, "tokens": other},
        {"reward": 0.0, "tokens": other},
        {"reward": 1.0, "tokens": [(0.3, 50.0)] * 5, "used": False, "group": 1},
    ]
    return make_run("conc", "grpo", {1: rows})


def test_top_share_and_gini_by_hand(concentrated):
    row = gradient_allocation(concentrated).iloc[0]
    assert row["tokens"] == 100 and row["rollouts"] == 4
    assert row["top_token_share"] == pytest.approx(10 / 109, rel=1e-6)  # top 1% of 100 tokens = 1 token
    w = [10.0] + [1.0] * 99
    assert row["gini_token"] == pytest.approx(gini_by_pairs(w), rel=1e-6)
    assert row["gini_token"] == pytest.approx(1782 / 21800, rel=1e-6)
    # rollouts weigh 34, 25, 25, 25: top 1% of 4 = 1 rollout
    assert row["top_rollout_share"] == pytest.approx(34 / 109, rel=1e-6)
    assert row["gini_rollout"] == pytest.approx(gini_by_pairs([34, 25, 25, 25]), rel=1e-6)


def test_unused_rollouts_count_when_asked(concentrated):
    row = gradient_allocation(concentrated, used_only=False).iloc[0]
    assert row["tokens"] == 105 and row["rollouts"] == 5
    # ceil(0.01 * 105) = 2 tokens: the two largest weigh 50 each, out of 109 + 5 * 50
    assert row["top_token_share"] == pytest.approx(100 / 359, rel=1e-6)
    assert row["top_rollout_share"] == pytest.approx(250 / 359, rel=1e-6)


def test_top_count_rounds_up(make_run):
    rows = [{"reward": 1.0, "tokens": [(0.1, float(i + 1)) for i in range(105)]}]
    row = gradient_allocation(make_run("r", "grpo", {1: rows})).iloc[0]
    # ceil(0.01 * 105) = 2 tokens: weights 105 and 104
    assert row["top_token_share"] == pytest.approx((105 + 104) / (105 * 106 / 2), rel=1e-6)
    w = np.arange(1, 106, dtype=float)
    assert row["gini_token"] == pytest.approx(gini_by_pairs(w), rel=1e-6)


def test_correlations_by_label(make_run):
    """Correct rollouts: token weight = 1 + 2 s (corr +1); wrong: weight = 2 - s (corr -1).

    Rollout level: correct (s_bar 0.15, W 2.6) and (0.1, 2.4): +1; wrong (0.3, 3.4) and (-0.1, 4.2): -1.
    """
    rows = [
        {"reward": 1.0, "tokens": [(0.1, 1.2), (0.2, 1.4)]},
        {"reward": 1.0, "tokens": [(0.3, 1.6), (-0.1, 0.8)]},
        {"reward": 0.0, "tokens": [(0.1, 1.9), (0.5, 1.5)]},
        {"reward": 0.0, "tokens": [(-0.2, 2.2), (0.0, 2.0)]},
    ]
    row = gradient_allocation(make_run("corr", "grpo", {1: rows})).iloc[0]
    assert row["corr_token_correct"] == pytest.approx(1.0, abs=1e-6)
    assert row["corr_token_wrong"] == pytest.approx(-1.0, abs=1e-6)
    assert row["corr_rollout_correct"] == pytest.approx(1.0, abs=1e-6)
    assert row["corr_rollout_wrong"] == pytest.approx(-1.0, abs=1e-6)


def test_undefined_values_are_nan(make_run):
    """All weights 0 (no gradient): shares and Gini undefined. Constant s: correlation undefined."""
    rows = [{"reward": 1.0, "tokens": [(0.2, 0.0)] * 3}, {"reward": 0.0, "tokens": [(0.2, 0.0)] * 2}]
    row = gradient_allocation(make_run("zero", "grpo", {1: rows})).iloc[0]
    for col in ("top_token_share", "gini_token", "top_rollout_share", "gini_rollout", "corr_token_correct"):
        assert np.isnan(row[col]), col


def test_first_minibatch_left_out(make_run):
    rows = [
        {"reward": 1.0, "tokens": [(0.1, 1.0), (0.2, 2.0)]},
        {"reward": 1.0, "tokens": [(0.0, 9.0)] * 4, "minibatch": 0, "group": 1},
    ]
    run = make_run("mb", "grpo", {1: rows})
    assert gradient_allocation(run).iloc[0]["tokens"] == 2
    assert gradient_allocation(run, minibatches="all").iloc[0]["tokens"] == 6


def test_segment_reductions_match_a_loop():
    rng = np.random.default_rng(0)
    code = np.sort(rng.integers(0, 7, size=2000))
    w = rng.exponential(size=2000).astype(np.float32) * (rng.random(2000) < 0.8)
    x, y = rng.normal(size=2000), rng.normal(size=2000)
    gini, top = seg_gini_top(code, 7, w, 0.05)
    corr = seg_pearson(code, 7, x, y)
    for c in range(7):
        ws = np.sort(w[code == c].astype(float))[::-1]
        k = int(np.ceil(0.05 * len(ws)))
        assert top[c] == pytest.approx(ws[:k].sum() / ws.sum(), rel=1e-6)
        assert gini[c] == pytest.approx(gini_by_pairs(ws), rel=1e-6)
        assert corr[c] == pytest.approx(np.corrcoef(x[code == c], y[code == c])[0, 1], rel=1e-9)


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        seg_gini_top(np.zeros(2, dtype=np.int64), 1, np.array([1.0, -1.0]), 0.01)
