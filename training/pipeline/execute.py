"""Running the plan: trainer jobs in parallel, their logs, progress, interruption, then the figures.

Each job is ``python -m training train ...`` in its own process session (so a Ctrl-C reaches the pipeline
first), with stdout and stderr appended to ``<runs root>/logs/<run>.log``. On Ctrl-C or SIGTERM the pipeline
sends SIGINT to every job (the trainer then marks its run ``stopped``; its checkpoints stay), waits for them and
exits with 130: running the same command again resumes those runs. A job that fails is reported with the end of
its log; the other jobs go on, and the figures are not built until every run is finished.

``<runs root>/paper-figures.jsonl`` records the session: plan, each job's start, end and exit code, the load
average every status line, and the wall time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from training.pipeline.plan import python_command, shell_command
from training.pipeline.progress import DONE, FAILED, LEFT, RUNNING, Tracker, fmt_duration, logged_steps
from training.pipeline.state import SKIP, RunState

ROOT = Path(__file__).resolve().parents[2]  # the project root: jobs import training and workbench from it
STOP_WAIT_S = 60.0
EVENT_EVERY_S = 60.0  # a progress event (with the load average) in the session log


def job_env() -> dict[str, str]:
    """The environment of a job: this one, with the project root first on PYTHONPATH."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


class EventLog:
    """Append-only JSON lines: one object per event, with the wall time and the 1-minute load average."""

    def __init__(self, path: Path | None):
        self.path = path
        self.loads: list[float] = []

    def write(self, event: str, **fields: Any) -> None:
        load = os.getloadavg()[0]
        self.loads.append(load)
        if self.path is None:
            return
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "event": event,
            "load1": round(load, 2),
            **fields,
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(line, default=str) + "\n")


@dataclass
class Job:
    state: RunState
    proc: subprocess.Popen
    log: IO[str]
    started: float
    baseline: int


@dataclass
class Console:
    """Event lines and a status line: rewritten in place on a terminal, printed every ``every`` s otherwise."""

    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    every: float = 30.0
    tty: bool | None = None
    _last: float = -1e18
    _shown: bool = False

    def __post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def say(self, text: str) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\033[K")
            self._shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str, now: float, force: bool = False) -> bool:
        """Show the status line; returns whether it was shown (on a terminal always, else every ``every`` s)."""
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self._shown = True
            self.stream.flush()
            return True
        if force or now - self._last >= self.every:
            self._last = now
            self.say(text)
            return True
        return False

    def close(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\n")
            self._shown = False


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def _start(state: RunState, log_dir: Path) -> Job:
    log_path = log_dir / f"{state.run.name}.log"
    log = open(log_path, "a")
    args = state.args()
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {state.action}: {shell_command(args)}\n")
    log.flush()
    proc = subprocess.Popen(
        python_command(args),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=job_env(),
        start_new_session=True,  # SIGINT reaches the trainer, which handles it even if started ignored
    )
    return Job(state, proc, log, time.monotonic(), logged_steps(state.run.out))


def _stop_all(jobs: dict[str, Job], console: Console) -> None:
    """SIGINT every job (the trainer marks its run stopped), wait up to STOP_WAIT_S, then SIGKILL the rest."""
    for job in jobs.values():
        if job.proc.poll() is None:
            job.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    for name, job in jobs.items():
        try:
            job.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.say(
                f"{name}: did not stop within {STOP_WAIT_S:.0f} s, killed (it resumes from its checkpoint)"
            )
            job.proc.kill()
            job.proc.wait()
        job.log.close()


def run_jobs(
    states: Sequence[RunState],
    *,
    jobs: int,
    log_dir: Path,
    console: Console,
    events: EventLog,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """Train every run not skipped, ``jobs`` at a time. Returns ``{run name: exit code}`` of the failed jobs.

    Raises ``KeyboardInterrupt`` after stopping the jobs (Ctrl-C, or SIGTERM turned into it by the caller).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker.start(
        {s.run.name: s.run.steps for s in states},
        {s.run.name: s.done_steps for s in states},
        [s.run.name for s in states if s.action == SKIP],
    )
    queue = [s for s in states if s.action != SKIP]
    running: dict[str, Job] = {}
    failed: dict[str, int] = {}
    t0 = clock()
    last_event = t0
    try:
        while queue or running:
            while queue and len(running) < jobs:
                state = queue.pop(0)
                running[state.run.name] = job = _start(state, log_dir)
                tracker.set_state(state.run.name, RUNNING)
                console.say(f"start  {state.run.name}: {state.detail} (log {job.log.name})")
                events.write("job_start", run=state.run.name, action=state.action, args=state.args())
            now = clock()
            for name, job in list(running.items()):
                tracker.set_steps(name, logged_steps(job.state.run.out), now)
                rc = job.proc.poll()
                if rc is None:
                    continue
                job.log.close()
                del running[name]
                took = now - job.started
                if rc == 0:
                    tracker.set_state(name, DONE)
                    console.say(f"done   {name} in {fmt_duration(took)}")
                else:
                    tracker.set_state(name, FAILED)
                    failed[name] = rc
                    console.say(
                        f"FAILED {name} (exit code {rc}) after {fmt_duration(took)}; end of {job.log.name}:"
                    )
                    console.say(_tail(Path(job.log.name)))
                events.write("job_end", run=name, rc=rc, seconds=round(took, 1), steps=tracker.done[name])
            phases = {  # before a job's first step: setup (warm start, model) until run.json exists
                n: "starting" if (j.state.run.out / "run.json").is_file() else "setup"
                for n, j in running.items()
                if tracker.done[n] <= j.baseline
            }
            console.status(tracker.line(now, now - t0, phases), now)
            if now - last_event >= EVENT_EVERY_S:
                last_event = now
                events.write("progress", done=tracker.count(DONE), running=len(running), left=tracker.count(LEFT),
                             failed=tracker.count(FAILED), steps=sum(tracker.done.values()))  # fmt: skip
            if queue or running:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        console.close()
        console.say(f"interrupted: stopping {len(running)} job(s) ...")
        _stop_all(running, console)
        events.write("interrupted", running=sorted(running))
        raise
    console.close()
    return failed


def _sigterm(signum, frame):  # SIGTERM takes the Ctrl-C path: stop the jobs cleanly
    raise KeyboardInterrupt


def run_jobs_until_done_or_stopped(
    states: Sequence[RunState],
    *,
    jobs: int,
    log_dir: Path,
    console: Console,
    events: EventLog,
    started: float,
) -> dict[str, int] | None:
    """``run_jobs`` with SIGTERM treated as Ctrl-C; None when stopped (the event and the message written)."""
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return run_jobs(states, jobs=jobs, log_dir=log_dir, console=console, events=events)
    except KeyboardInterrupt:
        events.write("session_end", result="interrupted", seconds=round(time.monotonic() - started, 1))
        console.say("stopped; the runs keep their checkpoints: run the same command again to continue")
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_figures(commands: Sequence[Sequence[str]], console: Console, events: EventLog) -> int:
    """Run each ``python -m workbench.figures`` command; returns the first non-zero exit code (or 0)."""
    worst = 0
    for args in commands:
        console.say(f"figures: {shell_command(args, 'workbench.figures')}")
        t = time.monotonic()
        rc = subprocess.run(
            python_command(args, "workbench.figures"), env=job_env(), stdin=subprocess.DEVNULL
        ).returncode
        events.write("figures", args=list(args), rc=rc, seconds=round(time.monotonic() - t, 1))
        if rc and not worst:
            worst = rc
    return worst
