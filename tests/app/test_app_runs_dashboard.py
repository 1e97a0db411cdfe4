"""The Runs page's research-dashboard controls (issue 15): x axis by step, wall time or tokens, each seed or the
mean over seeds with a band, all in the URL; a CSV per chart that is the CLI's figure CSV where one exists; the
"copy link" element; and the x axes and seed means of ``workbench.stats.run_curves`` on hand-made numbers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from app_lib.run_charts import chart_csv
from tests.app.conftest import APP
from workbench.figures.registry import RUN_FIGURES
from workbench.runlog import open_run
from workbench.stats.run_curves import add_x_axes, seed_mean
from workbench.synthetic_run import write_synthetic_run

FIG4_METHODS = ("grpo", "dapo", "gspo", "real")


@pytest.fixture(scope="module")
def seeds_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fig. 4's methods x 2 seeds; DAPO's seed 1 stops a step early (its last step is left out of the mean)."""
    root = tmp_path_factory.mktemp("runs_seeds")
    for method in FIG4_METHODS:
        for seed in (0, 1):
            steps = 5 if (method, seed) == ("dapo", 1) else 6
            write_synthetic_run(
                root / f"{method}-s{seed}", method=method, seed=seed, steps=steps, prompts=3, group_size=4,
                mean_len=8, val_every=2,
            )  # fmt: skip
    return root


def open_runs(root: Path, monkeypatch: pytest.MonkeyPatch, params: dict | None = None) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("app_pages/runs.py")
    names = sorted(p.name for p in root.iterdir())
    at.query_params["runs_pick"] = names
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_frames(at: AppTest) -> dict[str, pd.DataFrame]:
    """The Dynamics tab's chart data by metric (the data given with each Vega-Lite spec)."""
    out = {}
    for el in at.get("vega_lite_chart"):
        if el.proto.data.data:
            df = pa.ipc.open_stream(el.proto.data.data).read_all().to_pandas()
            if "metric" in df:
                out[str(df["metric"].iloc[0])] = df
    return out


