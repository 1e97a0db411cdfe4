"""Is a run still being written? One rule for the app, the pipeline and the studies.

A trainer holds an exclusive ``flock`` on ``<run>/.writer.lock`` for its whole life (``training.runlock``); the
kernel drops it when the process ends, SIGKILL included. So a run is live when ``status.json`` says ``running``
and that lock is held, which Linux shows in ``/proc/locks`` without anyone touching the lock (a probe that took
the lock, even shared, could make a trainer starting at that instant fail). Where locks cannot be read (no
``/proc/locks``), or the run has no lock file (runs written by the verl and TRL hooks, or by older versions), the
rule falls back to ``status.json``'s pid being a live process on this host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LOCK_NAME = ".writer.lock"
PROC_LOCKS = Path("/proc/locks")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and has not ended: a zombie (ended, its parent has not
    collected it yet) is dead. A child of ours that ended is left for its owner to collect (``WNOWAIT``): reaping
    it here would lose its exit code (``subprocess.Popen`` then reads 0)."""
    if not isinstance(pid, int) or not 0 < pid < 2**31:  # beyond a pid_t: no process (os.kill would overflow)
        return False
    try:
        if hasattr(os, "waitid"):
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return False
        elif (
            os.waitpid(pid, os.WNOHANG)[0] == pid
        ):  # no waitid (macOS): a zombie child cannot be told otherwise
            return False
    except ChildProcessError:
        pass
    except OSError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_stat(pid)[0] != "Z"


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """``(state letter, start time in clock ticks since boot)`` of ``pid`` from ``/proc/<pid>/stat``; ``(None,
    None)`` where that cannot be read (no ``/proc``, the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        rest = text[text.rindex(")") + 2 :].split()  # the command name, in parentheses, may hold spaces
        return rest[0], int(rest[19])
    except (OSError, ValueError, IndexError):
        return None, None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), to tell it from a later process that reuses its pid;
    None where that cannot be read."""
    return _proc_stat(pid)[1] if isinstance(pid, int) and pid > 0 else None


def process_alive(pid: int | None, start: int | None = None) -> bool:
    """Whether the process ``pid`` that started at ``start`` (``process_start``; None: not recorded) is still
    running: ``pid_alive``, and the pid not taken over by a later process."""
    if pid is None or not pid_alive(pid):
        return False
    if start is None:
        return True
    now = process_start(pid)
    return now is None or now == start


def lock_held(path: Path, proc_locks: Path = PROC_LOCKS) -> bool | None:
    """Whether some process holds a ``flock`` on the file ``path``: True or False from ``/proc/locks`` (matched
    by device and inode), None when that cannot be told (no such file, or no ``/proc/locks``)."""
    try:
        st = path.stat()
        table = proc_locks.read_text()
    except OSError:
        return None
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    for line in table.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF" (a "->" marks a waiter: skip it)
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        dev_ino = parts[5].split(":")
        if len(dev_ino) != 3:
            continue
        try:
            ma, mi, ino = int(dev_ino[0], 16), int(dev_ino[1], 16), int(dev_ino[2])
        except ValueError:
            continue
        if ino == st.st_ino and (ma, mi) == (major, minor):
            return True
    return False


def run_is_live(run_dir: Path, status: dict[str, Any]) -> bool:
    """A run is live when ``status.json`` says ``running`` and its writer lock is held (or, where that cannot be
    told, its recorded pid is a live process here)."""
    if status.get("state") != "running":
        return False
    held = lock_held(Path(run_dir) / LOCK_NAME)
    if held is not None:
        return held
    pid = status.get("pid")
    return pid_alive(pid) if isinstance(pid, int) else True
