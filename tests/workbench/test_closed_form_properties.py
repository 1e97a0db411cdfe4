"""Properties of the closed forms the paper states (Prop. 3.1, Prop. 5.1) and the appendix erratum."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.closed_forms import grpo_token_weight, real_weight, real_weight_c, token_gradient
from workbench.objectives import OBJECTIVES

finite_s = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
taus = st.floats(min_value=0.05, max_value=5.0)
log_cs = st.floats(min_value=0.0, max_value=50.0)  # C >= 1 for REAL


@settings(max_examples=300, deadline=None)
@given(s=finite_s, log_c=log_cs, tau=taus, positive=st.booleans())
def test_real_weight_bounded_by_one_over_tau(s, log_c, tau, positive):
    w = float(real_weight(np.array(s), log_c, tau, positive))
    assert 0.0 <= w <= 1.0 / tau * (1 + 1e-12)


@settings(max_examples=300, deadline=None)
@given(s1=finite_s, s2=finite_s, log_c=log_cs, tau=taus)
def test_real_weight_monotonic(s1, s2, log_c, tau):
    lo, hi = sorted((s1, s2))
    pos = real_weight(np.array([lo, hi]), log_c, tau, True)
    neg = real_weight(np.array([lo, hi]), log_c, tau, False)
    assert pos[0] >= pos[1], "correct rollouts: weight decreases as s_bar grows"
    assert neg[0] <= neg[1], "wrong rollouts: weight increases as s_bar grows"


def test_real_weight_strictly_monotonic_on_a_grid():
    s = np.linspace(-3, 3, 601)
    assert (np.diff(real_weight_c(s, 4.0, 0.5, True)) < 0).all()
    assert (np.diff(real_weight_c(s, 4.0, 0.5, False)) > 0).all()


@settings(max_examples=100, deadline=None)
@given(bound=st.floats(min_value=1.0, max_value=1e30), a=st.floats(min_value=0.01, max_value=10))
def test_grpo_negative_weight_is_unbounded(bound, a):
    """For A < 0 vanilla clipping never clips high ratios: some s_t exceeds any bound (gradient domination)."""
    s = max(math.log(bound / a) + 1.0, 0.0)
    assert float(grpo_token_weight(np.array(s), -a)) > bound


def test_grpo_positive_weight_is_clipped_above_and_vanishes_below():
    s = np.array([-10.0, math.log(1.1), math.log(1.3)])
    w = grpo_token_weight(s, 1.0, 0.2, 0.2)
    assert w[0] < 1e-4, "hard positive tokens (low s) get almost no gradient (misassignment)"
    assert w[1] == 1.1 * 1.0 or abs(w[1] - 1.1) < 1e-12
    assert w[2] == 0.0, "ratio above 1 + eps is clipped for A > 0"


def test_numpy_and_torch_agree():
    s = np.linspace(-2, 2, 41)
    for f, kw in ((grpo_token_weight, {"advantage": -0.7}), (real_weight_c, {"c": 3.0, "positive": False})):
        a = f(s, **kw)
        b = f(torch.tensor(s), **kw).numpy()
        np.testing.assert_allclose(a, b, rtol=1e-12)


def _group_of(s_bars, rewards, tau=0.5):
    """A single group of one-token rollouts with the given s_bar (= s_t) values."""
    s = torch.tensor(s_bars, dtype=torch.float64).unsqueeze(1)
    old = torch.full_like(s, -1.0)
    logp = (old + s).requires_grad_(True)
    mask = torch.ones_like(s, dtype=torch.bool)
    r = torch.tensor(rewards, dtype=torch.float64)
    ids = torch.zeros(len(rewards), dtype=torch.long)
    res = OBJECTIVES["real"](logp, old, mask, r, ids, tau=tau, normalize="sum")
    (g,) = torch.autograd.grad(res.loss, logp)
    return torch.tensor(s_bars, dtype=torch.float64), g.squeeze(1), r


def test_main_text_eq9_eq10_match_autograd_and_appendix_eq22_eq24_do_not():
    """The appendix's Eq. 22 (``1 + C e^{-s/tau}``) and Eq. 24 (``C- = 1 + sum e^{-s_j/tau}``) flip a sign.

    Eq. 9/10 of the main text reproduce autograd's |dL/ds_bar| exactly; the appendix forms do not.
    """
    tau = 0.5
    s, g, r = _group_of([0.3, -0.2, 0.5, -0.4, 0.1], [1, 1, 0, 0, 0], tau)
    ex = torch.exp
    for k in range(len(s)):
        same = (r == r[k]) & (torch.arange(len(s)) != k)
        if r[k] == 1:
            c_main = 1 + ex(-s[same] / tau).sum()
            w_main = (1 / tau) / (1 + c_main * ex(s[k] / tau))
            w_appx = (1 / tau) / (1 + c_main * ex(-s[k] / tau))  # Eq. 22/23 as printed
        else:
            c_main = 1 + ex(s[same] / tau).sum()
            c_appx = 1 + ex(-s[same] / tau).sum()  # Eq. 24 as printed
            w_main = (1 / tau) / (1 + c_main * ex(-s[k] / tau))
            w_appx = (1 / tau) / (1 + c_appx * ex(-s[k] / tau))
        assert abs(abs(g[k]) - w_main) < 1e-12
        assert abs(abs(g[k]) - w_appx) > 1e-3, "the appendix form must disagree with autograd"
    assert (g[r == 1] < 0).all() and (g[r == 0] > 0).all(), "the loss pushes correct up and wrong down"


def test_appendix_eq22_drops_the_anchors_one_with_eq21s_c():
    """Eq. 21 names ``C = sum_{i in O+, i != k} e^{-s_bar^i/tau}``, *without* the anchor's 1, so substituting it into
    Eq. 20 gives ``(1/tau) / (1 + (1 + C) e^{+s_bar^k/tau})``. Eq. 22 prints ``(1/tau) / (1 + C e^{-s_bar^k/tau})``:
    besides the sign slip it drops a "1 +" (Eq. 24 then re-defines C with the 1, as Eq. 10 does).

    Autograd is the judge: Eq. 20 and the corrected Eq. 22 match it to 1e-12; Eq. 22 as printed, and Eq. 22 with
    only its sign fixed (C still Eq. 21's), do not.
    """
    tau = 0.5
    s, g, r = _group_of([0.3, -0.2, 0.6, 0.5, -0.4, 0.1], [1, 1, 1, 0, 0, 0], tau)
    ex = torch.exp
    for k in torch.nonzero(r == 1).flatten().tolist():
        others = (r == 1) & (torch.arange(len(s)) != k)
        c21 = ex(-s[others] / tau).sum()  # Eq. 21's C: no anchor term
        eq20 = (1 / tau) * ex(-s[k] / tau) / (1 + ex(-s[r == 1] / tau).sum())
        eq21_split = 1 + c21 + ex(-s[k] / tau)  # Eq. 21 itself holds
        assert abs(eq21_split - (1 + ex(-s[r == 1] / tau).sum())) < 1e-12
        printed = (1 / tau) / (1 + c21 * ex(-s[k] / tau))  # Eq. 22 as printed
        sign_fixed = (1 / tau) / (1 + c21 * ex(s[k] / tau))  # sign fixed, "1 +" still missing
        corrected = (1 / tau) / (1 + (1 + c21) * ex(s[k] / tau))  # = Eq. 9 with C+ = 1 + C
        w = abs(g[k])
        assert abs(w - eq20) < 1e-12 and abs(w - corrected) < 1e-12
        assert abs(w - printed) > 1e-3, "Eq. 22 as printed must disagree with autograd"
        assert abs(w - sign_fixed) > 1e-3, "without the anchor's 1 + the weight must disagree with autograd"


def test_no_anchor_and_bce_share_the_real_form():
    """W = (1/tau)/(1 + C e^{+-s/tau}) with C = sum_{other same} + 1/sum_{other class} (no anchor), C = 1 (BCE)."""
    tau = 0.7
    s = torch.tensor([0.3, -0.2, 0.5, -0.4, 0.1], dtype=torch.float64)
    r = torch.tensor([1, 1, 0, 0, 0], dtype=torch.float64)
    logp = s.unsqueeze(1)
    mask = torch.ones_like(logp, dtype=torch.bool)
    ids = torch.zeros(5, dtype=torch.long)
    for method in ("real_no_anchor", "real_bce"):
        cf = token_gradient(method, logp, torch.zeros_like(logp), mask, r, ids, tau=tau, normalize="sum")
        for k in range(5):
            pos = r[k] == 1
            same = (r == r[k]) & (torch.arange(5) != k)
            other = r != r[k]
            if method == "real_bce":
                c = torch.tensor(1.0, dtype=torch.float64)
            elif pos:
                c = torch.exp(-s[same] / tau).sum() + 1 / torch.exp(s[other] / tau).sum()
            else:
                c = torch.exp(s[same] / tau).sum() + 1 / torch.exp(-s[other] / tau).sum()
            sign = 1 if pos else -1
            w = (1 / tau) / (1 + c * torch.exp(sign * s[k] / tau))
            assert abs(cf.rollout_weight[k] - w) < 1e-12
            assert abs(cf.log_c[k] - torch.log(c)) < 1e-12


def _weights(method, s_bars, rewards, tau):
    """Closed-form W_k and autograd's |dL/ds_bar^k| of one group of one-token rollouts (loss not normalised)."""
    s = torch.tensor(s_bars, dtype=torch.float64).unsqueeze(1)
    old = torch.zeros_like(s)
    logp = s.clone().requires_grad_(True)
    mask = torch.ones_like(s, dtype=torch.bool)
    r = torch.tensor(rewards, dtype=torch.float64)
    ids = torch.zeros(len(rewards), dtype=torch.long)
    res = OBJECTIVES[method](logp, old, mask, r, ids, tau=tau, normalize="sum")
    (g,) = torch.autograd.grad(res.loss, logp)
    cf = token_gradient(method, s, old, mask, r, ids, tau=tau, normalize="sum")
    return cf.rollout_weight, g.squeeze(1).abs()


@st.composite
def mixed_groups(draw):
    """A group of 2-8 rollouts holding both labels, s_bar in [-10, 10] (so no weight underflows float64)."""
    n = draw(st.integers(2, 8))
    s = draw(st.lists(st.floats(-10.0, 10.0), min_size=n, max_size=n))
    labels = [1, 0, *draw(st.lists(st.sampled_from([0, 1]), min_size=n - 2, max_size=n - 2))]
    return s, labels


@settings(max_examples=150, deadline=None)
@given(group=mixed_groups(), tau=taus, method=st.sampled_from(["real", "real_bce", "real_no_anchor"]))
def test_every_real_variant_weight_is_in_zero_one_over_tau(group, tau, method):
    """``W = (1/tau) sigmoid(-(+-s_bar/tau + log C))`` lies in (0, 1/tau] for *any* C > 0: REAL (C >= 1), BCE (C = 1)
    and the no-anchor variant (whose C can be far below 1) alike. The bound does not come from the anchor."""
    w, autograd = _weights(method, *group, tau)
    assert (w > 0).all() and (w <= 1 / tau).all()
    # torch's BCE gradient is sigmoid(x) - r: absolute, not relative, float64 accuracy where it nearly cancels
    torch.testing.assert_close(autograd, w, rtol=1e-9, atol=1e-14 / tau)


@settings(max_examples=300, deadline=None)
@given(s=st.floats(-30.0, 30.0), log_c=st.floats(-30.0, 30.0), tau=taus, positive=st.booleans())
def test_real_weight_is_positive_and_bounded_for_any_c(s, log_c, tau, positive):
    """Eq. 9's form for C from e^-30 to e^30 (|s/tau| + |log C| < 700: no float64 underflow)."""
    w = float(real_weight(np.array(s), log_c, tau, positive))
    assert 0.0 < w <= 1.0 / tau


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


@settings(max_examples=150, deadline=None)
@given(group=mixed_groups(), tau=taus)
def test_class_totals_anchor_against_no_anchor(group, tau):
    """Summed over a class, REAL's weights are ``(1/tau) sigmoid(log S+)`` (correct) and ``(1/tau) sigmoid(log S-)``
    (wrong), ``S+ = sum_{O+} e^{-s_bar/tau}``, ``S- = sum_{O-} e^{s_bar/tau}``: at least ``(1/tau) sigmoid(-s_bar_i/tau)``
    for every correct i (and ``(1/tau) sigmoid(s_bar_j/tau)`` for every wrong j), whatever the other class does.
    Without the anchor both classes total ``(1/tau) sigmoid(log S+ + log S-)``, a function of the gaps
    ``s_bar_j - s_bar_i`` only."""
    s, labels = group
    pos = np.array(labels) == 1
    x = np.array(s) / tau
    log_sp, log_sn = np.logaddexp.reduce(-x[pos]), np.logaddexp.reduce(x[~pos])
    w, _ = _weights("real", s, labels, tau)
    w = w.numpy()
    assert w[pos].sum() == pytest.approx(_sigmoid(log_sp) / tau, rel=1e-9)
    assert w[~pos].sum() == pytest.approx(_sigmoid(log_sn) / tau, rel=1e-9)
    assert w[pos].sum() >= max(_sigmoid(-xi) for xi in x[pos]) / tau * (1 - 1e-12)
    assert w[~pos].sum() >= max(_sigmoid(xj) for xj in x[~pos]) / tau * (1 - 1e-12)
    w0, _ = _weights("real_no_anchor", s, labels, tau)
    w0 = w0.numpy()
    total = _sigmoid(log_sp + log_sn) / tau
    assert w0[pos].sum() == pytest.approx(total, rel=1e-9, abs=1e-300)
    assert w0[~pos].sum() == pytest.approx(total, rel=1e-9, abs=1e-300)


def test_without_the_anchor_weights_vanish_once_the_gap_is_wide_even_below_zero():
    """The paper's "ambiguous direction": both classes fall, the gap widens. Correct rollouts at s_bar = -1 (less
    likely than under the old policy), wrong ones at -4 to -5, tau = 0.1. Without the anchor every weight is below
    1e-9 (the loss is satisfied by the gap); REAL still pushes the correct rollouts up with nearly 1/tau in total."""
    tau, s, labels = 0.1, [-1.0, -1.2, -4.0, -4.5, -5.0], [1, 1, 0, 0, 0]
    w0, g0 = _weights("real_no_anchor", s, labels, tau)
    w, g = _weights("real", s, labels, tau)
    torch.testing.assert_close(g0, w0, rtol=1e-9, atol=0.0)
    torch.testing.assert_close(g, w, rtol=1e-9, atol=0.0)
    assert (w0 < 1e-9).all()
    assert float(w[:2].sum()) > 0.99 / tau


def test_the_derivation_names_tests_that_exist():
    """docs/derivation.md cites the tests that pin its statements by name; each must be defined here."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "derivation.md").read_text()
    cited = set(re.findall(r"::(test_\w+)", doc))
    assert cited, "the derivation should name the tests that pin it"
    assert not sorted(name for name in cited if name not in globals())
