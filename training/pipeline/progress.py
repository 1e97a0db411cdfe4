"""Progress of the pipeline: runs done / running / left, steps, throughput and ETA, as one status line.

Steps are counted from each run directory's complete steps (its ``metrics/step_N.parquet`` files). The ETA is
the steps still to train divided by the throughput measured in this session: steps gained since the first step
of the session finished, over the time since then (all jobs together, so it includes per-run start-up and
validation once a few runs have gone by).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DONE, RUNNING, LEFT, FAILED = "done", "running", "left", "failed"


def logged_steps(run_dir: Path) -> int:
    """Complete steps of a run directory (files ``metrics/step_*.parquet``); 0 if none."""
    try:
        names = os.listdir(Path(run_dir) / "metrics")
    except OSError:
        return 0
    return sum(1 for n in names if n.startswith("step_") and n.endswith(".parquet"))


def fmt_duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    s = round(max(seconds, 0))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class Tracker:
    """Per-run state and step counts; ``line(now)`` renders the status line."""

    targets: dict[str, int]  # run name -> planned steps
    done: dict[str, int] = field(default_factory=dict)  # run name -> complete steps
    state: dict[str, str] = field(default_factory=dict)  # run name -> DONE / RUNNING / LEFT / FAILED
    baseline: dict[str, int] = field(default_factory=dict)  # complete steps when the session began
    started: float | None = None  # when the first step of the session was logged
    gained_at_start: int = 0

    @classmethod
    def start(cls, targets: dict[str, int], done: dict[str, int], finished: Iterable[str]) -> Tracker:
        finished = set(finished)
        t = cls(dict(targets), {n: done.get(n, 0) for n in targets})
        t.state = {n: DONE if n in finished else LEFT for n in targets}
        t.baseline = dict(t.done)
        return t

    def set_state(self, name: str, state: str) -> None:
        self.state[name] = state

    def set_steps(self, name: str, steps: int, now: float) -> None:
        """Record a run's complete steps; the first gain of the session starts the throughput clock."""
        self.done[name] = steps
        if self.started is None and steps > self.baseline.get(name, 0):
            self.started = now
            self.gained_at_start = self.gained()

    def gained(self) -> int:
        """Steps logged in this session (a resume that redoes steps after its checkpoint does not count them)."""
        return sum(max(0, self.done[n] - self.baseline.get(n, 0)) for n in self.done)

    def remaining(self) -> int:
        return sum(max(0, self.targets[n] - self.done[n]) for n in self.targets if self.state[n] != DONE)

    def rate(self, now: float) -> float | None:
        """Steps per second since the session's first logged step (None until there is something to measure)."""
        if self.started is None or now <= self.started:
            return None
        gained = self.gained() - self.gained_at_start
        return gained / (now - self.started) if gained > 0 else None

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        return None if rate is None else self.remaining() / rate

    def count(self, state: str) -> int:
        return sum(1 for s in self.state.values() if s == state)

    def line(self, now: float, elapsed: float, phases: dict[str, str] | None = None) -> str:
        """``[12:03] runs 5/33 done, 2 running (grpo__s1 43/100, real__s1 setup), 26 left | steps 1,234/3,300 |
        0.81 steps/s | ETA 43:10``. ``phases`` names what a running run does before its first step."""
        phases = phases or {}
        running = [n for n, s in self.state.items() if s == RUNNING]
        parts = [
            f"{n} {phases[n]}" if n in phases else f"{n} {self.done[n]}/{self.targets[n]}" for n in running
        ]
        total = sum(self.targets.values())
        done_steps = sum(min(self.done[n], self.targets[n]) for n in self.targets)
        rate = self.rate(now)
        eta = self.eta(now)
        text = (
            f"[{fmt_duration(elapsed)}] runs {self.count(DONE)}/{len(self.targets)} done, "
            f"{len(running)} running"
            + (f" ({', '.join(parts)})" if parts else "")
            + f", {self.count(LEFT)} left"
        )
        if self.count(FAILED):
            text += f", {self.count(FAILED)} failed"
        text += f" | steps {done_steps:,}/{total:,}"
        text += (
            f" | {rate:.2f} steps/s | ETA {fmt_duration(eta)}"
            if rate and eta is not None
            else " | ETA: measuring"
        )
        return text
