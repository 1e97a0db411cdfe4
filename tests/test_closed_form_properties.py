"""Properties of the closed forms the paper states (Prop. 3.1, Prop. 5.1) and the appendix erratum."""

from __future__ import annotations

import math

import numpy as np
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
