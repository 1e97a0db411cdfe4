"""One rule for "is this run still being written?" (workbench.liveness), with a real trainer lock held by another
process, then that process killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from workbench.liveness import LOCK_NAME, lock_held, pid_alive, run_is_live

HOLDER = """
import sys, time
from training.runlock import RunLock
lock = RunLock.acquire(sys.argv[1])  # kept: the lock lives as long as its file is open
print("locked", flush=True)
time.sleep(120)
"""


def _status(run: Path, state: str, pid: int | None) -> dict:
    status = {"state": state, "pid": pid}
    (run / "status.json").write_text(json.dumps(status))
    return status


def test_a_held_writer_lock_is_live_and_sigkill_ends_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        status = _status(run, "running", proc.pid)
        assert lock_held(run / LOCK_NAME) is True
        assert run_is_live(run, status)
        assert not run_is_live(run, {**status, "state": "finished"})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert lock_held(run / LOCK_NAME) is False
    assert not run_is_live(run, status), "the kernel drops a killed holder's lock: the run is not live"


def test_without_a_lock_file_the_pid_decides(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    assert run_is_live(tmp_path, {"state": "running", "pid": os.getpid()})
    assert not run_is_live(tmp_path, {"state": "running", "pid": dead.pid})
    assert not pid_alive(dead.pid) and pid_alive(os.getpid()) and not pid_alive(-1)


def test_unreadable_lock_table_means_unknown(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("{}")
    assert lock_held(tmp_path / LOCK_NAME, proc_locks=tmp_path / "no-such-file") is None
    assert lock_held(tmp_path / "missing", proc_locks=Path("/proc/locks")) is None
    # the lock file alone, with no holder, is not a live run (the pid is ours and alive)
    assert run_is_live(tmp_path, {"state": "running", "pid": os.getpid()}) is False


def test_a_damaged_status_pid_is_no_live_process(tmp_path: Path) -> None:
    """A pid no process can have (a damaged status.json) is not alive, rather than an OverflowError in the reader."""
    for pid in (2**40, -(2**40), 0, -1):
        assert not pid_alive(pid)
        assert not run_is_live(tmp_path, {"state": "running", "pid": pid})  # no lock file: the pid decides
