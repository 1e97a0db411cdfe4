"""Page 6: the derivation from Eq. 3 to Eq. 9/10 (app_lib.derivation, also as a PDF), the appendix erratum, a worked
example (workbench.worked_example), Eq. 9/10 with a logged rollout's numbers, and the glossary (app_lib.glossary)."""

from __future__ import annotations

import functools

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app_lib import data, derivation
from app_lib import urlstate as url
from app_lib.glossary import GLOSSARY, SIGN_CONVENTION, abbr, help_for
from app_lib.teaching import aligned, c_lines, weight_lines
from app_lib.ui import OVERLAP_NOTE, md_escape, md_literal, runs_root_and_cards, stacked_lines
from workbench.curves import CurveParams, curve_table, method_overview
from workbench.group_replay import run_hparams
from workbench.methods import COLORS, DEFAULTS, LABELS, METHODS
from workbench.runlog import RunFormatError
from workbench.worked_example import C_FORMS, group_weights, rollout_arithmetic


@functools.cache
def derivation_pdf() -> bytes:
    """The derivation's PDF, drawn once per server process (on the first click)."""
    return derivation.pdf_bytes()


st.title("Learn: where REAL's weights come from")
st.markdown(
    "A rollout's tokens are pushed up or down by **dL/dlog π(o_t)**. Its size, the *gradient weight* |W|, is what "
    "the paper compares across objectives. This page derives it for GRPO and for REAL, step by step, then lets "
    "you play with one prompt group, or work it out for a rollout a run logged."
)

st.download_button(
    "Derivation as PDF",
    derivation_pdf,
    file_name="real_derivation.pdf",
    mime="application/pdf",
    icon=":material/picture_as_pdf:",
    key="learn_pdf",
    on_click="ignore",
    help="The derivation (first tab) and the erratum on A4 pages, for print (drawn with matplotlib's mathtext).",
)
TABS = ["Derivation (Eq. 3 → Eq. 9/10)", "Worked example", "A logged rollout", "One form, three variants",
        "Every method", "Glossary"]  # fmt: skip
tab_derive, tab_example, tab_logged, tab_family, tab_methods, tab_glossary = st.tabs(
    TABS,
    key="learn_tab",
    bind="query-params",
)

with tab_derive:
    derivation.render()
    st.caption("Hover the (?) beside an equation for its symbols; the **Glossary** tab lists them all. The same "
               "derivation, with the no-anchor and BCE variants and the group conventions, is in "
               "`docs/derivation.md`.")  # fmt: skip

DEFAULT_GROUP = [(0.30, True), (-0.60, True), (0.50, False), (-0.20, False), (0.10, False)]

