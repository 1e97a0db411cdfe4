"""Training dynamics from the metrics table: entropy, reward, validation Pass@1, 100% solved ratio.

The validation before the first step is not a metrics row (no step 0 is logged); the trainer records it as the
event ``{"event": "validation", "step": 0, "val_pass1": ...}`` in ``events.jsonl`` (docs/run_format.md), and
``training_dynamics`` adds it as step 0, so that validation curves start where every run started.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

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


def initial_validation(run: RunLike) -> dict[str, Any]:
    """The validation before the first step: the last ``validation`` event with ``step`` 0 in ``events.jsonl``
    (a run resumed before its first checkpoint validates again, with the same seed), or ``{}`` if there is none.

    Lines that are not JSON objects (e.g. a line cut short by a kill) are skipped: events are notes, not data.
    """
    path = as_run(run).dir / "events.jsonl"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return {}
    found: dict[str, Any] = {}
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("event") == "validation" and event.get("step") == 0:
            found = event
    return found


def training_dynamics(
    run: RunLike, metrics: Sequence[str] = tuple(DYNAMICS_METRICS), initial: bool = True
) -> pd.DataFrame:
    """Long table ``run, step, metric, value`` of the given metrics columns over the run's complete steps.

    Null values (``val_pass1`` on steps without validation) are dropped, so every row holds a number.
    ``initial``: add the validation before training (``initial_validation``) as step 0 for each requested
    metric it holds as a finite number (``val_pass1``).
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
    if initial:
        first = initial_validation(run)
        rows = [
            {"step": 0, "metric": m, "value": float(first[m])}
            for m in metrics
            if isinstance(first.get(m), int | float) and math.isfinite(first[m])
        ]
        if rows:
            long = pd.concat(
                [pd.DataFrame(rows).astype({"step": long["step"].dtype}), long], ignore_index=True
            )
    long.insert(0, "run", run.name)
    long["metric"] = pd.Categorical(long["metric"], categories=list(metrics), ordered=True)
    return long.sort_values(["metric", "step"], ignore_index=True)


def final_metric(run: RunLike, metric: str = "val_pass1") -> pd.DataFrame:
    """One row ``run, metric, step, value``: the last non-null value of ``metric`` logged at a training step
    (step and value NaN if none; the validation before training does not count)."""
    long = training_dynamics(run, [metric], initial=False)
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
