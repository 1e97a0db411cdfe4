"""Fixes found by looking at the figures of the 33 tiny-preset runs: no legend hides a line or a band, Fig. 2
says which discard line is counterfactual and how many tokens did not move, the drawn values are written as
CSV beside each figure."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from workbench.figures.__main__ import main
from workbench.figures.c_dynamics import CDynamicsParams, build_c_dynamics, c_dynamics_data
from workbench.figures.fig2 import Fig2Params, build_fig2, fig2_data
from workbench.figures.registry import RUN_FIGURES
from workbench.stats import final_metric
from workbench.synthetic_run import variant_name, write_synthetic_run, write_synthetic_suite

from .conftest import RunFactory


def hidden_by_legends(fig: Figure) -> list[str]:
    """Lines (any segment), bands (their filled area) and notes that a legend of their own axes covers."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        shapes = [
            (f"line {ln.get_label()}", ln.get_path(), ln.get_transform(), False) for ln in ax.get_lines()
        ]
        shapes += [("band", path, c.get_transform(), True) for c in ax.collections for path in c.get_paths()]
        for what, path, transform, filled in shapes:
            if len(path.vertices) and path.transformed(transform).intersects_bbox(box, filled=filled):
                found.append(f"{ax.get_title()!r}: {what}")
        for text in ax.texts:  # notes written on the panel
            if text.get_text() and text.get_window_extent(renderer).overlaps(box):
                found.append(f"{ax.get_title()!r}: text {text.get_text()!r}")
    return found


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_synthetic_suite(
        root, seeds=(0, 1), steps=4, prompts=4, group_size=4, minibatches=2, mean_len=6, val_every=2
    )
    return root


@pytest.mark.parametrize("cli", list(RUN_FIGURES))
def test_no_legend_hides_a_line_or_a_band(cli, suite):
    fig = RUN_FIGURES[cli]
    p = fig.params()
    assert hidden_by_legends(fig.build(fig.data([suite], p), p)) == []


def test_the_c_dynamics_legend_stays_clear_of_a_band_that_spans_the_whole_panel(tmp_path):
    """Panel (c) of the tiny runs: a seed's per-step log C dips to 0, so the band fills the panel's height."""
    runs = [
        write_synthetic_run(
            tmp_path / variant_name(m, {}, s),
            method=m,
            seed=s,
            steps=6,
            prompts=4,
            group_size=4,
            minibatches=2,
        )
        for m in ("real", "grpo")
        for s in (0, 1)
    ]
    data = c_dynamics_data(runs, CDynamicsParams())
    steps = data.frames["over_steps"]
    data.frames["over_steps"] = steps.assign(lo=0.0, hi=steps["hi"].max())  # every step from 0 to the top
    fig = build_c_dynamics(data)
    assert hidden_by_legends(fig) == []


def test_fig2_names_the_counterfactual_rule_and_counts_unmoved_tokens(make_run: RunFactory):
    # later mini-batch tokens (s, weight): 3 of 5 have s = 0 exactly (ratio 1); the first mini-batch is left out
    rows = [
        {"reward": 1.0, "advantage": 1.0, "tokens": [(0.0, 1.0), (0.0, 1.0), (0.1, 1.0)]},
        {"reward": 0.0, "advantage": -1.0, "tokens": [(0.0, 1.0), (-0.3, 1.0)]},
        {"minibatch": 0, "reward": 1.0, "advantage": 1.0, "tokens": [(0.0, 1.0)] * 4, "group": 1},
    ]
    runs = [
        make_run("g", "grpo", steps={1: rows}, metrics={1: {"val_pass1": 0.5}}),
        make_run("b", "grpo", steps={1: rows}, hparams={"clip_mode": "bidirectional"}, metrics={1: {}}),
    ]
    data = fig2_data(runs, Fig2Params())
    assert data.notes["ratio_exactly_1_share"] == pytest.approx(0.6)
    assert "60.0% of these tokens have ratio exactly 1" in data.caption
    assert "the bidirectional rule what it would have discarded on the same tokens" in data.caption
    fig = build_fig2(data)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["vanilla rule (as trained)", "bidirectional rule (same tokens)"]
    assert fig.axes[2].get_ylabel() == "Pass@1"
    assert fig.axes[1].get_legend().get_title().get_text() == "bidirectional − vanilla: +0.00 pp"
    assert hidden_by_legends(fig) == []


def test_each_run_figure_writes_the_values_it_draws(suite, tmp_path):
    runs = sorted(str(p) for p in suite.iterdir())
    assert main(["all", "--runs", *runs, "--out-dir", str(tmp_path)]) == 0
    for fig in RUN_FIGURES.values():
        meta = json.loads((tmp_path / f"{fig.name}.json").read_text())
        if not fig.plotted:  # table4 writes its own CSV of the table
            assert "plotted_values" not in meta
            continue
        assert meta["plotted_values"]["file"] == f"{fig.name}.csv"
        table = pd.read_csv(tmp_path / f"{fig.name}.csv")
        assert table.columns[0] == "frame" and set(table["frame"]) == set(fig.plotted)
    # the drawn final validation point of each Fig. 4 method is the mean of its runs' last val_pass1
    fig4 = pd.read_csv(tmp_path / "fig4_training_dynamics.csv")
    val = fig4[fig4["metric"] == "val_pass1"]
    for label, method in (("GRPO", "grpo"), ("REAL", "real")):
        last = val[val["label"] == label].sort_values("step").iloc[-1]
        finals = [final_metric(suite / f"{method}-s{s}").iloc[0] for s in (0, 1)]
        assert last["step"] == finals[0]["step"]
        assert last["mean"] == pytest.approx(np.mean([f["value"] for f in finals]), rel=1e-5)
        assert last["n_seeds"] == 2


@pytest.mark.parametrize("cli", list(RUN_FIGURES))
def test_every_text_is_legible_where_the_app_shows_the_figure(cli, suite):
    """Issue 15: at a 1400 px wide window the app shows a figure's PNG about 940 px wide; every visible text
    (titles, ticks, legends, the caption) is then at least 10 px high (was 7 px for the C+/C- legend and caption)."""
    from matplotlib.text import Text

    from workbench.figures.common import DISPLAY_WIDTH_PX

    fig = RUN_FIGURES[cli]
    p = fig.params()
    built = fig.build(fig.data([suite], p), p)
    built.canvas.draw()
    px_per_pt = DISPLAY_WIDTH_PX / (72.0 * built.get_figwidth())  # a point of the figure, shown in the app
    small = [
        (t.get_text()[:40], round(t.get_fontsize() * px_per_pt, 1))
        for t in built.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() * px_per_pt < 10 - 1e-9
    ]
    plt.close(built)  # pyplot keeps every figure it made until it is closed
    assert not small, small
