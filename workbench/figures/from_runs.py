"""Plumbing of the figures drawn from run directories: selecting variants, seed bands, captions, sidecars.

A run figure is two steps, so that the app can cache the first and redraw the second:

    data = figX_data(runs, params)   # reads run directories -> RunFigureData (tidy frames + which runs)
    fig = build_figX(data, params)   # draws, reads nothing

``data.meta(params)`` is the JSON sidecar's content: parameters, caption, and every run with its variant and
seed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.figures.common import METHOD_COLORS, legible_text, min_text_pt
from workbench.stats import BAND_NOTE, Selected, expand_run_paths, seed_band, select_variants
from workbench.stats.mechanisms import logged_regime
from workbench.stats.variants import RunLike, VariantSpec

# Colours for non-default variants of a method (GRPO bidirectional, REAL tau = 0.1, ...), in order of use.
EXTRA_COLORS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39")


def variant_colors(
    labels: Sequence[str], methods: Mapping[str, str], default: Mapping[str, bool]
) -> dict[str, str]:
    """Variant label -> colour, for the figures and the app's run charts alike: the method's colour for a method's
    default variant, the next of ``EXTRA_COLORS`` (cycling) for others (``methods``: label -> method;
    ``default``: label -> is the method's default variant); grey for a method without a colour."""
    extra = iter(EXTRA_COLORS * (1 + len(labels) // len(EXTRA_COLORS)))
    return {lb: METHOD_COLORS.get(methods[lb], "#555") if default[lb] else next(extra) for lb in labels}


@dataclass
class RunFigureData:
    """What a run figure is drawn from: the runs per variant, tidy frames, caption and notes for the sidecar."""

    name: str
    selected: list[Selected]
    frames: dict[str, pd.DataFrame]
    caption: str
    notes: dict[str, Any] = field(default_factory=dict)

    def colors(self) -> dict[str, str]:
        """Spec label -> colour (``variant_colors``)."""
        labels = [sel.spec.label for sel in self.selected]
        methods = {sel.spec.label: sel.variant.method for sel in self.selected}
        default = {sel.spec.label: not sel.variant.overrides for sel in self.selected}
        return variant_colors(labels, methods, default)

    def meta(self, params: Any) -> dict[str, Any]:
        return {
            "parameters": asdict(params),
            "caption": self.caption,
            "source": "run directories (docs/run_format.md) through workbench.stats",
            "variants": [
                {
                    "label": s.spec.label,
                    "variant": s.variant.key,
                    "variant_label": s.variant.label,
                    "seeds": list(s.seeds),
                    "runs": [
                        {"name": r.name, "path": str(r.dir), "seed": seed}
                        for r, seed in zip(s.runs, s.seeds, strict=True)
                    ],
                }
                for s in self.selected
            ],
            "runs": [str(r.dir) for s in self.selected for r in s.runs],
            "regime": {r.name: logged_regime(r) for s in self.selected for r in s.runs},
            **({"notes": self.notes} if self.notes else {}),
        }


def select(name: str, runs: Sequence[RunLike], specs: Sequence[VariantSpec]) -> list[Selected]:
    """``select_variants`` over ``runs`` (run directories or folders of them), naming the figure in errors."""
    return select_variants(f"figure {name}", expand_run_paths(runs), specs)


def runs_caption(selected: Sequence[Selected], band: str | None, extra: str = "") -> str:
    """``"Runs: GRPO: seeds 0, 1, 2; REAL: seeds 0, 1. Lines: mean over seeds; band: min-max over seeds. <extra>"``.

    ``band=None`` leaves the sentence about lines and bands out (tables).
    """
    parts = "; ".join(
        f"{s.spec.label}: seed{'s' if len(s.seeds) > 1 else ''} {', '.join(map(str, s.seeds))}"
        for s in selected
    )
    text = f"Runs: {parts}."
    if band is not None:
        text += f" Lines: mean over seeds; {BAND_NOTE[band]}."
    if extra:
        text += " " + extra
    return text + " " + regime_caption(selected)


ON_POLICY_SHARE = 0.01  # below this share of rollouts with |s_bar|/tau > 1 a run is read as near on-policy


def regime_caption(selected: Sequence[Selected]) -> str:
    """The regime the figure's runs were in, from what they logged (``workbench.stats.mechanisms.logged_regime``):
    the range over runs of the share of rollouts with ``|s_bar|/tau > 1``, of the 90% quantile of
    ``|s_bar|/tau`` and of the 99% quantile of ``|s_t|``, and what that range allows a reader to conclude."""
    per_run = [logged_regime(r) for s in selected for r in s.runs]
    known = [r for r in per_run if r]
    if not known:
        return "Regime: not logged by these runs (|s̄|/τ unknown), so no mechanism can be read into them."

    def span(key: str, fmt: str) -> str:
        lo, hi = min(r[key] for r in known), max(r[key] for r in known)
        return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{lo:{fmt}}-{hi:{fmt}}"

    text = (
        f"Regime (logged per step over all its updates, the first mini-batch's s = 0 included; ranges over runs):"
        f" |s̄|/τ > 1 for {span('sbar_tau_gt1', '.1%')}"
        f" of rollouts; 90% quantile of |s̄|/τ {span('sbar_tau_q90', '.2g')}; 99% quantile of |s_t| "
        f"{span('s_abs_q99', '.2g')}."
    )
    if max(r["sbar_tau_gt1"] for r in known) < ON_POLICY_SHARE:
        text += (
            " Near on-policy: e^(s̄/τ) ≈ 1, so weights are set by group composition and clipping, and the paper's"
            " mechanisms (misassignment, domination) barely act here."
        )
    else:
        text += " Off-policy for part of the rollouts: there s̄ shapes the weights."
    if len(known) < len(per_run):
        text += f" ({len(per_run) - len(known)} of {len(per_run)} runs did not log it.)"
    return text


def wrap_caption(text: str, width_in: float, fontsize: float = 7.0) -> str:
    """Wrap a caption to the figure width (about 16 characters per inch at 7 pt, fewer at larger sizes)."""
    return "\n".join(textwrap.wrap(text, width=max(40, int(width_in * 16 * 7.0 / fontsize))))


def add_caption(fig, text: str) -> None:
    """Caption under the panels (constrained layout reserves the space); every text of the figure, the caption
    included, is made legible where the app shows it (``common.legible_text``)."""
    legible_text(fig)
    size = min_text_pt(fig)
    fig.supxlabel(
        wrap_caption(text, fig.get_figwidth(), size), fontsize=size, x=0.01, ha="left", color="0.25"
    )


def attach_specs(df: pd.DataFrame, selected: Sequence[Selected]) -> pd.DataFrame:
    """Add a ``label`` column with the spec label of each row's run (rows of runs not selected are dropped)."""
    by_run = {r.name: s.spec.label for s in selected for r in s.runs}
    out = df[df["run"].isin(by_run)].copy()
    out["label"] = pd.Categorical(
        out["run"].map(by_run), categories=[s.spec.label for s in selected], ordered=True
    )
    return out


def smooth_runs(df: pd.DataFrame, value: str, window: int, by: Sequence[str] = ("run",)) -> pd.DataFrame:
    """Trailing rolling mean of ``value`` over ``window`` consecutive rows of each ``by`` group (sorted by step)."""
    if window <= 1:
        return df
    d = df.sort_values([*by, "step"]).copy()
    d[value] = d.groupby(list(by), observed=True)[value].transform(
        lambda s: s.rolling(window, min_periods=1).mean()
    )
    return d


def band_over_seeds(
    df: pd.DataFrame, value: str, selected: Sequence[Selected], band: str, by: Sequence[str] = ()
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Seed band per ``label`` (and ``by``) at steps where every seed of the variant has a value.

    Returns the band frame and a note for the sidecar listing variants whose seeds cover different steps (the
    uncovered steps are left out rather than averaged over fewer seeds).
    """
    agg = seed_band(df, value, by=("label", *by), band=band)
    n_seeds = {s.spec.label: len(s.seeds) for s in selected}
    full = agg["n_seeds"].to_numpy() == agg["label"].map(n_seeds).to_numpy(dtype=np.int64)
    notes = {}
    if not full.all():
        dropped = agg[~full].groupby("label", observed=True)["step"].agg(["min", "max", "count"])
        notes = {
            str(
                lbl
            ): f"{int(row['count'])} step(s) in {int(row['min'])}..{int(row['max'])} not logged by every seed, left out"
            for lbl, row in dropped.iterrows()
        }
    return agg[full].reset_index(drop=True), notes


def plot_band(
    ax, agg: pd.DataFrame, color: str, label: str, *, marker: str | None = None, ls: str = "-"
) -> None:
    """Mean line and shaded band of one ``band_over_seeds`` group."""
    agg = agg.sort_values("step")
    x = agg["step"].to_numpy()
    ax.plot(x, agg["mean"].to_numpy(), color=color, lw=1.8, ls=ls, label=label, marker=marker, ms=3)
    ax.fill_between(x, agg["lo"].to_numpy(), agg["hi"].to_numpy(), color=color, alpha=0.18, lw=0)
