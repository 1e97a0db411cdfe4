"""Gradient allocation over training (not in the paper): how concentrated each method's gradient is.

(a) share of a step's total token weight held by its top ``top`` (1%) tokens, (b) the same for rollouts,
(c) and (d) correlation of the rollout weight with ``s_bar`` among correct and among wrong rollouts
(``workbench.stats.gradient_allocation``). GRPO's domination shows as a high top share; its misassignment as
a positive correlation for correct rollouts, where REAL's is negative.

A low top share for REAL is not by itself the paper's bounded-weight mechanism at work. REAL's weight is
``(1/tau) / (1 + C e^{+-s_bar/tau})``; where ``e^{s_bar/tau}`` stays near 1 (``|s_bar| << tau``) it is
``(1/tau) / (1 + C)`` with ``C+ = k``, ``C- = G - k`` for k correct rollouts of G: fixed by the group's
composition alone, and more even across compositions than GRPO's ``|A|``. The caption therefore states REAL's
``s_bar`` range (1-99% quantiles of its mixed-group rollouts) and the ``e^{s_bar/tau}`` range it implies, so a
reader sees which regime the runs were in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from workbench.figures.common import new_figure
from workbench.figures.from_runs import (
    RunFigureData,
    add_caption,
    attach_specs,
    band_over_seeds,
    plot_band,
    runs_caption,
    select,
    smooth_runs,
)
from workbench.stats import (
    BAND_CHOICES,
    MINIBATCH_CHOICES,
    MINIBATCH_NOTE,
    collect,
    gradient_allocation,
    real_weights,
    spec,
)

NAME = "fig_gradient_allocation"
SPECS = (spec("GRPO", "grpo"), spec("DAPO", "dapo"), spec("GSPO", "gspo"), spec("REAL", "real"))
PANELS = {
    "top_token_share": "(a) weight share of the top {pct} tokens",
    "top_rollout_share": "(b) weight share of the top {pct} rollouts",
    "corr_rollout_correct": r"(c) corr(weight, $\bar{{s}}$), correct rollouts",
    "corr_rollout_wrong": r"(d) corr(weight, $\bar{{s}}$), wrong rollouts",
}


@dataclass(frozen=True)
class AllocationParams:
    """Options of the gradient-allocation figure."""

    top: float = 0.01  # fraction of tokens / rollouts whose weight share is shown
    band: str = "minmax"
    minibatches: str = "later"
    smooth: int = 10  # trailing mean over this many steps of each run (per-step values are noisy)

    def __post_init__(self) -> None:
        if not 0 < self.top <= 1:
            raise ValueError(f"top must be in (0, 1], got {self.top}")
        if self.band not in BAND_CHOICES:
            raise ValueError(f"band={self.band!r} is not one of {', '.join(BAND_CHOICES)}")
        if self.minibatches not in MINIBATCH_CHOICES:
            raise ValueError(f"minibatches={self.minibatches!r} is not one of {', '.join(MINIBATCH_CHOICES)}")
        if self.smooth < 1:
            raise ValueError(f"smooth must be >= 1, got {self.smooth}")


def allocation_data(runs, p: AllocationParams | None = None) -> RunFigureData:
    p = p or AllocationParams()
    selected = select(NAME, runs, SPECS)
    alloc = collect(
        gradient_allocation, [r for s in selected for r in s.runs], top=p.top, minibatches=p.minibatches
    )
    alloc = attach_specs(alloc, selected)
    long = alloc.melt(id_vars=["run", "label", "seed", "step"], value_vars=list(PANELS), var_name="stat")
    long = smooth_runs(long.dropna(subset=["value"]), "value", p.smooth, by=("run", "stat"))
    agg, notes = band_over_seeds(long, "value", selected, p.band, by=("stat",))
    if agg.empty:
        raise ValueError(
            f"figure {NAME}: no step of the runs has gradient weight in "
            f"{'later mini-batches (pass --minibatches all)' if p.minibatches == 'later' else 'any mini-batch'}"
        )
    pct = f"{100 * p.top:g}%"
    extra = (
        f"Top share: weight held by the largest max(1, ceil({pct} of n)) of a step's n tokens / rollouts of groups "
        f"in the loss; weights are the logged per-token |W| with per-rollout length normalisation. "
        f"Correlations: Pearson, per step. {MINIBATCH_NOTE[p.minibatches]}; steps where a value is undefined "
        f"(no weight, constant s) are left out."
    )
    if p.smooth > 1:
        extra += f" Each run smoothed by a trailing mean over {p.smooth} logged steps."
    regime, regime_notes = _real_regime(selected, p.minibatches)
    caption = f"Gradient allocation over training. {regime}{runs_caption(selected, p.band, extra)}"
    return RunFigureData(
        NAME, selected, {"allocation": alloc, "band": agg}, caption, {**notes, **regime_notes}
    )


def _real_regime(selected, minibatches: str) -> tuple[str, dict]:
    """Caption sentence on REAL's regime: the 1-99% quantiles of its mixed-group rollouts' ``s_bar`` and the range
    of ``e^{s_bar/tau}`` they imply (empty when no REAL rollout is in the loss)."""
    real_sel = [sel for sel in selected if sel.spec.method == "real"]
    if not real_sel:
        return "", {}
    rw = collect(real_weights, real_sel[0].runs, minibatches=minibatches)
    used = rw[rw["used"]]
    if used.empty:
        return "", {}
    tau = float(used["tau"].iloc[0])
    lo, hi = (float(v) for v in np.quantile(used["s_bar"].to_numpy(dtype=float), [0.01, 0.99]))
    text = (
        f"REAL's s̄ (rollouts of mixed groups): 1-99% quantiles [{lo:.3g}, {hi:.3g}], so e^(s̄/τ) lies in "
        f"[{_exp_text(lo / tau)}, {_exp_text(hi / tau)}] (τ = {tau:g}). Where e^(s̄/τ) ≈ 1, REAL's weight (1/τ)/(1 + C e^(±s̄/τ)) is "
        f"(1/τ)/(1 + C) with C+ = k, C− = G − k for k correct of G: set by group composition alone, so a low "
        f"top share then reflects that composition weighting, not the bound 1/τ. "
    )
    return text, {"real_s_bar_q01_q99": [lo, hi], "real_s_bar_over_tau_q01_q99": [lo / tau, hi / tau]}


def _exp_text(x: float) -> str:
    """``e^x`` for a caption, without overflow: the value where it is a float, else ``e^x`` written out."""
    return f"{math.exp(x):.3g}" if abs(x) < 700 else f"e^{x:.3g}"


def build_allocation(data: RunFigureData, p: AllocationParams | None = None) -> Figure:
    p = p or AllocationParams()
    fig, axes = new_figure(ncols=2, nrows=2, width=5.0, height=3.2)
    colors = data.colors()
    agg = data.frames["band"]
    pct = f"{100 * p.top:g}%"
    for ax, (stat, title) in zip(axes.ravel(), PANELS.items(), strict=True):
        part = agg[agg["stat"] == stat]
        for sel in data.selected:
            rows = part[part["label"] == sel.spec.label]
            if not rows.empty:
                plot_band(ax, rows, colors[sel.spec.label], sel.spec.label)
        ax.set_title(title.format(pct=pct), fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.25)
        if stat.startswith("corr"):
            ax.axhline(0, color="0.4", lw=0.8)
            ax.set_ylim(-1.05, 1.05)
        else:  # zoom on the data: shares of a few percent would hug the axis on [0, 1]
            top = float(part["hi"].max()) if not part.empty else p.top
            ax.set_ylim(0, min(1.02, max(1.2 * top, 2.5 * p.top)))
            ax.axhline(p.top, color="0.4", lw=0.8, ls=":", label=f"uniform weight ({pct})")
            ax.set_ylabel("share of total weight")
    handles, labels = axes[0, 0].get_legend_handles_labels()  # above the panels: no line is hidden
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=8, frameon=False)
    add_caption(fig, data.caption)
    return fig
