"""Display helpers shared by the pages: run cards, method colours, tokens coloured by a value, small charts."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgb

from app_lib.config import get_runs_root
from app_lib.data import RunCard, read_card, scan
from workbench.figures.common import METHOD_COLORS
from workbench.methods import LABELS, METHODS

STATE_ICONS = {
    "running": ":material/progress_activity:",
    "finished": ":material/check_circle:",
    "failed": ":material/error:",
    "stopped": ":material/stop_circle:",
    "interrupted": ":material/warning:",
}


SYNTHETIC_BADGE = (
    "<span style='background:#fff3cd;color:#7a5c00;border:1px solid #e6c200;border-radius:4px;padding:0 6px;"
    "font-size:0.75rem;font-weight:600'>SYNTHETIC · not a training result</span>"
)


# Every character Markdown, GFM, Streamlit's extensions (math ``$``, ``:red[...]`` directives) or HTML can act
# on. CommonMark lets a backslash escape any ASCII punctuation, so an escaped one is always literal text.
_MD_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~$&=:")


# Streamlit's GFM turns URLs and e-mail addresses in *text* into links after escapes are resolved
# (mdast-util-gfm-autolink-literal: "x://", "www." and "a@b.c" anywhere in a text node). An invisible word joiner
# (U+2060) after "x:", "www" and "@" breaks those patterns and leaves what is seen unchanged.
_AUTOLINK = re.compile(r"(?i)(:(?=//)|www(?=\.)|@)")
WORD_JOINER = "\u2060"


def md_escape(text: object) -> str:
    """``text`` shown literally where Streamlit renders Markdown (st.markdown, st.caption, st.error/warning/info/
    success, widget labels and help): no emphasis from ``1*2*3``, no math from ``$``, no link, autolink or image,
    no heading, list, table or HTML. Line breaks stay line breaks. Use it for every string read from a run folder.
    (A URL in it is shown, not linked, and carries an invisible U+2060 after its scheme's colon.)"""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n")
    text = _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, text)
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text).replace("\n", "  \n")


