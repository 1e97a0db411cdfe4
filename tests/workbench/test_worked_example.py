"""workbench.worked_example: GRPO and REAL weights of one group, and the appendix erratum."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.worked_example import group_weights


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
    with pytest.raises(ValueError):
        group_weights([0.1], [True, False])
