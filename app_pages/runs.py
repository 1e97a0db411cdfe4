"""Page 3: pick runs and compare their dynamics over steps, with a step slider. Reads run logs only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app_lib import data
from app_lib import urlstate as url
from app_lib.data import RunCard
from app_lib.run_charts import (
    AGGREGATES,
    X_LABELS,
    band_spec,
    chart_data,
    csv_button,
    seeds_spec,
)
from app_lib.ui import (
    DASHES,
    line_chart,
    md_code,
    md_escape,
    md_literal,
    offer_demo_run,
    refresh_when_a_step_lands,
    render_cards,
    runs_root_and_cards,
    series_scales,
    series_style,
)
from workbench.figures.from_runs import variant_colors
from workbench.methods import DEFAULTS, METHODS
from workbench.runlog import RunFormatError
from workbench.stats import BAND_CHOICES, BAND_NOTE
from workbench.stats.run_curves import X_AXES, add_x_axes

ALLOCATION_PANELS = [
    ("top_token_share", "Share of the step's gradient held by its top 1% of tokens"),
    ("top_rollout_share", "Share held by the top 1% of rollouts"),
    ("corr_rollout_correct", "corr(weight, s̄), correct rollouts (> 0: misassignment)"),
    ("corr_rollout_wrong", "corr(weight, s̄), wrong rollouts"),
]

st.title("Runs")
root, cards = runs_root_and_cards()
if not cards:
    offer_demo_run(root, key="runs_demo")
    st.stop()

with st.expander(f"Run folders under {md_code(root)} ({len(cards)})", expanded=len(cards) <= 6):
    render_cards(cards)

readable = [c for c in cards if c.ok and c.steps]
refresh_when_a_step_lands(root, cards)
if not readable:
    st.warning("No run has a complete step yet. A run being trained appears once its first step is logged.")
    st.stop()

by_name = {c.name: c for c in readable}
names = url.chooser(
    st.multiselect, "Runs to compare", by_name, default=data.default_runs(readable), key="runs_pick", many=True,
    format_func=lambda n: f"{n} ({by_name[n].label}{', SYNTHETIC' if by_name[n].synthetic else ''})",
)  # fmt: skip
if not names:
    st.info("Pick one or more runs.")
    st.stop()

METRICS = [
    ("reward_mean", "Reward (training rollouts)"),
    ("entropy_mean", "Entropy (mean over response tokens)"),
    ("val_pass1", "Validation Pass@1"),
    ("solved_all_ratio", "100% solved ratio (share of prompts all G rollouts solve)"),
    ("clip_frac_low", "Clip fraction, low side"),
    ("clip_frac_high", "Clip fraction, high side"),
    ("approx_kl", "Approx. KL(π_old ‖ π_θ) at update"),
    ("response_len_mean", "Mean response length (tokens)"),
]
live = any(by_name[n].live for n in names)


def _dynamics_controls() -> tuple[float, bool, str, str, str]:
    """Smoothing, log scale, x axis, each seed or the mean, and the band: all kept in the URL."""
    c_x, c_a, c_b = st.columns([3, 3, 2])
    c_s, c_l = st.columns([3, 1])
    smoothing = c_s.slider(
        "Smoothing (TensorBoard's EMA weight; 0: raw)", 0.0, 0.95, 0.0, 0.05, key="runs_smooth",
        bind="query-params",
    )  # fmt: skip
    x = url.chooser(
        c_x.segmented_control, "X axis", X_AXES, default="step", key="runs_x", format_func=X_LABELS.get,
        help="wall time: the running sum of the logged seconds per step (`time_step`); tokens: the running sum "
        "of the response tokens sampled (`tokens_per_s` × `time_sample`)",
    )  # fmt: skip
    aggregate = url.chooser(
        c_a.segmented_control, "Curves", AGGREGATES, default="seeds", key="runs_agg", format_func=AGGREGATES.get,
        help="mean over seeds: runs grouped into variants (method + the hyper-parameters that differ from its "
        "defaults) as the figures group them",
    )  # fmt: skip
    band = c_b.selectbox(
        "Band", BAND_CHOICES, key="runs_band", bind="query-params", disabled=aggregate != "mean",
        help="around the mean: min to max over seeds (minmax), or ±1 sample sd (sd)",
    )  # fmt: skip
    log_y = c_l.toggle("Log scale (symlog)", key="runs_log", bind="query-params")
    return smoothing, log_y, x or "step", aggregate or "seeds", band


def _body() -> None:
    # Re-read the cards so a run being trained shows its new steps on each refresh.
    chosen = [data.read_card(Path(root), n) for n in names]
    frames, errors, initial, infos = [], [], [], {}
    for c in chosen:
        if not c.ok:
            errors.append((c.name, c.error))
            continue
        try:
            m = data.metrics(c)
            info = data.variant(c)
        except RunFormatError as e:
            errors.append((c.name, str(e)))
            continue
        infos[c.name] = info
        frames.append(add_x_axes(m).assign(run=c.name, method=c.label, label=info.label, seed=info.seed))
        first = data.initial_metrics(c)  # the validation before the first step: drawn at step 0
        if first:
            initial.append(pd.DataFrame([{**first, "step": 0, "wall_time": 0.0, "tokens": 0, "run": c.name,
                                          "method": c.label, "label": info.label, "seed": info.seed}]))  # fmt: skip
    for name, err in errors:
        st.error(f"**{md_escape(name)}**: {md_literal(err)}", icon=":material/error:")
    if not frames:
        return
    met = pd.concat(frames, ignore_index=True)
    steps = sorted(met["step"].unique().tolist())
    if len(steps) > 1:
        step = st.select_slider("Step", options=steps, value=steps[-1], key="runs_step", bind="query-params")
    else:
        step = steps[0]
        st.caption(f"One complete step so far (step {step}).")
    if live:
        st.caption(":material/autorenew: A run is still training: this view refreshes every few seconds.")

    st.subheader(f"At step {step}")
    at = met[met["step"] == step].set_index("run")
    short = [
        (c.name, c.last_step) for c in chosen if c.ok and c.name in set(met["run"]) and c.name not in at.index
    ]
    if short:
        st.caption(
            f"Not in this table (no step {step} yet): "
            + ", ".join(f"{md_escape(n)} (last step {last})" for n, last in short)
        )
    cols = [k for k, _ in METRICS if k in at.columns]
    st.dataframe(
        at[["method", *cols]], column_config={k: st.column_config.NumberColumn(format="%.4g") for k in cols}
    )

    # Only the open tab is computed: the tab is in the URL (bind), and its ``open`` says which one is shown.
    tab_dyn, tab_alloc, tab_c = st.tabs(
        ["Dynamics", "Gradient allocation", "C+ and C-"], key="runs_tab", bind="query-params"
    )
    shown = [c for c in chosen if c.ok and c.name in set(met["run"])]
    if tab_dyn.open:
        with tab_dyn:
            _dynamics(met, initial, shown, infos, step)
    if tab_alloc.open:
        with tab_alloc:
            _allocation(shown, step)
    if tab_c.open:
        with tab_c:
            _c_plus_minus(shown, step)


def _dynamics(
    met: pd.DataFrame,
    initial: list[pd.DataFrame],
    shown: list[RunCard],
    infos: dict[str, data.VariantInfo],
    step: int,
) -> None:
    """The Dynamics tab: one chart per metric, each seed or the mean over seeds, with its CSV."""
    smoothing, log_y, x, aggregate, band = _dynamics_controls()
    ordered = sorted(shown, key=lambda c: (METHODS.index(c.method) if c.method in METHODS else 99, c.name))
    labels = list(dict.fromkeys(infos[c.name].label for c in ordered))
    count = Counter(infos[c.name].label for c in shown)
    runs_per_label = {lb: count[lb] for lb in labels}  # in the paper's order of methods, as the figures
    if aggregate == "mean":
        colors = variant_colors(
            labels, {infos[c.name].label: c.method for c in shown},
            {infos[c.name].label: infos[c.name].default for c in shown},
        )  # fmt: skip
        counts = "; ".join(f"{md_escape(lb)}: {runs_per_label[lb]} run(s)" for lb in labels)
        st.caption(
            f"Lines: mean over the seeds of each variant ({counts}); {BAND_NOTE[band]}. A step is drawn where "
            "every run of its variant has logged it."
        )
    else:
        style = ([c.name for c in shown], *series_style([c.method for c in shown]))
        st.caption("Colour: method (as in the figures); dashes tell apart runs of one method.")
    if x != "step":
        st.caption(
            f"X axis: {X_AXES[x]}" + (" (the mean over seeds at each step)" if aggregate == "mean" else "")
            + "; the step slider's step is marked on step axes only."
        )  # fmt: skip
    grid = st.columns(2)
    with_initial = pd.concat([met, *initial], ignore_index=True) if initial else met
    left_out: dict[str, str] = {}
    rule = step if x == "step" else None
    for i, (key, title) in enumerate(METRICS):
        with grid[i % 2]:
            st.markdown(f"**{title}**")
            if key not in with_initial or with_initial[key].isna().all():
                st.caption("not logged yet")
                continue
            d, notes = chart_data(with_initial, key, x, aggregate, smoothing, band, runs_per_label)
            left_out.update({f"{lb}, {key}": n for lb, n in notes.items()})
            if d.empty:
                st.caption("no step logged by every seed of a variant yet")
                continue
            if aggregate == "mean":
                spec = band_spec(d, x, colors, rule_x=rule, y_title=key, log_y=log_y)
            else:
                spec = seeds_spec(d, x, *style, rule_x=rule, y_title=key, log_y=log_y)
            st.vega_lite_chart(d, spec)
            csv_button(d, f"runs_{key}_{aggregate}_{x}.csv", f"runs_csv_{key}")
    if smoothing:
        st.caption(f"Curves smoothed (EMA weight {smoothing:g}, debiased); the table above holds raw values.")
    if left_out:
        st.caption("Left out: " + "; ".join(f"{md_escape(k)}: {md_escape(v)}" for k, v in left_out.items()))


def _allocation(shown: list[RunCard], step: int) -> None:
    """The Gradient allocation tab."""
    scales = series_scales([c.name for c in shown], [c.method for c in shown])
    st.caption(
        "`workbench.stats.gradient_allocation`, per step, over rollouts of groups in the loss and each step's later "
        "mini-batches (s = 0 in the first). *Domination*: a few tokens carry the gradient. *Misassignment*: for "
        "correct rollouts the weight grows with s̄ (a positive correlation)."
    )
    allocs = []
    for c in shown:
        try:
            allocs.append(data.gradient_allocation(c))
        except (RunFormatError, ValueError) as e:
            st.error(f"**{md_escape(c.name)}**: gradient allocation cannot be computed: {md_literal(e)}")
    alloc = pd.concat(allocs, ignore_index=True) if allocs else pd.DataFrame()
    grid = st.columns(2)
    for i, (key, title) in enumerate(ALLOCATION_PANELS):
        with grid[i % 2]:
            st.markdown(f"**{title}**")
            d = alloc[["step", "run", key]].dropna() if key in alloc else pd.DataFrame()
            if d.empty:
                st.caption("no value yet (needs steps with more than one mini-batch)")
                continue
            st.altair_chart(line_chart(d, "step", key, "run", rule_x=step, y_title=key, scales=scales))
            csv_button(d, f"runs_allocation_{key}.csv", f"runs_csv_{key}")


def _c_plus_minus(shown: list[RunCard], step: int) -> None:
    """The C+ and C- tab."""
    st.caption(
        "REAL's group constants by group composition (`workbench.stats.real_weights` → `c_by_composition`; medians "
        "over the rollouts of groups in the loss, later mini-batches). REAL-family runs show their logged C; "
        f"clip-family runs show what REAL (tau {DEFAULTS['real'].tau:g}) would give on their logged s̄."
    )
    per_step, pooled = [], []
    for c in shown:
        try:
            ps_run, po_run, source = data.c_composition(c)
        except (RunFormatError, ValueError) as e:
            st.error(f"**{md_escape(c.name)}**: C+/C- cannot be computed: {md_literal(e)}")
            continue
        per_step.append(ps_run.assign(source=source))
        pooled.append(po_run.assign(source=source))
    ps = pd.concat(per_step, ignore_index=True) if per_step else pd.DataFrame()
    if ps.empty:
        st.caption("No rollout of a mixed group in a later mini-batch yet.")
        return
    po = pd.concat(pooled, ignore_index=True)
    with np.errstate(over="ignore"):
        ps["C"], po["C"] = np.exp(ps["log_c_median"]), np.exp(po["log_c_median"])
    overflow = int((~np.isfinite(ps["C"])).sum())
    if overflow:  # log C > 709 (|s̄|/τ in the hundreds): C is beyond float range, not plotted
        st.caption(
            f"{overflow} median(s) with log C > 709 (C beyond float range) are left out of the charts."
        )
        ps, po = ps[np.isfinite(ps["C"])], po[np.isfinite(po["C"])]
    if ps.empty:
        return
    for df in (ps, po):
        df["series"] = df["run"] + " · " + np.where(df["correct"], "C+ (correct)", "C- (wrong)")
    series = sorted(ps["series"].unique())
    c_scales = (
        alt.Scale(domain=series, range=["#2ca02c" if "C+" in s else "#d62728" for s in series]),
        alt.Scale(domain=series, range=[DASHES[i // 2 % len(DASHES)] for i in range(len(series))]),
    )
    ks = sorted(ps["group_correct"].unique().tolist())
    left, right = st.columns(2)
    with left:
        k = (
            st.select_slider(
                "Group composition: correct rollouts",
                ks,
                value=ks[len(ks) // 2],
                key="runs_k",
                bind="query-params",
            )
            if len(ks) > 1
            else ks[0]
        )
        st.markdown(f"**Median C over training, groups with {k} correct** (green C+, red C-)")
        d = ps[ps["group_correct"] == k]
        st.altair_chart(
            line_chart(d, "step", "C", "series", rule_x=step, y_title="C (median)", scales=c_scales)
        )
        csv_button(d, f"runs_c_over_steps_k{k}.csv", "runs_csv_c_steps")
    with right:
        d = ps[ps["step"] == step]
        label = f"at step {step}"
        if d.empty:
            d, label = po, "all steps pooled (no mixed group at this step)"
        st.markdown(f"**Median C by group composition, {label}**")
        st.altair_chart(
            line_chart(
                d,
                "group_correct",
                "C",
                "series",
                y_title="C (median)",
                scales=c_scales,
                x_title="correct rollouts in the group",
            )
        )
        csv_button(d, f"runs_c_by_composition_step{step}.csv", "runs_csv_c_composition")


if live:
    st.fragment(run_every=3)(_body)()
else:
    _body()
