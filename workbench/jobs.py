"""Background jobs under a runs root: start, queue, follow and stop the commands that write runs.

One runner for the app (Train and Paper figures pages) and for ``python -m training paper-figures`` / ``study``.
A job is a command (typically ``python -m training train ... --out ROOT/RUN``) in its own process session, so
that a stop reaches its workers too. Everything about it lives in the runs root's hidden folder ``ROOT/.jobs/``:

- ``NAME.log``: the job's stdout and stderr, appended (a resumed run's log goes on), each start headed by a
  ``=== <time> <what>`` line;
- ``NAME.json``: its record (command, pid and process start time, times, exit code, queue, who started it),
  readable by any process: the pipeline's trainers show on the app's Train page and the app's on the command
  line's ``ls``.

The folder is hidden, so run listings never take it for a run (``workbench.runs_root``).

Queues: ``enqueue`` records a job without starting it; a ``Queue`` starts its queue's jobs in the order queued, at
most ``max_running`` at a time, inside the caller (the pipeline) or as a detached ``python -m workbench.jobs
run-queue ROOT QUEUE --max-running K`` (``spawn_queue_runner``, the app). A queued job that is stopped is
cancelled and never starts (records change under one lock, ``ROOT/.jobs/.lock``); one whose process cannot be
started (program missing, fork refused) is ``failed`` with exit code 127 and the queue goes on.

Stopping (``stop_jobs``): SIGINT to each job (the trainer marks its run ``stopped`` and closes its workers), then
SIGTERM, then SIGKILL to the whole process group, each after half the grace period.

State (``job_state``): ``queued``, ``running``, ``finished``, ``failed``, ``stopped``, ``cancelled``, or, when the
exit code was seen by nobody (the starting process ended first), the run folder's own state read by
``workbench.liveness.run_is_live`` (``interrupted`` for a run marked running that no process writes).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.liveness import process_alive, process_start, run_is_live
from workbench.runs_root import check_run_name, resolve_run_dir

JOBS_DIR = ".jobs"
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # jobs import training and workbench from here

QUEUED, RUNNING, FINISHED, FAILED, STOPPED, CANCELLED = (
    "queued", "running", "finished", "failed", "stopped", "cancelled",
)  # fmt: skip
ABANDONED = "not started"  # queued, but the process that was to start it has ended
INTERRUPTED = "interrupted"  # the run says running, nothing writes it, and nobody saw the exit code
ENDED = "ended"  # ended, exit code unseen, no readable run state
UNCLAIMED_S = 60.0  # a queued job that no queue runner has claimed for this long will not start

# Popen objects of the jobs this process started, with their process start times: polled to reap them and record
# their exit code (a job's exit code is known only to the process that started it).
_PROCS: dict[int, tuple[subprocess.Popen[bytes], int | None]] = {}


def _own_process(pid: int | None, start: int | None) -> subprocess.Popen[bytes] | None:
    """The Popen of the process ``pid`` (started at ``start``) if this process started it; None for another
    process, including a later one that reuses the pid of a job started here."""
    held = _PROCS.get(pid) if pid is not None else None
    if held is None or (held[1] is not None and start is not None and held[1] != start):
        return None
    return held[0]


@dataclass
class Job:
    """A job's record. ``started`` and ``pid`` are None while it is queued; ``stopped`` is when a stop was asked
    (of a job still queued or running)."""

    name: str
    command: list[str]
    log: Path
    run: str | None = None  # the run folder it writes under the root, if any
    cwd: str | None = None
    by: str = ""  # who started it, for people: "Train page", "paper-figures", ...
    queue: str | None = None
    runner_pid: int | None = None  # the process that starts it when it is queued
    runner_start: int | None = None
    queued: float | None = None
    started: float | None = None
    pid: int | None = None
    pid_start: int | None = None
    ended: float | None = None
    returncode: int | None = None
    stopped: float | None = None
    header: str = ""  # the log's "=== <time> <header>" line at start

    @property
    def root(self) -> Path:
        """The runs root the job belongs to."""
        return self.log.parent.parent

    @property
    def alive(self) -> bool:
        """Whether the job's process runs now (its pid, not a later process that reuses it)."""
        if self.pid is None or self.pid <= 0:
            return False
        proc = _own_process(self.pid, self.pid_start)
        if proc is not None:
            return proc.poll() is None
        return process_alive(self.pid, self.pid_start)

    @property
    def waiting(self) -> bool:
        """Whether the job is queued and still to start: not started, not cancelled, no failed start."""
        return self.pid is None and self.stopped is None and self.returncode is None

    @property
    def sort_time(self) -> float:
        return float(self.started or self.queued or 0.0)


