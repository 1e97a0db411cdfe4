"""One writer per run folder: an exclusive OS lock on ``<out>/.writer.lock``, held for the trainer's life.

``flock`` locks belong to the open file: the kernel releases them when the process ends, SIGKILL included, so a
crashed trainer never leaves a stale lock. The lock file names its holder (pid, command, start time) for the
message the next writer gets. It is taken before the run folder is checked or written, so two trainers started
together on one ``--out`` cannot both "create" the run (check, then write).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from workbench.liveness import LOCK_NAME


class RunLocked(Exception):
    """Another live process writes this run folder; the message names it."""


class RunLock:
    """``RunLock.acquire(out)``; ``release()`` (or process exit) frees it. ``created``: whether the folder was
    made for it (``release(remove_if_empty=True)`` then removes it again if nothing else was written)."""

    def __init__(self, out: Path, file, created: bool):
        self.out, self._file, self.created = out, file, created

    @classmethod
    def acquire(cls, out: Path | str) -> RunLock:
        out = Path(out)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        f = open(out / LOCK_NAME, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            try:
                info = json.loads(holder)
                who = f"pid {info.get('pid')} ({' '.join(map(str, info.get('argv', [])))})"
            except (json.JSONDecodeError, AttributeError):
                who = "another process"
            raise RunLocked(
                f"{out} is being written by {who}: wait for it to end, or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "argv": sys.argv, "started": time.time()}))
        f.flush()
        return cls(out, f, created)

    def release(self, remove_if_empty: bool = False) -> None:
        if self._file is None:
            return
        if remove_if_empty and self.created:
            (self.out / LOCK_NAME).unlink(missing_ok=True)
            try:
                self.out.rmdir()  # only if nothing else is in it
            except OSError:
                pass
        self._file.close()  # closing the file drops the lock
        self._file = None


def visible_entries(folder: Path) -> list[Path]:
    """A folder's entries other than hidden ones (the lock file, temporary files)."""
    return [p for p in folder.iterdir() if not p.name.startswith(".")]