def md_code(text: object) -> str:
    """``text`` as an inline code span that no backtick inside it can close (CommonMark: a longer fence). Nothing
    in a code span is Markdown, HTML, an entity, math or an autolink: it is shown as is, in monospace."""
    text = " ".join(str(text).splitlines())
    if not text.strip():
        return md_escape(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_literal(text: object) -> str:
    """A message read from a run folder or raised while reading one (an error naming file, row and field, a
    skipped data row, status.json's error) shown as is: each line a code span (``md_code``), lines kept."""
    return "  \n".join(
        md_code(line) for line in str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    )


def method_label(m: str) -> str:
    return LABELS.get(m, m)


def tint(color: str, amount: float = 0.5) -> str:
    """``color`` mixed with white (``amount`` of white): its lighter form, for text on a dark background."""
    return to_hex([c + (1 - c) * amount for c in to_rgb(color)])


# Label ink (light theme, dark theme) of the REAL bound on the Gradient curves page: REAL's colour, and that colour
# tinted for the dark background (4.8:1 on white; tinted 9.3:1 on #0e1117, where REAL's own colour is 4.0:1).
BOUND_INK = (METHOD_COLORS["real"], tint(METHOD_COLORS["real"]))


def on_theme(light: str, dark: str) -> str:
    """The colour for text drawn in a chart on the page's current theme: no single colour reaches 4.5:1
    contrast on both white and Streamlit's dark background (#0e1117), so a label takes one per theme (the light
    one before the browser has reported its theme)."""
    theme = getattr(getattr(st.context, "theme", None), "type", None)
    return dark if theme == "dark" else light


def method_scale(methods: Sequence[str] = METHODS) -> alt.Scale:
    """Altair colour scale mapping method labels to the figures' method colours (only ``methods`` in the legend)."""
    return alt.Scale(domain=[LABELS[m] for m in methods], range=[METHOD_COLORS[m] for m in methods])


def method_legend(n: int) -> alt.Legend:
    """A legend above the chart whose labels are never cut: up to 2 per row (the longest, "REAL w/o anchor",
    fits a half-width chart at 1400 px), no label length limit."""
    return alt.Legend(orient="top", columns=min(max(n, 1), 2), labelLimit=0, symbolStrokeWidth=3)


# Line widths by series, widest first: a series drawn earlier stays visible around one drawn later on the same
# values (GRPO under DAPO where their clip ranges agree). Pages say so in a caption.
STACKED_WIDTHS = [6.0, 4.6, 3.4, 2.4, 1.7, 1.2]
OVERLAP_NOTE = "Where lines coincide, the earlier method's line is the wider one underneath."


def stacked_lines(
    df: pd.DataFrame, field: str, labels: Sequence[str], line: Callable[[pd.DataFrame, float], alt.Chart]
) -> alt.LayerChart:
    """One layer per series of ``df`` (rows whose ``field`` is each of ``labels``, in that order), drawn by
    ``line(rows, width)`` with ``STACKED_WIDTHS``: the first series at the bottom and widest."""
    layers = [
        line(df[df[field] == lb], STACKED_WIDTHS[min(i, len(STACKED_WIDTHS) - 1)])
        for i, lb in enumerate(labels)
    ]
    return alt.layer(*layers)


def runs_root_and_cards() -> tuple[str, list[RunCard]]:
    root = get_runs_root()
    return str(root), scan(root)


def run_title(card: RunCard) -> str:
    return f"{card.name} · {card.label}" if card.ok else card.name


def render_card(card: RunCard) -> None:
    """One bordered card: name, method, state, steps; or the error that keeps the run from being read."""
    with st.container(border=True):
        if not card.ok:
            st.markdown(f"**{md_escape(card.name)}**")
            st.error(md_literal(card.error or "unreadable"), icon=":material/error:")
            return
        # The only HTML here is the colour span; its colour comes from a fixed table and every text in the line is
        # md_escape'd, which a Markdown parser reads as text (an escaped "<" never opens a tag).
        known = card.method in METHOD_COLORS
        color = METHOD_COLORS.get(card.method, "#555")
        label = md_escape(card.label) + ("" if known else " (unknown method)")
        st.markdown(
            f"**{md_escape(card.name)}** &nbsp; <span style='color:{color};font-weight:600'>{label}</span>",
            unsafe_allow_html=True,
        )
        state = card.display_state
        total = f" / {card.total_steps}" if card.total_steps else ""
        seed = card.config.get("seed", "?")
        st.caption(
            f"{STATE_ICONS.get(state, '')} {md_escape(state)} · step {card.last_step}{total} · seed {md_escape(seed)}"
        )
        if card.synthetic:
            st.markdown(SYNTHETIC_BADGE, unsafe_allow_html=True, help="made by workbench.synthetic_run for tests "
                        "and benchmarks, without training: not a result")  # fmt: skip
        if state == "failed" and card.status.get("error"):
            st.error(md_literal(str(card.status["error"])[:500]))
        if card.problem:
            st.error(md_literal(card.problem), icon=":material/error:")
        if card.data_skipped:
            counts = ", ".join(f"{md_escape(split)} {n}" for split, n in card.data_skipped.items())
            total = sum(card.data_skipped.values())
            shown = "\n".join(f"- {md_literal(r)}" for r in card.data_skipped_rows[:5])
            more = total - min(len(card.data_skipped_rows), 5)
            st.warning(
                f"{total} bad data row{'s' * (total != 1)} skipped ({counts}):\n{shown}"
                + (f"\n- ... and {more} more (run.json, env.data)" if more > 0 else ""),
                icon=":material/warning:",
            )


def render_cards(cards: Sequence[RunCard], per_row: int = 3) -> None:
    for i in range(0, len(cards), per_row):
        cols = st.columns(per_row)
        for col, card in zip(cols, cards[i : i + per_row], strict=False):
            with col:
                render_card(card)


# ----------------------------------------------------------------------------------------------- tokens


def value_colors(
    values: np.ndarray, kind: str, center: float | None = None, scale_values: np.ndarray | None = None
) -> tuple[list[str], float, float]:
    """Background colours for ``values``: ``sequential`` (0..max, white to red) or ``diverging`` around
    ``center`` (blue below, red above, symmetric). The scale's ends come from ``scale_values`` (default
    ``values``), e.g. the whole group, so that rollouts are comparable. Colours stay light enough for black text.
    Returns the colours and the scale's ends."""
    v = np.asarray(values, dtype=float)
    ref = np.asarray(v if scale_values is None else scale_values, dtype=float)
    finite = ref[np.isfinite(ref)]
    if kind == "diverging":
        c = 0.0 if center is None else center
        half = float(np.max(np.abs(finite - c))) if finite.size else 1.0
        half = half if half > 0 else 1.0
        x = 0.5 + 0.36 * np.clip((v - c) / half, -1, 1)
        lo, hi = c - half, c + half
    else:
        top = float(np.max(finite)) if finite.size else 1.0
        top = top if top > 0 else 1.0
        x = np.clip(v / top, 0, 1) * 0.6
        lo, hi = 0.0, top
    cmap = colormaps[_CMAPS[kind]]
    x = np.where(np.isfinite(x), x, 0.5 if kind == "diverging" else 0.0)
    return [to_hex(rgba) for rgba in cmap(x)], lo, hi  # one colormap call for the whole response


def ratio_colors(
    ratios: np.ndarray, scale_ratios: np.ndarray | None = None
) -> tuple[list[str], float, float]:
    """Background colours for importance ratios rho_t = e^{s_t}, diverging around rho = 1 on the log scale:
    rho and 1/rho get mirrored colours, and the scale's ends are e^{-h} and e^{+h} with h = max |log rho| over
    ``scale_ratios`` (default ``ratios``). Both ends are positive, as a ratio is; a linear scale around 1 would
    label its low end 1 - (rho_max - 1), negative once rho_max > 2."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.asarray(ratios, dtype=float))
        ref = None if scale_ratios is None else np.log(np.asarray(scale_ratios, dtype=float))
    colors, lo, hi = value_colors(logs, "diverging", 0.0, ref)
    return colors, float(np.exp(lo)), float(np.exp(hi))


_CMAPS = {"diverging": "RdBu_r", "sequential": "Reds"}
_SPAN = {"diverging": (0.14, 0.86), "sequential": (0.0, 0.6)}


def legend_html(kind: str, lo: float, hi: float, label: str) -> str:
    cmap = colormaps[_CMAPS[kind]]
    stops = np.linspace(*_SPAN[kind], 9)
    grad = ", ".join(to_hex(cmap(float(t))) for t in stops)
    return (
        "<div style='display:flex;align-items:center;gap:8px;font-size:0.8rem;margin:4px 0 8px 0'>"
        f"<span>{html.escape(label)}</span><span>{lo:.3g}</span>"
        f"<span style='display:inline-block;width:180px;height:12px;border-radius:3px;"
        f"background:linear-gradient(to right, {grad})'></span><span>{hi:.3g}</span></div>"
    )


def tokens_html(
    tokens: Sequence[str], colors: Sequence[str], titles: Sequence[str], struck: Sequence[bool]
) -> str:
    """The response as coloured token spans; hovering a token shows its values; ``struck`` tokens are clipped."""
    spans = []
    for tok, col, title, s in zip(tokens, colors, titles, struck, strict=True):
        deco = "text-decoration:line-through;text-decoration-color:#444;" if s else ""
        spans.append(
            f"<span title='{html.escape(title, quote=True)}' style='background:{col};{deco}"
            f"border-radius:2px;padding:1px 0'>{html.escape(tok)}</span>"
        )
    return (
        "<div style='font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:0.92rem;line-height:1.9;"
        "white-space:pre-wrap;word-break:break-word;color:#111;background:#fff;border:1px solid #ddd;"
        "border-radius:6px;padding:10px'>" + "".join(spans) + "</div>"
    )


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def fmt_range(lo: float, hi: float, digits: int = 4) -> str:
    """``"lo – hi"``, or one number where both read the same at ``digits`` significant digits."""
    a, b = fmt(lo, digits), fmt(hi, digits)
    return a if a == b else f"{a} – {b}"


DASHES = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3]]


def series_style(methods: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """A colour and a dash pattern per series of ``methods`` (each series' method): the method's colour (as in
    the figures), and dashes that tell apart series of one method."""
    seen: dict[str, int] = {}
    dashes = []
    for m in methods:
        dashes.append(DASHES[seen.get(m, 0) % len(DASHES)])
        seen[m] = seen.get(m, 0) + 1
    return [METHOD_COLORS.get(m, "#555") for m in methods], dashes


def series_scales(series: Sequence[str], methods: Sequence[str]) -> tuple[alt.Scale, alt.Scale]:
    """Colour each series by its method (the figures' colours) and tell apart series of one method by dashes."""
    colors, dashes = series_style(methods)
    return alt.Scale(domain=list(series), range=colors), alt.Scale(domain=list(series), range=dashes)


def line_chart(
    df: pd.DataFrame,
    x: str,
    y: str,
    color: str,
    *,
    rule_x: float | None = None,
    height: int = 240,
    y_title: str | None = None,
    scales: tuple[alt.Scale, alt.Scale] | None = None,
    x_title: str | None = None,
    log_y: bool = False,
    x_format: str = "d",
) -> alt.LayerChart:
    """A small multi-series line chart with tooltips and an optional vertical rule (the selected step);
    ``log_y``: a symlog y axis (logarithmic away from 0, linear near it, so zeros stay drawable); ``x_format``:
    the x axis's d3 number format (``d``: whole numbers, e.g. steps).

    No chart title: pages put a heading above it (a Vega title gets clipped in narrow columns)."""
    y_scale = alt.Scale(type="symlog", constant=1e-3) if log_y else alt.Scale(zero=False)
    enc = {
        "x": alt.X(f"{x}:Q", title=x_title or x, axis=alt.Axis(format=x_format, tickMinStep=1 if x_format == "d" else alt.Undefined)),
        "y": alt.Y(f"{y}:Q", title=y_title or y, scale=y_scale),
        "color": alt.Color(
            f"{color}:N", title=None, scale=scales[0] if scales else alt.Scale(scheme="tableau10"),
            legend=alt.Legend(
                orient="top", labelLimit=260, symbolStrokeWidth=2.5, columns=2 if df[color].nunique() > 4 else 0
            ),
        ),
        "tooltip": [alt.Tooltip(f"{color}:N"), alt.Tooltip(f"{x}:Q"), alt.Tooltip(f"{y}:Q", format=".4g")],
    }  # fmt: skip
    if scales:
        enc["strokeDash"] = alt.StrokeDash(f"{color}:N", title=None, scale=scales[1])
    chart = alt.Chart(df).mark_line(point=len(df) < 60).encode(**enc)
    layers: list[alt.Chart] = [chart]
    if rule_x is not None:
        rule = pd.DataFrame({x: [rule_x]})
        layers.append(alt.Chart(rule).mark_rule(color="#888", strokeDash=[4, 3]).encode(x=f"{x}:Q"))
    n = df[color].nunique()
    legend_rows = (n + 1) // 2 if n > 4 else 1
    # Streamlit sizes the whole chart (legend and axes included) to this height: ``height`` is the plot's own
    return alt.layer(*layers).properties(height=height + 90 + 22 * legend_rows)


def ema_smooth(df: pd.DataFrame, value: str, by: str, order: str, weight: float) -> pd.DataFrame:
    """TensorBoard's smoothing, per ``by`` group in ``order``: ``m_t = w m_{t-1} + (1 - w) x_t`` from ``m_0 = 0``,
    shown debiased as ``m_t / (1 - w^t)`` (so the first point is the first value and a constant stays constant).
    ``weight`` 0 returns the values unchanged."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    if weight == 0 or df.empty:
        return df
    out = df.sort_values([by, order]).copy()
    # The debiased EMA is pandas' adjusted EWM: sum_i w^i x_{t-i} / sum_i w^i, the same numbers, vectorised.
    # A missing value is skipped (callers drop them first) rather than making the rest of the run NaN.
    smoothed = out.groupby(by, sort=False)[value].ewm(alpha=1 - weight, adjust=True).mean()
    out[value] = smoothed.droplevel(0).astype(float)
    return out


DEMO_RUN = "demo-real-tiny"


def offer_demo_run(root: str, key: str) -> None:
    """The empty state of the run pages: say where runs are looked for and offer to train the tiny demo run."""
    from pathlib import Path

    from app_lib import jobs

    st.info(
        f"No runs under {md_code(root)} yet. The **Gradient curves**, **Learn** and **Paper figures** (Fig. 1) pages "
        "work without runs. To see training dynamics and inspect rollouts, train the tiny demo run: REAL on "
        "the embedded arithmetic task with the `tiny` preset, on this machine's CPU.",
        icon=":material/info:",
    )
    job = jobs.read_job(Path(root), DEMO_RUN)
    if job is not None and job.alive:
        st.success(f"The demo run `{DEMO_RUN}` is training (pid {job.pid}).")
        st.page_link("app_pages/train.py", label="Follow it on the Train page", icon=":material/play_circle:")
        return
    if not jobs.trainer_available():
        st.warning(
            "The training module (`python -m training`) is not in this checkout, so the app cannot train."
        )
        return
    if st.button("Train the tiny demo run", type="primary", key=key, icon=":material/play_arrow:"):
        try:
            job = jobs.start_training(Path(root), DEMO_RUN, "real", "tiny")
        except ValueError as e:
            st.error(md_literal(e))
        else:
            st.success(
                f"Started `{DEMO_RUN}` (pid {job.pid}); it appears here as soon as its first step lands."
            )
            st.page_link(
                "app_pages/train.py", label="Follow it on the Train page", icon=":material/play_circle:"
            )


def follow_runs_root(root: str, steps: bool, every: float = 3.0) -> None:
    """Redraw the page when the runs root changes, without a reload: a run folder appears or goes, a run starts
    or stops training, and (``steps``) a run's complete steps change. Polls ``data.root_signature`` every
    ``every`` seconds in a fragment, so runs started elsewhere (the command line, another session) show up."""
    from pathlib import Path

    from app_lib.data import root_signature

    seen = root_signature(Path(root), steps)

    @st.fragment(run_every=every)
    def _watch() -> None:
        if root_signature(Path(root), steps) != seen:
            st.rerun()

    _watch()


def refresh_when_a_step_lands(root: str, cards: Sequence[RunCard]) -> None:
    """While a run trains but has no complete step yet, poll every 3 s and redraw the page when one lands."""
    from pathlib import Path

    waiting = {c.name for c in cards if c.ok and c.live and not c.steps}
    if not waiting:
        return
    names = ", ".join(md_escape(n) for n in sorted(waiting))
    st.caption(f":material/hourglass_top: Waiting for the first step of {names}…")

    @st.fragment(run_every=3)
    def _poll() -> None:
        for name in waiting:
            card = read_card(Path(root), name)
            if card.steps or not card.live:
                st.rerun()

    _poll()


def objective_widgets(method: str, key: str, bind: bool = False, columns: int = 3) -> dict[str, object]:
    """One widget per hyper-parameter of ``method``, generated from its spec (help text, choices, default); returns
    the settings that differ from the method's defaults (what the trainer's flags need). ``bind``: each value
    lives in the page's URL (``?KEY_NAME=...``)."""
    import dataclasses
    import typing

    from workbench.methods import SPECS

    spec = SPECS[method]
    hints = typing.get_type_hints(spec.hparams_class)
    changed: dict[str, object] = {}
    cols = st.columns(columns)
    extra = {"bind": "query-params"} if bind else {}
    for i, f in enumerate(dataclasses.fields(spec.defaults)):
        default = getattr(spec.defaults, f.name)
        help_text, choices = f.metadata.get("help"), f.metadata.get("choices")
        col, wkey = cols[i % columns], f"{key}_{f.name}"
        options = typing.get_args(hints[f.name])
        if choices:
            value = col.selectbox(
                f.name, choices, index=list(choices).index(default), help=help_text, key=wkey, **extra
            )
        elif isinstance(default, bool):
            value = col.checkbox(f.name, value=default, help=help_text, key=wkey, **extra)
        elif int in options or isinstance(default, int):
            value = col.number_input(f.name, value=default, step=1, min_value=1, help=help_text, key=wkey,
                                     placeholder="unset", **extra)  # fmt: skip
        else:
            value = col.number_input(f.name, value=default, format="%g", step=None, help=help_text, key=wkey,
                                     placeholder="unset", **extra)  # fmt: skip
        if value != default:
            changed[f.name] = int(value) if isinstance(value, int) else value
    return changed
