"""Shared helpers of the reliability suite: a sampler of grader-worker memory, and a summary printer.

The summaries (``report``) print one line ``RELIABILITY <name> <json>`` per test, so that the figures in the
docs/reliability.md can be read off a run with ``pytest -s``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.training.conftest import chat_model  # noqa: F401  (a fixture: a tiny chat model built locally)
from training.rewards import Grader


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident memory (``VmHWM``) of a live process in MiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class WorkerMemory:
    """Samples the peak RSS of every grader worker every ``period`` seconds while in a ``with`` block.

    ``VmHWM`` is the kernel's high-water mark, so a sample misses a worker's peak only if the worker is killed
    within ``period`` of reaching it; ``RLIMIT_AS`` (the grader's memory cap) bounds even those.
    """

    def __init__(self, grader: Grader, period: float = 0.01):
        self.grader, self.period = grader, period
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.period)

    def sample(self) -> None:
        for w in list(self.grader._workers):
            mb = vm_hwm_mb(w.pid)
            if mb is not None:
                self.peak[w.pid] = max(self.peak.get(w.pid, 0.0), mb)

    @property
    def max_mb(self) -> float:
        return max(self.peak.values(), default=0.0)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def report(name: str, **figures: Any) -> None:
    """Print the figures of a reliability test (``pytest -s`` shows them) and, if ``REAL_RELIABILITY_LOG`` names
    a file, append them to it as one JSON line."""
    line = json.dumps({"test": name, **figures}, default=str, sort_keys=True)
    print(f"RELIABILITY {line}")
    target = os.environ.get("REAL_RELIABILITY_LOG")
    if target:
        with open(Path(target), "a") as f:
            f.write(line + "\n")


@pytest.fixture(scope="session")
def edge_suite(tmp_path_factory) -> list[Path]:
    """One edge run (``tests/reliability/edge_runs.py``) per variant every run figure needs, written once."""
    from tests.reliability.edge_runs import write_edge_run
    from workbench.synthetic_run import PAPER_VARIANTS

    root = tmp_path_factory.mktemp("edge_suite")
    return [write_edge_run(root, method, hp) for method, hp in PAPER_VARIANTS]
