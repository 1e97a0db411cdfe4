"""Page 1: Fig. 1, interactive. Closed-form curves (workbench.curves -> workbench.closed_forms) and, on the same
inputs, points taken by autograd through workbench.objectives."""

from __future__ import annotations

from dataclasses import asdict

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app_lib import urlstate as url
from app_lib.ui import (
    BOUND_INK,
    OVERLAP_NOTE,
    method_label,
    method_legend,
    method_scale,
    objective_widgets,
    on_theme,
    stacked_lines,
)
from workbench.curves import CurveParams, check_points, curve_table
from workbench.methods import CLIP_MODES, METHODS, REAL_METHODS

st.title("Gradient curves")
st.markdown(
    "How hard does each objective push on a token or a rollout, as a function of how much the policy has already "
    "moved it? **Fig. 1** of the paper, live: lines are the closed forms (Eq. 3 for the clip family, Eq. 9 for "
    "the REAL family), dots are the same weights taken by **autograd** through the real objectives."
)

picked = url.chooser(
    st.pills, "Methods to overlay", METHODS, selection_mode="multi", default=["grpo", "real"], format_func=method_label,
    key="gc_methods", many=True,
)  # fmt: skip
methods = [m for m in METHODS if m in (picked or [])]
controls, main = st.columns([1, 4], gap="large")
with controls:
    st.markdown("**Clip family** (GRPO's range; DAPO and GSPO below)")
    eps_low = st.slider(
        "eps_low",
        0.0,
        0.9,
        CurveParams.eps_low,
        0.01,
        key="gc_eps_low",
        bind="query-params",
        help="ratio below 1 - eps_low is clipped",
    )
    eps_high = st.slider(
        "eps_high",
        0.0,
        1.0,
        CurveParams.eps_high,
        0.01,
        key="gc_eps_high",
        bind="query-params",
        help="ratio above 1 + eps_high is clipped",
    )
    advantage = st.slider("|A| (advantage)", 0.1, 3.0, 1.0, 0.1, key="gc_adv", bind="query-params")
    clip_mode = st.selectbox(
        "Clip mode", CLIP_MODES, key="gc_clip_mode", bind="query-params",
        help="vanilla: PPO; bidirectional: drop every token outside [1-eps, 1+eps] (Fig. 2 ablation); none",
    )  # fmt: skip
    st.markdown("**REAL family**")
    tau = st.slider(
        "tau",
        0.05,
        2.0,
        CurveParams.tau,
        0.05,
        key="gc_tau",
        bind="query-params",
        help="REAL's weights are bounded by 1/tau",
    )
    c_pos = st.slider("C+ (correct rollout)", 1.0, 20.0, 4.0, 0.25, key="gc_c_pos", bind="query-params")
    c_neg = st.slider("C- (wrong rollout)", 1.0, 20.0, 4.0, 0.25, key="gc_c_neg", bind="query-params")
    with st.expander("More settings"):
        mass = st.slider(
            "M: other class's mass (no anchor)", 0.1, 10.0, 1.0, 0.1, key="gc_mass", bind="query-params",
            help="no-anchor uses C = (C_REAL - 1) + 1/M; M = 1 is one other-class rollout at s = 0",
        )  # fmt: skip
        d_lo = st.number_input(
            "DAPO eps_low", 0.0, 0.9, CurveParams.dapo_eps_low, 0.01, key="gc_dapo_lo", bind="query-params"
        )
        d_hi = st.number_input(
            "DAPO eps_high", 0.0, 1.0, CurveParams.dapo_eps_high, 0.01, key="gc_dapo_hi", bind="query-params"
        )
        g_lo = st.number_input("GSPO eps_low", 0.0, 0.9, CurveParams.gspo_eps_low, 1e-4, format="%.4f",
                               key="gc_gspo_lo", bind="query-params")  # fmt: skip
        g_hi = st.number_input("GSPO eps_high", 0.0, 1.0, CurveParams.gspo_eps_high, 1e-4, format="%.4f",
                               key="gc_gspo_hi", bind="query-params")  # fmt: skip
        s_lo, s_hi = st.slider("s range", -5.0, 5.0, (-2.0, 2.0), 0.5, key="gc_range", bind="query-params")
        n_points = st.slider("autograd points per curve", 5, 41, 17, 2, key="gc_points", bind="query-params")
    # Methods whose settings the controls above do not cover get their own, generated from their specs.
    overrides = []
    for m in methods:
        if m in ("grpo", "dapo", "gspo") or m in REAL_METHODS:
            continue
        with st.expander(f"{method_label(m)} settings"):
            changed = objective_widgets(m, key=f"gc_hp_{m}", bind=True, columns=1)
        overrides += [(m, k, v) for k, v in changed.items()]

