"""Page 4: step -> prompt group -> rollout. Tokens coloured by weight, ratio or s_t; the group's C+ and C-; and how
every other method would have weighted the same tokens (workbench.group_replay -> closed_forms.token_gradient)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app_lib import data
from app_lib import urlstate as url
from app_lib.glossary import help_for
from app_lib.ui import (
    OVERLAP_NOTE,
    fmt_range,
    legend_html,
    md_escape,
    md_literal,
    method_label,
    method_legend,
    method_scale,
    offer_demo_run,
    ratio_colors,
    refresh_when_a_step_lands,
    runs_root_and_cards,
    stacked_lines,
    tokens_html,
    value_colors,
)
from workbench.group_replay import logged_group, replay_all, run_hparams
from workbench.methods import CLIP_METHODS, METHODS, REAL_METHODS
from workbench.runlog import RunFormatError

MAX_DRAWN_TOKENS = 5_000  # tokens of one rollout drawn at a time (each is a span with its values on hover)

st.title("Rollout inspector")
root, cards = runs_root_and_cards()
readable = [c for c in cards if c.ok and c.steps]
refresh_when_a_step_lands(root, cards)
if not readable:
    if cards:
        st.warning("No run has a complete step yet (see the Runs page for the state of each run folder).")
    else:
        offer_demo_run(root, key="inspector_demo")
    st.stop()

by_name = {c.name: c for c in readable}
c_run, c_step = st.columns([2, 3])
name = url.chooser(
    c_run.selectbox, "Run", by_name, key="insp_run", on_change=lambda: st.session_state.pop("insp_under", None),
    format_func=lambda n: f"{n} ({by_name[n].label}{', SYNTHETIC' if by_name[n].synthetic else ''})",
)  # fmt: skip
card = by_name[name]
if card.synthetic:
    st.warning("SYNTHETIC run (workbench.synthetic_run): invented rollouts for tests, not a training result.")
with st.expander("Label noise: how often plain math-verify disagrees with this run's rewards"):
    st.caption(
        "REAL reads rewards as class labels, so a wrong label is a wrong gradient. This grades a seeded sample of "
        "the run's logged rollouts (its last 20 steps) again with math-verify as it ships (LaTeX and plain "
        "expressions, gold answers as written; `training.label_noise`) and counts where it disagrees with the "
        "logged reward. A disagreement means one of the two graders is wrong: read the examples."
    )
    n_sample = st.number_input("Rollouts to grade", 20, 5000, 200, 20, key="insp_noise_n")
    noise_key = ("label_noise", card.name, len(card.steps), int(n_sample))
    if st.button("Measure", key="insp_noise_go", icon=":material/rule:"):
        with st.spinner("Grading the sample with math-verify…"):
            try:
                st.session_state[noise_key] = data.measure_label_noise(card, int(n_sample), card.steps[-20:])
            except (RunFormatError, ValueError) as e:
                st.error(f"Label noise cannot be measured: {md_literal(e)}", icon=":material/error:")
    noise = st.session_state.get(noise_key)
    if noise is not None:
        lo, hi = noise["interval95"]
        a, b, c = st.columns(3)
        a.metric("Disagreement", f"{noise['rate']:.1%}", help=f"95% interval {lo:.1%} to {hi:.1%} (Wilson)")
        b.metric("Logged 1, plain math-verify 0", noise["logged_only"])
        c.metric("Logged 0, plain math-verify 1", noise["reference_only"])
        st.caption(
            f"{noise['graded']} of {noise['sampled']} sampled rollouts graded (of {noise['rollouts']})."
        )
        if noise["examples"]:
            st.dataframe(pd.DataFrame(noise["examples"]), hide_index=True)
steps = card.steps
step = (
    c_step.select_slider("Step", options=steps, value=steps[-1], key="insp_step", bind="query-params")
    if len(steps) > 1
    else steps[0]
)

try:
    step_rows = data.step_rollouts(card, step)
except RunFormatError as e:
    st.error(
        f"Step {step} of **{md_escape(card.name)}** cannot be read: {md_literal(e)}", icon=":material/error:"
    )
    st.stop()
rollouts = step_rows.rollouts
for note in step_rows.notes:
    st.warning(md_literal(note), icon=":material/content_cut:")
if rollouts.empty:
    st.warning(f"Step {step} logged no rollouts.")
    st.stop()
large_step = step_rows.n_tokens > data.MAX_GROUP_TOKENS
if large_step:
    st.info(
        f"Step {step} holds {step_rows.n_tokens:,} tokens in {len(rollouts):,} rollouts, more than the "
        f"{data.MAX_GROUP_TOKENS:,} the inspector reads at once. It reads the tokens of one prompt group (of one "
        "rollout where a group holds more), and draws at most "
        f"{MAX_DRAWN_TOKENS:,} tokens of a rollout at a time.",
        icon=":material/summarize:",
    )
    s1, s2, s3, s4 = st.columns(4)
    s1.metric("rollouts / groups", f"{len(rollouts):,} / {rollouts['group'].nunique():,}")
    s2.metric("tokens", f"{step_rows.n_tokens:,}")
    s3.metric("mean length", f"{rollouts['length'].mean():,.0f}")
    s4.metric("correct", f"{(rollouts['reward'] > 0.5).mean():.1%}")

groups = (
    rollouts.groupby("group")
    .agg(prompt=("prompt", "first"), size=("rollout", "size"), correct=("reward", lambda r: int((r > 0.5).sum())),
         used=("used", "any"), minibatch=("minibatch", "first"), tokens=("length", "sum"))
    .reset_index()
)  # fmt: skip
g_labels = {
    int(r.group): f"group {int(r.group)} · {r.correct}/{r.size} correct · {'in the loss' if r.used else 'left out'}"
    + (f" · {int(r.tokens):,} tokens" if large_step else "")
    + f" · {str(r.prompt)[:50]}"
    for r in groups.itertuples()
}  # fmt: skip
c_group, c_roll = st.columns([3, 2])
# Open on an informative group: one that entered the loss, from the step's last mini-batch (where s_t != 0).
informative = groups[groups["used"]].sort_values(["minibatch", "group"], ascending=[False, True])
first = int(informative["group"].iloc[0]) if len(informative) else int(groups["group"].iloc[0])
gid = url.chooser(
    c_group.selectbox, "Prompt group", g_labels, index=list(g_labels).index(first), format_func=g_labels.get,
    key="insp_group", parse=int,
)  # fmt: skip
grp = rollouts[rollouts["group"] == gid].sort_values("rollout").reset_index(drop=True)
group_tokens = int(grp["length"].sum())


def _token_rows(ids: list[int]) -> data.TokenRows:
    """The token rows of rollouts ``ids`` of this step; a file that cannot be read stops the page, named."""
    try:
        return data.token_rows(card, step, ids)
    except RunFormatError as e:
        st.error(
            f"The tokens of step {step} of **{md_escape(card.name)}** cannot be read: {md_literal(e)}",
            icon=":material/error:",
        )
        st.stop()


# The whole group's tokens when it is small enough (needed to replay it under every method), else none yet.
group_rows = _token_rows(grp["rollout"].tolist()) if group_tokens <= data.MAX_GROUP_TOKENS else None
whole_group = group_rows is not None and group_rows.complete


def _roll_label(r: pd.Series) -> str:
    mark = "✓" if r["reward"] > 0.5 else "✗"
    return f"#{int(r['rollout'])} {mark} · {int(r['length']):,} tokens · s̄ {r['s_bar']:+.4f} · W {r['weight']:.4g}"


roll_labels = {int(r["rollout"]): _roll_label(r) for _, r in grp.iterrows()}
rid = url.chooser(
    c_roll.selectbox, "Rollout", roll_labels, format_func=roll_labels.get, key="insp_rollout", parse=int
)

# ---- replay the group under every method (closed forms on the logged log-probs)
if whole_group:
    tokens = group_rows.tokens
    try:
        group = logged_group(grp, tokens)
    except ValueError as e:  # e.g. a rollout without token rows
        st.error(f"Group {gid} of step {step} cannot be replayed: {md_literal(e)}", icon=":material/error:")
        st.stop()
    hp = {m: run_hparams(m, card.config) for m in METHODS if m == card.method}
    replays, skipped = replay_all(group, list(METHODS), hp)
else:  # a group too large to read whole: the picked rollout's tokens only, no replay
    rollout_rows = _token_rows([rid])
    tokens = rollout_rows.tokens
    replays, skipped = {}, {}
    st.info(
        f"Group {gid} holds {group_tokens:,} tokens, more than the {data.MAX_GROUP_TOKENS:,} the inspector reads "
        "at once: its rollouts are listed with their logged values, the replay under every method (which needs "
        "the whole group) is left out, and only the picked rollout's tokens are read.",
        icon=":material/summarize:",
    )
for note in group_rows.notes if whole_group else rollout_rows.notes:
    st.warning(md_literal(note), icon=":material/content_cut:")

st.markdown(f"**Prompt** · {md_escape(str(grp['prompt'].iloc[0]))}  \n**Gold answer** · "
            f"{md_escape(str(grp['answer'].iloc[0]))} · mini-batch {int(grp['minibatch'].iloc[0])} of this step")  # fmt: skip

# ---- the group's C+ and C-, and the weights each method gives its rollouts
st.subheader("The group")
k1, k2, k3, k4 = st.columns(4)
n_pos = int((grp["reward"] > 0.5).sum())
k1.metric("correct / rollouts", f"{n_pos} / {len(grp)}")
if card.method in REAL_METHODS:
    c_src, c_vals = "logged", np.exp(grp["log_c"].to_numpy(dtype=float))
elif "real" in replays:
    c_src, c_vals = "REAL, replayed", np.exp(replays["real"].rollouts["log_c"].to_numpy(dtype=float))
else:
    c_src, c_vals = "", np.full(len(grp), np.nan)
pos_mask = (grp["reward"] > 0.5).to_numpy()
cp = c_vals[pos_mask & np.isfinite(c_vals)]
cn = c_vals[~pos_mask & np.isfinite(c_vals)]
k2.metric(f"C+ ({c_src})", fmt_range(cp.min(), cp.max(), 3) if cp.size else "–", help=help_for("C+"))
k3.metric(f"C- ({c_src})", fmt_range(cn.min(), cn.max(), 3) if cn.size else "–", help=help_for("C-"))
own = replays.get(card.method)
if own is not None:
    merged = tokens[tokens["rollout"].isin(grp["rollout"])].merge(
        own.tokens, on=["rollout", "pos"], suffixes=("", "_re")
    )
    check = float((merged["weight"] - merged["weight_re"]).abs().max()) if len(merged) else float("nan")
    k4.metric("logged vs replayed weight", f"{check:.1e}",
              help=f"max |tokens.weight − closed form of {md_escape(card.label)} on the logged log-probs| over this group")  # fmt: skip

table = pd.DataFrame(
    {
        "rollout": grp["rollout"],
        "label": np.where(pos_mask, "correct", "wrong"),
        "length": grp["length"],
        "s̄": grp["s_bar"],
        "C (C+ or C-)": c_vals,
        "logged W": grp["weight"],
    }
)
for m, rep in replays.items():
    table[f"{method_label(m)}{' (run)' if m == card.method else ''}"] = rep.rollouts["weight"].to_numpy()
st.dataframe(
    table,
    hide_index=True,
    column_config={c: st.column_config.NumberColumn(format="%.4g") for c in table.columns[3:]}
    | {
        "s̄": st.column_config.NumberColumn(format="%.4g", help=help_for("s_bar")),
        "C (C+ or C-)": st.column_config.NumberColumn(format="%.4g", help=help_for("C+", "C-")),
        "logged W": st.column_config.NumberColumn(format="%.4g", help=help_for("W")),
    },
)
st.caption(
    "Rollout weight under each method, replayed from the logged log-probs with `workbench.closed_forms.token_gradient`"
    " (the run's own method with its logged hyper-parameters, the others with the paper's defaults, KL left out). "
    "Clip family: sum over tokens of |A| ρ_t I_t / |o|; REAL family: W_k."
    if replays
    else "Logged values only: the group is too large to read whole, so no method is replayed on it."
)
for m, why in skipped.items():
    st.caption(f"{method_label(m)} not replayed: {md_literal(why)}")

# ---- the rollout's tokens
st.subheader(f"Rollout #{rid}")
row = grp[grp["rollout"] == rid].iloc[0]
tok = tokens[tokens["rollout"] == rid].sort_values("pos").reset_index(drop=True)
c_by, c_under = st.columns([3, 2])
colour_by = c_by.radio(
    "Colour tokens by",
    ["gradient weight", "ratio", "s_t", "entropy"],
    horizontal=True,
    key="insp_colour",
    bind="query-params",
    help=help_for("W", "s_t"),
)
weight_options = [card.method] + [m for m in METHODS if m != card.method and m in replays]
under = url.chooser(
    c_under.selectbox, "Weight under", weight_options, key="insp_under", disabled=colour_by != "gradient weight",
    format_func=lambda m: f"{method_label(m)} (as logged)" if m == card.method else f"{method_label(m)} (replayed)",
)  # fmt: skip

struck = np.zeros(len(tok), dtype=bool)
group_tok = tokens[tokens["rollout"].isin(grp["rollout"])]
scope = "this group's max" if whole_group else "this rollout's max"
if colour_by == "gradient weight":
    source = own if under == card.method else replays[under]
    if under == card.method:
        values, scale = tok["weight"].to_numpy(dtype=float), group_tok["weight"].to_numpy(dtype=float)
    else:
        values = (
            source.tokens[source.tokens["rollout"] == rid].sort_values("pos")["weight"].to_numpy(dtype=float)
        )
        scale = source.tokens["weight"].to_numpy(dtype=float)
    if source is not None:
        kept = source.tokens[source.tokens["rollout"] == rid].sort_values("pos")["kept"].to_numpy()
        struck = ~kept if len(kept) == len(tok) else struck
    kind, center, label = "sequential", None, f"|W| per token ({method_label(under)}), scale: {scope}"
else:
    col, kind, center, label = {
        "ratio": ("ratio", "diverging", 1.0, "ratio ρ_t = exp(s_t)"),
        "s_t": ("s", "diverging", 0.0, "s_t = log π_θ − log π_old"),
        "entropy": ("entropy", "sequential", None, "entropy (nats)"),
    }[colour_by]
    values, scale = tok[col].to_numpy(dtype=float), group_tok[col].to_numpy(dtype=float)

# A long rollout is drawn a window of MAX_DRAWN_TOKENS tokens at a time (its colour scale stays the group's).
first = 0
if len(tok) > MAX_DRAWN_TOKENS:
    first = int(
        st.number_input(
            f"First token drawn (of {len(tok):,}; {MAX_DRAWN_TOKENS:,} at a time)", min_value=0,
            max_value=len(tok) - 1, value=0, step=MAX_DRAWN_TOKENS, key="insp_from", bind="query-params",
        )
    )  # fmt: skip
window = slice(first, min(len(tok), first + MAX_DRAWN_TOKENS))
if colour_by == "ratio":  # multiplicative: symmetric in log rho around 1, both legend ends > 0
    colors, lo, hi = ratio_colors(values[window], scale)
else:
    colors, lo, hi = value_colors(values[window], kind, center, scale)
shown = tok.iloc[window]
titles = [
    f"pos {int(r.pos)} · {r.token!r}\ns_t {r.s:+.5f} · ratio {r.ratio:.5f}\nlogp {r.logp:.4f} · old {r.old_logp:.4f}"
    f"\nlogged weight {r.weight:.5g} · entropy {r.entropy:.3f}\nshown value {v:.5g}"
    for r, v in zip(shown.itertuples(), values[window], strict=True)
]
st.markdown(
    f"Reward **{row['reward']:g}** ({'correct' if row['reward'] > 0.5 else 'wrong'}) · {int(row['length']):,} tokens · "
    f"s̄ = {row['s_bar']:+.5f} · logged W = {row['weight']:.5g}"
    + (
        f" · A = {row['advantage']:+.4f}"
        if card.method in CLIP_METHODS and pd.notna(row["advantage"])
        else ""
    )
    + (f" · C = {np.exp(row['log_c']):.4g}" if card.method in REAL_METHODS and pd.notna(row["log_c"]) else "")
)
if card.method in REAL_METHODS:
    st.page_link(
        "app_pages/learn.py", label=f"Eq. 9/10 worked out with rollout #{rid}'s numbers (Learn)",
        icon=":material/school:", query_params={"learn_tab": "A logged rollout", "learn_run": name,
        "learn_step": str(step), "learn_group": str(gid), "learn_rollout": str(rid)},
    )  # fmt: skip
if len(tok) > MAX_DRAWN_TOKENS:
    st.caption(f"Tokens {window.start:,} to {window.stop - 1:,} of {len(tok):,} drawn.")
st.html(
    legend_html(kind, lo, hi, label)
    + tokens_html(shown["token"].astype(str).tolist(), colors, titles, struck[window])
)
st.caption(
    "Hover a token for its values. Struck-through tokens get no gradient under the chosen method (clipped). "
    "In each step's first mini-batch s_t = 0 and the ratio is 1 for every token."
)

# ---- per-token weights of this rollout under every method (the drawn window)
rows = []
for m, rep in replays.items():
    t = rep.tokens[rep.tokens["rollout"] == rid].sort_values("pos").iloc[window]
    rows.append(pd.DataFrame({"pos": t["pos"], "weight": t["weight"], "method": method_label(m)}))
if not rows:  # no replay (a group too large to read whole): the logged weight
    rows.append(
        pd.DataFrame({"pos": shown["pos"], "weight": shown["weight"], "method": method_label(card.method)})
    )
per_tok = pd.concat(rows, ignore_index=True)
drawn = list(replays) or [card.method]
colour_scale = method_scale(drawn) if all(m in METHODS for m in drawn) else alt.Scale()


def _token_line(rows: pd.DataFrame, width: float) -> alt.Chart:
    return (
        alt.Chart(rows)
        .mark_line(interpolate="step-after", strokeWidth=width)
        .encode(
            x=alt.X("pos:Q", title="token position"),
            y=alt.Y("weight:Q", title="|W| per token"),
            color=alt.Color("method:N", scale=colour_scale, title=None, legend=method_legend(len(drawn))),
            tooltip=["method", "pos", alt.Tooltip("weight:Q", format=".5g")],
        )
    )


# Streamlit sizes the whole chart, title, legend and axes included: about 260 px of plot
chart = stacked_lines(per_tok, "method", [method_label(m) for m in drawn], _token_line).properties(
    height=420, title=f"Token weights of rollout #{rid} under every method"
)
st.altair_chart(chart)
if len(drawn) > 1:
    st.caption(OVERLAP_NOTE)
