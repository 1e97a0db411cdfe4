"""Gradient allocation: how concentrated the logged gradient weight is, and whether it follows ``s``.

The paper's two failure modes of GRPO (Sec. 3), made measurable per step:

- *domination*: a few tokens or rollouts carry most of the gradient. Measured by the share of the step's total
  weight held by the top ``top`` fraction (default 1%) of tokens and of rollouts, and by the Gini coefficient
  of the token and rollout weights (``workbench.stats.segments.seg_gini_top``).
- *misassignment*: for correct rollouts the weight should fall as ``s`` rises (hard, under-estimated positives
  need the push); GRPO's ``|A| e^{s_t}`` rises instead. Measured by Pearson correlations of weight with ``s``,
  separately for correct and wrong rollouts: token level ``corr(tokens.weight, tokens.s)`` and rollout level
  ``corr(rollouts.weight, rollouts.s_bar)``. Positive for correct rollouts = misassignment; for wrong rollouts
  a positive correlation is expected of every method (REAL's is bounded, GRPO's exponential).

Weights are the logged ``tokens.weight`` and ``rollouts.weight`` (docs/run_format.md): per-token magnitude
with per-rollout length normalisation, the KL term and the loss aggregation left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.stats.load import Minibatches, read_tokens_joined
from workbench.stats.segments import seg_gini_top, seg_pearson, seg_sum
from workbench.stats.variants import RunLike, as_run

ALLOCATION_COLUMNS: tuple[str, ...] = (
    "tokens",
    "rollouts",
    "top_token_share",
    "top_rollout_share",
    "gini_token",
    "gini_rollout",
    "corr_token_correct",
    "corr_token_wrong",
    "corr_rollout_correct",
    "corr_rollout_wrong",
)


def gradient_allocation(
    run: RunLike, *, top: float = 0.01, minibatches: Minibatches = "later", used_only: bool = True
) -> pd.DataFrame:
    """One row per step: concentration of the gradient weight and its correlation with ``s``.

    Columns: ``run, step`` and ``ALLOCATION_COLUMNS``, then ``top``:

    - ``tokens``, ``rollouts``: how many entered the statistics (``used_only``: rollouts whose group entered
      the loss, ``rollouts.used``, and their tokens);
    - ``top_token_share``, ``top_rollout_share``: share of the step's summed weight held by its largest
      ``max(1, ceil(top * n))`` tokens / rollouts;
    - ``gini_token``, ``gini_rollout``: Gini coefficient of the weights;
    - ``corr_{token,rollout}_{correct,wrong}``: Pearson correlation of weight with ``s`` (tokens) or ``s_bar``
      (rollouts) among correct (reward > 0.5) or wrong rollouts.

    NaN where a value is undefined: total weight 0, fewer than 2 elements, or a constant weight or ``s`` (e.g.
    every ``s`` of the first mini-batch is 0, hence ``minibatches="later"``).
    """
    run = as_run(run)
    tok, rol, row = read_tokens_joined(
        run, ["s", "weight"], ["correct", "weight", "s_bar"], minibatches, used_only=used_only
    )
    nt = len(tok.steps)
    t_gini, t_top = seg_gini_top(tok.step_code, nt, tok["weight"], top)
    t_correct = rol["correct"][row].astype(np.int64)
    t_corr = seg_pearson(tok.step_code * 2 + t_correct, nt * 2, tok["weight"], tok["s"]).reshape(nt, 2)
    tokens = pd.DataFrame(
        {
            "step": tok.steps,
            "tokens": seg_sum(tok.step_code, nt),
            "top_token_share": t_top,
            "gini_token": t_gini,
            "corr_token_correct": t_corr[:, 1],
            "corr_token_wrong": t_corr[:, 0],
        }
    )

    nr = len(rol.steps)
    r_gini, r_top = seg_gini_top(rol.step_code, nr, rol["weight"], top)
    r_correct = rol["correct"].astype(np.int64)
    r_corr = seg_pearson(rol.step_code * 2 + r_correct, nr * 2, rol["weight"], rol["s_bar"]).reshape(nr, 2)
    rollouts = pd.DataFrame(
        {
            "step": rol.steps,
            "rollouts": seg_sum(rol.step_code, nr),
            "top_rollout_share": r_top,
            "gini_rollout": r_gini,
            "corr_rollout_correct": r_corr[:, 1],
            "corr_rollout_wrong": r_corr[:, 0],
        }
    )
    out = rollouts.merge(tokens, on="step", how="outer").sort_values("step", ignore_index=True)
    out["tokens"] = out["tokens"].fillna(0).astype(np.int64)
    out["rollouts"] = out["rollouts"].fillna(0).astype(np.int64)
    out.insert(0, "run", run.name)
    out["top"] = top
    return out[["run", "step", *ALLOCATION_COLUMNS, "top"]]
