"""Background jobs of the Train page (app_lib.jobs): start, follow, stop, refuse.

A small stand-in script plays the trainer here (it writes a run with RunWriter, keeps running, and can ignore
signals, which the real trainer cannot be made to do); the page itself is tested with the real trainer in
test_app_train_real.py."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from app_lib import jobs
from app_lib.data import read_card
from tests.app.conftest import REPO
from workbench.liveness import pid_alive
from workbench.runs_root import UnsafeRunName
from workbench.synthetic_run import write_synthetic_run

STAND_IN = textwrap.dedent(
    """
    import signal, sys, time
    sys.path.insert(0, {repo!r})
    from workbench.runlog import RunWriter
    from workbench.synthetic_run import write_synthetic_run
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as python -m training: even if started ignored
    if sys.argv[2] == "stubborn":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("stand-in trainer: step 1", flush=True)
    write_synthetic_run(sys.argv[1], method="real", steps=1, prompts=2, group_size=4, mean_len=8, state="running")
    print("stand-in trainer: waiting", flush=True)
    try:
        time.sleep(120)
    except KeyboardInterrupt:  # as the real trainer: Ctrl-C / SIGINT logs the run as stopped
        RunWriter(sys.argv[1]).set_status("stopped", last_step=1, error="interrupted")
        sys.exit(130)
    """
)


def stand_in(tmp_path: Path, out: Path, mode: str = "normal") -> list[str]:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN.format(repo=str(REPO)))
    return [sys.executable, str(script), str(out), mode]


def wait_for(cond, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_start_follow_and_stop_a_job(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    job = jobs.start_job(root, "standin", stand_in(tmp_path, root / "standin"))
    try:
        wait_for(lambda: read_card(root, "standin").steps == [1])
        card = read_card(root, "standin")
        assert card.ok and card.live and card.display_state == "running"
        listed = jobs.list_jobs(root)
        assert [j.name for j in listed] == ["standin"] and listed[0].alive
        wait_for(lambda: "waiting" in jobs.log_tail(job))
        assert "stand-in trainer: step 1" in jobs.log_tail(job)
    finally:
        jobs.stop_job(root, job, grace=5)
    assert not pid_alive(job.pid) and not job.alive
    again = jobs.read_job(root, "standin")
    assert again is not None and again.stopped is not None
    assert read_card(root, "standin").state == "stopped"  # SIGINT first: the trainer logged its own stop


def test_stop_kills_a_job_that_ignores_sigint_and_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    job = jobs.start_job(root, "stubborn", stand_in(tmp_path, root / "stubborn", "stubborn"))
    wait_for(lambda: "waiting" in jobs.log_tail(job))
    t0 = time.time()
    jobs.stop_job(root, job, grace=1.0)
    assert not job.alive and time.time() - t0 < 10
    assert read_card(root, "stubborn").display_state == "interrupted"  # killed: status still says running


def test_jobs_refuse_bad_names_and_existing_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_synthetic_run(root / "taken", steps=1, prompts=2, group_size=4, mean_len=8)
    for bad in ("../escape", "/abs", "a/b", "..", ""):
        with pytest.raises(UnsafeRunName):
            jobs.start_job(root, bad, [sys.executable, "-c", "pass"])
    with pytest.raises(ValueError, match="already exists"):
        jobs.start_job(root, "taken", [sys.executable, "-c", "pass"])
    assert not (tmp_path / "escape").exists()


def test_train_command_is_the_documented_cli(tmp_path: Path) -> None:
    cmd = jobs.train_command("real", "tiny", 20, 3, tmp_path / "r")
    assert cmd[1:] == ["-m", "training", "train", "--method", "real", "--preset", "tiny", "--steps", "20",
                       "--seed", "3", "--out", str(tmp_path / "r")]  # fmt: skip
    assert "--steps" not in jobs.train_command("real", "tiny", None, None, tmp_path / "r")
    variant = jobs.train_command(
        "grpo", "tiny", None, None, tmp_path / "r", {"clip_mode": "bidirectional", "dual_clip": None}
    )
    assert variant[-6:] == [
        "--clip-mode",
        "bidirectional",
        "--dual-clip",
        "none",
        "--out",
        str(tmp_path / "r"),
    ]
