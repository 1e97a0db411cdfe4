"""The rollout inspector reads a bounded amount of a hostile run (issue 13, item 7).

Run folders from ``workbench.hostile_runs``: a rollouts file holding huge strings (a few KB on disk), a step too
large to draw token by token, and weights that are negative or not finite. The fast tests use sizes just over the
limits; the slow one measures the peak memory of the app process on the full attack (four 100 MB strings and a
10 M-token step) against ``benchmarks.inspector_memory.CAP_MB``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from tests.reliability.conftest import report
from workbench.hostile_runs import (
    HUGE_TEXT_STEP,
    LONG_PROMPT_CHARS,
    LONG_TEXT_STEP,
    write_huge_step_run,
    write_huge_text_run,
)
from workbench.runlog import RunFormatError, open_run, step_file
from workbench.step_slices import MAX_COLUMN_BYTES, MAX_TEXT_CHARS, read_slice
from workbench.synthetic_run import write_synthetic_run

TEXT_MB = MAX_COLUMN_BYTES / 1e6 + 1  # each huge string just over what one text column may hold


@pytest.fixture(scope="module")
def text_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("huge_texts")
    write_huge_text_run(root / "texts", text_mb=TEXT_MB)
    return root


@pytest.fixture(scope="module")
def step_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One step of 480,000 tokens: 2 groups of 4 rollouts of 60,000 tokens (a group: 240,000 > 200,000)."""
    root = tmp_path_factory.mktemp("huge_step")
    write_huge_step_run(root / "big", tokens=480_000, groups=2, group_size=4, rows_per_write=100_000)
    return root