def jobs_dir(root: Path | str) -> Path:
    """``ROOT/.jobs``: the jobs' logs and records."""
    return Path(root) / JOBS_DIR


def _record_path(root: Path | str, name: str) -> Path:
    return jobs_dir(root) / f"{name}.json"


@contextlib.contextmanager
def _locked(root: Path | str) -> Iterator[None]:
    """An exclusive lock on the root's job records, for read-modify-write (start a queued job, cancel it)."""
    folder = jobs_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while a job is started and recorded (in the main thread, where Python takes
    signals), then sent again: an interrupted caller never leaves a started job without the record its stop reads.
    (A blocked signal mask would be inherited by the job; a handler is reset to the default at ``exec``.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            os.kill(os.getpid(), sig)


def _write(job: Job) -> None:
    rec = {k: v for k, v in asdict(job).items() if k != "log"}
    rec["log"] = job.log.name
    path = _record_path(job.root, job.name)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rec, indent=2))
    os.replace(tmp, path)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_time(value: Any) -> float | None:
    """A recorded time (seconds since the epoch), or None where no clock can show it (NaN, infinite, negative,
    beyond the year 5000, not a number): a damaged record must not make ``time.localtime`` raise."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    return t if 0.0 <= t < 1e11 else None  # NaN fails both comparisons


def _opt_pid(value: Any) -> int | None:
    """A recorded pid, or None where it cannot be one: ``killpg(0)`` would signal the caller's own process group
    and ``killpg(1)`` every process the user owns, so a damaged record's 0, 1, negative or huge pid is no pid."""
    try:
        pid = int(value)
    except (TypeError, ValueError):
        return None
    return pid if 2 <= pid < 2**31 else None


