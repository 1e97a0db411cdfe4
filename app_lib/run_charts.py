"""The Runs page's dynamics charts: each seed or the mean over seeds with a band, on a step, wall-time or token
x axis, and the CSV of each chart's data. The numbers come from ``workbench.stats.run_curves``.

A chart's CSV in "mean over seeds" mode has the columns of the CLI's figure CSV (``frame, label, metric, step,
mean, lo, hi, n_seeds``, the same number format); with the step axis and no smoothing its rows are those of
``python -m workbench.figures fig4 --smooth 1`` for the metric (Fig. 4/5 metrics, the same runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from app_lib.ui import ema_smooth
from workbench.figures.registry import CSV_FLOAT_FORMAT, whole_int_columns
from workbench.stats.run_curves import X_AXES, seed_mean

AGGREGATES = {"seeds": "each seed", "mean": "mean over seeds"}
X_LABELS = {"step": "step", "wall_time": "wall time", "tokens": "tokens"}


def chart_data(
    curves: pd.DataFrame,
    metric: str,
    x: str,
    aggregate: str,
    smoothing: float,
    band: str,
    runs_per_label: Mapping[str, int],
) -> tuple[pd.DataFrame, dict[str, str]]:
    """What one chart draws from ``curves`` (columns ``run, label, seed, step, wall_time, tokens`` and the metric
    columns, one row per run and step): ``each seed``: ``run, label, seed, metric, step, [x,] value`` (EMA-smoothed
    per run with ``smoothing``; ``value_raw`` holds the logged value then); ``mean``: ``frame, label, metric,
    step, [x,] mean, lo, hi, n_seeds`` (each run smoothed first, then ``seed_mean``) and its notes. Rows come
    in the order of ``runs_per_label``'s labels (the figures list variants in the paper's order), then run and
    step."""
    cols = ["run", "label", "seed", "step", *([x] if x != "step" else [])]
    d = curves[[*cols, metric]].dropna(subset=[metric]).rename(columns={metric: "value"})
    d["label"] = pd.Categorical(d["label"], categories=list(runs_per_label), ordered=True)
    if smoothing:
        d = ema_smooth(d.assign(value_raw=d["value"]), "value", "run", "step", smoothing)
    d = d.sort_values(["label", "run", "step"], kind="stable").reset_index(drop=True)
    if aggregate == "seeds":
        d.insert(3, "metric", metric)
        return d, {}
    agg, notes = seed_mean(d, "value", runs_per_label, x=x, band=band)
    agg.insert(0, "frame", "band")
    agg.insert(2, "metric", metric)
    return agg, notes


def chart_csv(table: pd.DataFrame) -> bytes:
    """``table`` as the CLI writes a figure's CSV: floats as ``%.6g``, step/seed/count columns as integers."""
    table = whole_int_columns(table.copy())
    if "label" in table:
        table["label"] = table["label"].astype(str)
    return table.to_csv(index=False, float_format=CSV_FLOAT_FORMAT).encode()


def csv_button(table: pd.DataFrame, file_name: str, key: str) -> None:
    """A small "CSV" download of ``table`` (``chart_csv``) under a chart; a click does not rerun the page."""
    st.download_button(
        "CSV", chart_csv(table), file_name, "text/csv", key=key, icon=":material/download:", on_click="ignore",
        help="the numbers this chart draws",
    )  # fmt: skip


def x_title(x: str) -> str:
    return X_AXES[x]


# The charts are Vega-Lite specs written here rather than Altair objects: Altair validates every chart against
# the Vega-Lite schema on each rerun (about 60 ms a chart here, eight charts a rerun), and these are fixed.


def _legend(n: int) -> dict[str, Any]:
    return {
        "orient": "top",
        "labelLimit": 0,
        "symbolStrokeWidth": 2.5,
        "symbolOpacity": 1,
        "columns": 2 if n > 4 else 0,
    }


def _x(x: str) -> dict[str, Any]:
    axis: dict[str, Any] = {"format": "d" if x in ("step", "tokens") else ",.4~g"}
    if x == "step":
        axis["tickMinStep"] = 1
    return {"field": x, "type": "quantitative", "title": x_title(x), "axis": axis}