with tab_example:
    st.markdown(
        "One prompt, a few rollouts. Each is one token here, so $s_t = \\bar s$ and GRPO's token weight and "
        "REAL's rollout weight are directly comparable. **Drag s̄** and flip the labels."
    )
    c_tau, c_eps, c_n = st.columns(3)
    tau = c_tau.slider(
        "tau",
        0.1,
        2.0,
        DEFAULTS["real"].tau,
        0.05,
        key="learn_tau",
        bind="query-params",
        help=help_for("tau"),
    )
    eps = c_eps.slider(
        "GRPO eps", 0.05, 0.5, DEFAULTS["grpo"].eps_low, 0.01, key="learn_eps", bind="query-params"
    )
    n = c_n.slider("rollouts in the group", 2, 8, 5, key="learn_n", bind="query-params")
    s_vals, labels = [], []
    per_row = n if n <= 5 else 4
    cols = st.columns(per_row)
    for k in range(n):
        s0, c0 = DEFAULT_GROUP[k] if k < len(DEFAULT_GROUP) else (0.0, k % 2 == 0)
        with cols[k % per_row]:
            s_vals.append(
                st.slider(
                    f"s̄ of rollout {k}",
                    -2.0,
                    2.0,
                    s0,
                    0.05,
                    key=f"learn_s{k}",
                    bind="query-params",
                    help=help_for("s_bar") if k == 0 else None,
                )
            )
            labels.append(st.toggle("correct", value=c0, key=f"learn_c{k}", bind="query-params",
                                    help=help_for("r", "sign") if k == 0 else None))  # fmt: skip

    df = group_weights(s_vals, labels, tau=tau, eps_low=eps, eps_high=eps)
    mixed = bool(df["correct"].any() and (~df["correct"]).any())
    if not mixed:
        st.warning(
            "All rollouts carry the same label: GRPO's advantages are 0, and REAL (the authors' convention, "
            "`group_filter = mixed`: groups mixing labels only) leaves the group out of the loss. Every weight "
            "below is 0, the appendix's included, and C is not used. Flip a label."
        )
    show = pd.DataFrame(
        {
            "rollout": df["rollout"],
            "label": df["correct"].map({True: "correct", False: "wrong"}),
            "s̄": df["s_bar"],
            "GRPO A": df["advantage"],
            "GRPO |W|": df["grpo_weight"],
            "REAL C (C+ or C-)": df["c"].where(df["used"]),
            "REAL |W| (Eq. 9/10)": df["real_weight"],
            "autograd |dL/ds̄|": df["real_autograd"],
            "appendix Eq. 22-24 as printed": df["appendix_weight"],
        }
    )
    col_help = {"s̄": help_for("s_bar"), "GRPO A": help_for("A"), "REAL C (C+ or C-)": help_for("C+", "C-"),
                "REAL |W| (Eq. 9/10)": help_for("W", "sign"), "label": help_for("r")}  # fmt: skip
    st.dataframe(
        show,
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.4f", help=col_help.get(c)) for c in show.columns[2:]
        }
        | {"label": st.column_config.TextColumn(help=col_help["label"])},
    )
    diff = float((df["real_weight"] - df["real_autograd"]).abs().max())
    diff_app = float((df["appendix_weight"] - df["real_autograd"]).abs().max()) if mixed else float("nan")
    k1, k2, k3 = st.columns(3)
    k1.metric("max |Eq. 9/10 − autograd|", f"{diff:.1e}")
    k2.metric("max |appendix − autograd|", f"{diff_app:.3f}" if mixed else "–")
    k3.metric("REAL bound 1/τ", f"{1 / tau:.3g}")

    long = pd.concat(
        [
            pd.DataFrame({"rollout": df["rollout"].astype(str), "label": show["label"], "method": m,
                          "weight": df[col]})
            for m, col in ((LABELS["grpo"], "grpo_weight"), (LABELS["real"], "real_weight"))
        ]
    )  # fmt: skip
    long["rollout"] = long["rollout"] + " (" + long["label"] + ")"
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("rollout:N", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset="method:N",
            y=alt.Y("weight:Q", title="gradient weight |W|"),
            color=alt.Color(
                "method:N",
                scale=alt.Scale(
                    domain=[LABELS["grpo"], LABELS["real"]], range=[COLORS["grpo"], COLORS["real"]]
                ),
            ),
            tooltip=["rollout", "method", alt.Tooltip("weight:Q", format=".4f")],
        )
        .properties(height=300, title="GRPO and REAL weights of the same group")
    )
    if mixed:
        st.altair_chart(chart)
    else:
        st.info("No chart: REAL leaves this group out and GRPO's advantages are 0, so every bar would be 0.")
    if mixed:
        pos, neg = df[df["correct"]], df[~df["correct"]]
        hard_pos = pos.loc[pos["s_bar"].idxmin()]
        top_neg = neg.loc[neg["s_bar"].idxmax()]
        st.markdown(
            f"- The **hardest correct** rollout (rollout {int(hard_pos['rollout'])}, s̄ = {hard_pos['s_bar']:.2f}) "
            f"gets GRPO {hard_pos['grpo_weight']:.3f} and REAL {hard_pos['real_weight']:.3f}.\n"
            f"- The **most over-rated wrong** rollout (rollout {int(top_neg['rollout'])}, s̄ = "
            f"{top_neg['s_bar']:.2f}) gets GRPO {top_neg['grpo_weight']:.3f} and REAL {top_neg['real_weight']:.3f} "
            f"(REAL can never exceed 1/τ = {1 / tau:.3g}).\n"
        )
        clipped = df[(df["grpo_weight"] == 0) & (df["advantage"] != 0)]
        for _, r in clipped.iterrows():
            side = f"> 1 + eps = {1 + eps:g}" if r["advantage"] > 0 else f"< 1 - eps = {1 - eps:g}"
            st.markdown(
                f"- GRPO **clips** rollout {int(r['rollout'])}: its ratio e^{r['s_bar']:+.2f} = "
                f"{np.exp(r['s_bar']):.3f} {side}, so it gets no gradient at all; REAL still gives it "
                f"{r['real_weight']:.3f}. REAL clips nothing."
            )


