"""Fixes found by looking at the figures of real tiny runs: the validation before training is step 0, smoothing
leaves validation alone, and every line of the C+/C- figure is named by a legend."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.figures.c_dynamics import CDynamicsParams, build_c_dynamics, c_dynamics_data, source_style
from workbench.figures.dynamics import DynamicsParams, build_dynamics, fig4_data
from workbench.runlog import RunWriter
from workbench.stats import final_metric, initial_validation, training_dynamics
from workbench.synthetic_run import variant_name, write_synthetic_run

from .conftest import RunFactory


def _event(run_dir, line: str) -> None:
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(line + "\n")


def test_the_validation_before_training_is_step_0_and_not_the_final_score(make_run: RunFactory):
    run = make_run("r", "real", metrics={1: {"reward_mean": 0.2}, 2: {"reward_mean": 0.4, "val_pass1": 0.5}})
    assert initial_validation(run) == {}
    assert training_dynamics(run, ["val_pass1"])["step"].tolist() == [2]
    RunWriter(run).event("validation", step=0, val_pass1=0.25, val_pass_at_k=0.5)
    _event(run, '{"event": "validation", "step": 0, "val_pa')  # a line cut short by a kill: skipped
    RunWriter(run).event(
        "validation", step=0, val_pass1=0.3
    )  # resumed before the first checkpoint: last wins
    RunWriter(run).event("validation", step=5, val_pass1=0.9)  # not the initial one
    val = training_dynamics(run, ["val_pass1", "reward_mean"])
    got = val[["step", "metric", "value"]].astype({"metric": str}).values.tolist()
    assert got == [
        [0, "val_pass1", 0.3],
        [2, "val_pass1", 0.5],
        [1, "reward_mean", 0.2],
        [2, "reward_mean", 0.4],
    ]
    assert training_dynamics(run, ["val_pass1"], initial=False)["step"].tolist() == [2]
    last = final_metric(run).iloc[0]
    assert (last["step"], last["value"]) == (2, 0.5)
    only_initial = make_run("o", "real", metrics={1: {}})
    RunWriter(only_initial).event("validation", step=0, val_pass1=0.4)
    assert pd.isna(final_metric(only_initial).iloc[0]["value"])  # never validated after training


def test_smoothing_leaves_validation_alone(make_run: RunFactory):
    runs = []
    for method in ("grpo", "dapo", "gspo", "real"):
        run = make_run(
            method,
            method,
            metrics={
                1: {"reward_mean": 0.0, "entropy_mean": 1.0},
                2: {"reward_mean": 1.0, "entropy_mean": 1.0, "val_pass1": 0.6},
                3: {"reward_mean": 0.5, "entropy_mean": 1.0},
                4: {"reward_mean": 0.0, "entropy_mean": 1.0, "val_pass1": 0.2},
            },
        )
        RunWriter(run).event("validation", step=0, val_pass1=0.4)
        runs.append(run)
    data = fig4_data(runs, DynamicsParams(smooth=2))
    band = data.frames["band"]
    grpo = band[band["label"] == "GRPO"]
    reward = grpo[grpo["metric"] == "reward_mean"].sort_values("step")["mean"].tolist()
    assert reward == pytest.approx([0.0, 0.5, 0.75, 0.25])  # trailing mean over 2 steps
    val = grpo[grpo["metric"] == "val_pass1"].sort_values("step")
    assert val["step"].tolist() == [0, 2, 4] and val["mean"].tolist() == pytest.approx([0.4, 0.6, 0.2])
    assert "never smoothed" in data.caption and "trailing mean over 2 steps" in data.caption
    assert DynamicsParams().smooth == 10
    build_dynamics(data)  # draws


def test_every_line_of_the_c_dynamics_figure_is_named(tmp_path):
    runs = [
        write_synthetic_run(
            tmp_path / variant_name(m, {}, s),
            method=m,
            seed=s,
            steps=3,
            prompts=4,
            group_size=4,
            minibatches=2,
        )
        for m in ("real", "grpo")
        for s in (0, 1)
    ]
    data = c_dynamics_data(runs, CDynamicsParams())
    fig = build_c_dynamics(data)
    a, b = fig.axes[0], fig.axes[1]
    sources = {"REAL (logged)", "REAL τ=0.5 on GRPO's s̄", "GRPO (logged)"}
    styles = {source_style(s) for s in sources}
    assert len(styles) == 3  # line style + marker tell the sources apart
    legend = fig.axes[3].get_legend()  # one legend for the three panels, in the grid's fourth cell
    assert legend is not None
    texts = {t.get_text() for t in legend.get_texts()}
    assert sources <= texts and {"correct rollouts (C+)", "wrong rollouts (C-)"} <= texts
    assert "closed form" in " ".join(texts)
    for ax, expected in ((a, sources - {"GRPO (logged)"}), (b, sources)):
        drawn = {(line.get_linestyle(), line.get_marker()) for line in ax.get_lines()}
        assert {source_style(s) for s in expected} <= drawn
    json.dumps(data.meta(CDynamicsParams()), default=str)  # the sidecar content serialises


def test_table4_shows_the_score_before_rl_beside_the_final_one(tmp_path):
    from workbench.figures.table4 import BEFORE_HEADER, table4_data, table4_markdown
    from workbench.synthetic_run import write_synthetic_suite

    write_synthetic_suite(tmp_path, seeds=(0, 1), steps=2, prompts=2, group_size=4, minibatches=2, mean_len=4)
    for run in tmp_path.iterdir():
        if run.name.startswith("real-s"):  # plain REAL only: the other rows have no initial validation
            RunWriter(run).event("validation", step=0, val_pass1=0.25 if run.name.endswith("0") else 0.35)
    data = table4_data([tmp_path])
    t = data.frames["table"].set_index("setting")
    assert t.loc["REAL", "ours_before_rl_pct"] == pytest.approx(30.0)
    assert pd.isna(t.loc["τ = 0.1", "ours_before_rl_pct"])
    assert list(data.frames["table"].columns)[-1] == "paper_reported_pct"  # the paper's column stays apart
    md = table4_markdown(data)
    assert BEFORE_HEADER in md.splitlines()[0]
    assert "| REAL | REAL | " in md and "| 30.0 | 0,1 | 52.6 |" in md and "| n/a | 0,1 | 52.3 |" in md


def test_allocation_shares_are_drawn_on_their_own_scale_against_the_uniform_share(tmp_path):
    from workbench.figures.allocation import AllocationParams, allocation_data, build_allocation

    runs = [
        write_synthetic_run(
            tmp_path / variant_name(m, {}, 0),
            method=m,
            seed=0,
            steps=3,
            prompts=8,
            group_size=4,
            minibatches=2,
        )
        for m in ("grpo", "dapo", "gspo", "real")
    ]
    p = AllocationParams(top=0.01)
    data = allocation_data(runs, p)
    fig = build_allocation(data, p)
    band = data.frames["band"]
    for ax, stat in zip(fig.axes[:2], ("top_token_share", "top_rollout_share"), strict=True):
        hi = band[band["stat"] == stat]["hi"].max()
        lo_lim, hi_lim = ax.get_ylim()
        assert lo_lim == 0 and hi <= hi_lim <= max(1.2 * hi, 0.025) + 1e-12  # zoomed on the data, not [0, 1]
        assert any(line.get_ydata()[0] == 0.01 and line.get_linestyle() == ":" for line in ax.get_lines())
    (legend,) = fig.legends  # one legend above the panels names every method and the uniform line
    assert [t.get_text() for t in legend.get_texts()] == [
        "GRPO",
        "DAPO",
        "GSPO",
        "REAL",
        "uniform weight (1%)",
    ]


def test_allocation_caption_states_reals_regime(tmp_path):
    """The caption gives REAL's s_bar range (1-99% quantiles of its mixed-group rollouts, later mini-batches) and
    the e^{s_bar/tau} range it implies, so a low top share is not read as the bound 1/tau at work."""
    import numpy as np

    from workbench.figures.allocation import allocation_data
    from workbench.stats import real_weights

    runs = [
        write_synthetic_run(
            tmp_path / variant_name(m, {}, 0),
            method=m,
            seed=0,
            steps=3,
            prompts=8,
            group_size=4,
            minibatches=2,
        )
        for m in ("grpo", "dapo", "gspo", "real")
    ]
    data = allocation_data(runs)
    rw = real_weights(runs[3])
    lo, hi = np.quantile(rw.loc[rw["used"], "s_bar"], [0.01, 0.99])
    assert data.notes["real_s_bar_q01_q99"] == pytest.approx([lo, hi])
    assert data.notes["real_s_bar_over_tau_q01_q99"] == pytest.approx([lo / 0.5, hi / 0.5])
    assert f"[{np.exp(lo / 0.5):.3g}, {np.exp(hi / 0.5):.3g}]" in data.caption
    assert f"[{lo:.3g}, {hi:.3g}]" in data.caption and "group composition alone" in data.caption
    assert "not the bound 1/τ" in data.caption
