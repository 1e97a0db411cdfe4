"""Paired differences over seeds with a bootstrap interval (workbench.stats.paired)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.stats.paired import MIN_PAIRS, bootstrap_mean_interval, paired_differences


def _values(diffs: dict[str, list[float]], base: list[float]) -> pd.DataFrame:
    rows = [{"level": 0, "method": "grpo", "seed": s, "value": v} for s, v in enumerate(base)]
    for m, d in diffs.items():
        rows += [{"level": 0, "method": m, "seed": s, "value": base[s] + x} for s, x in enumerate(d)]
    return pd.DataFrame(rows)


def test_pairing_removes_what_the_seeds_share():
    # seeds differ a lot (0.1 .. 0.9), the method is better by 0.02..0.04 on every seed: resolved only when paired
    base = [0.1, 0.3, 0.5, 0.7, 0.9]
    out = paired_differences(_values({"real": [0.02, 0.03, 0.04, 0.03, 0.02]}, base), "grpo").iloc[0]
    assert out["n_pairs"] == 5 and out["mean_diff"] == pytest.approx(0.028)
    assert 0.02 <= out["lo"] < out["mean_diff"] < out["hi"] <= 0.04 and out["resolved"]


def test_a_difference_that_changes_sign_is_not_resolved():
    out = paired_differences(_values({"dapo": [0.05, -0.04, 0.03, -0.05, 0.01]}, [0.5] * 5), "grpo").iloc[0]
    assert out["lo"] < 0 < out["hi"] and not out["resolved"]


def test_too_few_pairs_give_no_interval_and_missing_seeds_are_dropped():
    vals = _values({"gspo": [0.1, 0.1, 0.1]}, [0.2] * 5)  # gspo has seeds 0-2 only
    out = paired_differences(vals, "grpo").iloc[0]
    assert out["n_pairs"] == 3
    short = paired_differences(vals[vals.seed < MIN_PAIRS - 1], "grpo").iloc[0]
    assert math.isnan(short["lo"]) and not short["resolved"]
    assert all(math.isnan(x) for x in bootstrap_mean_interval(np.array([1.0, np.nan, np.nan])))
    with pytest.raises(ValueError, match="missing column"):
        paired_differences(vals.drop(columns="seed"), "grpo")


def test_interval_covers_the_mean_and_is_reproducible():
    d = np.random.default_rng(1).normal(0.1, 0.05, 8)
    lo, hi = bootstrap_mean_interval(d, seed=3)
    assert lo < d.mean() < hi and (lo, hi) == bootstrap_mean_interval(d, seed=3)
