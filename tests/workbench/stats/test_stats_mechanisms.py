"""Mechanism statistics (workbench.stats.mechanisms) on constructed batches whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.stats.mechanisms import (
    REGIME_TAU,
    mechanism_stats,
    regime_summary,
    run_tau,
    share_and_frac,
    top_share_by,
)


def test_regime_summary_by_hand():
    s_bar = np.array([-1.0, -0.2, 0.0, 0.1, 0.6])  # |s_bar| / 0.5 = 2, 0.4, 0, 0.2, 1.2
    out = regime_summary(np.array([-2.0, 1.0, 0.0, np.nan]), s_bar, 0.5)
    assert out["s_abs_q50"] == pytest.approx(1.0)  # |s| of the finite tokens: 2, 1, 0
    assert out["sbar_q50"] == pytest.approx(0.0)
    assert out["sbar_tau_q50"] == pytest.approx(0.4)
    assert out["sbar_tau_gt1"] == pytest.approx(2 / 5)
    assert math.isnan(regime_summary(np.zeros(0), np.zeros(0), 0.5)["sbar_tau_gt1"])
    with pytest.raises(ValueError, match="tau must be > 0"):
        regime_summary(np.zeros(1), np.zeros(1), 0.0)


def test_share_frac_lift_and_top_share_by_hand():
    code = np.array([0, 0, 0, 0, 1, 1])
    w = np.array([1.0, 1.0, 1.0, 5.0, 0.0, 0.0])
    hard = np.array([True, False, False, False, True, False])
    share, frac, lift = share_and_frac(code, 2, w, hard)
    assert (
        share[0] == pytest.approx(1 / 8) and frac[0] == pytest.approx(1 / 4) and lift[0] == pytest.approx(0.5)
    )
    assert math.isnan(share[1]) and frac[1] == 0.5  # no weight in segment 1
    # top by a key that is not the weight: the largest key (3.0) holds weight 1 of 8
    key = np.array([0.0, 3.0, 1.0, 2.0, 5.0, 4.0])
    top = top_share_by(code, 2, key, w, 0.01)
    assert top[0] == pytest.approx(1 / 8) and math.isnan(top[1])
    assert top_share_by(code, 2, key, w, 0.5)[0] == pytest.approx((1 + 5) / 8)  # ceil(0.5 * 4) = 2 tokens
    with pytest.raises(ValueError, match="top must be in"):
        top_share_by(code, 2, key, w, 0.0)


@pytest.fixture
def mechanism_run(make_run):
    """One step. A correct rollout: a hard token (s = -0.5, p_old = 0.1, weight 1) and an easy one (s = +0.5,
    p_old = 0.9, weight 3). A wrong rollout of 100 tokens with s = 0.00 .. 0.99, weight 1, except the largest-s
    token, weight 9. A second correct rollout of the same group with s_bar 0.2, so sbar_correct = 0.1."""
    pos = [(-0.5, 1.0, math.log(0.1)), (0.5, 3.0, math.log(0.9))]
    neg = [(i / 100, 1.0) for i in range(99)] + [(0.99, 9.0)]
    rows = [
        {"reward": 1.0, "tokens": pos},
        {"reward": 0.0, "tokens": neg},
        {"reward": 1.0, "tokens": [(0.2, 0.0, math.log(0.9))]},
    ]
    return make_run("mech", "real", {1: rows})


def test_mechanism_stats_by_hand(mechanism_run):
    row = mechanism_stats(mechanism_run).set_index("step").loc[1]
    assert row["pos_tokens"] == 3
    assert row["pos_hard_s_share"] == pytest.approx(1 / 4)  # weight 1 of 4 on s < 0
    assert row["pos_hard_s_frac"] == pytest.approx(1 / 3)
    assert row["pos_hard_s_lift"] == pytest.approx(3 / 4)
    assert row["pos_hard_p_share"] == pytest.approx(1 / 4)  # the p_old = 0.1 token
    assert row["neg_tokens"] == 100
    assert row["neg_top_ratio_share"] == pytest.approx(9 / 108)  # top 1% of 100 by ratio: the s = 0.99 token
    assert row["sbar_correct"] == pytest.approx((0.0 + 0.2) / 2)
    assert row["sbar_wrong"] == pytest.approx(
        np.mean([t[0] for t in [(i / 100, 0) for i in range(99)] + [(0.99, 0)]])
    )
    assert row["sbar_gap"] == pytest.approx(row["sbar_correct"] - row["sbar_wrong"])
    assert row["tau"] == 0.5  # the run's REAL tau
    assert row["sbar_tau_gt1"] == 0.0  # every |s_bar| < 0.5
    # the filler rollout of the first mini-batch (s = 0) is left out by minibatches="later" and counts with "all"
    assert mechanism_stats(mechanism_run, minibatches="all", used_only=False).iloc[0]["neg_tokens"] == 101


def test_run_tau_falls_back_to_reals_default():
    assert run_tau("grpo", {"eps_low": 0.2}) == REGIME_TAU
    assert run_tau("real", {"tau": 0.1}) == 0.1


def _regime_run(make_run, name: str, method: str, gt1: list[float], q90: list[float], s99: list[float], **kw):
    row = [{"reward": 1.0, "tokens": [(0.0, 1.0)]}, {"reward": 0.0, "tokens": [(0.0, 1.0)]}]
    steps = {k + 1: row for k in range(len(gt1))}
    metrics = {
        k + 1: {"sbar_tau_gt1": a, "sbar_tau_q90": b, "s_abs_q99": c}
        for k, (a, b, c) in enumerate(zip(gt1, q90, s99, strict=True))
    }
    return make_run(name, method, steps=steps, metrics=metrics, **kw)


def test_logged_regime_means_the_share_and_takes_medians_of_the_quantiles(make_run):
    from workbench.stats.mechanisms import logged_regime

    path = _regime_run(
        make_run, "r", "real", [0.0, 0.3, 0.6], [0.1, 2.0, 0.5], [1.0, 9.0, 3.0], hparams={"tau": 0.1}
    )
    got = logged_regime(path)
    assert got == pytest.approx({"sbar_tau_gt1": 0.3, "sbar_tau_q90": 0.5, "s_abs_q99": 3.0, "tau": 0.1})
    # a run that did not log the regime (an older run, an engine's run) says so by an empty answer
    assert logged_regime(make_run("old", "grpo", steps={1: [{"reward": 1.0, "tokens": [(0.0, 1.0)]}]})) == {}


def test_every_run_figure_caption_states_the_regime(make_run):
    from workbench.figures.from_runs import regime_caption
    from workbench.stats import select_variants
    from workbench.stats.variants import VariantSpec

    on = _regime_run(make_run, "on", "grpo", [0.0, 0.004], [0.02, 0.03], [0.1, 0.2])
    off = _regime_run(make_run, "off", "real", [0.1, 0.3], [0.8, 1.5], [4.0, 6.0])
    bare = make_run("bare", "dapo", steps={1: [{"reward": 1.0, "tokens": [(0.0, 1.0)]}]})

    def caption(**paths):
        specs = [VariantSpec(m.upper(), m) for m in paths]
        return regime_caption(select_variants("test", list(paths.values()), specs))

    near = caption(grpo=on)
    assert "0.2% of rollouts" in near and "Near on-policy" in near  # mean over its two steps
    both = caption(grpo=on, real=off)
    assert "0.2%-20.0%" in both and "Off-policy for part" in both and "Near on-policy" not in both
    assert "0.025-1.1" in both and "0.15-5" in both  # medians over steps, ranges over runs
    assert "1 of 3 runs did not log it" in caption(grpo=on, real=off, dapo=bare)
    assert "not logged by these runs" in caption(dapo=bare)
