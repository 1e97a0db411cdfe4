"""Issue 15's job controls, with the real trainer and pipeline through the one runner (workbench.jobs): the Train
page queues several seeds (at most K at a time) and stops queued and running ones; the Paper figures page shows
the plan and exact command of ``python -m training paper-figures --figures NAME``, runs it and follows it.

Every job is stopped as soon as the test has seen what it checks: no run trains to its end here."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_lib import jobs
from app_lib.ui import md_escape
from tests.app.conftest import APP
from training.cli import main
from workbench import jobs as wjobs

pytestmark = pytest.mark.skipif(
    not jobs.trainer_available(), reason="the training module (python -m training) is not in this checkout"
)


def _wait(cond, timeout: float) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def _open(root: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def root(tmp_path: Path):
    """A runs root whose jobs are all stopped at the end, whatever the test did."""
    root = tmp_path / "runs"
    yield root
    jobs.stop_jobs(jobs.list_jobs(root), grace=10)


def _states(root: Path) -> dict[str, str]:
    return {j.name: jobs.job_state(j) for j in jobs.list_jobs(root) if j.by != "queue runner"}


def test_the_train_page_queues_seeds_and_stops_queued_and_running_ones(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _open(root, monkeypatch, "train")
    at.selectbox(key="train_method").set_value("grpo")
    at.number_input(key="train_seeds").set_value(3)
    at.number_input(key="train_at_once").set_value(1)
    at.number_input[1].set_value(5)  # the first seed
    at.text_input(key="train_name").set_value("q")
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Queued **3** runs" in s.value and "at most 1 at a time" in s.value for s in at.success)
    names = ["q-s5", "q-s6", "q-s7"]
    _wait(lambda: _states(root) == {"q-s5": "running", "q-s6": "queued", "q-s7": "queued"}, 30)
    first = jobs.read_job(root, "q-s5")
    assert first is not None and first.command[first.command.index("--seed") + 1] == "5"
    assert first.command[-2:] == ["--out", str((root / "q-s5").resolve())]
    at.run()
    shown = " ".join(m.value for m in at.markdown)
    assert "1 running, 2 queued" in shown and md_escape("queued (waits for a free slot)") in shown
    at.button(key="stop_q-s7").click().run()  # a queued one: cancelled at once
    assert _states(root)["q-s7"] == "cancelled"
    at.button(key="stop_all_jobs").click().run()
    _wait(lambda: not any(s in ("queued", "running") for s in _states(root).values()), 60)
    states = _states(root)
    assert states == {"q-s5": "stopped", "q-s6": "cancelled", "q-s7": "cancelled"}, states
    assert [jobs.read_job(root, n).pid is None for n in names] == [False, True, True]  # never started
    _wait(lambda: not any(j.alive for j in jobs.list_jobs(root)), 30)  # the queue runner ended by itself


def test_the_paper_figures_page_trains_a_figures_missing_runs(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root.mkdir()
    at = _open(root, monkeypatch, "paper_figures")
    at.segmented_control(key="fig_pick").set_value("fig2").run()
    at.toggle(key="pf_plan_fig2").set_value(True).run()
    assert at.number_input(key="pf_seeds_fig2").value == 3  # the command line's defaults
    assert at.number_input(key="pf_steps_fig2").value == 0  # the preset's
    at.number_input(key="pf_seeds_fig2").set_value(1)
    at.number_input(key="pf_jobs_fig2").set_value(1)
    at.number_input(key="pf_steps_fig2").set_value(2).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    plan = at.dataframe[0].value
    # the same plan as the command line's dry run
    assert main(["paper-figures", "--figures", "fig2", "--seeds", "1", "--steps", "2", "--runs-root", str(root),
                 "--dry-run"]) == 0  # fmt: skip
    dry = capsys.readouterr().err
    assert sorted(plan["run"]) == sorted(
        line.split()[1] for line in dry.splitlines() if line.startswith("  train ")
    )
    assert list(plan["action"]) == ["train", "train"]
    command = (f"python -m training paper-figures --figures fig2 --preset tiny --seeds 1 --steps 2 --runs-root "
               f"{root} --jobs 1 --no-figures --status-every 2")  # fmt: skip
    assert any(command in m.value for m in at.markdown), [m.value for m in at.markdown]
    at.button(key="pf_start_fig2").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    pipeline = jobs.read_job(root, "paper-figures-fig2")
    try:
        assert pipeline is not None and pipeline.command[0] == sys.executable
        assert " ".join(["python", *pipeline.command[1:]]) == command
        assert any("Running:" in m.value for m in at.markdown)
        # the pipeline's trainers go through the same runner: their records appear beside the pipeline's
        _wait(lambda: any(j.by == "paper-figures" and j.pid for j in jobs.list_jobs(root)), 120)
        at.run()
        progress = at.dataframe[0].value
        assert sorted(progress["run"]) == sorted(plan["run"]) and "running" in set(progress["state"])
        at.button(key="pf_stop_fig2").click().run()
    finally:
        jobs.stop_jobs([j for j in jobs.list_jobs(root) if j.name == "paper-figures-fig2"], grace=20)
    _wait(lambda: not any(j.alive for j in jobs.list_jobs(root)), 60)
    states = _states(root)
    assert states["paper-figures-fig2"] == "stopped", states
    assert not {s for n, s in states.items() if n != "paper-figures-fig2"} & {"running", "queued"}, states


@pytest.mark.parametrize(
    "tail", [["--seeds"], ["--seeds", "three", "--jobs", "x"], ["--steps", "", "--preset"]]
)
def test_a_damaged_pipeline_record_gives_the_default_settings_not_a_crash(tail: list[str]) -> None:
    """The page reads a running pipeline's settings back from its recorded command; a damaged record (a flag
    without its value, a value that is no number) gives the defaults instead of an exception on the page."""
    from app_lib.figure_runs import _settings
    from workbench.jobs import Job

    job = Job(name="paper-figures-fig2", command=[sys.executable, "-m", "training", "paper-figures", *tail],
              log=Path("/nonexistent/.jobs/x.log"))  # fmt: skip
    got = _settings("fig2", job)
    assert got["preset"] == "tiny" and got["seeds"] == 1 and got["steps"] is None and got["at_once"] == 1


def test_a_job_whose_queue_runner_died_shows_the_runners_output(root: Path, monkeypatch) -> None:
    """A queued job that never started says why: the Train page shows its queue runner's last lines."""
    runner = wjobs.start_job(root, "queue-q", [sys.executable, "-c", "print('runner: the queue file is damaged');"
                                                "raise SystemExit(3)"], by="queue runner")  # fmt: skip
    wjobs.enqueue(root, "orphan", [sys.executable, "-c", "pass"], queue="q", run="orphan", by="Train page")
    record = root / ".jobs" / "orphan.json"
    rec = json.loads(record.read_text())
    rec["runner_pid"], rec["runner_start"] = runner.pid, runner.pid_start
    record.write_text(json.dumps(rec))
    _wait(lambda: wjobs.job_state(wjobs.read_job(root, "queue-q")) == "failed", 30)
    at = _open(root, monkeypatch, "train")
    captions = " ".join(c.value for c in at.caption)
    assert "not started" in " ".join(m.value for m in at.markdown) + captions
    assert "Its queue runner (`queue-q`, failed) wrote:" in captions
    assert any("runner: the queue file is damaged" in c.value for c in at.code)
