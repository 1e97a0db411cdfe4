"""``python -m training paper-figures`` end to end, for real, on the training tests' scaled-down configuration.

Default run: Fig. 2's two variants x 1 seed x 2 steps trained and drawn, then the same command again skips
both runs. ``-m slow``: 2 seeds x 3 steps interrupted with Ctrl-C, continued, then re-run with nothing to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.training.conftest import ROOT, SMALL, cli_flags, run_cli
from training.cli import main
from workbench.jobs import job_state, read_job
from workbench.runlog import open_run
from workbench.runs_root import list_run_names

RUNS = ("grpo__s0", "grpo__clip_mode=bidirectional__s0", "grpo__s1", "grpo__clip_mode=bidirectional__s1")


def _settings(ws_cache) -> list[str]:
    small = {k: v for k, v in SMALL.items() if k not in ("steps", "progress")}  # the pipeline sets these
    return cli_flags({**small, "cache_dir": str(ws_cache)})


def test_train_build_then_skip(ws_cache, tmp_path, capsys):
    """The fast real test of the pipeline: trainer subprocesses, run directories, the figure and its sidecar."""
    root, figs = tmp_path / "runs", tmp_path / "figs"
    args = ["paper-figures", "--figures", "fig2", "--seeds", "1", "--steps", "2", "--jobs", "2",
            "--runs-root", str(root), "--out-dir", str(figs), "--", *_settings(ws_cache)]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 to train, 0 to resume, 0 finished" in err and "all 2 runs finished" in err
    runs = ("grpo__s0", "grpo__clip_mode=bidirectional__s0")
    for r in runs:
        run = open_run(root / r)
        assert run.status()["state"] == "finished" and run.steps() == [1, 2], r
        assert run.config["seed"] == 0 and run.config["steps"] == 2
    assert open_run(root / runs[1]).config["clip_mode"] == "bidirectional"
    sidecar = json.loads((figs / "fig2_hard_tokens.json").read_text())
    assert sorted(sidecar["runs"]) == sorted(str(root / r) for r in runs)
    assert [(v["label"], v["seeds"]) for v in sidecar["variants"]] == [
        ("GRPO", [0]),
        ("GRPO bidirectional clip", [0]),
    ]
    assert (figs / "fig2_hard_tokens.png").stat().st_size > 1000
    events = [json.loads(line) for line in (root / "paper-figures.jsonl").read_text().splitlines()]
    assert sorted(e["run"] for e in events if e["event"] == "job_end" and e["rc"] == 0) == sorted(runs)
    assert events[-1]["event"] == "session_end" and events[-1]["result"] == "ok"
    # the jobs went through the one runner: logs and records in the hidden .jobs folder, nothing else listed
    assert {r: job_state(read_job(root, r)) for r in runs} == {r: "finished" for r in runs}
    assert all("=== " in (root / ".jobs" / f"{r}.log").read_text() for r in runs)
    assert list_run_names(root) == sorted(runs) and not (root / "logs").exists()
    before = {r: (root / r / "run.json").stat().st_mtime_ns for r in runs}
    assert main([*args[:1], "--no-figures", *args[1:]]) == 0  # again: nothing to train
    err = capsys.readouterr().err
    assert "0 to train, 0 to resume, 2 finished (skipped)" in err and "start " not in err
    assert {r: (root / r / "run.json").stat().st_mtime_ns for r in runs} == before


@pytest.mark.slow
def test_train_interrupt_continue_build_and_skip(ws_cache, tmp_path):
    root, figs = tmp_path / "runs", tmp_path / "figs"
    args = ["paper-figures", "--figures", "fig2", "--seeds", "2", "--steps", "3", "--jobs", "2",
            "--runs-root", str(root), "--out-dir", str(figs), "--status-every", "1",
            "--", *_settings(ws_cache)]  # fmt: skip

    dry = run_cli([*args[:1], "--dry-run", *args[1:]])
    assert dry.returncode == 0, dry.stderr
    assert "4 to train, 0 to resume, 0 finished" in dry.stderr
    assert "train  grpo__s0 " in dry.stderr and "--method grpo --seed 0" in dry.stderr
    assert not root.exists()  # a dry run creates nothing

    # 1. interrupted (Ctrl-C) once the first step of some run is logged
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not any((root / r / "metrics" / "step_000001.parquet").exists() for r in RUNS):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no step was logged in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted: stopping 2 job(s)" in out and "run the same command again to continue" in out
    states = {r: open_run(root / r).status()["state"] for r in RUNS if (root / r / "run.json").exists()}
    assert "stopped" in states.values(), states  # the trainers were told, and marked their runs
    assert not figs.exists()
    events = [json.loads(line)["event"] for line in (root / "paper-figures.jsonl").read_text().splitlines()]
    assert events[0] == "session_start" and events[-1] == "session_end" and "interrupted" in events

    # 2. the same command continues: stopped runs are resumed, the others trained, then the figure is built
    again = run_cli(args, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "to resume" in again.stderr and "start  grpo" in again.stderr
    assert "resuming" in "".join((root / ".jobs" / f"{r}.log").read_text() for r in RUNS)
    for r in RUNS:
        run = open_run(root / r)
        assert run.status()["state"] == "finished" and run.steps() == [1, 2, 3], r
    for ext in ("png", "pdf", "json"):
        assert (figs / f"fig2_hard_tokens.{ext}").stat().st_size > 0
    sidecar = json.loads((figs / "fig2_hard_tokens.json").read_text())
    assert [(v["label"], v["seeds"]) for v in sidecar["variants"]] == [
        ("GRPO", [0, 1]),
        ("GRPO bidirectional clip", [0, 1]),
    ]
    assert sorted(sidecar["runs"]) == sorted(str(root / r) for r in RUNS)
    assert sidecar["command"].startswith("python -m workbench.figures fig2 --runs ")

    # 3. nothing left to train: every run is skipped, the figure rebuilt
    before = {r: (root / r / "run.json").stat().st_mtime_ns for r in RUNS}
    third = run_cli(args, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "0 to train, 0 to resume, 4 finished (skipped)" in third.stderr
    assert "start " not in third.stderr
    assert {r: (root / r / "run.json").stat().st_mtime_ns for r in RUNS} == before


def test_help_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as shown:
        main(["paper-figures", "--help"])
    assert shown.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--seeds", "--runs-root", "--jobs", "--dry-run", "--figures", "beta 0.001", "exit codes"):
        assert flag in text, flag
    assert main(["paper-figures", "--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert main(["paper-figures", "--runs-root", str(tmp_path), "--dry-run", "--", "--tau", "0.3"]) == 2
    assert "--tau: set by the pipeline" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stray:
        main(["train", "--method", "real", "--out", str(tmp_path / "x"), "--", "--lr", "1"])
    assert stray.value.code == 2 and "train takes no arguments after --" in capsys.readouterr().err
    junk = tmp_path / "runs" / "grpo__s0"
    junk.mkdir(parents=True)
    (junk / "mine.txt").write_text("not a run")
    assert main(["paper-figures", "--figures", "fig2", "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "1 run folder(s) conflict with the plan; nothing was started" in err
    assert "holds files but no run.json" in err
    made = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert made == [".paper-figures.lock", "grpo__s0"]  # nothing else was created (the lock comes first)
