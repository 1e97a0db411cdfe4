"""C+/C- dynamics on hand-made runs: known constants by construction (paper Eq. 9/10)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.stats import c_by_composition, real_weights, recompute_real

TAU = 0.5


def w_real(s_bar: float, log_c: float, correct: bool, tau: float = TAU) -> float:
    """Eq. 9 written out for the test: (1/tau) / (1 + C e^{+-s_bar/tau})."""
    sign = 1.0 if correct else -1.0
    return (1 / tau) / (1 + math.exp(log_c) * math.exp(sign * s_bar / tau))


def test_at_zero_the_constants_count_the_group():
    """With every s_bar = 0: C+ = 1 + (k - 1) = k and C- = G - k (anchor 1 plus the others' e^0)."""
    correct = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    log_c, w, used = recompute_real(np.zeros(8), np.zeros(8), np.zeros(8), correct)
    np.testing.assert_allclose(log_c[:3], math.log(3))
    np.testing.assert_allclose(log_c[3:], math.log(5))
    np.testing.assert_allclose(w[:3], 2 / (1 + 3))
    assert used.all()


@pytest.fixture
def real_run(make_run):
    """One group of 4: correct s_bar 0.2 and -0.4, wrong s_bar 0.1 and 0.6. C by hand (anchor 1):

    C+ of the first correct = 1 + e^{0.4/tau}; of the second = 1 + e^{-0.2/tau};
    C- of the first wrong = 1 + e^{0.6/tau}; of the second = 1 + e^{0.1/tau}.
    Logged log_c and weights are those values. A single-label group (two correct) is left out of the loss.
    """
    s = [0.2, -0.4, 0.1, 0.6]
    log_c = [
        math.log1p(math.exp(0.4 / TAU)),
        math.log1p(math.exp(-0.2 / TAU)),
        math.log1p(math.exp(0.6 / TAU)),
        math.log1p(math.exp(0.1 / TAU)),
    ]
    correct = [True, True, False, False]
    rows = [
        {"reward": float(c), "tokens": [(x, 0.0), (x, 0.0)], "log_c": lc, "weight": w_real(x, lc, c)}
        for x, lc, c in zip(s, log_c, correct, strict=True)
    ]
    rows += [
        {
            "reward": 1.0,
            "tokens": [(0.3, 0.0)],
            "group": 1,
            "log_c": math.log1p(math.exp(-0.3 / TAU)),
            "weight": 0.0,
            "used": False,
        },
        {
            "reward": 1.0,
            "tokens": [(0.3, 0.0)],
            "group": 1,
            "log_c": math.log1p(math.exp(-0.3 / TAU)),
            "weight": 0.0,
            "used": False,
        },
    ]
    return make_run("real-hand", "real", {1: rows}), log_c, s, correct


def test_logged_values_are_read(real_run):
    run, log_c, _, _ = real_run
    df = real_weights(run)
    assert df["source"].unique().tolist() == ["logged"]
    g0 = df[df["group"] == 0].sort_values("rollout")
    np.testing.assert_allclose(g0["log_c"], log_c, rtol=1e-6)
    assert g0["group_correct"].tolist() == [2, 2, 2, 2]


def test_recomputed_matches_the_hand_values(real_run):
    run, log_c, s, correct = real_run
    df = real_weights(run, recompute=True)
    g0 = df[df["group"] == 0].sort_values("rollout")
    np.testing.assert_allclose(g0["log_c"], log_c, rtol=1e-5)
    np.testing.assert_allclose(
        g0["weight"], [w_real(x, lc, c) for x, lc, c in zip(s, log_c, correct, strict=True)], rtol=1e-5
    )
    g1 = df[df["group"] == 1]
    assert not g1["used"].any() and (g1["weight"] == 0).all()
    np.testing.assert_allclose(g1["log_c"], math.log1p(math.exp(-0.3 / TAU)), rtol=1e-5)
    assert df["source"].iloc[0] == "recomputed REAL τ=0.5"


def test_other_tau_and_variant(real_run):
    run, _, _, _ = real_run
    bce = real_weights(run, recompute=True, method="real_bce")
    assert (bce["log_c"] == 0).all()  # BCE: C = 1
    t1 = real_weights(run, recompute=True, tau=1.0)
    first = t1[(t1["group"] == 0) & (t1["rollout"] == 0)].iloc[0]
    assert first["log_c"] == pytest.approx(math.log1p(math.exp(0.4)), rel=1e-5)
    assert first["tau"] == 1.0


def test_grpo_run_gets_the_counterfactual(make_run):
    """A GRPO run logs no log_c: REAL is recomputed on its s_bar, its own weight stays in logged_weight."""
    rows = [
        {"reward": 1.0, "advantage": 0.87, "tokens": [(0.0, 0.5), (0.2, 0.7)]},
        {"reward": 0.0, "advantage": -0.87, "tokens": [(-0.1, 0.4)]},
    ]
    run = make_run("grpo", "grpo", {1: rows})
    df = real_weights(run).sort_values("rollout")
    # one correct, one wrong: C+ = C- = 1 (the anchor alone)
    np.testing.assert_allclose(df["log_c"], 0.0, atol=1e-7)
    np.testing.assert_allclose(df["weight"], [w_real(0.1, 0.0, True), w_real(-0.1, 0.0, False)], rtol=1e-5)
    np.testing.assert_allclose(df["logged_weight"], [1.2, 0.4], rtol=1e-6)
    with pytest.raises(ValueError, match="recompute=True"):
        real_weights(run, recompute=False)


def test_by_composition(make_run):
    """Two steps at s_bar = 0 (logged by hand): k = 1 of 4 and k = 3 of 4."""

    def group(k, g):
        return [
            {
                "reward": float(i < k),
                "tokens": [(0.0, 0.0)],
                "group": g,
                "log_c": math.log(k if i < k else 4 - k),
                "weight": 2 / (1 + (k if i < k else 4 - k)),
            }
            for i in range(4)
        ]

    run = make_run("comp", "real", {1: group(1, 0) + group(3, 1), 2: group(3, 0)})
    comp = c_by_composition(real_weights(run)).set_index(["group_correct", "correct"])
    assert comp.loc[(1, True), "rollouts"] == 1 and comp.loc[(1, False), "rollouts"] == 3
    assert comp.loc[(3, True), "rollouts"] == 6 and comp.loc[(3, False), "rollouts"] == 2
    assert comp.loc[(3, True), "log_c_median"] == pytest.approx(math.log(3))
    assert comp.loc[(1, False), "log_c_mean"] == pytest.approx(math.log(3))
    assert comp.loc[(1, True), "weight_mean"] == pytest.approx(1.0)
    per_step = c_by_composition(real_weights(run), per_step=True)
    assert sorted(per_step["step"].unique()) == [1, 2]
    assert per_step[(per_step["step"] == 2)]["rollouts"].sum() == 4
