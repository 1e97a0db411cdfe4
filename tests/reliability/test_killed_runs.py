"""SIGKILL at random points, then resume: nothing corrupt, nothing lost or duplicated, the same final logs.

After every kill, a reader's view of the run directory is checked (``check_after_kill``): ``run.json`` and
``status.json`` parse, the complete steps are 1..k without a gap, every visible Parquet file reads (complete
steps pass the full schema and value checks), temporary files are hidden (dot-names that no reader lists),
``events.jsonl`` has no torn line, and each complete step's logs are remembered. When the run has finished, every
remembered step must equal its final version (a resumed run may redo steps after its last checkpoint, but must
redo them identically), each step and row appears once, no temporary file is left, and the logs equal those
of an uninterrupted run with the same seed, column for column (machine timings aside).

Fast: ``writer_loop`` (the run-directory writer alone) killed five times at random. Slow: the trainer itself,
``python -m training train`` on the training tests' scaled-down configuration, killed eight times at random
times and while it writes a step, right after a step lands and while it writes a checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.reliability.conftest import report
from tests.reliability.writer_loop import step_tables
from tests.training.conftest import ROOT, SMALL, assert_same_logs, cli_flags, machine_column, run_cli
from workbench.runlog import TABLES, open_run, to_table

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _step_of(name: str) -> int:
    return int(name[len("step_") : -len(".parquet")])


def check_after_kill(run_dir: Path) -> dict:
    """A reader's view of ``run_dir`` right after a kill; returns the complete steps' logs and what was found."""
    run = open_run(run_dir)
    run.status()
    steps = run.steps()
    assert steps == list(range(1, len(steps) + 1)), f"complete steps with a gap: {steps}"
    hidden = 0
    for table in TABLES:
        folder = run_dir / table
        for f in sorted(folder.iterdir()) if folder.is_dir() else []:
            if f.name.startswith("."):
                hidden += 1  # a killed writer's temporary file: readers never list it
                continue
            assert f.name.startswith("step_") and f.suffix == ".parquet", f
            t = pq.read_table(f)  # every visible file is whole, complete step or not
            assert set(t.column("step").to_pylist()) <= {_step_of(f.name)}, f
    logs = {}
    for table in TABLES:
        for step in steps:
            run.read(table, [step])  # the reader's checks: schema, nulls, finiteness, UTF-8
            df = run.read_every_column(table, [step])
            logs[(table, step)] = df.drop(columns=[c for c in df.columns if machine_column(c)])
    events = run_dir / "events.jsonl"
    if events.exists():
        for line in events.read_text().splitlines():
            json.loads(line)  # no torn line
    return {"steps": steps, "hidden_temp_files": hidden, "logs": logs}


def check_finished(run_dir: Path, seen: dict) -> None:
    """The finished run: every step a reader saw complete is there, unchanged; no duplicate; no temp file."""
    final = check_after_kill(run_dir)
    assert final["hidden_temp_files"] == 0
    for key, df in seen.items():
        pd.testing.assert_frame_equal(df, final["logs"][key], check_exact=True, obj=str(key))
    for step in final["steps"]:
        assert len(final["logs"][("metrics", step)]) == 1
        rol = final["logs"][("rollouts", step)]
        assert not rol.duplicated(["minibatch", "rollout"]).any()
        tok = final["logs"][("tokens", step)]
        assert not tok.duplicated(
            ["minibatch", "rollout", "pos"] if "minibatch" in tok else ["rollout", "pos"]
        ).any()
    if (run_dir / "checkpoints").exists():
        assert not list((run_dir / "checkpoints").glob(".*")), "a temporary checkpoint was left behind"


def _hidden(run_dir: Path, folders: tuple[str, ...], prefix: str) -> set[str]:
    """Names of the temporary files (``prefix``...) in ``folders`` of ``run_dir``."""
    found = set()
    for folder in folders:
        try:
            found |= {f"{folder}/{e.name}" for e in os.scandir(run_dir / folder) if e.name.startswith(prefix)}
        except FileNotFoundError:
            pass
    return found


def _step_temps(run_dir: Path) -> set[str]:
    return _hidden(run_dir, TABLES, ".step_")


def _checkpoint_temps(run_dir: Path) -> set[str]:
    return _hidden(run_dir, ("checkpoints",), ".tmp-")


def _metrics_count(run_dir: Path) -> int:
    try:
        return sum(1 for e in os.scandir(run_dir / "metrics") if e.name.startswith("step_"))
    except FileNotFoundError:
        return 0


def kill_when(
    proc: subprocess.Popen,
    run_dir: Path,
    mode: str,
    delay: float,
    after_steps: int = 0,
    give_up: float = 120.0,
) -> str:
    """Once ``run_dir`` holds ``after_steps`` complete steps, wait until ``mode`` happens (or ``delay`` seconds
    pass, for ``random``), then SIGKILL ``proc``. Returns what the kill hit, or ``finished`` if the process ended
    first."""
    while proc.poll() is None and _metrics_count(run_dir) < after_steps:
        time.sleep(0.005)
    start = time.monotonic()
    landed = _metrics_count(run_dir)
    stale = _step_temps(run_dir) | _checkpoint_temps(run_dir)  # left by the previous kill: not a new write
    while proc.poll() is None:
        now = time.monotonic() - start
        if mode == "random" and now >= delay:
            hit = "random"
        elif mode == "step_write" and _step_temps(run_dir) - stale:
            hit = "step_write"
        elif mode == "checkpoint_write" and _checkpoint_temps(run_dir) - stale:
            hit = "checkpoint_write"
        elif mode == "step_landed" and _metrics_count(run_dir) > landed:
            hit = "step_landed"
        elif now > give_up:
            hit = "random (fallback)"
        else:
            time.sleep(0.001)
            continue
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        return hit
    return "finished"


def kill_and_resume(
    start_cmd: list[str], resume_cmd: list[str], run_dir: Path, modes: list[str], rng: random.Random,
    delays: tuple[float, float], timeout: float, ready: bytes | None = None, steps: int = 0,
) -> dict:  # fmt: skip
    """Launch, kill per ``modes`` (one kill each, in order), resuming after each, then let the run finish.

    Kill ``k`` of ``n`` waits until the run holds ``k * steps / (n + 1)`` complete steps (``steps``: how many it
    will have; 0 arms every kill at once), so the kills spread over the whole run. ``ready``: a line the process
    prints once it has started; random delays then count from it."""
    seen: dict = {}
    hits, hidden_max, launches, at_kill = [], 0, 0, []
    deadline = time.monotonic() + timeout
    for i, mode in enumerate([*modes, None]):
        cmd = resume_cmd if (run_dir / "run.json").exists() else start_cmd
        out = subprocess.PIPE if ready else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.PIPE)
        launches += 1
        if ready and mode is not None:
            assert proc.stdout.readline().strip() == ready
        if mode is None:
            _, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
            break
        after = (i + 1) * steps // (len(modes) + 1)
        hit = kill_when(proc, run_dir, mode, rng.uniform(*delays), after_steps=after)
        at_kill.append(_metrics_count(run_dir))
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
        assert hit != "finished", f"the run finished before kill {i + 1} ({mode}); lengthen it"
        hits.append(hit)
        if not (run_dir / "run.json").exists():
            continue  # killed before the run directory was created: it is started afresh
        state = check_after_kill(run_dir)
        hidden_max = max(hidden_max, state["hidden_temp_files"])
        seen.update(state["logs"])
    check_finished(run_dir, seen)
    return {"kills": len(hits), "hits": hits, "complete_steps_at_kills": at_kill, "launches": launches,
            "max_hidden_temp_files": hidden_max, "steps_checked_after_kills": len(seen) // len(TABLES)}  # fmt: skip


def test_killed_writer_leaves_only_whole_files(tmp_path):
    """The run-directory writer alone, killed five times (while it writes a file, right after a step lands, at
    random) and resumed: the final files equal the tables an uninterrupted writer writes."""
    steps = 30
    killed = tmp_path / "killed"
    # 0.1 s between steps: on an idle machine 30 steps would otherwise be written before the later kills are armed;
    # the last kill, armed after 25 steps, then has >= 0.5 s to land, more than the longest random delay (0.25 s)
    args = [sys.executable, "-m", "tests.reliability.writer_loop", str(killed), str(steps), "0.1"]
    rng = random.Random(11)
    modes = ["step_write", "random", "step_write", "step_landed", "random"]
    figures = kill_and_resume(args, args, killed, modes, rng, (0.0, 0.25), 300, ready=b"started", steps=steps)
    assert figures["kills"] == 5
    run = open_run(killed)
    assert run.steps() == list(range(1, steps + 1))
    for step in run.steps():
        expected = dict(zip(TABLES, step_tables(step), strict=True))
        expected["metrics"] = {k: [v] for k, v in {**expected["metrics"], "step": step}.items()}
        for table in TABLES:
            assert pq.read_table(killed / table / f"step_{step:06d}.parquet").equals(
                to_table(table, expected[table])
            ), (table, step)
    report("killed_writer", **figures)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_trainer_killed_eight_times_and_resumed_logs_what_an_uninterrupted_run_logs(ws_cache, tmp_path):
    settings = {**SMALL, "steps": 12, "save_every": 2, "val_every": 3, "cache_dir": str(ws_cache)}
    args = ["train", "--method", "real", *cli_flags(settings)]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    t0 = time.monotonic()
    done = run_cli([*args, "--out", str(whole)], timeout=1200)
    assert done.returncode == 0, done.stderr
    uninterrupted_s = time.monotonic() - t0

    rng = random.Random(2026)
    modes = ["random", "step_write", "checkpoint_write", "step_landed", "random", "step_write",
             "checkpoint_write", "random"]  # fmt: skip
    start = [sys.executable, "-m", "training", *args, "--out", str(killed)]
    resume = [sys.executable, "-m", "training", "train", "--out", str(killed), "--resume", "--no-progress"]
    t0 = time.monotonic()
    figures = kill_and_resume(start, resume, killed, modes, rng, (0.0, 4.0), timeout=2400, steps=12)
    figures["seconds"] = round(time.monotonic() - t0, 1)
    figures["uninterrupted_seconds"] = round(uninterrupted_s, 1)
    assert figures["kills"] >= 5

    a, b = open_run(whole), open_run(killed)
    assert a.steps() == b.steps() == list(range(1, 13))
    assert b.status()["state"] == "finished"
    assert_same_logs(whole, killed)  # every table, every column but the machine's measurements
    events = [json.loads(line)["event"] for line in (killed / "events.jsonl").read_text().splitlines()]
    figures["resumes_logged"] = events.count("resume")
    assert 1 <= events.count("resume") <= figures["launches"] - 1
    report("killed_trainer", **figures)
