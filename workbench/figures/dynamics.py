"""Fig. 4 and Fig. 5: training dynamics (entropy, validation Pass@1, reward, 100% solved ratio) over steps.

Fig. 4 compares GRPO, DAPO, GSPO and REAL; Fig. 5 DAPO, REAL w/ BCE, REAL w/o anchor and REAL. Each curve is
the mean over seeds of the run's logged metric (``workbench.stats.training_dynamics``), with a band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
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
from workbench.stats import BAND_CHOICES, DYNAMICS_METRICS, collect, spec, training_dynamics
from workbench.stats.variants import RunLike, VariantSpec

FIG4_NAME = "fig4_training_dynamics"
FIG5_NAME = "fig5_bce_anchor"
FIG4_SPECS: tuple[VariantSpec, ...] = (
    spec("GRPO", "grpo"),
    spec("DAPO", "dapo"),
    spec("GSPO", "gspo"),
    spec("REAL", "real"),
)
FIG5_SPECS: tuple[VariantSpec, ...] = (
    spec("DAPO", "dapo"),
    spec("REAL w/ BCE", "real_bce"),
    spec("REAL w/o anchor", "real_no_anchor"),
    spec("REAL", "real"),
)
PAPER_CAPTIONS = {
    FIG4_NAME: "Training dynamics of GRPO, DAPO, GSPO and REAL (paper Fig. 4).",
    FIG5_NAME: "Training dynamics of DAPO, REAL w/ BCE, REAL w/o anchor logits and REAL (paper Fig. 5).",
}


@dataclass(frozen=True)
class DynamicsParams:
    """Options of Fig. 4 / Fig. 5."""

    band: str = "minmax"  # minmax or sd over seeds
    smooth: int = 10  # trailing mean over this many steps of each run's per-step metrics (1: none)

    def __post_init__(self) -> None:
        if self.band not in BAND_CHOICES:
            raise ValueError(f"band={self.band!r} is not one of {', '.join(BAND_CHOICES)}")
        if self.smooth < 1:
            raise ValueError(f"smooth must be >= 1, got {self.smooth}")


def dynamics_data(
    name: str, runs: Sequence[RunLike], specs: Sequence[VariantSpec], p: DynamicsParams | None = None
) -> RunFigureData:
    """Select the runs of ``specs``, read their metrics, smooth per run, and average over seeds."""
    p = p or DynamicsParams()
    selected = select(name, runs, specs)
    long = collect(training_dynamics, [r for s in selected for r in s.runs])
    long = attach_specs(long, selected)
    dense = long["metric"] != "val_pass1"
    long = pd.concat(
        [smooth_runs(long[dense], "value", p.smooth, by=("run", "metric")), long[~dense]], ignore_index=True
    )
    agg, notes = band_over_seeds(long, "value", selected, p.band, by=("metric",))
    extra = (
        "Validation Pass@1 is drawn at validated steps only, step 0 being the validation before training, and "
        "is never smoothed."
    )
    if p.smooth > 1:
        extra += (
            f" Entropy, reward and 100% solved ratio: each run smoothed by a trailing mean over {p.smooth} "
            "steps before averaging over seeds."
        )
    caption = f"{PAPER_CAPTIONS.get(name, '')} {runs_caption(selected, p.band, extra)}".strip()
    return RunFigureData(name, selected, {"dynamics": long, "band": agg}, caption, notes)


def build_dynamics(data: RunFigureData, p: DynamicsParams | None = None) -> Figure:
    """Four panels in the paper's order: entropy, validation Pass@1, reward, 100% solved ratio."""
    fig, axes = new_figure(ncols=2, nrows=2, width=5.0, height=3.2)
    colors = data.colors()
    agg = data.frames["band"]
    for ax, (metric, label) in zip(axes.ravel(), DYNAMICS_METRICS.items(), strict=True):
        part = agg[agg["metric"] == metric]
        for sel in data.selected:
            rows = part[part["label"] == sel.spec.label]
            if rows.empty:
                continue
            sparse = metric == "val_pass1"
            plot_band(ax, rows, colors[sel.spec.label], sel.spec.label, marker="o" if sparse else None)
        if part.empty:
            ax.text(0.5, 0.5, "no values logged", transform=ax.transAxes, ha="center", color="0.4")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.25)
    handles, labels = axes[0, 0].get_legend_handles_labels()  # above the panels: no line is hidden
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=8, frameon=False)
    add_caption(fig, data.caption)
    return fig


def fig4_data(runs: Sequence[RunLike], p: DynamicsParams | None = None) -> RunFigureData:
    return dynamics_data(FIG4_NAME, runs, FIG4_SPECS, p)


def fig5_data(runs: Sequence[RunLike], p: DynamicsParams | None = None) -> RunFigureData:
    return dynamics_data(FIG5_NAME, runs, FIG5_SPECS, p)