def open_inspector(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("app_pages/inspector.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_text(at: AppTest) -> list[str]:
    return [str(x.value) for x in [*at.markdown, *at.caption, *at.warning, *at.info, *at.get("html")]]


def test_huge_strings_are_not_read_and_long_ones_are_cut(text_root: Path) -> None:
    run = text_root / "texts"
    cols = ["rollout", "group", "prompt", "answer", "reward"]
    huge = read_slice(step_file(run, "rollouts", HUGE_TEXT_STEP), "rollouts", cols)
    longest = max(len(v) for c in ("prompt", "answer") for v in huge.table.column(c).to_pylist())
    assert longest < 1000, longest  # a placeholder, not the text
    assert {n.split(": the ")[1].split(" text")[0] for n in huge.notes} == {"prompt", "answer"}, huge.notes
    assert "[not read: prompt text" in huge.table.column("prompt")[0].as_py()
    assert huge.table.num_rows == 8 and list(huge.file_rows) == list(range(8))

    cut = read_slice(step_file(run, "rollouts", LONG_TEXT_STEP), "rollouts", cols)
    prompts = cut.table.column("prompt").to_pylist()
    assert max(len(p) for p in prompts) == MAX_TEXT_CHARS
    assert any(f"the longest {LONG_PROMPT_CHARS:,}" in n for n in cut.notes), cut.notes
    full = pq.read_table(step_file(run, "rollouts", LONG_TEXT_STEP), columns=["prompt"]).column(0).to_pylist()
    assert all(f.startswith(p) for f, p in zip(full, prompts, strict=True))  # cut, not changed


def test_inspector_shows_notes_instead_of_huge_strings(
    text_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_inspector(text_root, monkeypatch)
    at.select_slider(key="insp_step").set_value(HUGE_TEXT_STEP).run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert "prompt text was not read" in warnings and "answer text was not read" in warnings, warnings
    assert max(len(t) for t in page_text(at)) < 50_000

    at.select_slider(key="insp_step").set_value(LONG_TEXT_STEP).run()
    at.selectbox(key="insp_group").set_value(0).run()  # the group of the long prompt and the long token
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert "prompt value(s) longer than 200,000 characters" in warnings, warnings
    assert "token value(s) longer than 1,000 characters" in warnings, warnings
    assert max(len(t) for t in page_text(at)) < 2 * MAX_TEXT_CHARS  # the cut prompt, escaped


def test_a_step_too_large_is_summarised_and_drawn_a_window_at_a_time(
    step_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_inspector(step_root, monkeypatch)
    info = " ".join(i.value for i in at.info)
    assert "Step 1 holds 480,000 tokens" in info and "Group 0 holds 240,000 tokens" in info, info
    assert [m.value for m in at.metric if m.label == "tokens"] == ["480,000"]
    html = at.get("html")[0].value
    assert html.count("<span title=") == 5_000 and len(html) < 2_000_000
    assert "pos 0 ·" in html and "pos 4999 ·" in html and "pos 5000 ·" not in html

    at.number_input(key="insp_from").set_value(55_000).run()
    assert not at.exception, [e.value for e in at.exception]
    html = at.get("html")[0].value
    assert "pos 55000 ·" in html and "pos 59999 ·" in html and "pos 54999 ·" not in html
    assert "Tokens 55,000 to 59,999 of 60,000 drawn." in [c.value for c in at.caption]

    at.selectbox(key="insp_rollout").set_value(3).run()  # another rollout: only its tokens are read
    assert not at.exception, [e.value for e in at.exception]
    assert "Rollout #3" in [h.value for h in at.subheader]


def test_row_filter_reads_only_the_rows_asked_for_and_names_file_rows(tmp_path: Path) -> None:
    run = write_huge_step_run(tmp_path / "big", tokens=40_000, groups=2, group_size=4, rows_per_write=4_000)
    path = step_file(run, "tokens", 1)
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    part = read_slice(path, "tokens", ["rollout", "pos", "weight"], where=("rollout", [2, 5]))
    full = pq.read_table(path, columns=["rollout", "pos", "weight"])
    keep = np.isin(full.column("rollout").to_numpy(), [2, 5])
    assert part.table.equals(full.filter(pa.array(keep)))
    assert list(part.file_rows) == list(np.flatnonzero(keep))
    limited = read_slice(path, "tokens", ["rollout", "pos"], where=("rollout", [2, 5]), max_rows=7_000)
    assert limited.table.num_rows == 7_000 and not limited.complete and limited.notes


def test_a_step_of_too_many_rollouts_is_read_in_part(tmp_path: Path) -> None:
    from app_lib import data

    root = tmp_path / "runs"
    write_huge_step_run(root / "many", tokens=60_000, groups=7_500, group_size=8)  # 60,000 one-token rollouts
    card = data.read_card(root, "many")
    rows = data.step_rollouts(card, 1)
    assert len(rows.rollouts) == data.MAX_STEP_ROLLOUTS and rows.n_tokens == 60_000
    assert any("only the first 50,000" in n for n in rows.notes), rows.notes


@pytest.mark.parametrize(
    ("table", "value"),
    [("tokens", -0.25), ("rollouts", -1.0), ("tokens", float("nan")), ("rollouts", float("inf"))],
)
def test_bad_weights_name_file_row_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, value: float
) -> None:
    """Negative or non-finite weights reaching ``workbench.stats`` and the bounded reader: an error naming the
    file, the row and the field (was a bare ``ValueError`` from the statistics' sort)."""
    from workbench.stats import gradient_allocation

    run = write_synthetic_run(tmp_path / "run", method="grpo", steps=2, prompts=2, group_size=4, mean_len=8)
    path = step_file(run, table, 2)
    t = pq.read_table(path)
    w = t.column("weight").to_numpy().copy()
    w[5] = value
    pq.write_table(
        t.set_column(t.schema.get_field_index("weight"), "weight", pa.array(w, pa.float32())), path
    )
    with pytest.raises(RunFormatError) as e:
        gradient_allocation(run)
    assert e.value.path == path and e.value.row == 5 and e.value.field == "weight", str(e.value)
    with pytest.raises(RunFormatError) as e2:
        read_slice(path, table, ["rollout", "weight"], where=("rollout", list(range(8))))
    assert e2.value.path == path and e2.value.row == 5 and e2.value.field == "weight", str(e2.value)
    assert open_run(run).steps() == [1, 2]

    at = open_inspector(tmp_path, monkeypatch)  # the inspector names the file, row and field on the page
    at.select_slider(key="insp_step").set_value(2).run()
    for group in at.selectbox(key="insp_group").options if not at.error else []:
        at.selectbox(key="insp_group").set_value(int(group.split()[1])).run()
        if at.error:
            break
    assert not at.exception, [e.value for e in at.exception]
    assert any("row 5" in e.value and "weight" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_inspector_memory_on_the_full_attack_stays_under_the_cap(tmp_path: Path) -> None:
    """Four 100 MB strings in a rollouts file and a 10 M-token step: the inspector's loading path adds less than
    ``CAP_MB`` to the peak RSS of the app process (measured in a fresh process, as ``bench_app.py`` does)."""
    from benchmarks.inspector_memory import CAP_MB, build_root, measure

    r = measure(build_root(tmp_path, 100, 10_000_000))
    report("inspector_memory", **r)
    assert not r["errors"], r
    assert r["added_mb"] <= CAP_MB, r
    assert r["largest_html_kb"] < 2_000, r
