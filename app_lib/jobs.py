"""Background training jobs started from the app: start, list, follow, stop.

A job is a subprocess in its own session (so that stopping it stops its workers too), running by default
``python -m training train --method M --preset P --steps N --seed S --out ROOT/NAME`` from the repository root.
Its output goes to ``ROOT/.jobs/NAME.log`` and a record ``ROOT/.jobs/NAME.json`` (pid, command, start and stop
times) lets any app session list it. Progress comes from the run directory itself (``status.json``, complete
steps), which the trainer writes; the app never writes into a run folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app_lib.config import REPO_ROOT
from workbench.liveness import pid_alive
from workbench.runs_root import UnsafeRunName, resolve_run_dir

JOBS_DIR = ".jobs"
PRESETS = ("tiny", "paper-1.5b", "paper-7b")

# Popen objects of the jobs this server process started, so that finished ones are reaped (no zombies).
_PROCS: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class Job:
    name: str
    pid: int
    command: list[str]
    log: Path
    started: float
    stopped: float | None = None
    returncode: int | None = None

    @property
    def alive(self) -> bool:
        proc = _PROCS.get(self.pid)
        if proc is not None:
            return proc.poll() is None
        return pid_alive(self.pid)


def trainer_available() -> bool:
    """Whether ``python -m training`` can run from this checkout (the package and its ``__main__``)."""
    try:
        return importlib.util.find_spec("training.__main__") is not None
    except ImportError:
        return False


def train_command(
    method: str,
    preset: str,
    steps: int | None,
    seed: int | None,
    out: Path,
    hparams: dict[str, object] | None = None,
) -> list[str]:
    """The documented trainer command line for a run written to ``out`` (``None``: the preset's value);
    ``hparams``: objective settings that differ from the method's defaults, as their flags (``--tau 0.1``)."""
    cmd = [sys.executable, "-m", "training", "train", "--method", method, "--preset", preset]
    if steps is not None:
        cmd += ["--steps", str(int(steps))]
    if seed is not None:
        cmd += ["--seed", str(int(seed))]
    for key, value in (hparams or {}).items():
        cmd += ["--" + key.replace("_", "-"), "none" if value is None else str(value)]
    return [*cmd, "--out", str(out)]


def _jobs_dir(root: Path) -> Path:
    return Path(root) / JOBS_DIR


def _record(root: Path, name: str) -> Path:
    return _jobs_dir(root) / f"{name}.json"


def start_job(root: Path, name: str, command: list[str], *, cwd: Path = REPO_ROOT) -> Job:
    """Start ``command`` in the background for run ``name`` under ``root``.

    Refuses (``ValueError``) a name that would leave the root, a run that already exists, or a job of that name
    that is still running.
    """
    out = resolve_run_dir(root, name)  # raises UnsafeRunName (a ValueError)
    if (out / "run.json").exists():
        raise ValueError(f"a run named {name!r} already exists under {root}; choose another name")
    old = read_job(root, name)
    if old is not None and old.alive:
        raise ValueError(f"a job named {name!r} is still running (pid {old.pid})")
    jobs = _jobs_dir(root)
    jobs.mkdir(parents=True, exist_ok=True)
    log = jobs / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            command, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )  # fmt: skip
    _PROCS[proc.pid] = proc
    job = Job(name=name, pid=proc.pid, command=list(command), log=log, started=time.time())
    _write(root, job)
    return job


def start_training(
    root: Path,
    name: str,
    method: str,
    preset: str,
    steps: int | None = None,
    seed: int | None = None,
    hparams: dict[str, object] | None = None,
) -> Job:
    """Start the trainer for run ``name`` (see ``train_command``); ``hparams`` are checked against the method's
    spec here (``resolve_hparams``), so a bad value is refused before anything starts."""
    if not trainer_available():
        raise ValueError("the training module is not in this checkout; `python -m training` cannot run")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    if steps is not None and steps < 1:
        raise ValueError("steps must be >= 1")
    from workbench.methods import resolve_hparams

    resolve_hparams(method, dict(hparams or {}))  # ValueError naming the setting
    out = resolve_run_dir(root, name)
    return start_job(root, name, train_command(method, preset, steps, seed, out, hparams))


def _write(root: Path, job: Job) -> None:
    rec = {
        "name": job.name,
        "pid": job.pid,
        "command": job.command,
        "log": job.log.name,
        "started": job.started,
        "stopped": job.stopped,
        "returncode": job.returncode,
    }
    path = _record(root, job.name)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=2))
    os.replace(tmp, path)


def read_job(root: Path, name: str) -> Job | None:
    """The job record of run ``name``, or None if there is none (or it is unreadable)."""
    try:
        rec: dict[str, Any] = json.loads(_record(root, name).read_text())
        job = Job(
            name=str(rec["name"]),
            pid=int(rec["pid"]),
            command=[str(c) for c in rec["command"]],
            log=_jobs_dir(root) / str(rec["log"]),
            started=float(rec["started"]),
            stopped=rec.get("stopped"),
            returncode=rec.get("returncode"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    proc = _PROCS.get(job.pid)
    if proc is not None and proc.poll() is not None and job.returncode is None:
        job.returncode = proc.returncode
        _write(root, job)
    return job


def list_jobs(root: Path) -> list[Job]:
    """Jobs recorded under ``root``, newest first."""
    folder = _jobs_dir(root)
    if not folder.is_dir():
        return []
    jobs = [j for f in folder.glob("*.json") if (j := read_job(root, f.stem)) is not None]
    return sorted(jobs, key=lambda j: j.started, reverse=True)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(job: Job, seconds: float) -> bool:
    deadline = time.time() + seconds
    while job.alive and time.time() < deadline:
        time.sleep(0.05)
    return not job.alive


def stop_job(root: Path, job: Job, grace: float = 10.0) -> None:
    """Stop a job, politely first: SIGINT to the trainer (it logs ``stopped`` and closes its workers), then
    SIGTERM and finally SIGKILL to its whole process group, each after ``grace / 2`` seconds."""
    if job.alive:
        try:
            os.kill(job.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        if not _wait_gone(job, grace / 2):
            _signal_group(job.pid, signal.SIGTERM)
            if not _wait_gone(job, grace / 2):
                _signal_group(job.pid, signal.SIGKILL)
                _wait_gone(job, 5)
    _signal_group(job.pid, signal.SIGTERM)  # leftovers of the group (grader workers), if any
    job.stopped = time.time()
    proc = _PROCS.get(job.pid)
    if proc is not None:
        job.returncode = proc.poll()
    _write(root, job)


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


__all__ = [
    "PRESETS",
    "Job",
    "UnsafeRunName",
    "list_jobs",
    "log_tail",
    "read_job",
    "start_job",
    "start_training",
    "stop_job",
    "terminal_lines",
    "trainer_available",
]