def test_mean_over_seeds_csv_is_the_clis_fig4_csv(
    seeds_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In "mean over seeds" mode on the step axis, unsmoothed, each Fig. 4 metric's chart CSV is, byte for byte, the
    rows of that metric in the CSV ``python -m workbench.figures fig4 --smooth 1`` writes for the same runs."""
    at = open_runs(seeds_root, monkeypatch, {"runs_agg": "mean"})
    frames = chart_frames(at)
    fig = RUN_FIGURES["fig4"]
    runs = sorted(seeds_root.iterdir())
    fig.make(runs, fig.params(smooth=1), tmp_path, command="test")
    cli = (tmp_path / f"{fig.name}.csv").read_text().splitlines()
    header, rows = cli[0], cli[1:]
    assert header == "frame,label,metric,step,mean,lo,hi,n_seeds"
    for metric in ("entropy_mean", "val_pass1", "reward_mean", "solved_all_ratio"):
        app_csv = chart_csv(frames[metric]).decode().splitlines()
        expected = [header, *[r for r in rows if r.split(",")[2] == metric]]
        assert len(expected) > 4 and app_csv == expected, metric
    # DAPO's step 6 has one seed: left out of the mean, and said so
    reward = frames["reward_mean"]
    assert reward[reward["label"] == "DAPO"]["step"].max() == 5
    said = [c.value.replace("\\", "") for c in at.caption if c.value.startswith("Left out")]
    assert said and "DAPO, reward_mean: 1 step(s) in 6..6 not logged by every seed" in said[0], said


def test_band_and_seed_controls_change_the_chart_and_live_in_the_url(
    seeds_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_runs(seeds_root, monkeypatch)
    seeds = chart_frames(at)["reward_mean"]
    assert set(seeds.columns) >= {"run", "label", "seed", "step", "value"} and seeds["run"].nunique() == 8
    assert at.selectbox(key="runs_band").disabled  # no band without a mean

    at.segmented_control(key="runs_agg").set_value("mean").run()
    assert at.query_params["runs_agg"] == "mean"
    minmax = chart_frames(at)["reward_mean"].set_index(["label", "step"])
    grpo = seeds[seeds["label"] == "GRPO"].pivot(index="step", columns="seed", values="value")
    assert minmax.loc["GRPO", "mean"].to_numpy() == pytest.approx(grpo.mean(axis=1).to_numpy())
    assert minmax.loc["GRPO", "lo"].to_numpy() == pytest.approx(grpo.min(axis=1).to_numpy())

    at.selectbox(key="runs_band").set_value("sd").run()
    sd = chart_frames(at)["reward_mean"].set_index(["label", "step"])
    assert sd.loc["GRPO", "lo"].to_numpy() == pytest.approx(
        (grpo.mean(axis=1) - grpo.std(axis=1, ddof=1)).to_numpy()
    )

    # a link restores the view: x axis, mean, band
    again = open_runs(seeds_root, monkeypatch, {"runs_agg": "mean", "runs_band": "sd", "runs_x": "tokens"})
    assert again.segmented_control(key="runs_agg").value == "mean"
    assert again.segmented_control(key="runs_x").value == "tokens"
    assert again.selectbox(key="runs_band").value == "sd"
    spec = json.loads(next(el.proto.spec for el in again.get("vega_lite_chart") if el.proto.data.data))
    assert spec["layer"][0]["encoding"]["x"]["field"] == "tokens"


def test_x_axis_wall_time_and_tokens_are_the_logged_sums(
    seeds_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_runs(seeds_root, monkeypatch)
    at.segmented_control(key="runs_x").set_value("wall_time").run()
    assert at.query_params["runs_x"] == "wall_time"
    d = chart_frames(at)["reward_mean"]
    m = open_run(seeds_root / "real-s1").metrics()
    got = d[d["run"] == "real-s1"].sort_values("step")["wall_time"].to_numpy()
    assert got == pytest.approx(np.cumsum(m.sort_values("step")["time_step"].to_numpy()))
    spec = json.loads(next(el.proto.spec for el in at.get("vega_lite_chart") if el.proto.data.data))
    assert spec["layer"][-1]["encoding"]["x"]["field"] == "wall_time"
    assert not any(
        layer["mark"]["type"] == "rule" for layer in spec["layer"]
    )  # the step rule: step axis only

    at.segmented_control(key="runs_x").set_value("tokens").run()
    d = chart_frames(at)["reward_mean"]
    m = m.sort_values("step")
    tokens = np.cumsum(np.rint(m["tokens_per_s"] * m["time_sample"]))
    assert d[d["run"] == "real-s1"].sort_values("step")["tokens"].tolist() == tokens.astype(int).tolist()


def test_every_chart_has_its_csv_download(seeds_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_runs(seeds_root, monkeypatch, {"runs_agg": "mean", "runs_x": "wall_time"})
    buttons = {b.key for b in at.get("download_button")}
    charted = set(chart_frames(at))
    assert len(charted) == 8 and buttons >= {f"runs_csv_{k}" for k in charted}
    table = pd.read_csv(io.BytesIO(chart_csv(chart_frames(at)["entropy_mean"])))
    assert list(table.columns) == [
        "frame",
        "label",
        "metric",
        "step",
        "wall_time",
        "mean",
        "lo",
        "hi",
        "n_seeds",
    ]
    assert table["step"].dtype.kind == "i" and table["n_seeds"].dtype.kind == "i"
    # the other tabs' charts have theirs too
    at.session_state["runs_tab"] = "Gradient allocation"
    at.run()
    assert {"runs_csv_top_token_share", "runs_csv_corr_rollout_wrong"} <= {
        b.key for b in at.get("download_button")
    }
    at.session_state["runs_tab"] = "C+ and C-"
    at.run()
    assert {"runs_csv_c_steps", "runs_csv_c_composition"} <= {b.key for b in at.get("download_button")}


def test_every_page_has_the_copy_link_element(seeds_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidebar's "copy link" button reads the address bar when clicked (tested in the browser); here: it is on
    every page and carries its script."""
    monkeypatch.setenv("REAL_RUNS_ROOT", str(seeds_root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    for page in ("gradient_curves", "runs", "paper_figures"):
        at.switch_page(f"app_pages/{page}.py").run()
        html = [el.proto.body for el in at.get("html")]
        assert any("Copy link to this view" in h and "navigator.clipboard" in h for h in html), page


# ----------------------------------------------------------------------------------------------- run_curves


def test_x_axes_are_running_sums_and_step_0_sits_at_0() -> None:
    m = pd.DataFrame(
        {
            "step": [2, 0, 1],
            "time_step": [2.0, np.nan, 1.5],
            "tokens_per_s": [100.0, np.nan, 10.0],
            "time_sample": [0.5, np.nan, 2.26],
        }
    )
    out = add_x_axes(m)
    assert out["step"].tolist() == [0, 1, 2]
    assert out["wall_time"].tolist() == [0.0, 1.5, 3.5]
    assert out["tokens"].tolist() == [0, 23, 73]  # round(22.6) = 23, then + 50


def test_seed_mean_keeps_steps_every_seed_logged() -> None:
    curves = pd.DataFrame(
        {
            "label": ["A"] * 5 + ["B"],
            "run": ["a0", "a0", "a1", "a1", "a1", "b0"],
            "step": [1, 2, 1, 2, 3, 1],
            "tokens": [10, 20, 30, 40, 50, 7],
            "value": [1.0, 2.0, 3.0, 6.0, 9.0, 5.0],
        }
    )
    agg, notes = seed_mean(curves, "value", {"A": 2, "B": 1}, x="tokens", band="minmax")
    a = agg[agg["label"] == "A"]
    assert a["step"].tolist() == [1, 2] and a["mean"].tolist() == [2.0, 4.0]
    assert a["lo"].tolist() == [1.0, 2.0] and a["hi"].tolist() == [3.0, 6.0]
    assert a["tokens"].tolist() == [20.0, 30.0]  # the mean of the seeds' x at the step
    assert notes == {"A": "1 step(s) in 3..3 not logged by every seed, left out"}
    assert agg[agg["label"] == "B"]["mean"].tolist() == [5.0]
    with pytest.raises(ValueError, match="x='epoch'"):
        seed_mean(curves, "value", {"A": 2}, x="epoch")


def test_a_run_without_hparams_is_a_variant_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose run.json lacks ``config.hparams`` (a foreign writer) is still drawn, in both modes."""
    root = tmp_path / "runs"
    for name, method in (("real-s0", "real"), ("odd", "real")):
        write_synthetic_run(root / name, method=method, steps=3, prompts=2, group_size=4, mean_len=8)
    meta = json.loads((root / "odd" / "run.json").read_text())
    del meta["config"]["hparams"]
    (root / "odd" / "run.json").write_text(json.dumps(meta))
    at = open_runs(root, monkeypatch, {"runs_agg": "mean"})
    assert not at.error, [e.value for e in at.error]
    labels = set(chart_frames(at)["reward_mean"]["label"])
    assert labels == {"REAL", "REAL (odd)"}, labels
