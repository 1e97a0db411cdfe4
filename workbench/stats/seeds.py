"""Across runs: run listings, statistics over many runs with variant and seed attached, seed bands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from workbench.stats.variants import RunLike, as_run, seed_of, variant_of

Band = Literal["minmax", "sd"]
BAND_CHOICES: tuple[str, ...] = ("minmax", "sd")
BAND_NOTE = {"minmax": "band: min-max over seeds", "sd": "band: ±1 sd over seeds (sample sd)"}


def describe_runs(runs: Iterable[RunLike]) -> pd.DataFrame:
    """One row per run: ``run, path, method, variant, label, seed, steps, last_step, state``."""
    rows = []
    for r in runs:
        run = as_run(r)
        v = variant_of(run)
        steps = run.steps()
        rows.append(
            {
                "run": run.name,
                "path": str(run.dir),
                "method": run.method,
                "variant": v.key,
                "label": v.label,
                "seed": seed_of(run),
                "steps": len(steps),
                "last_step": steps[-1] if steps else None,
                "state": run.status().get("state", "unknown"),
            }
        )
    return pd.DataFrame(rows)


def collect(stat: Callable[..., pd.DataFrame], runs: Iterable[RunLike], **kwargs: Any) -> pd.DataFrame:
    """``stat(run, **kwargs)`` for every run, concatenated, with ``variant, label, method, seed`` after ``run``.

    E.g. ``collect(gradient_allocation, ["runs/a", "runs/b"], top=0.01)``. Raises ``ValueError`` when two runs
    share a name (the ``run`` column would not tell them apart).
    """
    frames, names = [], {}
    for r in runs:
        run = as_run(r)
        if run.name in names and names[run.name] != run.dir.resolve():
            raise ValueError(f"two runs are named {run.name!r} ({names[run.name]} and {run.dir}); rename one")
        names[run.name] = run.dir.resolve()
        df = stat(run, **kwargs)
        v = variant_of(run)
        pos = list(df.columns).index("run") + 1
        for i, (col, val) in enumerate(
            (("variant", v.key), ("label", v.label), ("method", run.method), ("seed", seed_of(run)))
        ):
            df.insert(pos + i, col, val)
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def seed_band(
    df: pd.DataFrame,
    value: str = "value",
    *,
    x: str = "step",
    by: Sequence[str] = ("variant",),
    band: Band = "minmax",
) -> pd.DataFrame:
    """Mean over runs (seeds) of ``value`` at each ``x`` within ``by``, with a band.

    Rows whose ``value`` is NaN are dropped first (explicitly: a missing value is not a zero and not a gap).
    Columns: ``*by, x, mean, lo, hi, n_seeds``. ``band="minmax"``: ``lo, hi`` = min, max over seeds;
    ``band="sd"``: mean -+ the sample standard deviation (``lo = hi = mean`` where one seed has a value).
    """
    if band not in BAND_CHOICES:
        raise ValueError(f"band={band!r} is not one of {', '.join(BAND_CHOICES)}")
    keys = [*by, x]
    missing = [c for c in [*keys, value] if c not in df.columns]
    if missing:
        raise ValueError(f"seed_band: no column(s) {', '.join(missing)} in {list(df.columns)}")
    d = df[np.isfinite(df[value].to_numpy(dtype=np.float64, na_value=np.nan))]
    g = d.groupby(keys, observed=True, sort=True)[value]
    out = g.agg(["mean", "min", "max", "std", "count"]).reset_index()
    if band == "minmax":
        out["lo"], out["hi"] = out["min"], out["max"]
    else:
        sd = out["std"].fillna(0.0)
        out["lo"], out["hi"] = out["mean"] - sd, out["mean"] + sd
    out = out.rename(columns={"count": "n_seeds"})
    return out[[*keys, "mean", "lo", "hi", "n_seeds"]]
