"""The app's training jobs: the trainer command lines it starts, through the one runner (``workbench.jobs``).

A job runs ``python -m training train --method M --preset P --steps N --seed S --out ROOT/NAME`` from the
repository root, in its own session; its output and record live in ``ROOT/.jobs/`` (``NAME.log``, ``NAME.json``),
where the pipeline's jobs are too, so the Train page lists them all. Several seeds at once are queued: one job per
seed, at most K running, started by a queue runner process (``python -m workbench.jobs run-queue``). Progress
comes from the run directory itself (``status.json``, complete steps), which the trainer writes; the app never
writes into a run folder.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from app_lib.config import REPO_ROOT
from workbench.jobs import (
    ABANDONED,
    JOBS_DIR,
    QUEUE_RUNNER,
    Job,
    enqueue,
    job_state,
    list_jobs,
    log_tail,
    queue_runner,
    read_job,
    spawn_queue_runner,
    stop_jobs,
    terminal_lines,
)
from workbench.jobs import start_job as _start_now
from workbench.jobs import stop_job as _stop_now
from workbench.runs_root import UnsafeRunName, resolve_run_dir

PRESETS = ("tiny", "paper-1.5b", "paper-7b")
BY = "Train page"


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


def _refuse_existing(root: Path, name: str) -> Path:
    out = resolve_run_dir(root, name)  # raises UnsafeRunName (a ValueError)
    if (out / "run.json").exists():
        raise ValueError(f"a run named {name!r} already exists under {root}; choose another name")
    return out


def start_job(root: Path, name: str, command: list[str], *, cwd: Path = REPO_ROOT) -> Job:
    """Start ``command`` in the background now for a new run ``name`` under ``root``.

    Refuses (``ValueError``) a name that would leave the root, a run that already exists, or a job of that name
    that is still queued or running.
    """
    _refuse_existing(root, name)
    return _start_now(root, name, command, run=name, cwd=cwd, by=BY)


def _checked_command(
    root: Path, name: str, method: str, preset: str, steps: int | None, seed: int | None,
    hparams: dict[str, object] | None,
) -> list[str]:  # fmt: skip
    if not trainer_available():
        raise ValueError("the training module is not in this checkout; `python -m training` cannot run")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    if steps is not None and steps < 1:
        raise ValueError("steps must be >= 1")
    from workbench.methods import resolve_hparams

    resolve_hparams(method, dict(hparams or {}))  # ValueError naming the setting
    out = _refuse_existing(root, name)
    return train_command(method, preset, steps, seed, out, hparams)


def start_training(
    root: Path,
    name: str,
    method: str,
    preset: str,
    steps: int | None = None,
    seed: int | None = None,
    hparams: dict[str, object] | None = None,
) -> Job:
    """Start the trainer for run ``name`` now (see ``train_command``); ``hparams`` are checked against the
    method's spec here (``resolve_hparams``), so a bad value is refused before anything starts."""
    return start_job(root, name, _checked_command(root, name, method, preset, steps, seed, hparams))


def seed_run_names(base: str, seeds: Sequence[int]) -> list[str]:
    """Run names of a batch: ``base`` for one seed, ``base-sSEED`` for each of several."""
    return [base] if len(seeds) == 1 else [f"{base}-s{s}" for s in seeds]


def start_seeds(
    root: Path,
    base: str,
    method: str,
    preset: str,
    steps: int | None,
    seeds: Sequence[int],
    max_running: int,
    hparams: dict[str, object] | None = None,
) -> list[Job]:
    """Queue one run per seed (``seed_run_names``), at most ``max_running`` training at a time, and start the
    queue runner that starts them. Every run is checked (name, settings, no such run yet) before any is queued."""
    if not seeds:
        raise ValueError("no seeds: choose at least one")
    if len(set(seeds)) != len(seeds):
        raise ValueError("a seed appears twice")
    if max_running < 1:
        raise ValueError("at most K at a time needs K >= 1")
    names = seed_run_names(base, seeds)
    commands = [
        _checked_command(root, n, method, preset, steps, s, hparams)
        for n, s in zip(names, seeds, strict=True)
    ]
    for n in names:
        old = read_job(root, n)
        if old is not None and job_state(old) in ("queued", "running"):
            raise ValueError(f"a job named {n!r} is still {job_state(old)}; stop it first")
    queue = f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    jobs = [
        enqueue(root, n, c, queue=queue, run=n, cwd=REPO_ROOT, by=BY)
        for n, c in zip(names, commands, strict=True)
    ]
    spawn_queue_runner(root, queue, max_running)
    return jobs


def stop_job(root: Path, job: Job, grace: float = 10.0) -> None:
    """Stop a job (``workbench.jobs.stop_jobs``): a queued one is cancelled, a running one gets SIGINT, then
    SIGTERM and SIGKILL to its process group, each after ``grace / 2`` seconds."""
    _stop_now(job, grace)


__all__ = [
    "ABANDONED",
    "JOBS_DIR",
    "PRESETS",
    "QUEUE_RUNNER",
    "Job",
    "UnsafeRunName",
    "job_state",
    "list_jobs",
    "log_tail",
    "queue_runner",
    "read_job",
    "seed_run_names",
    "start_job",
    "start_seeds",
    "start_training",
    "stop_job",
    "stop_jobs",
    "terminal_lines",
    "trainer_available",
]