def logged_rollout() -> None:
    """The "A logged rollout" tab: Eq. 9/10 worked out for a rollout of a REAL-family run (or an example group)."""
    st.markdown(
        "Eq. 9/10 with the numbers a run logged: pick a rollout of a REAL-family run, and its "
        f"{abbr('C+')} or {abbr('C-')} and its weight {abbr('W', '|W_k|')} are worked out from its own "
        f"{abbr('s_bar')}, its label {abbr('r')}, the run's {abbr('tau')} and the {abbr('s_bar')} of the other "
        "rollouts of its group, then set against the weight the trainer logged. (Hover a symbol for its meaning.)",
        unsafe_allow_html=True,
    )
    _root, cards = runs_root_and_cards()
    real_runs = {c.name: c for c in cards if c.ok and c.steps and c.method in C_FORMS}
    example = not real_runs
    if example:
        others = sum(c.ok and bool(c.steps) for c in cards)
        st.info(
            (f"None of the {others} readable run(s) under the runs root trained a REAL-family method"
             if others else "No run under the runs root yet")
            + f" ({', '.join(LABELS[m] for m in C_FORMS)}), so this tab works through an **example group**: the "
            f"worked example's five rollouts, with τ = {DEFAULTS['real'].tau:g}. Train one on the **Train** page, or "
            "`python -m training train --method real --preset tiny --out runs/real-tiny`.",
            icon=":material/info:",
        )  # fmt: skip
        grp = pd.DataFrame({"rollout": np.arange(len(DEFAULT_GROUP)), "s_bar": [s for s, _ in DEFAULT_GROUP],
                            "reward": [float(c) for _, c in DEFAULT_GROUP]})  # fmt: skip
        grp["weight"] = np.nan
        method, hp, logged_w = "real", {"tau": DEFAULTS["real"].tau}, False
    else:
        c_run, c_step = st.columns([2, 3])
        name = url.chooser(
            c_run.selectbox, "Run", real_runs, key="learn_run",
            format_func=lambda n: f"{n} ({real_runs[n].label}{', SYNTHETIC' if real_runs[n].synthetic else ''})",
        )  # fmt: skip
        card = real_runs[name]
        steps = card.steps
        step = (
            c_step.select_slider(
                "Step", options=steps, value=steps[-1], key="learn_step", bind="query-params"
            )
            if len(steps) > 1
            else steps[0]
        )
        try:
            rollouts = data.step_rollouts(card, step).rollouts
        except RunFormatError as e:
            st.error(f"Step {step} of **{md_escape(card.name)}** cannot be read: {md_literal(e)}",
                     icon=":material/error:")  # fmt: skip
            return  # the other tabs still draw
        # one row per rollout: with several epochs a rollout is logged once per update; take its first update
        rollouts = rollouts.drop_duplicates("rollout", keep="first")
        groups = rollouts.groupby("group").agg(
            n=("rollout", "size"), correct=("reward", lambda r: int((r > 0.5).sum())), used=("used", "any")
        )
        g_labels = {int(g): f"group {int(g)} · {r.correct}/{r.n} correct · {'in the loss' if r.used else 'left out'}"
                    for g, r in groups.iterrows()}  # fmt: skip
        # open on an informative group: mixing labels, from the step's last mini-batch (where s_t != 0)
        firsts = rollouts.groupby("group")["minibatch"].first()
        mixed_groups = sorted(
            (g for g, r in groups.iterrows() if 0 < r.correct < r.n), key=lambda g: -firsts[g]
        )
        c_group, c_roll = st.columns([3, 2])
        gid = url.chooser(
            c_group.selectbox, "Prompt group", g_labels, key="learn_group", parse=int, format_func=g_labels.get,
            index=list(g_labels).index(int(mixed_groups[0])) if mixed_groups else 0,
        )  # fmt: skip
        grp = rollouts[rollouts["group"] == gid].sort_values("rollout").reset_index(drop=True)
        method, hp, logged_w = card.method, run_hparams(card.method, card.config), True
        if card.synthetic:
            st.caption(
                "SYNTHETIC run (workbench.synthetic_run): invented rollouts, weights from the closed form."
            )
    r_labels = {
        int(r.rollout): f"#{int(r.rollout)} {'✓ correct' if r.reward > 0.5 else '✗ wrong'} · s̄ {r.s_bar:+.4f}"
        for r in grp.itertuples()
    }
    rid = url.chooser(
        (st if example else c_roll).selectbox, "Rollout", r_labels, key="learn_ex_rollout" if example else
        "learn_rollout", parse=int, format_func=r_labels.get,
    )  # fmt: skip
    k = int(np.flatnonzero(grp["rollout"].to_numpy() == rid)[0])
    correct = (grp["reward"] > 0.5).to_numpy()
    a = rollout_arithmetic(grp["s_bar"].to_numpy(dtype=float), correct, k, method, hp)

    m1, m2, m3, m4 = st.columns(4)
    m1.metric("s̄ of the rollout", f"{a.s_bar:+.4g}", help=help_for("s_bar"))
    m2.metric("label r", "1 (correct)" if a.positive else "0 (wrong)", help=help_for("r", "sign"))
    m3.metric("τ (the run's)" if logged_w else "τ", f"{a.tau:g}", help=help_for("tau"))
    m4.metric("bound 1/τ", f"{1 / a.tau:g}", help=help_for("W"))
    if not a.used:
        st.warning(
            f"Every rollout of this group is {'correct' if a.positive else 'wrong'}: {LABELS[method]} "
            f"(`group_filter = {hp.get('group_filter', DEFAULTS[method].group_filter)}`) leaves the group out of the "
            "loss, so W_k = 0 whatever Eq. 9/10 would give. Pick a group that mixes labels.",
            icon=":material/block:",
        )
    st.markdown(f"**1. {'C₊' if a.positive else 'C₋'} of rollout #{rid}: the other "
                f"{'correct' if a.positive else 'wrong'} rollouts of the group** (Eq. 10)" if method != "real_bce"
                else f"**1. C of rollout #{rid}** (REAL w/ BCE: C = 1)")  # fmt: skip
    st.latex(aligned(c_lines(a)), help=help_for("C+" if a.positive else "C-", "s_bar", "tau"))
    st.markdown(f"**2. The weight** (Eq. 9): a {'correct' if a.positive else 'wrong'} rollout takes the exponent "
                f"**{'+' if a.positive else '−'}s̄/τ**")  # fmt: skip
    if a.used:
        st.latex(aligned(weight_lines(a)), help=help_for("sign", "W"))
    else:
        st.latex(r"|\mathcal{W}_k| = 0 \qquad (\mathrm{the\ group\ is\ left\ out\ of\ the\ loss})")
    st.markdown("**3. Check**")
    r1, r2, r3 = st.columns(3)
    r1.metric("W_k worked out above", f"{a.weight_from_terms:.6g}")
    r2.metric(f"W_k, closed form ({LABELS[method]})", f"{a.weight:.6g}",
              help="workbench.closed_forms.token_gradient on this group's logged s̄ and labels")  # fmt: skip
    logged = float(grp["weight"].iloc[k]) if logged_w else float("nan")
    if logged_w:
        r3.metric("W_k logged by the trainer", f"{logged:.6g}", help="rollouts.weight of this row of the run")
        gap = abs(logged - a.weight)
        ok = gap <= 1e-5 * max(1.0, abs(a.weight))
        (st.success if ok else st.error)(
            f"|closed form − logged| = {gap:.1e}"
            + (" (float32 in the log): the logged weight is Eq. 9/10 of these numbers." if ok else
               ": the logged weight is not Eq. 9/10 of the logged s̄ (was the run trained with other settings?).")
        )  # fmt: skip
    else:
        r3.metric("W_k logged by the trainer", "–", help="an example group: no run logged it")
    table = pd.DataFrame(
        {
            "rollout": grp["rollout"],
            "label": np.where(correct, "correct (r = 1)", "wrong (r = 0)"),
            "s̄": grp["s_bar"],
            "in C of #" + str(rid): [
                "k" if i == k else ("C (same class)" if correct[i] == a.positive else
                                    ("1/M (other class)" if method == "real_no_anchor" else "–"))
                for i in range(len(grp))
            ],
            "logged W": grp["weight"],
        }
    )  # fmt: skip
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "s̄": st.column_config.NumberColumn(format="%.5f", help=help_for("s_bar")),
            "logged W": st.column_config.NumberColumn(format="%.6g", help=help_for("W")),
            "label": st.column_config.TextColumn(help=help_for("r")),
        },
    )
    if logged_w:
        st.page_link(
            "app_pages/inspector.py", label="This rollout's tokens in the inspector", icon=":material/manage_search:",
            query_params={"insp_run": name, "insp_step": str(step), "insp_group": str(gid), "insp_rollout": str(rid)},
        )  # fmt: skip


