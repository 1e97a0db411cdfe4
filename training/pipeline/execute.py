"""Running the plan: trainer jobs in parallel, their logs, progress, interruption, then the figures.

The jobs go through the project's one job runner (``workbench.jobs``): each is ``python -m training train ...``
in its own process session (so a Ctrl-C reaches the pipeline first), queued and started ``--jobs`` at a time,
with stdout and stderr appended to ``<runs root>/.jobs/<run>.log`` beside its record ``<run>.json`` (the app's
Train page lists them). On Ctrl-C or SIGTERM the pipeline cancels the queued jobs and stops the running ones
(SIGINT: the trainer marks its run ``stopped``, its checkpoints stay; then SIGTERM, then SIGKILL) and exits with
130: running the same command again resumes those runs. A job that fails is reported with the end of its log;
the other jobs go on, and the figures are not built until every run is finished.

``<runs root>/<command>.jsonl`` records the session: plan, each job's start, end and exit code, the load
average every status line, and the wall time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from training.pipeline.plan import python_command, shell_command
from training.pipeline.progress import DONE, FAILED, LEFT, RUNNING, Tracker, fmt_duration, logged_steps
from training.pipeline.state import SKIP, RunState
from workbench.jobs import PROJECT_ROOT, Queue, enqueue, job_env, log_tail

STOP_WAIT_S = 60.0  # after SIGINT, and again after SIGTERM, before a job is killed
EVENT_EVERY_S = 60.0  # a progress event (with the load average) in the session log


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


def run_jobs(
    states: Sequence[RunState],
    *,
    jobs: int,
    runs_root: Path,
    console: Console,
    events: EventLog,
    by: str = "paper-figures",
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """Train every run not skipped, ``jobs`` at a time (a ``workbench.jobs.Queue`` under ``runs_root``). Returns
    ``{run name: exit code}`` of the failed jobs.

    Raises ``KeyboardInterrupt`` after stopping the jobs (Ctrl-C, or SIGTERM turned into it by the caller).
    """
    tracker = Tracker.start(
        {s.run.name: s.run.steps for s in states},
        {s.run.name: s.done_steps for s in states},
        [s.run.name for s in states if s.action == SKIP],
    )
    todo = {s.run.name: s for s in states if s.action != SKIP}
    queue_name = f"{by}-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}"
    for state in todo.values():
        args = state.args()
        enqueue(runs_root, state.run.name, python_command(args), queue=queue_name, run=state.run.name,
                cwd=PROJECT_ROOT, by=by, header=f"{state.action}: {shell_command(args)}")  # fmt: skip
    queue = Queue(runs_root, queue_name, jobs)
    started_at: dict[str, float] = {}
    baseline: dict[str, int] = {}
    failed: dict[str, int] = {}
    t0 = clock()
    last_event = t0
    try:
        while queue.active():
            started, ended = queue.step()
            now = clock()
            for job in started:
                state = todo[job.name]
                started_at[job.name], baseline[job.name] = now, logged_steps(state.run.out)
                tracker.set_state(job.name, RUNNING)
                console.say(f"start  {job.name}: {state.detail} (log {job.log})")
                events.write("job_start", run=job.name, action=state.action, args=state.args())
            for name in started_at:
                if tracker.state[name] == RUNNING:
                    tracker.set_steps(name, logged_steps(todo[name].run.out), now)
            for job in ended:
                name, rc = job.name, job.returncode if job.returncode is not None else -1
                tracker.set_steps(name, logged_steps(todo[name].run.out), now)
                took = now - started_at.get(name, now)  # a job whose process could not start never started
                if rc == 0:
                    tracker.set_state(name, DONE)
                    console.say(f"done   {name} in {fmt_duration(took)}")
                else:
                    tracker.set_state(name, FAILED)
                    failed[name] = rc
                    why = " (stopped from elsewhere)" if job.stopped is not None else ""
                    console.say(
                        f"FAILED {name} (exit code {rc}){why} after {fmt_duration(took)}; end of {job.log}:"
                    )
                    console.say("\n".join("    " + line for line in log_tail(job, 8).splitlines()))
                events.write("job_end", run=name, rc=rc, seconds=round(took, 1), steps=tracker.done[name])
            phases = {  # before a job's first step: setup (warm start, model) until run.json exists
                n: "starting" if (todo[n].run.out / "run.json").is_file() else "setup"
                for n, st in tracker.state.items()
                if st == RUNNING and tracker.done[n] <= baseline[n]
            }
            console.status(tracker.line(now, now - t0, phases), now)
            if now - last_event >= EVENT_EVERY_S:
                last_event = now
                events.write("progress", done=tracker.count(DONE), running=tracker.count(RUNNING),
                             left=tracker.count(LEFT), failed=tracker.count(FAILED),
                             steps=sum(tracker.done.values()))  # fmt: skip
            if queue.active():
                time.sleep(poll_s)
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():  # a second stop (SIGTERM) lets this one end
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        console.close()
        running = sorted(j.name for j in queue.running())
        console.say(f"interrupted: stopping {len(running)} job(s) ...")
        for job in queue.stop(grace=2 * STOP_WAIT_S):
            console.say(f"{job.name}: did not stop within {STOP_WAIT_S:.0f} s of SIGINT; terminated "
                        "(SIGTERM, then SIGKILL); it resumes from its checkpoint")  # fmt: skip
        events.write("interrupted", running=running)
        raise
    console.close()
    return failed


def _sigterm(signum, frame):  # SIGTERM takes the Ctrl-C path: stop the jobs cleanly
    raise KeyboardInterrupt


def run_jobs_until_done_or_stopped(
    states: Sequence[RunState],
    *,
    jobs: int,
    runs_root: Path,
    console: Console,
    events: EventLog,
    started: float,
    by: str = "paper-figures",
) -> dict[str, int] | None:
    """``run_jobs`` with SIGTERM treated as Ctrl-C; None when stopped (the event and the message written)."""
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return run_jobs(states, jobs=jobs, runs_root=runs_root, console=console, events=events, by=by)
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
