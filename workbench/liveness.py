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
    """Whether process ``pid`` exists on this host (a zombie child of ours is reaped and reported dead)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
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
    return True


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