if s_lo >= s_hi:
    st.error("The s range must not be empty.")
    st.stop()
if not methods:
    st.info("Pick at least one method.")
    st.stop()

params = CurveParams(
    eps_low=eps_low, eps_high=eps_high, advantage=advantage, clip_mode=clip_mode, tau=tau, c_pos=c_pos,
    c_neg=c_neg, other_class_mass=mass, dapo_eps_low=d_lo, dapo_eps_high=d_hi, gspo_eps_low=g_lo,
    gspo_eps_high=g_hi, overrides=tuple(overrides),
)  # fmt: skip


@st.cache_data(max_entries=256, show_spinner=False)
def _compute(
    p: dict, methods: tuple[str, ...], s_lo: float, s_hi: float, n: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    cp = CurveParams(**p)
    tab = curve_table(list(methods), cp, s_lo, s_hi, points=601)
    rows = []
    for m in methods:
        for tag, correct in (("pos", True), ("neg", False)):
            w = tab[f"{m}_{tag}"]
            kept = w > 0
            segment = np.cumsum(np.r_[0, np.diff(kept.astype(int)) != 0])
            rows.append(pd.DataFrame({
                "s": tab["s"], "weight": w, "method": method_label(m), "correct": correct,
                "part": np.where(kept, "kept", "clipped (0)"), "segment": [f"{m}-{k}" for k in segment],
            }))  # fmt: skip
    curves = pd.concat(rows, ignore_index=True)
    pts = pd.DataFrame(check_points(list(methods), cp, s_lo, s_hi, n))
    pts["label"] = pts["method"].map(method_label)
    pts["abs_diff"] = (pts["autograd"] - pts["closed_form"]).abs()
    return curves, pts


curves, pts = _compute(asdict(params), tuple(methods), float(s_lo), float(s_hi), int(n_points))


def _panel(correct: bool, title: str) -> alt.LayerChart:
    c = curves[curves["correct"] == correct]
    p = pts[pts["correct"] == correct]
    color = alt.Color("method:N", scale=method_scale(methods), title=None, legend=method_legend(len(methods)))

    def line(rows: pd.DataFrame, width: float) -> alt.Chart:
        return (
            alt.Chart(rows)
            .mark_line(strokeWidth=width)
            .encode(
                x=alt.X("s:Q", title="s_t (clip family) / s̄ (REAL family)"),
                y=alt.Y("weight:Q", title="gradient magnitude |W|"),
                color=color,
                detail="segment:N",
                strokeDash=alt.StrokeDash(
                    "part:N",
                    legend=None,
                    scale=alt.Scale(domain=["kept", "clipped (0)"], range=[[1, 0], [3, 3]]),
                ),
                tooltip=[
                    alt.Tooltip("method:N"),
                    alt.Tooltip("s:Q", format=".3f"),
                    alt.Tooltip("weight:Q", format=".4g"),
                ],
            )
        )

    lines = stacked_lines(c, "method", [method_label(m) for m in methods], line)
    dots = alt.Chart(p).mark_point(filled=True, size=55, stroke="black", strokeWidth=0.8, opacity=1).encode(
        x="s:Q", y="autograd:Q",
        color=alt.Color("label:N", scale=method_scale(methods), legend=None),
        tooltip=[alt.Tooltip("label:N", title="method"), alt.Tooltip("s:Q", format=".3f"),
                 alt.Tooltip("autograd:Q", title="autograd |dL/dlogp|", format=".6g"),
                 alt.Tooltip("closed_form:Q", title="closed form", format=".6g"),
                 alt.Tooltip("abs_diff:Q", title="|difference|", format=".2e")],
    )  # fmt: skip
    layers = [lines, dots]
    if any(m.startswith("real") for m in methods):
        bound = pd.DataFrame({"y": [1 / tau], "text": [f"REAL bound 1/tau = {1 / tau:.3g}"]})
        ink = on_theme(*BOUND_INK)
        layers.append(alt.Chart(bound).mark_rule(color=ink, strokeDash=[6, 4], opacity=0.6).encode(y="y:Q"))
        layers.append(
            alt.Chart(bound).mark_text(align="left", dx=4, dy=-7, color=ink, fontSize=11)
            .encode(y="y:Q", x=alt.value(0), text="text:N")
        )  # fmt: skip
    # Streamlit sizes the whole chart, title, legend and axes included: about 300 px of plot
    return alt.layer(*layers).properties(title=title, height=460)


with main:
    left, right = st.columns(2)
    with left:
        st.altair_chart(_panel(True, f"(a) correct rollouts: r = 1, A = +{advantage:g}"))
        st.caption(
            "GRPO's weight **shrinks** for tokens the policy under-rates (low s): *gradient misassignment*. "
            "REAL's weight is largest for them and falls as s̄ grows. Lines: closed forms (dotted: clipped, weight 0); "
            f"dots: autograd. {OVERLAP_NOTE}"
        )
    with right:
        st.altair_chart(_panel(False, f"(b) wrong rollouts: r = 0, A = -{advantage:g}"))
        st.caption(
            "GRPO's weight **grows without bound** in s: a few over-rated wrong tokens dominate the group "
            "(*gradient domination*). REAL's weight saturates at 1/tau."
        )

    st.subheader("The formula, checked by autograd")
    worst = float(pts["abs_diff"].max()) if len(pts) else 0.0
    m1, m2, m3 = st.columns(3)
    m1.metric("max |closed form − autograd|", f"{worst:.2e}")
    m2.metric("autograd points", f"{len(pts)}")
    m3.metric("largest weight checked", f"{pts['autograd'].max():.4g}" if len(pts) else "–")
    summary = (
        pts.groupby("label", sort=False)
        .agg(points=("s", "size"), max_abs_diff=("abs_diff", "max"), max_weight=("autograd", "max"))
        .reset_index()
        .rename(columns={"label": "method"})
    )
    st.dataframe(
        summary,
        hide_index=True,
        column_config={
            "max_abs_diff": st.column_config.NumberColumn("max |difference|", format="%.2e"),
            "max_weight": st.column_config.NumberColumn("largest |W|", format="%.4g"),
        },
    )
    with st.expander("How the autograd points are made"):
        st.markdown(
            "For each dot the page builds a small prompt group of one-token rollouts (`workbench.curves`): the "
            "rollout under study has log-ratio s, so `s_t = s̄ = s`.\n\n"
            "- **Clip family**: the group's rewards are chosen so that the group-normalised advantage of that "
            "rollout is exactly ±|A| (`adv_eps = 0`); the loss averages over the B rollouts, so the dot is "
            "`|dL/dlogp| · B`.\n"
            "- **REAL family**: the other rollouts are placed so that `sum e^{∓s/tau}` over the same class is "
            "`C − 1` (the anchor adds the 1) and the other class's mass is M; the loss is the group's Eq. 8 "
            "(`normalize = sum`), so the dot is `|dL/dlogp|`.\n\n"
            "`torch.autograd.grad` of the real objective from `workbench.objectives` gives the dots; no closed "
            "form is involved. Points within 1e-6 of a clip boundary are skipped (the clipped loss has a kink there)."
        )
        st.dataframe(pts[["label", "correct", "s", "autograd", "closed_form", "abs_diff"]], hide_index=True)
