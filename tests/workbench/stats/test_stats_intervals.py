"""Hard-token intervals and clip discards on hand-made runs whose counts are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.stats import clip_discards, token_intervals

EPS = 0.2
ABOVE = math.log(1.3)  # rho 1.3 > 1 + eps
BELOW = math.log(0.7)  # rho 0.7 < 1 - eps
LOW = math.log(0.9)  # [1 - eps, 1)
HIGH = 0.05  # rho 1.05 in [1, 1 + eps]


def _shares(df, step=1):
    d = df[df["step"] == step]
    return {(str(r.sign), str(r.interval)): (int(r.tokens), float(r.share)) for r in d.itertuples()}


@pytest.fixture
def grpo_run(make_run):
    """Step 1: a first-mini-batch rollout (s = 0, 5 tokens) and two later ones of 10 tokens each.

    A > 0 rollout: 3 tokens above 1 + eps, 2 below 1 - eps, 1 in [1 - eps, 1), 4 in [1, 1 + eps].
    A < 0 rollout: 1 above, 2 below, 7 in [1 - eps, 1).
    """
    pos = [(ABOVE, 1.0)] * 3 + [(BELOW, 1.0)] * 2 + [(LOW, 1.0)] + [(HIGH, 1.0)] * 4
    neg = [(ABOVE, 1.0)] + [(BELOW, 1.0)] * 2 + [(LOW, 1.0)] * 7
    first = [(0.0, 1.0)] * 5
    rows = [
        {"minibatch": 0, "reward": 1.0, "advantage": 0.9, "tokens": first, "group": 1},
        {"minibatch": 1, "reward": 1.0, "advantage": 0.9, "tokens": pos},
        {"minibatch": 1, "reward": 0.0, "advantage": -0.9, "tokens": neg},
    ]
    return make_run("grpo-hand", "grpo", {1: rows})


def test_interval_shares_by_sign(grpo_run):
    got = _shares(token_intervals(grpo_run))
    n = 20  # the first mini-batch's 5 tokens are left out
    expected = {
        ("A>0", ">1+eps"): 3,
        ("A>0", "<1-eps"): 2,
        ("A>0", "[1-eps,1)"): 1,
        ("A>0", "[1,1+eps]"): 4,
        ("A<0", ">1+eps"): 1,
        ("A<0", "<1-eps"): 2,
        ("A<0", "[1-eps,1)"): 7,
        ("A<0", "[1,1+eps]"): 0,
    }
    for key, count in expected.items():
        assert got[key] == (count, pytest.approx(count / n)), key
    assert all(got[("A=0", k)][0] == 0 for k in ("<1-eps", "[1-eps,1)", "[1,1+eps]", ">1+eps"))
    assert sum(share for _, share in got.values()) == pytest.approx(1.0)


def test_first_minibatch_only_with_all(grpo_run):
    got = _shares(token_intervals(grpo_run, minibatches="all"))
    assert got[("A>0", "[1,1+eps]")] == (4 + 5, pytest.approx(9 / 25))  # s = 0 is rho = 1
    assert sum(t for t, _ in got.values()) == 25


def test_clip_discards(grpo_run):
    d = clip_discards(grpo_run).set_index("clip_mode", drop=False)
    # vanilla: A > 0 above 1 + eps (3) and A < 0 below 1 - eps (2); bidirectional: all outside (3+2+1+2)
    assert d.loc["vanilla", "discarded"] == 5
    assert d.loc["vanilla", "share"] == pytest.approx(5 / 20)
    assert d.loc["bidirectional", "discarded"] == 8
    assert d.loc["bidirectional", "share"] == pytest.approx(8 / 20)
    assert (d["tokens"] == 20).all() and (d["with_gradient"] == 20).all()


def test_clip_discards_count_only_tokens_that_carry_gradient(make_run):
    """A = 0 tokens (a group whose rollouts all got the same reward) have no gradient to discard under either rule.

    9 tokens: A > 0 with one above 1 + eps and one inside; A < 0 with one above and one below; A = 0 (a group of
    two correct rollouts) with three above, one below and one inside. Vanilla discards A > 0 above and A < 0
    below (2); bidirectional every A != 0 token outside the interval (3), not the A = 0 group's 4 (the old rule
    counted 7). Shares are over all 9 tokens, as verl's clip fraction.
    """
    rows = [
        {"reward": 1.0, "advantage": 0.7, "tokens": [(ABOVE, 1.0), (HIGH, 1.0)], "group": 0},
        {"reward": 0.0, "advantage": -0.7, "tokens": [(ABOVE, 1.0), (BELOW, 1.0)], "group": 0},
        {"reward": 1.0, "advantage": 0.0, "tokens": [(ABOVE, 1.0)] * 2 + [(BELOW, 1.0)], "group": 1},
        {"reward": 1.0, "advantage": 0.0, "tokens": [(ABOVE, 1.0), (LOW, 1.0)], "group": 1},
    ]
    d = clip_discards(make_run("a-zero", "grpo", {1: rows})).set_index("clip_mode", drop=False)
    assert (d["tokens"] == 9).all() and (d["with_gradient"] == 4).all()
    assert d.loc["vanilla", "discarded"] == 2
    assert d.loc["bidirectional", "discarded"] == 3
    assert d.loc["bidirectional", "share"] == pytest.approx(3 / 9)


def test_eps_comes_from_the_run(make_run):
    """DAPO's eps_high = 0.28: rho = 1.25 lies inside its interval, above GRPO's."""
    toks = [(math.log(1.25), 1.0)] * 2 + [(HIGH, 1.0)] * 2
    rows = [
        {"reward": 1.0, "advantage": 1.0, "tokens": toks},
        {"reward": 0.0, "advantage": -1.0, "tokens": [(HIGH, 1.0)]},
    ]
    dapo = _shares(token_intervals(make_run("dapo", "dapo", {1: rows})))
    grpo = _shares(token_intervals(make_run("grpo", "grpo", {1: rows})))
    assert dapo[("A>0", ">1+eps")][0] == 0 and dapo[("A>0", "[1,1+eps]")][0] == 4
    assert grpo[("A>0", ">1+eps")][0] == 2 and grpo[("A>0", "[1,1+eps]")][0] == 2
    assert token_intervals(make_run("dapo2", "dapo", {1: rows}), eps_high=0.2)["eps_high"].iloc[0] == 0.2


def test_real_family_sign_from_rewards(make_run):
    """REAL logs no advantage: the sign is that of reward minus the group's mean reward."""
    t = [(ABOVE, 0.1)]
    rows = [
        {"reward": 1.0, "tokens": t, "group": 0},
        {"reward": 0.0, "tokens": t * 2, "group": 0},
        {"reward": 0.0, "tokens": t * 3, "group": 0},
        {"reward": 1.0, "tokens": t * 4, "group": 1},  # single-label group: A = 0
        {"reward": 1.0, "tokens": t * 5, "group": 1},
    ]
    got = _shares(token_intervals(make_run("real", "real", {1: rows})))
    assert got[("A>0", ">1+eps")][0] == 1
    assert got[("A<0", ">1+eps")][0] == 5
    assert got[("A=0", ">1+eps")][0] == 9


