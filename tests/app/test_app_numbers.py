"""Numbers the app shows say what they are (issue 15): the step-0 validation on the Pass@1 chart, the runs an
"at step N" table leaves out, one value where a range's ends are equal, 1/tau rounded, and CSV downloads that are
the CLI's files byte for byte, with steps and seeds as integers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from app_lib import data
from tests.app.conftest import APP
from workbench.figures.registry import RUN_FIGURES
from workbench.synthetic_run import write_synthetic_run

KW = {"prompts": 3, "group_size": 4, "mean_len": 8}


def open_page(root: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[tuple[dict, list[pd.DataFrame]]]:
    """Every Vega-Lite chart on the page: its spec and its data sets as DataFrames."""
    out = []
    for el in at.get("vega_lite_chart"):
        frames = [pa.ipc.open_stream(ds.data.data).read_all().to_pandas() for ds in el.proto.datasets]
        if el.proto.data.data:  # a chart given its data with the spec (st.vega_lite_chart(data, spec))
            frames.append(pa.ipc.open_stream(el.proto.data.data).read_all().to_pandas())
        out.append((json.loads(el.proto.spec), frames))
    return out


@pytest.fixture
def uneven_root(tmp_path: Path) -> Path:
    """A REAL run of 6 steps with a validation before its first step (Pass@1 0.123), and a GRPO run of 3."""
    root = tmp_path / "runs"
    long = write_synthetic_run(root / "long", method="real", steps=6, val_every=2, seed=0, **KW)
    with open(long / "events.jsonl", "a") as f:
        f.write(
            json.dumps({"time": "2026-01-01T00:00:00", "event": "validation", "step": 0, "val_pass1": 0.123})
        )
        f.write("\n")
    write_synthetic_run(root / "short", method="grpo", steps=3, seed=1, **KW)
    return root


def test_pass1_chart_starts_at_the_logged_step_0_and_the_table_names_runs_left_out(
    uneven_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(uneven_root, monkeypatch, "runs")
    pass1 = [
        f for _, frames in charts(at) for f in frames if "metric" in f and (f["metric"] == "val_pass1").all()
    ]
    assert pass1, "no Pass@1 chart"
    df = pass1[0]
    first = df[df["run"] == "long"].sort_values("step").iloc[0]
    assert first["step"] == 0 and first["value"] == pytest.approx(0.123)

    assert at.select_slider(key="runs_step").value == 6
    left_out = [c.value for c in at.caption if c.value.startswith("Not in this table")]
    assert left_out == ["Not in this table (no step 6 yet): short (last step 3)"], left_out


def test_equal_ends_of_a_range_show_one_value(good_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(good_root, monkeypatch, "inspector")
    single = 0
    for run in ("grpo-s0", "real-s0"):
        at.selectbox(key="insp_run").set_value(run).run()
        for group in at.selectbox(key="insp_group").options:
            at.selectbox(key="insp_group").set_value(int(group.split()[1])).run()
            for m in at.metric:
                if m.label.startswith(("C+", "C-")) and m.value != "–":
                    ends = [s.strip() for s in m.value.split("–")]
                    assert len(ends) == 1 or ends[0] != ends[1], m.value
                    single += len(ends) == 1
    assert single > 0  # the runs hold groups whose C+ (or C-) is one value


def test_the_real_bound_label_is_rounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["gc_tau"] = "0.75"
    at.run()
    texts = [str(v) for _, frames in charts(at) for f in frames if "text" in f for v in f["text"]]
    assert "REAL bound 1/tau = 1.33" in texts, texts


@pytest.mark.parametrize("cli", list(RUN_FIGURES))
def test_figure_csv_is_the_clis_file(suite_root: Path, tmp_path: Path, cli: str) -> None:
    """The app's CSV download (``app_lib.data.figure_csv``) equals, byte for byte, the CSV ``python -m
    workbench.figures CLI`` writes; step, seed and count columns are integers."""
    fig = RUN_FIGURES[cli]
    runs = sorted(p for p in suite_root.iterdir() if (p / "run.json").exists())
    params = fig.params()
    app_csv = data.figure_csv(cli, fig.data(runs, params))
    fig.make(runs, params, tmp_path, command="test")
    assert app_csv == (tmp_path / f"{fig.name}.csv").read_bytes()
    table = pd.read_csv(io.BytesIO(app_csv), dtype=str, keep_default_na=False)
    for col in ("step", "seed", "n_seeds", "count", "group_correct"):
        if col in table:
            assert not table[col].str.contains(r"[.e]", regex=True).any(), (col, table[col].unique()[:5])


def test_ema_smooth_is_tensorboards_debiased_ema() -> None:
    from app_lib.ui import ema_smooth

    df = pd.DataFrame(
        {"run": ["a"] * 4 + ["b"] * 2, "step": [1, 2, 3, 4, 1, 2], "v": [1.0, 0.0, 0.0, 0.0, 5.0, 5.0]}
    )
    out = ema_smooth(df, "v", "run", "step", 0.5).set_index(["run", "step"])["v"]
    # m = 0.5, 0.25, 0.125, 0.0625 over debias 0.5, 0.75, 0.875, 0.9375
    assert out.loc[("a", 1)] == 1.0 and out.loc[("a", 2)] == pytest.approx(1 / 3)
    assert out.loc[("a", 4)] == pytest.approx(0.0625 / 0.9375)
    assert (out.loc["b"] == 5.0).all()  # a constant stays constant; runs are smoothed apart
    assert ema_smooth(df, "v", "run", "step", 0.0) is df
    with pytest.raises(ValueError, match="smoothing weight"):
        ema_smooth(df, "v", "run", "step", 1.0)


def test_runs_charts_smooth_and_take_a_log_scale(good_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: the dynamics charts draw the smoothed values the slider asks for and a symlog axis; the table
    keeps the raw ones."""
    at = open_page(good_root, monkeypatch, "runs")

    def reward_chart() -> tuple[dict, pd.DataFrame]:
        spec, frames = next((s, f) for s, f in charts(at) if any(is_reward(x) for x in f))
        return spec, next(x for x in frames if is_reward(x))

    _, raw = reward_chart()
    at.slider(key="runs_smooth").set_value(0.6).run()
    assert not at.exception
    _, smoothed = reward_chart()
    expected = ema_from(raw.rename(columns={"value": "reward_mean"}), 0.6)
    got = smoothed.sort_values(["run", "step"])["value"].to_numpy()
    assert got == pytest.approx(expected) and not (got == raw.sort_values(["run", "step"])["value"]).all()
    # the raw values stay in the chart's data (and its CSV) next to the drawn ones
    assert (
        smoothed.sort_values(["run", "step"])["value_raw"].tolist()
        == raw.sort_values(["run", "step"])["value"].tolist()
    )
    assert any("smoothed (EMA weight 0.6" in c.value for c in at.caption)
    at.toggle(key="runs_log").set_value(True).run()
    spec, _ = reward_chart()
    assert '"symlog"' in json.dumps(spec)


def is_reward(frame: pd.DataFrame) -> bool:
    """The Runs page's reward chart data (one row per run and step, column ``metric``)."""
    return "metric" in frame and (frame["metric"] == "reward_mean").all() and "value" in frame


def ema_from(df: pd.DataFrame, w: float) -> list[float]:
    """The debiased EMA per run, written out here again."""
    out = []
    for _, g in df.sort_values(["run", "step"]).groupby("run", sort=True):
        m = 0.0
        for t, v in enumerate(g["reward_mean"], start=1):
            m = w * m + (1 - w) * v
            out.append(m / (1 - w**t))
    return out
