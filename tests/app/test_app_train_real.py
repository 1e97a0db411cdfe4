"""The Train page with the real trainer (`python -m training train ...`): start, follow, stop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_lib import jobs
from app_lib.data import read_card
from app_lib.ui import md_escape
from tests.app.conftest import APP
from workbench.liveness import pid_alive

pytestmark = pytest.mark.skipif(
    not jobs.trainer_available(), reason="the training module (python -m training) is not in this checkout"
)


def _start_from_the_page(root: Path, monkeypatch: pytest.MonkeyPatch, name: str, steps: int) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("app_pages/train.py").run()
    at.selectbox[0].set_value("grpo")  # method
    at.selectbox[1].set_value("tiny")  # preset
    at.number_input[0].set_value(steps)
    at.text_input[0].set_value(name)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(f"Started **{md_escape(name)}**" in s.value for s in at.success)  # the name shown literally
    return at


def _wait(cond, timeout: float) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.5)


def test_the_page_starts_the_trainer_and_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    at = _start_from_the_page(root, monkeypatch, "grpo-quick", steps=100)  # still running when stopped
    job = jobs.read_job(root, "grpo-quick")
    assert job is not None and job.alive
    assert job.command[1:4] == ["-m", "training", "train"] and "--out" in job.command
    _wait(lambda: jobs.log_tail(job) != "", 60)  # the trainer speaks (warm start or progress)
    at.run()
    at.button(key="stop_grpo-quick").click().run()
    assert not at.exception
    _wait(lambda: not pid_alive(job.pid), 30)
    assert any("stopped from the app" in m.value for m in at.markdown)


@pytest.mark.slow
def test_a_run_started_from_the_page_shows_up_under_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    _start_from_the_page(root, monkeypatch, "grpo-two-steps", steps=2)
    job = jobs.read_job(root, "grpo-two-steps")
    assert job is not None
    _wait(lambda: read_card(root, "grpo-two-steps").steps != [], 1800)  # includes a first warm start
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    assert "grpo-two-steps" in list(at.dataframe[0].value.index)
    _wait(lambda: not job.alive, 600)
    assert read_card(root, "grpo-two-steps").state == "finished"


def test_the_page_trains_any_variant_of_a_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: the method's settings are widgets generated from its spec; a changed one becomes its flag (REAL
    at tau = 0.1 here, a variant Fig. 4 needs), an unchanged one stays the method's default (no flag)."""
    root = tmp_path / "runs"
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("app_pages/train.py").run()
    at.selectbox(key="train_method").set_value("real").run()
    assert at.number_input(key="train_hp_real_tau").value == 0.5  # the spec's default, not a literal here
    at.number_input(key="train_hp_real_tau").set_value(0.1)
    at.text_input(key="train_name").set_value("real-tau01")
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = jobs.read_job(root, "real-tau01")
    assert job is not None
    try:
        i = job.command.index("--tau")
        assert job.command[i + 1] == "0.1" and "--group-filter" not in job.command
    finally:
        at.button(key="stop_real-tau01").click().run()
        _wait(lambda: not pid_alive(job.pid), 30)


def test_the_empty_runs_page_trains_the_demo_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("app_pages/runs.py").run()
    at.button(key="runs_demo").click().run()
    assert not at.exception
    job = jobs.read_job(root, "demo-real-tiny")
    try:
        assert job is not None and job.alive
        assert job.command[-6:] == [
            "--method",
            "real",
            "--preset",
            "tiny",
            "--out",
            str(root / "demo-real-tiny"),
        ]
        assert any("demo-real-tiny" in s.value for s in at.success)
        at.run()  # the page now says the demo is training instead of offering it again
        assert any("is training" in s.value for s in at.success) and not at.button
    finally:
        if job is not None:
            jobs.stop_job(root, job)
    assert not pid_alive(job.pid)
