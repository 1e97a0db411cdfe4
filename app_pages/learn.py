"""Page 6: the derivation from Eq. 3 to Eq. 9/10, the appendix erratum, and a worked example (workbench.worked_example)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from workbench.curves import CurveParams, curve_table, method_overview
from workbench.methods import COLORS, DEFAULTS, LABELS, METHODS
from workbench.worked_example import group_weights

st.title("Learn: where REAL's weights come from")
st.markdown(
    "A rollout's tokens are pushed up or down by **dL/dlog π(o_t)**. Its size, the *gradient weight* |W|, is what "
    "the paper compares across objectives. This page derives it for GRPO and for REAL, step by step, then lets "
    "you play with one prompt group."
)

tab_derive, tab_example, tab_family, tab_methods = st.tabs(
    ["Derivation (Eq. 3 → Eq. 9/10)", "Worked example", "One form, three variants", "Every method"],
    key="learn_tab",
    bind="query-params",
)

with tab_derive:
    st.subheader("1. GRPO: the token weight (Eq. 3)")
    st.markdown("With the token log-ratio and ratio")
    st.latex(r"s_t = \log\pi_\theta(o_t\mid q) - \log\pi_{\text{old}}(o_t\mid q), \qquad \rho_t = e^{s_t},")
    st.markdown(
        "GRPO maximises $\\frac{1}{|o|}\\sum_t \\min(\\rho_t A, \\operatorname{clip}(\\rho_t, 1-\\varepsilon, "
        "1+\\varepsilon) A)$. Where the clip is not active, $\\nabla_\\theta \\rho_t = \\rho_t \\nabla_\\theta "
        "\\log\\pi_\\theta(o_t)$, so each token's log-prob is pushed with"
    )
    st.latex(r"|\mathcal W_{\text{GRPO}}| = |A|\,e^{s_t}\,\mathbb I_{\text{clip}} \qquad (3)")
    st.markdown(
        "It grows **exponentially** with $s_t$ and has no upper bound for wrong rollouts ($A<0$, the high side "
        "is never clipped), and it vanishes for correct tokens the policy under-rates ($s_t \\ll 0$)."
    )

    st.subheader("2. REAL: the loss (Eq. 5, Eq. 8)")
    st.markdown("Each rollout gets one logit, its mean token log-ratio")
    st.latex(r"\bar s^k = \frac{1}{|o^k|}\sum_{t=1}^{|o^k|} s^k_t \qquad (5)")
    st.markdown("and the group's loss separates correct ($\\mathcal O_+$) from wrong ($\\mathcal O_-$) rollouts "
                "against an anchor logit at 0, with temperature $\\tau$:")  # fmt: skip
    st.latex(
        r"\mathcal L = \log\Big(1 + \sum_{i\in\mathcal O_+} e^{-\bar s^i/\tau}\Big)"
        r" + \log\Big(1 + \sum_{j\in\mathcal O_-} e^{\bar s^j/\tau}\Big) \qquad (8)"
    )

    st.subheader("3. Differentiate: a correct rollout k")
    st.markdown("Only the first term depends on $\\bar s^k$ when $k\\in\\mathcal O_+$:")
    st.latex(
        r"\frac{\partial \mathcal L}{\partial \bar s^k} = -\frac{1}{\tau}\,"
        r"\frac{e^{-\bar s^k/\tau}}{1 + \sum_{i\in\mathcal O_+} e^{-\bar s^i/\tau}}"
    )
    st.markdown("Split rollout k off the sum, $C_+ = 1 + \\sum_{i\\neq k} e^{-\\bar s^i/\\tau}$, and divide "
                "numerator and denominator by $e^{-\\bar s^k/\\tau}$:")  # fmt: skip
    st.latex(
        r"\frac{\partial \mathcal L}{\partial \bar s^k} = -\frac{1}{\tau}\,\frac{e^{-\bar s^k/\tau}}{C_+ + "
        r"e^{-\bar s^k/\tau}} = -\frac{1}{\tau}\,\frac{1}{1 + C_+\,e^{+\bar s^k/\tau}}"
    )
    st.subheader("4. A wrong rollout k")
    st.markdown("Only the second term depends on it; with $C_- = 1 + \\sum_{j\\neq k} e^{+\\bar s^j/\\tau}$:")
    st.latex(
        r"\frac{\partial \mathcal L}{\partial \bar s^k} = +\frac{1}{\tau}\,\frac{e^{\bar s^k/\tau}}{C_- + "
        r"e^{\bar s^k/\tau}} = +\frac{1}{\tau}\,\frac{1}{1 + C_-\,e^{-\bar s^k/\tau}}"
    )
    st.subheader("5. Result (Eq. 9/10) and the tokens")
    st.latex(
        r"|\mathcal W_{\text{REAL}}| = \begin{cases}\dfrac{1}{\tau}\dfrac{1}{1 + C_+ e^{\bar s^k/\tau}}, & r=1\\[2ex]"
        r"\dfrac{1}{\tau}\dfrac{1}{1 + C_- e^{-\bar s^k/\tau}}, & r=0\end{cases}"
        r"\qquad C_+ = 1 + \sum_{i\neq k} e^{-\bar s^i/\tau},\quad C_- = 1 + \sum_{j\neq k} e^{\bar s^j/\tau}"
    )
    st.markdown(
        "Both are **bounded by 1/τ** and **monotonic**: the weight falls as a correct rollout becomes likelier and "
        "rises as a wrong one does. The bound holds for *any* $C > 0$, since "
        "$\\frac{1}{1 + C e^{\\pm\\bar s/\\tau}} < 1$: it comes from the form, not from the anchor's 1 in $C$ "
        "(the variants tab shows what the anchor does). Since $\\partial\\bar s^k/\\partial\\log\\pi(o^k_t) = "
        "1/|o^k|$, every token of rollout k carries $W_k/|o^k|$."
    )
    st.subheader("Erratum: the appendix flips two signs and drops a “1 +”")
    st.warning(
        "Appendix **Eq. 21** names $C = \\sum_{i\\neq k} e^{-\\bar s^i/\\tau}$, *without* the anchor's 1, so Eq. 20 "
        "becomes $\\frac{1}{\\tau}\\frac{1}{1 + (1 + C)\\, e^{+\\bar s^k/\\tau}}$; **Eq. 22** prints "
        "$\\frac{1}{\\tau}\\frac{1}{1 + C e^{-\\bar s^k/\\tau}}$, which drops that “1 +” (Eq. 24 puts the 1 back "
        "into $C$, as Eq. 10 does). Eq. 22 (and Eq. 23) also has the wrong sign for a "
        "correct rollout: dividing by $e^{-\\bar s^k/\\tau}$ gives $e^{+\\bar s^k/\\tau}$, not $e^{-\\bar s^k/\\tau}$. "
        "Appendix **Eq. 24** prints $C_- = 1 + \\sum_{j\\neq k} e^{-\\bar s^j/\\tau}$, but the wrong rollouts enter "
        "Eq. 8 as $e^{+\\bar s^j/\\tau}$. The main text's Eq. 9/10 are right: autograd agrees with them to float "
        "precision and not with the appendix (pinned by `tests/workbench/test_closed_form_properties.py`; see the "
        "*appendix* column of the worked example, which uses Eq. 23/24).",
        icon=":material/report:",
    )
    st.caption("The same derivation, with the no-anchor and BCE variants and the group conventions, is in "
               "`docs/derivation.md`.")  # fmt: skip

DEFAULT_GROUP = [(0.30, True), (-0.60, True), (0.50, False), (-0.20, False), (0.10, False)]

with tab_example:
    st.markdown(
        "One prompt, a few rollouts. Each is one token here, so $s_t = \\bar s$ and GRPO's token weight and "
        "REAL's rollout weight are directly comparable. **Drag s̄** and flip the labels."
    )
    c_tau, c_eps, c_n = st.columns(3)
    tau = c_tau.slider("tau", 0.1, 2.0, DEFAULTS["real"].tau, 0.05, key="learn_tau", bind="query-params")
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
                st.slider(f"s̄ of rollout {k}", -2.0, 2.0, s0, 0.05, key=f"learn_s{k}", bind="query-params")
            )
            labels.append(st.toggle("correct", value=c0, key=f"learn_c{k}", bind="query-params"))

    df = group_weights(s_vals, labels, tau=tau, eps_low=eps, eps_high=eps)
    mixed = bool(df["correct"].any() and (~df["correct"]).any())
    if not mixed:
        st.warning(
            "All rollouts carry the same label: GRPO's advantages are 0 and REAL (authors' convention: groups "
            "mixing labels only) leaves the group out, so every weight is 0. Flip a label."
        )
    show = pd.DataFrame(
        {
            "rollout": df["rollout"],
            "label": df["correct"].map({True: "correct", False: "wrong"}),
            "s̄": df["s_bar"],
            "GRPO A": df["advantage"],
            "GRPO |W|": df["grpo_weight"],
            "REAL C (C+ or C-)": df["c"],
            "REAL |W| (Eq. 9/10)": df["real_weight"],
            "autograd |dL/ds̄|": df["real_autograd"],
            "appendix Eq. 22-24 as printed": df["appendix_weight"],
        }
    )
    st.dataframe(
        show,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in show.columns[2:]},
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
            for m, col in (("GRPO", "grpo_weight"), ("REAL", "real_weight"))
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
                "method:N", scale=alt.Scale(domain=["GRPO", "REAL"], range=["#d62728", "#1f77b4"])
            ),
            tooltip=["rollout", "method", alt.Tooltip("weight:Q", format=".4f")],
        )
        .properties(height=300, title="GRPO and REAL weights of the same group")
    )
    st.altair_chart(chart)
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

with tab_family:
    st.markdown(
        "REAL, its BCE variant and the variant without the anchor logit give every rollout the **same form** of "
        "weight (see `workbench/closed_forms.py`); only $C$ changes:"
    )
    st.latex(
        r"|W_k| = \frac{1}{\tau}\,\frac{1}{1 + C_k\,e^{\pm\bar s^k/\tau}} = \frac{1}{\tau}\,\sigma\!\big(-(\pm\bar s^k/\tau + \log C_k)\big)"
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
    st.altair_chart(
        alt.Chart(long)
        .mark_line()
        .encode(
            x=alt.X("s:Q", title="log-ratio s (s_t or s_bar)"),
            y=alt.Y("|W|:Q", scale=alt.Scale(type="symlog"), title="|W| (symlog)"),
            color=alt.Color(
                "method:N",
                scale=alt.Scale(domain=[LABELS[m] for m in METHODS], range=[COLORS[m] for m in METHODS]),
            ),
            column=alt.Column("rollout:N", title=None),
        )
        .properties(width=380, height=260)
    )
