"""Runs started elsewhere appear without a reload, and the Train page lists every run under the root (issue 15).
The timed redraw itself runs in the browser test (``test_app_browser.py::test_a_run_started_elsewhere_appears``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_lib import data, jobs
from tests.app.conftest import APP
from workbench.synthetic_run import write_synthetic_run

KW = {"prompts": 2, "group_size": 4, "mean_len": 8}


def test_the_root_signature_changes_when_a_run_appears_starts_or_grows(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_synthetic_run(root / "a", steps=2, **KW)
    before = data.root_signature(root)
    assert data.root_signature(root) == before  # nothing changed: nothing to redraw
    write_synthetic_run(root / "b", steps=1, state="running", **KW)  # pid: this process, alive
    after = data.root_signature(root)
    assert [n for n, *_ in after] == ["a", "b"] and after[1][1:3] == ("running", True)

    with_steps = data.root_signature(root, steps=True)
    os.utime(root / "b" / "metrics", ns=(1, 1))  # a step landed (or was dropped): the folder's mtime moves
    assert data.root_signature(root, steps=True) != with_steps
    assert data.root_signature(root) == after  # the sidebar's names-and-states signature does not move

    status = json.loads((root / "b" / "status.json").read_text())
    status["pid"] = 2**22 + 4321  # its trainer died
    (root / "b" / "status.json").write_text(json.dumps(status))
    assert data.root_signature(root)[1][2] is False


def test_train_page_lists_every_run_under_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    write_synthetic_run(root / "cli-live", steps=2, state="running", **KW)
    write_synthetic_run(root / "cli-done", steps=3, **KW)
    failed = write_synthetic_run(root / "cli-failed", steps=1, state="failed", **KW)
    assert failed.is_dir()
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["cli-live", "state"] == "live" and table.loc["cli-live", "pid"] == str(os.getpid())
    assert table.loc["cli-done", "state"] == "finished" and table.loc["cli-done", "steps"] == "3 / 3"
    assert table.loc["cli-failed", "state"] == "failed"
    assert set(table["started from"]) == {"elsewhere"}


def test_a_progress_bar_prints_each_step_once() -> None:
    """tqdm as the trainer drives it: per step, ``set_postfix`` redraws the previous position with the new
    numbers, then ``update`` draws the new position; the log showed every step twice."""
    bar = "\rreal:  0/3 [00:00<?, ?step/s]"  # drawn when the bar is made
    for k in range(1, 4):
        bar += (
            f"\rreal:  {k - 1}/3 [00:0{k}<?, reward={k / 10:.3f}]"  # set_postfix: old position, new numbers
        )
        bar += f"\rreal:  {k}/3 [00:0{k}<?, reward={k / 10:.3f}]"  # update
    text = "validation before training: Pass@1 0.100 (k=4)\n" + bar + "\n"
    lines = jobs.terminal_lines(text)
    assert lines == [
        "validation before training: Pass@1 0.100 (k=4)",
        "real:  0/3 [00:00<?, ?step/s]",
        "real:  1/3 [00:01<?, reward=0.100]",
        "real:  2/3 [00:02<?, reward=0.200]",
        "real:  3/3 [00:03<?, reward=0.300]",
    ]