def _read(root: Path | str, name: str) -> Job | None:
    """The record as written, without reaping; None if absent or unreadable. Older records (the app's earlier
    job module: name, pid, command, log, started, stopped, returncode) read as started jobs of the run ``name``.
    The job's name is the file's (``NAME.json``), never the one inside: every rewrite goes back to this file."""
    try:
        rec: dict[str, Any] = json.loads(_record_path(root, name).read_text())
        return Job(
            name=name,
            command=[str(c) for c in rec["command"]],
            log=jobs_dir(root) / Path(str(rec["log"])).name,
            run=name if "by" not in rec else None if rec.get("run") is None else str(rec["run"]),
            cwd=None if rec.get("cwd") is None else str(rec["cwd"]),
            by=str(rec.get("by", "")),
            queue=None if rec.get("queue") is None else str(rec["queue"]),
            runner_pid=_opt_pid(rec.get("runner_pid")),
            runner_start=_opt_int(rec.get("runner_start")),
            queued=_opt_time(rec.get("queued")),
            started=_opt_time(rec.get("started")),
            pid=_opt_pid(rec.get("pid")),
            pid_start=_opt_int(rec.get("pid_start")),
            ended=_opt_time(rec.get("ended")),
            returncode=_opt_int(rec.get("returncode")),
            stopped=_opt_time(rec.get("stopped")),
            header=str(rec.get("header", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reap(job: Job) -> Job:
    """Record the exit code of a job this process started, once it has ended."""
    proc = _own_process(job.pid, job.pid_start)
    if proc is not None and job.returncode is None and proc.poll() is not None:
        with _locked(job.root):
            now = _read(job.root, job.name)
            if now is not None and now.pid == job.pid and now.pid_start == job.pid_start:
                job = now
                job.returncode = proc.returncode
                job.ended = job.ended or time.time()
                _write(job)
    return job


def read_job(root: Path | str, name: str) -> Job | None:
    """The record of job ``name`` under ``root`` (its exit code filled in if this process started it and it has
    ended), or None if there is none or it is unreadable."""
    job = _read(root, name)
    return None if job is None else _reap(job)


def list_jobs(root: Path | str) -> list[Job]:
    """Every job recorded under ``root``, newest first (queued ones by when they were queued)."""
    folder = jobs_dir(root)
    if not folder.is_dir():
        return []
    found = [j for f in folder.glob("*.json") if (j := read_job(root, f.stem)) is not None]
    return sorted(found, key=lambda j: j.sort_time, reverse=True)


def job_env() -> dict[str, str]:
    """A job's environment: this one, unbuffered output, the project root first on ``PYTHONPATH``."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(PROJECT_ROOT) + (os.pathsep + path if path else ""),
    }


def _active(job: Job) -> bool:
    """Whether a job is queued (and still to be started) or running: a new job of its name must wait."""
    return job_state(job) in (QUEUED, RUNNING)


def _refuse_active(old: Job | None) -> None:
    if old is not None and _active(old):
        raise ValueError(f"a job named {old.name!r} is still {job_state(old)} (pid {old.pid}); stop it first")


def _new(root: Path | str, name: str, command: Sequence[str], run: str | None, cwd: Path | str | None, by: str,
         queue: str | None, header: str | None) -> Job:  # fmt: skip
    check_run_name(name)  # one harmless file name (UnsafeRunName, a ValueError)
    if run is not None:
        check_run_name(run)
    _refuse_active(read_job(root, name))
    cmd = [str(c) for c in command]
    return Job(name=name, command=cmd, log=jobs_dir(root) / f"{name}.log", run=run,
               cwd=str(cwd or PROJECT_ROOT), by=by, queue=queue,
               header=header if header is not None else " ".join(cmd))  # fmt: skip


def _launch(job: Job) -> None:
    """Start ``job``'s process (its own session), its output appended to its log; fills pid and start times."""
    with open(job.log, "ab") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {job.header}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            job.command, cwd=job.cwd or PROJECT_ROOT, stdout=fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=job_env(),
        )  # fmt: skip
    job.pid, job.pid_start, job.started = proc.pid, process_start(proc.pid), time.time()
    _PROCS[proc.pid] = (proc, job.pid_start)
    job.ended = job.returncode = job.stopped = None


FAILED_START = 127  # the exit code of a job whose process could not be started (as a shell's "cannot run")


def _record_failed_start(job: Job, error: OSError) -> None:
    """Record (caller holds the lock) that ``job``'s process could not be started, the reason in its log."""
    with contextlib.suppress(OSError):
        with open(job.log, "a") as fh:
            fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} could not start: {error}\n")
    job.started = job.ended = time.time()
    job.returncode = FAILED_START
    _write(job)


def start_job(root: Path | str, name: str, command: Sequence[str], *, run: str | None = None,
              cwd: Path | str | None = None, by: str = "", header: str | None = None) -> Job:  # fmt: skip
    """Start ``command`` now as job ``name`` under ``root`` (``run``: the run folder it writes, if any).

    Refuses (``ValueError``) a name that is not one plain file name and a job of that name still queued or running.
    """
    job = _new(root, name, command, run, cwd, by, None, header)
    with _signals_held(), _locked(root):
        _refuse_active(
            _read(root, name)
        )  # again under the lock: another process may have started it meanwhile
        _launch(job)
        _write(job)
    return job


def enqueue(root: Path | str, name: str, command: Sequence[str], *, queue: str, run: str | None = None,
            cwd: Path | str | None = None, by: str = "", header: str | None = None) -> Job:  # fmt: skip
    """Record job ``name`` in ``queue`` without starting it; a ``Queue`` of that name starts it. Refuses as
    ``start_job`` does."""
    job = _new(root, name, command, run, cwd, by, queue, header)
    job.queued = time.time()
    with _locked(root):
        _refuse_active(_read(root, name))  # again under the lock, as in start_job
        _write(job)
    return job


def _stopped_state(returncode: int, stopped: float | None) -> str:
    if returncode == 0:
        return FINISHED
    if stopped is not None or returncode in (130, -signal.SIGINT):
        return STOPPED
    return FAILED


def _run_state(job: Job) -> str:
    """The state of the run a job wrote, for a job whose exit code nobody saw."""
    if job.run is None:
        return ENDED
    try:
        run_dir = resolve_run_dir(job.root, job.run)  # a record's run name never reads outside the root
        status = json.loads((run_dir / "status.json").read_text())
        state = status.get("state")
    except (OSError, ValueError, AttributeError):
        return ENDED
    if state == "running":
        return RUNNING if run_is_live(run_dir, status) else INTERRUPTED
    return state if state in (FINISHED, FAILED, STOPPED) else ENDED


def job_state(job: Job) -> str:
    """What the job is doing: queued, running, finished, failed, stopped or cancelled; where its exit code is
    unknown, its run's state (``run_is_live``), or ``ended``."""
    if job.returncode is not None:
        return _stopped_state(job.returncode, job.stopped)
    if job.pid is None or job.pid <= 0:
        if job.stopped is not None:
            return CANCELLED
        if job.runner_pid is None:  # just queued, its runner not started yet
            return QUEUED if time.time() - (job.queued or 0.0) < UNCLAIMED_S else ABANDONED
        return QUEUED if process_alive(job.runner_pid, job.runner_start) else ABANDONED
    if job.alive:
        return RUNNING
    state = _run_state(job)
    return STOPPED if job.stopped is not None and state in (RUNNING, INTERRUPTED, ENDED) else state


def _signal_group(pgid: int, sig: int) -> None:
    if pgid < 2:  # 0: our own group; 1: kill(-1), every process we may signal
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pid_taken(job: Job) -> bool:
    """Whether the job's pid now belongs to a later process (its start time differs). Its process group id is
    then that process's too: the kernel reuses a pid only once no group of that id is left."""
    now = process_start(job.pid) if job.pid is not None else None
    return now is not None and job.pid_start is not None and now != job.pid_start


def _wait_gone(jobs: Sequence[Job], seconds: float) -> bool:
    deadline = time.time() + seconds
    while any(j.alive for j in jobs) and time.time() < deadline:
        time.sleep(0.05)
    return not any(j.alive for j in jobs)


def _cancel(job: Job) -> Job:
    """Cancel a queued job under the lock; returns the record as it is now (started meanwhile: not cancelled)."""
    with _locked(job.root):
        now = _read(job.root, job.name) or job
        if now.waiting:
            now.stopped = time.time()
            _write(now)
    return now


def stop_jobs(jobs: Sequence[Job], grace: float = 10.0) -> list[Job]:
    """Stop jobs: queued ones are cancelled (they never start); running ones get SIGINT, then after ``grace / 2``
    seconds SIGTERM to their process group, then after ``grace / 2`` more SIGKILL. Returns the jobs that had to
    be killed with SIGTERM or SIGKILL."""
    running = []
    for job in jobs:
        now = _cancel(job) if job.pid is None else job
        if now.pid is not None:
            running.append(now)
    forced: list[Job] = []
    live = [j for j in running if j.alive]
    for job in live:
        try:
            os.kill(job.pid, signal.SIGINT)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass
    if not _wait_gone(live, grace / 2):
        forced = [j for j in live if j.alive]
        for job in forced:
            _signal_group(job.pid, signal.SIGTERM)  # type: ignore[arg-type]
        if not _wait_gone(forced, grace / 2):
            for job in forced:
                if job.alive:
                    _signal_group(job.pid, signal.SIGKILL)  # type: ignore[arg-type]
            _wait_gone(forced, 5)
    asked = {id(j) for j in live}  # a job that had ended before the stop keeps its outcome
    for job in running:
        if not _pid_taken(
            job
        ):  # leftovers of the job's group (grader workers), never a later process's group
            _signal_group(job.pid, signal.SIGTERM)  # type: ignore[arg-type]
        with _locked(job.root):
            now = _read(job.root, job.name)
            if now is not None and now.pid == job.pid and now.pid_start == job.pid_start:
                if id(job) in asked:
                    now.stopped = now.stopped or time.time()
                proc = _own_process(job.pid, job.pid_start)
                if proc is not None and proc.poll() is not None and now.returncode is None:
                    now.returncode, now.ended = proc.returncode, now.ended or time.time()
                _write(now)
                job.stopped, job.returncode, job.ended = now.stopped, now.returncode, now.ended
    return forced


def stop_job(job: Job, grace: float = 10.0) -> None:
    """``stop_jobs`` for one job."""
    stop_jobs([job], grace)


@dataclass
class Queue:
    """Starts queue ``name``'s jobs under ``root`` in the order queued, at most ``max_running`` at a time.

    Call ``step()`` every second or so: it records the exit code of the jobs it started that ended and starts
    queued ones into the free slots. The process that holds the ``Queue`` is the parent of its jobs.
    """

    root: Path
    name: str
    max_running: int
    _mine: dict[str, Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {self.max_running}")
        self.root = Path(self.root)
        me, my_start = os.getpid(), process_start(os.getpid())
        with _locked(self.root):  # claim the queue: its queued jobs show "queued" while this process lives
            for job in self.jobs():
                if job.waiting and job.runner_pid != me:
                    job.runner_pid, job.runner_start = me, my_start
                    _write(job)

    def jobs(self) -> list[Job]:
        """The queue's records, in the order queued."""
        out = [j for j in list_jobs(self.root) if j.queue == self.name]
        return sorted(out, key=lambda j: (j.queued or 0.0, j.name))

    def running(self) -> list[Job]:
        """The queue's jobs this queue started that still run."""
        return [j for j in self._mine.values() if j.alive]

    def step(self) -> tuple[list[Job], list[Job]]:
        """``(started, ended)``: the jobs started by this call and those of this queue that ended since the last."""
        ended = []
        for name, job in list(self._mine.items()):
            if not job.alive:
                ended.append(_reap(job) if job.returncode is None else job)
                del self._mine[name]
        started = []
        for job in self.jobs():
            if len(self._mine) >= self.max_running:
                break
            if not job.waiting:
                continue
            with _signals_held(), _locked(self.root):
                now = _read(self.root, job.name)
                if now is None or now.queue != self.name or not now.waiting:
                    continue  # cancelled or taken meanwhile
                try:
                    _launch(now)
                except (
                    OSError
                ) as e:  # no process (fork refused, program missing): the job failed, the queue goes on
                    _record_failed_start(now, e)
                    ended.append(now)
                    continue
                _write(now)
                self._mine[now.name] = now
            started.append(now)
        return started, ended

    def pending(self) -> list[Job]:
        """Queued jobs still to start (not cancelled)."""
        return [j for j in self.jobs() if j.waiting]

    def active(self) -> bool:
        """Whether anything is left: a job running or still to start."""
        return bool(self._mine) or bool(self.pending())

    def stop(self, grace: float = 10.0) -> list[Job]:
        """Cancel the queued jobs and stop the running ones (``stop_jobs``); returns those killed."""
        forced = stop_jobs([*self.pending(), *self._mine.values()], grace)
        for job in self._mine.values():
            _reap(job)
        self._mine.clear()
        return forced


def run_queue(root: Path | str, name: str, max_running: int, poll_s: float = 1.0) -> int:
    """Run queue ``name`` to its end (nothing queued, nothing running); returns how many of its jobs failed.
    Interrupted (Ctrl-C, SIGINT), it cancels the jobs still queued and stops the running ones, then re-raises."""
    queue = Queue(Path(root), name, max_running)
    failed = 0
    try:
        while True:
            _, ended = queue.step()
            failed += sum(1 for j in ended if job_state(j) == FAILED)
            if not queue.active():
                return failed
            time.sleep(poll_s)
    except KeyboardInterrupt:
        queue.stop()
        raise


QUEUE_RUNNER = "queue runner"  # the ``by`` of a queue runner's own job record


def runner_name(queue: str) -> str:
    """The job name of queue ``queue``'s runner."""
    return f"queue-{queue}"


def spawn_queue_runner(root: Path | str, name: str, max_running: int) -> Job:
    """Start ``python -m workbench.jobs run-queue ROOT NAME --max-running K`` in the background, as a job of its
    own (``queue-NAME``), and mark the queue's jobs as waiting for it."""
    command = [sys.executable, "-m", "workbench.jobs", "run-queue", str(Path(root).resolve()), name,
               "--max-running", str(int(max_running))]  # fmt: skip
    runner = start_job(root, runner_name(name), command, by=QUEUE_RUNNER)
    with _locked(root):
        for job in list_jobs(root):
            if job.queue == name and job.waiting and job.runner_pid is None:
                job.runner_pid, job.runner_start = runner.pid, runner.pid_start
                _write(job)
    return runner


def queue_runner(job: Job) -> Job | None:
    """The queue runner that was to start ``job`` (``spawn_queue_runner``'s ``queue-NAME``), or None."""
    if not job.queue:
        return None
    runner = read_job(job.root, runner_name(job.queue))
    return runner if runner is not None and runner.by == QUEUE_RUNNER else None


def log_tail(job: Job, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of the job's output (progress bars' carriage returns become new lines)."""
    try:
        with open(job.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(terminal_lines(text)[-lines:])


_PROGRESS = re.compile(r"\b\d+/\d+ \[")  # a tqdm bar's position, e.g. "3/20 ["


def terminal_lines(text: str) -> list[str]:
    """The non-empty lines of a program's output, with a progress bar's redraws (``\\r``) as lines of their own,
    each bar position once: tqdm draws step k twice (``set_postfix`` redraws k-1 with step k's numbers, then
    ``update`` draws k), and the first drawing of each position is the one whose numbers belong to it."""
    out: list[str] = []
    for physical in text.replace("\r\n", "\n").split("\n"):
        seen: set[str] = set()
        for part in physical.split("\r"):
            if not part.strip():
                continue
            at = _PROGRESS.search(part)
            if at is not None:
                if at.group(0) in seen:
                    continue
                seen.add(at.group(0))
            out.append(part)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbench.jobs run-queue ROOT QUEUE --max-running K``: start a queue's jobs, K at a time."""
    parser = argparse.ArgumentParser(prog="python -m workbench.jobs", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("run-queue", help="start the queued jobs of QUEUE under ROOT, K at a time, until done")
    q.add_argument("root", type=Path)
    q.add_argument("queue")
    q.add_argument("--max-running", type=int, default=1, metavar="K")
    q.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between looks")
    args = parser.parse_args(argv)
    if args.max_running < 1:
        parser.error(f"--max-running must be >= 1, got {args.max_running}")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the queue as Ctrl-C does
    try:
        return 1 if run_queue(args.root, args.queue, args.max_running, args.poll) else 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