with tab_logged:
    logged_rollout()

with tab_family:
    st.markdown(
        "REAL, its BCE variant and the variant without the anchor logit give every rollout the **same form** of "
        "weight (see `workbench/closed_forms.py`); only $C$ changes:"
    )
    st.latex(
        r"|W_k| = \frac{1}{\tau}\,\frac{1}{1 + C_k\,e^{\pm\bar s^k/\tau}} = \frac{1}{\tau}\,"
        r"\sigma\!\big(-(\pm\bar s^k/\tau + \log C_k)\big), \qquad \pm = \begin{cases} + & r = 1"
        r"\ (\text{correct})\\ - & r = 0\ (\text{wrong})\end{cases}",
        help=help_for("sign", "C+", "C-", "tau"),
    )
    st.markdown(
        "**The sign follows the label.** A correct rollout (r = 1) takes $e^{+\\bar s^k/\\tau}$: its weight falls "
        "as it becomes likelier ($\\bar s^k$ grows) and the gradient raises its log-probs. A wrong rollout (r = 0) "
        "takes $e^{-\\bar s^k/\\tau}$: its weight grows as it becomes likelier and the gradient lowers its "
        "log-probs. For a correct rollout $C = C_+$, for a wrong one $C = C_-$."
    )
    st.markdown(
        "| variant | $C_+$ of a correct rollout | $C_-$ of a wrong rollout |\n"
        "|---|---|---|\n"
        "| REAL (anchor) | $1 + \\sum_{i\\in\\mathcal O_+, i\\neq k} e^{-\\bar s^i/\\tau}$ | "
        "$1 + \\sum_{j\\in\\mathcal O_-, j\\neq k} e^{\\bar s^j/\\tau}$ |\n"
        "| without anchor | $\\sum_{i\\neq k} e^{-\\bar s^i/\\tau} + 1/\\sum_{j\\in\\mathcal O_-} e^{\\bar s^j/\\tau}$ | "
        "$\\sum_{j\\neq k} e^{\\bar s^j/\\tau} + 1/\\sum_{i\\in\\mathcal O_+} e^{-\\bar s^i/\\tau}$ |\n"
        "| BCE | $1$ | $1$ |\n\n"
        "Every row has $C > 0$, so **every variant's weight lies in $(0, 1/\\tau)$**: the bound is not the "
        "anchor's doing (without the anchor $C$ can be far below 1, and the weight then nears $1/\\tau$). "
        "The anchor decides when weights **vanish**. With $S_+ = \\sum_{\\mathcal O_+} e^{-\\bar s^i/\\tau}$ and "
        "$S_- = \\sum_{\\mathcal O_-} e^{\\bar s^j/\\tau}$, REAL's correct rollouts share "
        "$\\frac{1}{\\tau}\\sigma(\\log S_+) \\geq \\frac{1}{\\tau}\\sigma(-\\bar s^i/\\tau)$ for every correct $i$ "
        "(and the wrong ones $\\frac{1}{\\tau}\\sigma(\\log S_-)$), whatever the other class does: a class stops "
        "being pushed only once *all* its rollouts are well on their side of 0. Without the anchor both classes "
        "share $\\frac{1}{\\tau}\\sigma(\\log S_+ S_-)$, a function of the gaps $\\bar s^j - \\bar s^i$ only: as "
        "every correct rollout moves many $\\tau$ above every wrong one, all weights go to 0, even when the correct "
        "rollouts have $\\bar s < 0$ (the paper's “the gap may increase even when both scores decrease”). BCE "
        "keeps the threshold 0 per rollout, with no competition inside a class. Derivation and tests: "
        "`docs/derivation.md` Sec. 3. Compare the three on the **Gradient curves** page (the *M* setting moves "
        "the no-anchor curve)."
    )


