"""Paired comparisons over seeds: each method's difference to a baseline with a bootstrap interval.

A seed gives every method the same starting weights, the same prompts and the same first rollouts, so the
difference ``d_s = value(method, seed s) - value(baseline, seed s)`` removes what the seeds share. Over the
``n`` seeds both have, the mean difference ``mean_s d_s`` gets a percentile bootstrap interval: resample the
``n`` differences with replacement ``n_boot`` times and take the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles of the resampled means. With few seeds that interval is too narrow rather than too wide (it cannot
be wider than the range of the ``d_s``), so ``resolved`` (the interval excludes 0) is a necessary, not a
sufficient, sign of a difference; fewer than ``MIN_PAIRS`` pairs give no interval at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_PAIRS = 3


def bootstrap_mean_interval(
    d: np.ndarray, *, n_boot: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(d)``; ``(nan, nan)`` with fewer than ``MIN_PAIRS`` values."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) < MIN_PAIRS:
        return float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_differences(
    values: pd.DataFrame,
    baseline: str,
    *,
    by: tuple[str, ...] = ("level",),
    value: str = "value",
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """``method - baseline`` per ``by`` cell, paired on ``seed``.

    ``values``: one row per run with columns ``*by, method, seed, value``. Returns one row per ``by`` cell and
    method other than the baseline: ``*by, method, baseline, n_pairs, mean_diff, lo, hi, resolved`` where
    ``resolved`` is True when the interval excludes 0 (``lo > 0`` or ``hi < 0``), False otherwise (including
    when there are too few pairs for an interval).
    """
    need = {*by, "method", "seed", value}
    missing = need - set(values.columns)
    if missing:
        raise ValueError(f"paired_differences: missing column(s) {', '.join(sorted(missing))}")
    rows = []
    for key, cell in values.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        table = cell.pivot_table(index="seed", columns="method", values=value, aggfunc="mean")
        if baseline not in table.columns:
            continue
        for method in table.columns:
            if method == baseline:
                continue
            d = (table[method] - table[baseline]).dropna().to_numpy()
            lo, hi = bootstrap_mean_interval(d, n_boot=n_boot, level=level, seed=seed)
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "method": method,
                    "baseline": baseline,
                    "n_pairs": len(d),
                    "mean_diff": float(d.mean()) if len(d) else float("nan"),
                    "lo": lo,
                    "hi": hi,
                    "resolved": bool(lo > 0 or hi < 0),
                }
            )
    cols = [*by, "method", "baseline", "n_pairs", "mean_diff", "lo", "hi", "resolved"]
    return pd.DataFrame(rows, columns=cols)