def test_steps_are_kept_apart(make_run):
    rows1 = [{"reward": 1.0, "advantage": 1.0, "tokens": [(ABOVE, 1.0)] * 2}]
    rows2 = [{"reward": 0.0, "advantage": -1.0, "tokens": [(BELOW, 1.0)] * 3 + [(HIGH, 1.0)]}]
    df = token_intervals(make_run("two", "grpo", {1: rows1, 2: rows2}))
    assert sorted(df["step"].unique()) == [1, 2]
    assert _shares(df, 1)[("A>0", ">1+eps")] == (2, 1.0)
    assert _shares(df, 2)[("A<0", "<1-eps")] == (3, 0.75)
    d = clip_discards(make_run("two-b", "grpo", {1: rows1, 2: rows2}))
    v = d[d["clip_mode"] == "vanilla"].set_index("step")["discarded"]
    assert v.to_dict() == {1: 2, 2: 3}


def test_boundaries_follow_keep_indicator(make_run):
    """A ratio just inside 1 + eps is kept by both modes and counted inside the interval."""
    inside = float(np.nextafter(np.float32(math.log1p(EPS)), np.float32(0)))
    rows = [{"reward": 1.0, "advantage": 1.0, "tokens": [(inside, 1.0)]}]
    run = make_run("edge", "grpo", {1: rows})
    assert _shares(token_intervals(run))[("A>0", "[1,1+eps]")][0] == 1
    assert (clip_discards(run)["discarded"] == 0).all()
