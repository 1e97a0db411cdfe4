"""Training dynamics from the metrics table: entropy, reward, validation Pass@1, 100% solved ratio."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.runlog import METRICS_SCHEMA
from workbench.stats.variants import RunLike, as_run

# metric column -> label, in the order of the paper's Fig. 4 panels
DYNAMICS_METRICS: dict[str, str] = {
    "entropy_mean": "Entropy",
    "val_pass1": "Validation Pass@1",
    "reward_mean": "Reward",
    "solved_all_ratio": "100% solved ratio",
}


def training_dynamics(run: RunLike, metrics: Sequence[str] = tuple(DYNAMICS_METRICS)) -> pd.DataFrame:
    """Long table ``run, step, metric, value`` of the given metrics columns over the run's complete steps.

    Null values (``val_pass1`` on steps without validation) are dropped, so every row holds a number.
    """
    run = as_run(run)
    unknown = [m for m in metrics if m not in METRICS_SCHEMA.names]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(unknown)}; the metrics table has {METRICS_SCHEMA.names}"
        )
    df = run.metrics(columns=["step", *metrics])
    long = df.melt(id_vars="step", value_vars=list(metrics), var_name="metric", value_name="value")
    long = long[np.isfinite(long["value"].to_numpy(dtype=np.float64, na_value=np.nan))]
    long.insert(0, "run", run.name)
    long["metric"] = pd.Categorical(long["metric"], categories=list(metrics), ordered=True)
    return long.sort_values(["metric", "step"], ignore_index=True)


def final_metric(run: RunLike, metric: str = "val_pass1") -> pd.DataFrame:
    """One row ``run, metric, step, value``: the last non-null value of ``metric`` (step and value NaN if none)."""
    long = training_dynamics(run, [metric])
    run = as_run(run)
    if long.empty:
        return pd.DataFrame({"run": [run.name], "metric": [metric], "step": [np.nan], "value": [np.nan]})
    last = long.iloc[[-1]]
    return pd.DataFrame(
        {
            "run": [run.name],
            "metric": [metric],
            "step": [float(last["step"].iloc[0])],
            "value": [float(last["value"].iloc[0])],
        }
    )
