"""Per-run metric curves on a chosen x axis, each seed or averaged over the seeds of a variant (the Runs page).

A run's metrics table (docs/run_format.md) logs, per step, the seconds of the step (``time_step``) and the
response tokens sampled per second of sampling (``tokens_per_s``, over ``time_sample`` seconds). The x axes:

- ``step``: the training step;
- ``wall_time``: seconds of training up to the end of the step, the running sum of ``time_step`` (a pause between
  a kill and its resume is not counted);
- ``tokens``: response tokens sampled up to the end of the step, the running sum of
  ``round(tokens_per_s * time_sample)``.

The validation before training (step 0, ``training_dynamics``'s initial row) sits at 0 on every axis.

``seed_mean`` averages over the runs of each variant exactly as the figures do
(``workbench.figures.from_runs.band_over_seeds``): at each step where every run of the variant has a value, the
mean with a min-max or ±1 sd band; with the step x axis and unsmoothed values its rows equal the ``band`` frame
of ``python -m workbench.figures fig4 --smooth 1`` for the same runs and metric.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from workbench.stats.seeds import BAND_CHOICES, seed_band

X_AXES: dict[str, str] = {
    "step": "training step",
    "wall_time": "wall time (s of training)",
    "tokens": "response tokens sampled",
}


def add_x_axes(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` (one run, one row per step) with ``wall_time`` and ``tokens`` columns (see the module doc):
    running sums over the steps in order. A step whose ``time_step`` or ``tokens_per_s * time_sample`` is not a
    finite number adds 0. Rows with step 0 (the validation before training) get 0 on both."""
    out = metrics.sort_values("step").reset_index(drop=True)
    n = len(out)

    def column(name: str) -> np.ndarray:
        if name not in out:
            return np.zeros(n)
        v = out[name].to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(np.isfinite(v), v, 0.0)

    trained = out["step"].to_numpy() > 0
    out["wall_time"] = np.cumsum(np.where(trained, column("time_step"), 0.0))
    per_step = np.rint(column("tokens_per_s") * column("time_sample"))
    out["tokens"] = np.cumsum(np.where(trained, per_step, 0.0)).astype(np.int64)
    return out


def seed_mean(
    curves: pd.DataFrame, value: str, runs_per_label: Mapping[str, int], x: str = "step", band: str = "minmax"
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The mean over runs of ``value`` per ``label`` and step, with a band, at steps where every one of the
    label's ``runs_per_label`` runs has a value (as the figures do); ``curves`` holds ``label, run, step``,
    ``value`` and, unless ``x`` is ``step``, the ``x`` column.

    Returns ``label, step, [x,] mean, lo, hi, n_seeds`` (``x``: the mean over the runs of their ``x`` at that
    step) and a note per label whose runs cover different steps (those steps are left out, not averaged over
    fewer runs)."""
    if band not in BAND_CHOICES:
        raise ValueError(f"band={band!r} is not one of {', '.join(BAND_CHOICES)}")
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not one of {', '.join(X_AXES)}")
    agg = seed_band(curves, value, by=("label",), band=band)
    full = agg["n_seeds"].to_numpy() == agg["label"].map(dict(runs_per_label)).to_numpy(dtype=np.int64)
    notes: dict[str, str] = {}
    if not full.all():
        dropped = agg[~full].groupby("label", observed=True)["step"].agg(["min", "max", "count"])
        notes = {
            str(
                lbl
            ): f"{int(r['count'])} step(s) in {int(r['min'])}..{int(r['max'])} not logged by every seed, "
            "left out"
            for lbl, r in dropped.iterrows()
        }
    agg = agg[full].reset_index(drop=True)
    if x != "step":
        d = curves[np.isfinite(curves[value].to_numpy(dtype=np.float64, na_value=np.nan))]
        xs = d.groupby(["label", "step"], observed=True, sort=True)[x].mean().reset_index()
        agg = agg.merge(xs, on=["label", "step"], how="left")
        agg = agg[["label", "step", x, "mean", "lo", "hi", "n_seeds"]]
    return agg, notes
