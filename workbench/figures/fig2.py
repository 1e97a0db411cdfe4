"""Fig. 2: hard tokens in GRPO. Where token ratios fall, what each clip mode discards, and what discarding costs.

(a) share of GRPO's tokens per ratio interval, split by the sign of the advantage (``token_intervals``);
(b) share of the same tokens vanilla and bidirectional clipping discard, per step (``clip_discards``, which
    calls ``workbench.closed_forms.keep_indicator``). Only tokens that carry gradient (A != 0) count as discarded:
    a token with A = 0 has no gradient under either rule. The share is over all tokens, as verl's clip fraction;
    figures built before this rule counted A = 0 tokens outside the interval as discarded by the bidirectional
    rule, which overstated its excess over vanilla;
(c) validation Pass@1 of GRPO trained with vanilla clipping against GRPO trained with bidirectional clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from workbench.figures.common import clear_legends, new_figure
from workbench.figures.from_runs import (
    RunFigureData,
    add_caption,
    attach_specs,
    band_over_seeds,
    plot_band,
    runs_caption,
    select,
)
from workbench.stats import (
    BAND_CHOICES,
    INTERVALS,
    MINIBATCH_CHOICES,
    MINIBATCH_NOTE,
    SIGNS,
    clip_discards,
    collect,
    spec,
    token_intervals,
    training_dynamics,
)
from workbench.stats.load import read_tokens_joined
from workbench.stats.variants import RunLike

NAME = "fig2_hard_tokens"
SPECS = (spec("GRPO", "grpo"), spec("GRPO bidirectional clip", "grpo", clip_mode="bidirectional"))
SIGN_COLORS = {"A>0": "#2ca02c", "A<0": "#d62728", "A=0": "#aaaaaa"}
INTERVAL_TEX = {
    "<1-eps": r"$\rho<1-\varepsilon$",
    "[1-eps,1)": r"$[1-\varepsilon,1)$",
    "[1,1+eps]": r"$[1,1+\varepsilon]$",
    ">1+eps": r"$\rho>1+\varepsilon$",
}
# panel (b): both rules applied to the tokens of the vanilla-clip runs; the labels say which is counterfactual
DISCARD_LINES = {
    "vanilla": ("#d62728", "vanilla rule (as trained)"),
    "bidirectional": ("#8c564b", "bidirectional rule (same tokens)"),
}


@dataclass(frozen=True)
class Fig2Params:
    """Options of Fig. 2."""

    step: int | None = None  # panel (a) at this step (the paper: 200); None: mean over all logged steps
    band: str = "minmax"
    minibatches: str = "later"

    def __post_init__(self) -> None:
        if self.band not in BAND_CHOICES:
            raise ValueError(f"band={self.band!r} is not one of {', '.join(BAND_CHOICES)}")
        if self.minibatches not in MINIBATCH_CHOICES:
            raise ValueError(f"minibatches={self.minibatches!r} is not one of {', '.join(MINIBATCH_CHOICES)}")


def fig2_data(runs: Sequence[RunLike], p: Fig2Params | None = None) -> RunFigureData:
    p = p or Fig2Params()
    selected = select(NAME, runs, SPECS)
    vanilla = selected[0]
    ints = collect(token_intervals, vanilla.runs, minibatches=p.minibatches)
    if ints.empty or ints["tokens"].sum() == 0:
        raise ValueError(
            f"figure {NAME}: the GRPO runs ({', '.join(r.name for r in vanilla.runs)}) log no tokens of "
            f"{'later mini-batches' if p.minibatches == 'later' else 'any mini-batch'}"
            + (" (one mini-batch per step?); pass --minibatches all" if p.minibatches == "later" else "")
        )
    if p.step is not None:
        have = ints.groupby("run")["step"].agg(lambda s: p.step in set(s))
        lacking = sorted(have[~have].index)
        if lacking:
            raise ValueError(
                f"figure {NAME}: step {p.step} is not logged (with tokens) by run(s) {', '.join(lacking)}"
            )
        ints = ints[ints["step"] == p.step]
    # per run: mean over the chosen steps of the per-step share; then mean and band over seeds
    per_run = ints.groupby(["run", "sign", "interval"], observed=True)["share"].mean().reset_index()
    g = per_run.groupby(["sign", "interval"], observed=True)["share"]
    bars = g.agg(["mean", "min", "max", "std", "count"]).reset_index()

    disc = collect(clip_discards, vanilla.runs, minibatches=p.minibatches)
    disc_band, _ = band_over_seeds(
        disc.assign(label=vanilla.spec.label), "share", [vanilla], p.band, by=("clip_mode",)
    )
    wide = disc.pivot_table(index=["run", "step"], columns="clip_mode", values="share", observed=True)
    extra_share = float((wide["bidirectional"] - wide["vanilla"]).mean())

    # tokens the policy did not move at all (s = 0, ratio exactly 1: mostly near-certain tokens, whose
    # probability rounds to the same float): they count in [1, 1+eps] and say how much of (a) is inert
    unmoved = float(
        np.mean([np.mean(read_tokens_joined(r, ["s"], [], p.minibatches)[0]["s"] == 0) for r in vanilla.runs])
    )
    val = collect(training_dynamics, [r for s in selected for r in s.runs], metrics=["val_pass1"])
    val = attach_specs(val, selected)
    val_band, notes = band_over_seeds(val, "value", selected, p.band)

    where = f"at step {p.step}" if p.step is not None else "mean over all logged steps"
    caption = (
        f"Hard tokens in GRPO (paper Fig. 2). (a) share of GRPO's tokens per ratio interval, {where}, "
        f"split by the sign of A (A = 0: groups whose rollouts all got the same reward, no gradient); "
        f"{100 * unmoved:.1f}% of these tokens have ratio exactly 1 (s = 0) and count in [1, 1+eps]; error bars: "
        f"{'min-max' if p.band == 'minmax' else '±1 sd'} over seeds. "
        f"(b) share of the vanilla-clip GRPO runs' tokens each clip rule discards (keep_indicator, eps of the "
        f"run), counting only tokens that carry gradient (A ≠ 0: an A = 0 token has none to discard under either "
        f"rule), over all tokens as verl's clip fraction: the vanilla rule is what those runs discarded, the "
        f"bidirectional rule what it would have discarded on the same tokens, {100 * extra_share:.2f} percentage "
        f"points more on average. (c) "
        f"validation Pass@1 of GRPO trained with each rule (validated steps only). (a, b): "
        f"{MINIBATCH_NOTE[p.minibatches].lower()}. {runs_caption(selected, p.band)}"
    )
    return RunFigureData(
        NAME,
        selected,
        {
            "intervals": ints,
            "bars": bars,
            "discards": disc,
            "discard_band": disc_band,
            "val": val,
            "val_band": val_band,
        },
        caption,
        {
            **notes,
            "extra_share_bidirectional": extra_share,
            "ratio_exactly_1_share": unmoved,
            "eps": ints[["eps_low", "eps_high"]].iloc[0].tolist(),
        },
    )


def build_fig2(data: RunFigureData, p: Fig2Params | None = None) -> Figure:
    p = p or Fig2Params()
    fig, axes = new_figure(ncols=3, nrows=1, width=4.6, height=3.6)
    ax = axes[0, 0]
    bars = data.frames["bars"]
    width = 0.27
    x = np.arange(len(INTERVALS))
    for i, sign in enumerate(SIGNS):
        rows = bars[bars["sign"] == sign].set_index("interval").reindex(list(INTERVALS))
        mean = 100 * rows["mean"].to_numpy(dtype=float)
        if p.band == "minmax":
            lo, hi = 100 * rows["min"].to_numpy(dtype=float), 100 * rows["max"].to_numpy(dtype=float)
        else:
            sd = 100 * np.nan_to_num(rows["std"].to_numpy(dtype=float))
            lo, hi = mean - sd, mean + sd
        err = np.vstack([mean - lo, hi - mean])
        pos = x + (i - 1) * width
        ax.bar(pos, mean, width, color=SIGN_COLORS[sign], label=sign, yerr=err, capsize=2, ecolor="0.3")
        for xi, m, top in zip(pos, mean, hi, strict=True):
            ax.text(xi, top, f"{m:.2f}" if m < 1 else f"{m:.1f}", ha="center", va="bottom", fontsize=5.5)
    eps_low, eps_high = data.notes["eps"]
    ax.set_xticks(x, [INTERVAL_TEX[k] for k in INTERVALS], fontsize=8)
    ax.set_ylabel("share of tokens (%)")
    ax.set_title(f"(a) GRPO tokens per ratio interval\n(ε = [{eps_low:g}, {eps_high:g}])", fontsize=10)
    bar_legend = (ax, {"fontsize": 8, "frameon": False})
    ax.grid(alpha=0.25, axis="y")

    ax = axes[0, 1]
    band = data.frames["discard_band"]
    for mode, (color, label) in DISCARD_LINES.items():
        rows = band[band["clip_mode"] == mode]
        rows = rows.assign(mean=100 * rows["mean"], lo=100 * rows["lo"], hi=100 * rows["hi"])
        plot_band(ax, rows, color, label)
    ax.set_title("(b) tokens of the GRPO runs each clip rule discards", fontsize=10)
    ax.set_ylabel("tokens discarded (%)")
    ax.set_xlabel("training step")
    ax.set_ylim(bottom=0)
    # the difference heads the legend: a free-standing note ran into the legend box on the tiny runs
    title = f"bidirectional − vanilla: {100 * data.notes['extra_share_bidirectional']:+.2f} pp"
    discard_legend = (ax, {"fontsize": 8, "frameon": False, "title": title, "title_fontsize": 8})
    ax.grid(alpha=0.25)

    ax = axes[0, 2]
    colors = data.colors()
    val = data.frames["val_band"]
    for sel in data.selected:
        rows = val[val["label"] == sel.spec.label]
        if not rows.empty:
            plot_band(ax, rows, colors[sel.spec.label], sel.spec.label, marker="o")
    if val.empty:
        ax.text(0.5, 0.5, "no validation logged", transform=ax.transAxes, ha="center", color="0.4")
    ax.set_title("(c) validation Pass@1", fontsize=10)
    ax.set_xlabel("training step")
    ax.set_ylabel("Pass@1")
    ax.grid(alpha=0.25)
    add_caption(fig, data.caption)
    clear_legends(fig, [bar_legend, discard_legend, (ax, {"fontsize": 8, "frameon": False})])
    return fig
