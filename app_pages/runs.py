"""Page 3: pick runs and compare their dynamics over steps, with a step slider. Reads run logs only."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app_lib import data
from app_lib.ui import DASHES, line_chart, offer_demo_run, render_cards, runs_root_and_cards, series_scales
from workbench.methods import REAL_METHODS
from workbench.runlog import RunFormatError

try:  # the studies' statistics (gradient allocation, C+/C- dynamics) live in workbench.stats
    from workbench import stats as wstats
except ImportError:  # pragma: no cover - depends on the checkout
    wstats = None

st.title("Runs")
root, cards = runs_root_and_cards()
if not cards:
    offer_demo_run(root, key="runs_demo")
    st.stop()

with st.expander(f"Run folders under `{root}` ({len(cards)})", expanded=len(cards) <= 6):
    render_cards(cards)

readable = [c for c in cards if c.ok and c.steps]
if not readable:
    st.warning("No run has a complete step yet. A run being trained appears once its first step is logged.")
    st.stop()

by_name = {c.name: c for c in readable}
names = st.multiselect(
    "Runs to compare", list(by_name), default=list(by_name)[:6], key="runs_pick",
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


def _body() -> None:
    # Re-read the cards so a run being trained shows its new steps on each refresh.
    chosen = [data.read_card(Path(root), n) for n in names]
    frames, errors = [], []
    for c in chosen:
        if not c.ok:
            errors.append((c.name, c.error))
            continue
        try:
            m = data.metrics(c)
        except RunFormatError as e:
            errors.append((c.name, str(e)))
            continue
        m = m.assign(run=c.name, method=c.label)
        frames.append(m)
    for name, err in errors:
        st.error(f"**{name}**: {err}", icon=":material/error:")
    if not frames:
        return
    met = pd.concat(frames, ignore_index=True)
    steps = sorted(met["step"].unique().tolist())
    if len(steps) > 1:
        step = st.select_slider("Step", options=steps, value=steps[-1], key="runs_step")
    else:
        step = steps[0]
        st.caption(f"One complete step so far (step {step}).")
    if live:
        st.caption(":material/autorenew: A run is still training: this view refreshes every few seconds.")

    st.subheader(f"At step {step}")
    at = met[met["step"] == step].set_index("run")
    cols = [k for k, _ in METRICS if k in at.columns]
    st.dataframe(
        at[["method", *cols]], column_config={k: st.column_config.NumberColumn(format="%.4g") for k in cols}
    )

    st.subheader("Dynamics")
    st.caption("Colour: method (as in the figures); dashes tell apart runs of one method.")
    shown = [c for c in chosen if c.ok and c.name in set(met["run"])]
    scales = series_scales([c.name for c in shown], [c.method for c in shown])
    grid = st.columns(2)
    for i, (key, title) in enumerate(METRICS):
        d = met[["step", "run", key]].dropna()
        with grid[i % 2]:
            st.markdown(f"**{title}**")
            if d.empty:
                st.caption("not logged yet")
                continue
            st.altair_chart(line_chart(d, "step", key, "run", rule_x=step, y_title=key, scales=scales))

    st.subheader("C+ and C- of REAL-family runs")
    real_runs = [c for c in chosen if c.ok and c.method in REAL_METHODS]
    if not real_runs:
        st.caption("None of the chosen runs is a REAL-family run (C+ and C- are REAL's group constants).")
    else:
        rows = []
        for c in real_runs:
            try:
                r = data.rollouts_all_steps(c, ("step", "reward", "log_c", "used"))
            except RunFormatError as e:
                st.error(f"**{c.name}**: {e}")
                continue
            r = r[r["used"] & r["log_c"].notna()]
            r = r.assign(
                C=np.exp(r["log_c"]), which=np.where(r["reward"] > 0.5, "C+ (correct)", "C- (wrong)")
            )
            med = r.groupby(["step", "which"])["C"].median().reset_index().assign(run=c.name)
            rows.append(med)
        if rows:
            cdf = pd.concat(rows, ignore_index=True)
            cdf["series"] = cdf["run"] + " · " + cdf["which"]
            series = sorted(cdf["series"].unique())
            c_scales = (
                alt.Scale(domain=series, range=["#2ca02c" if "C+" in s else "#d62728" for s in series]),
                alt.Scale(domain=series, range=[DASHES[i // 2 % len(DASHES)] for i in range(len(series))]),
            )
            st.markdown("**Median C over the rollouts of groups that entered the loss** (green C+, red C-)")
            st.altair_chart(
                line_chart(
                    cdf, "step", "C", "series", rule_x=step, y_title="C (median)", height=260, scales=c_scales
                )
            )

    st.subheader("Gradient allocation")
    if wstats is None:
        st.info(
            "Gradient allocation (the share of gradient carried by the top 1% of tokens and rollouts, Gini, weight "
            "vs s) comes from `workbench.stats`, which is not in this checkout yet."
        )
    else:  # pragma: no cover - filled in when the studies land
        st.caption("See workbench.stats.")


if live:
    st.fragment(run_every=3)(_body)()
else:
    _body()