def _y(field: str, title: str, log_y: bool) -> dict[str, Any]:
    scale = {"type": "symlog", "constant": 1e-3} if log_y else {"zero": False}
    return {"field": field, "type": "quantitative", "title": title, "scale": scale}


def _spec(layers: list[dict[str, Any]], rule_x: float | None, n_series: int, height: int) -> dict[str, Any]:
    if rule_x is not None:
        layers.append({"mark": {"type": "rule", "color": "#888", "strokeDash": [4, 3]},
                       "encoding": {"x": {"datum": rule_x, "type": "quantitative"}}})  # fmt: skip
    legend_rows = (n_series + 1) // 2 if n_series > 4 else 1
    # Streamlit sizes the whole chart (legend and axes included) to this height: ``height`` is the plot's own
    return {"height": height + 90 + 22 * legend_rows, "layer": layers}


def band_spec(
    agg: pd.DataFrame,
    x: str,
    colors: Mapping[str, str],
    *,
    rule_x: float | None,
    y_title: str,
    log_y: bool = False,
    height: int = 240,
) -> dict[str, Any]:
    """Vega-Lite spec over ``agg`` (``seed_mean``'s rows): each variant's mean line over its band (lo to hi),
    coloured by ``colors`` (label -> colour); ``rule_x``: a vertical rule at that x."""
    n = len(colors)
    color = {"field": "label", "type": "nominal", "title": None, "legend": _legend(n),
             "scale": {"domain": list(colors), "range": list(colors.values())}}  # fmt: skip
    tips = [{"field": "label", "type": "nominal"}, {"field": "step", "type": "quantitative"}]
    if x != "step":
        tips.append({"field": x, "type": "quantitative", "format": ",.4~g"})
    tips += [{"field": f, "type": "quantitative", "format": ".4g"} for f in ("mean", "lo", "hi")]
    tips.append({"field": "n_seeds", "type": "quantitative"})
    area = {"mark": {"type": "area", "opacity": 0.18},
            "encoding": {"x": _x(x), "y": _y("lo", y_title, log_y), "y2": {"field": "hi"}, "color": color}}  # fmt: skip
    line = {"mark": {"type": "line", "point": len(agg) < 60},
            "encoding": {"x": _x(x), "y": _y("mean", y_title, log_y), "color": color, "tooltip": tips}}  # fmt: skip
    return _spec([area, line], rule_x, n, height)


def seeds_spec(
    d: pd.DataFrame,
    x: str,
    series: Sequence[str],
    colors: Sequence[str],
    dashes: Sequence[Sequence[int]],
    *,
    rule_x: float | None,
    y_title: str,
    log_y: bool = False,
    height: int = 240,
) -> dict[str, Any]:
    """Vega-Lite spec over ``d`` (``chart_data``'s per-seed rows): one line per run, coloured by ``colors`` and
    dashed by ``dashes`` (one per run of ``series``, as ``ui.series_scales``); ``rule_x``: a vertical rule."""
    n = d["run"].nunique()
    color = {"field": "run", "type": "nominal", "title": None, "legend": _legend(n),
             "scale": {"domain": list(series), "range": list(colors)}}  # fmt: skip
    dash = {"field": "run", "type": "nominal", "title": None,
            "scale": {"domain": list(series), "range": [list(v) for v in dashes]}}  # fmt: skip
    tips = [{"field": "run", "type": "nominal"}, {"field": "step", "type": "quantitative"}]
    if x != "step":
        tips.append({"field": x, "type": "quantitative", "format": ",.4~g"})
    tips.append({"field": "value", "type": "quantitative", "format": ".4g"})
    line = {"mark": {"type": "line", "point": len(d) < 60},
            "encoding": {"x": _x(x), "y": _y("value", y_title, log_y), "color": color, "strokeDash": dash,
                         "tooltip": tips}}  # fmt: skip
    return _spec([line], rule_x, n, height)
