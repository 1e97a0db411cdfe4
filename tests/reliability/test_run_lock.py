"""One writer per run folder: a second ``train`` or ``--resume`` on a folder a live trainer holds exits 2 naming
it; the kernel frees the lock when the holder dies (SIGKILL included), so the run can then be resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.training.conftest import ROOT, SMALL, cli_flags, run_cli
from training.runlock import LOCK_NAME, RunLock, RunLocked


def test_the_lock_names_its_holder_and_is_freed_on_release(tmp_path):
    out = tmp_path / "new"
    first = RunLock.acquire(out)
    try:
        RunLock.acquire(out)
        raise AssertionError("a second lock was granted")
    except RunLocked as e:
        assert f"pid {os.getpid()}" in str(e)
    first.release(remove_if_empty=True)
    assert not out.exists()  # made for the lock and left empty: removed
    RunLock.acquire(out).release()
    assert (out / LOCK_NAME).exists()  # not made by this lock: kept


def test_a_second_writer_is_refused_then_resumes_after_a_kill(ws_cache, tmp_path):
    out = tmp_path / "run"
    settings = {**SMALL, "steps": 200, "save_every": 1, "val_every": 0, "cache_dir": str(ws_cache)}
    args = ["train", "--method", "grpo", *cli_flags(settings), "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "step_000001").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the first run did not reach step 1"
            time.sleep(0.05)
        again = run_cli(args)
        assert again.returncode == 2 and f"being written by pid {proc.pid}" in again.stderr, again.stderr
        resume = run_cli(["train", "--out", str(out), "--resume", "--no-progress"])
        assert resume.returncode == 2 and f"pid {proc.pid}" in resume.stderr, resume.stderr
        assert proc.poll() is None  # the holder was not disturbed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    done = run_cli(["train", "--out", str(out), "--resume", "--steps", "3", "--no-progress"])
    assert done.returncode == 0, done.stderr