with tab_methods:
    st.subheader("Every method the workbench knows")
    st.markdown(
        "One row per registered method (`workbench/methods/`, one module each), read from its closed-form curve at "
        "its defaults, |A| = 1 and C = 4: does a **low-probability correct** token (s = −1) get a stronger push "
        "than s = 0 (ratio above 1), and is the weight on a **wrong** rollout bounded as s grows? Draw any of "
        "them on the **Gradient curves** page."
    )
    overview = pd.DataFrame(method_overview())
    st.dataframe(overview, hide_index=True, width="stretch")
    grid = curve_table(list(METHODS), CurveParams(), -3.0, 3.0, 121)
    long = pd.DataFrame(
        [
            {"s": s, "|W|": grid[f"{m}_{tag}"][i], "method": LABELS[m], "rollout": side}
            for m in METHODS
            for tag, side in (("pos", "correct (r = 1)"), ("neg", "wrong (r = 0)"))
            for i, s in enumerate(grid["s"])
        ]
    )
    labels = [LABELS[m] for m in METHODS]

    def _curve(rows: pd.DataFrame, width: float) -> alt.Chart:
        return (
            alt.Chart(rows)
            .mark_line(strokeWidth=width)
            .encode(
                x=alt.X("s:Q", title="log-ratio s (s_t or s_bar)"),
                y=alt.Y("|W|:Q", scale=alt.Scale(type="symlog"), title="|W| (symlog)"),
                color=alt.Color(
                    "method:N",
                    scale=alt.Scale(domain=labels, range=[COLORS[m] for m in METHODS]),
                    legend=alt.Legend(orient="top", columns=4, labelLimit=0, symbolStrokeWidth=3, title=None),
                ),
            )
        )

    st.altair_chart(
        alt.hconcat(
            *[
                stacked_lines(long[long["rollout"] == side], "method", labels, _curve).properties(
                    width=340, height=260, title=side
                )
                for side in ("correct (r = 1)", "wrong (r = 0)")
            ]
        )
    )
    st.caption(OVERLAP_NOTE)


with tab_glossary:
    st.subheader("Glossary")
    st.markdown(
        "The symbols of this page. The same definitions appear when you hover a symbol, a column header or a "
        "(?) icon."
    )
    st.markdown("\n".join(f"- **{sym}**: {text}" for key, (sym, text) in GLOSSARY.items() if key != "sign"))
    st.markdown("**The sign convention**")
    st.markdown(SIGN_CONVENTION)
