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
        frames
        for spec, frames in charts(at)
        if "val_pass1" in json.dumps(spec) and any("val_pass1" in f for f in frames)
    ]
    assert pass1, "no Pass@1 chart"
    df = next(f for f in pass1[0] if "val_pass1" in f)
    first = df[df["run"] == "long"].sort_values("step").iloc[0]
    assert first["step"] == 0 and first["val_pass1"] == pytest.approx(0.123)

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
