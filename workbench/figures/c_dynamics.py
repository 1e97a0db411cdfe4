"""C+/C- against group composition (not in the paper), and what REAL would have given to GRPO's rollouts.

(a) mean ``log C`` of correct (C+) and wrong (C-) rollouts by the number of correct rollouts in the group:
    REAL's logged values, REAL recomputed with the closed forms on GRPO's logged ``s_bar``, and the value at
    ``s_bar = 0`` (also from the closed forms);
(b) the resulting mean rollout weight: REAL's ``W``, REAL's ``W`` on GRPO's ``s_bar``, and GRPO's own logged
    rollout weight ``sum_t |A| rho_t I_t / |o|``;
(c) mean ``log C+`` and ``log C-`` over training in the REAL runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from workbench.figures.common import min_text_pt, new_figure
from workbench.figures.from_runs import (
    RunFigureData,
    add_caption,
    band_over_seeds,
    plot_band,
    runs_caption,
    select,
)
from workbench.methods import DEFAULTS
from workbench.stats import (
    BAND_CHOICES,
    BAND_NOTE,
    MINIBATCH_CHOICES,
    MINIBATCH_NOTE,
    c_by_composition,
    collect,
    real_weights,
    recompute_real,
    seed_band,
    spec,
)

NAME = "fig_c_dynamics"
SPECS = (spec("REAL", "real"), spec("GRPO", "grpo"))
LABEL_COLORS = {True: "#2ca02c", False: "#d62728"}


@dataclass(frozen=True)
class CDynamicsParams:
    """Options of the C+/C- figure."""

    tau: float = DEFAULTS["real"].tau  # tau of REAL recomputed on GRPO's s_bar
    band: str = "minmax"
    minibatches: str = "later"

    def __post_init__(self) -> None:
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.band not in BAND_CHOICES:
            raise ValueError(f"band={self.band!r} is not one of {', '.join(BAND_CHOICES)}")
        if self.minibatches not in MINIBATCH_CHOICES:
            raise ValueError(f"minibatches={self.minibatches!r} is not one of {', '.join(MINIBATCH_CHOICES)}")


def reference_at_zero(group_size: int, tau: float) -> pd.DataFrame:
    """``log C`` of REAL at ``s_bar = 0`` for every composition 1..G-1, from ``recompute_real``."""
    ks = np.arange(1, group_size)
    step = np.repeat(np.zeros(len(ks), dtype=np.int64), group_size)
    group = np.repeat(ks, group_size)
    correct = (np.tile(np.arange(group_size), len(ks)) < group).astype(float)
    log_c, _, _ = recompute_real(step, group, np.zeros(len(group)), correct, tau=tau)
    df = pd.DataFrame({"group_correct": group, "correct": correct > 0.5, "log_c": log_c})
    return df.groupby(["group_correct", "correct"], as_index=False)["log_c"].mean()


def c_dynamics_data(runs, p: CDynamicsParams | None = None) -> RunFigureData:
    p = p or CDynamicsParams()
    selected = select(NAME, runs, SPECS)
    real_sel, grpo_sel = selected
    real = collect(real_weights, real_sel.runs, minibatches=p.minibatches)
    grpo = collect(real_weights, grpo_sel.runs, recompute=True, tau=p.tau, minibatches=p.minibatches)
    used = pd.concat([real[real["used"]], grpo[grpo["used"]]])
    if used.empty:
        raise ValueError(
            f"figure {NAME}: no rollout of a mixed group in "
            f"{'later mini-batches (pass --minibatches all)' if p.minibatches == 'later' else 'the runs'}"
        )
    sizes = sorted(used["group_size"].unique().tolist())
    if len(sizes) > 1:
        raise ValueError(f"figure {NAME}: the runs mix group sizes {sizes}; pass runs of one group size")
    g = int(sizes[0])

    def by_k(values: pd.DataFrame, source: str) -> pd.DataFrame:
        comp = c_by_composition(values)
        comp["source"] = source
        return comp

    comp = pd.concat(
        [by_k(real, "REAL (logged)"), by_k(grpo, f"REAL τ={p.tau:g} on GRPO's s̄")], ignore_index=True
    )
    long = comp.melt(
        id_vars=["run", "source", "group_correct", "correct"],
        value_vars=["log_c_mean", "weight_mean", "logged_weight_mean"],
        var_name="stat",
    )
    # GRPO's own logged weight is a third source of the weight panel
    grpo_runs = {r.name for r in grpo_sel.runs}
    is_grpo = long["run"].isin(grpo_runs)
    long = long[~(~is_grpo & (long["stat"] == "logged_weight_mean"))]
    long.loc[is_grpo & (long["stat"] == "logged_weight_mean"), "source"] = "GRPO (logged)"
    long.loc[long["stat"] == "logged_weight_mean", "stat"] = "weight_mean"
    long = long.rename(columns={"source": "label"})
    by_k_band = seed_band(long, "value", x="group_correct", by=("label", "stat", "correct"), band=p.band)

    per_step = (
        real[real["used"]]
        .groupby(["run", "step", "correct"], as_index=False)["log_c"]
        .mean()
        .assign(label="REAL")
    )
    steps_band, notes = band_over_seeds(per_step, "log_c", [real_sel], p.band, by=("correct",))

    s_used = real.loc[real["used"], "s_bar"].to_numpy(dtype=float)
    s_q = [float(v) for v in np.quantile(s_used, [0.01, 0.99])] if len(s_used) else [np.nan, np.nan]
    extra = (
        f"Group size G = {g}; compositions 1..G-1 (mixed groups, the ones in the loss). REAL's s̄ of those "
        f"rollouts: 1-99% quantiles [{s_q[0]:.3g}, {s_q[1]:.3g}] (where |s̄| << τ, log C is close to its value "
        f"at s̄ = 0). (a, b): means over "
        f"rollouts of each run pooled over steps, then {BAND_NOTE[p.band].replace('band: ', '')}. "
        f"{MINIBATCH_NOTE[p.minibatches]}."
    )
    caption = f"C+/C- against group composition. {runs_caption(selected, p.band, extra)}"
    return RunFigureData(
        NAME,
        selected,
        {
            "real": real,
            "grpo_recomputed": grpo,
            "by_composition": by_k_band,
            "over_steps": steps_band,
            "reference": reference_at_zero(g, real_weights_tau(real)),
        },
        caption,
        {**notes, "group_size": g, "tau_recomputed": p.tau, "real_s_bar_q01_q99": s_q},
    )


def real_weights_tau(real: pd.DataFrame) -> float:
    taus = sorted(real["tau"].unique().tolist())
    return float(taus[0]) if len(taus) == 1 else DEFAULTS["real"].tau


# line style and marker per source; colour says correct (C+) or wrong (C-)
SOURCE_STYLE: dict[str, tuple[str, str]] = {"REAL (logged)": ("-", "o"), "GRPO (logged)": ("-.", "^")}
RECOMPUTED_STYLE = ("--", "s")  # REAL recomputed on GRPO's s_bar


def source_style(label: str) -> tuple[str, str]:
    return SOURCE_STYLE.get(label, RECOMPUTED_STYLE)


def _legend(labels: list[str], reference: bool = False) -> dict:
    """Legend arguments with one entry per source (line style, marker) and per rollout label (colour): every
    line is named."""
    handles = [
        Line2D(
            [],
            [],
            color="0.25",
            ls=source_style(lb)[0],
            marker=source_style(lb)[1],
            ms=4,
            mfc="none",
            label=lb,
        )
        for lb in labels
    ]
    if reference:
        handles.append(
            Line2D([], [], color="0.45", ls=":", marker="x", ms=4, label=r"REAL at $\bar{s}=0$ (closed form)")
        )
    handles += [
        Patch(color=LABEL_COLORS[True], label="correct rollouts (C+)"),
        Patch(color=LABEL_COLORS[False], label="wrong rollouts (C-)"),
    ]
    return {"handles": handles, "fontsize": 6.5, "frameon": False}


def build_c_dynamics(data: RunFigureData, p: CDynamicsParams | None = None) -> Figure:
    """Panels (a) mean log C and (b) mean rollout weight by group composition, (c) REAL's mean log C over training,
    and one legend for all three in the fourth cell (a 2 x 2 grid: the text stays legible where the app shows the
    figure, see ``common.min_text_pt``)."""
    p = p or CDynamicsParams()
    fig, axes = new_figure(ncols=2, nrows=2, width=5.0, height=3.4)
    comp = data.frames["by_composition"]
    sources: set[str] = set()
    for ax, stat, title in (
        (axes[0, 0], "log_c_mean", "(a) mean log C by group composition"),
        (axes[0, 1], "weight_mean", "(b) mean rollout weight by group composition"),
    ):
        part = comp[comp["stat"] == stat]
        for (label, correct), rows in part.groupby(["label", "correct"], sort=True):
            rows = rows.sort_values("group_correct")
            x = rows["group_correct"].to_numpy()
            ls, marker = source_style(label)
            color = LABEL_COLORS[bool(correct)]
            ax.plot(x, rows["mean"], ls=ls, marker=marker, ms=4, mfc="none", color=color, lw=1.3)
            ax.fill_between(x, rows["lo"], rows["hi"], color=color, alpha=0.12, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"correct rollouts in the group (G = {data.notes['group_size']})")
        ax.grid(alpha=0.25)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # group compositions and steps are counts
        sources |= set(part["label"].unique().tolist())
    ref = data.frames["reference"]
    for _, rows in ref.groupby("correct"):
        axes[0, 0].plot(rows["group_correct"], rows["log_c"], ls=":", color="0.45", marker="x", ms=4)
    axes[0, 0].set_ylabel("log C")
    axes[0, 1].set_ylabel("|W| (rollout)")

    ax = axes[1, 0]
    steps = data.frames["over_steps"]
    for correct in (True, False):
        rows = steps[steps["correct"] == correct]
        if not rows.empty:
            plot_band(ax, rows, LABEL_COLORS[correct], "log C+ (correct)" if correct else "log C- (wrong)")
    ax.set_title("(c) REAL: mean log C over training", fontsize=10)
    ax.set_xlabel("training step")
    ax.set_ylabel("log C")
    ax.grid(alpha=0.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    add_caption(fig, data.caption)
    legend_cell = axes[1, 1]
    legend_cell.axis("off")
    args = _legend(sorted(sources, key=lambda lb: (lb not in SOURCE_STYLE, lb)), reference=True)
    legend_cell.legend(
        **{
            **args,
            "fontsize": min_text_pt(fig),
            "title_fontsize": min_text_pt(fig),
            "loc": "center left",
            "title": "(a), (b), (c)",
        }
    )
    return fig
