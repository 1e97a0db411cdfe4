"""A run killed with SIGKILL mid-step and resumed from its last checkpoint logs exactly what an uninterrupted run
with the same seed logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from tests.training.conftest import ROOT, SMALL, assert_same_logs, cli_flags, run_cli
from workbench.runlog import open_run


def test_killed_and_resumed_run_logs_the_same_as_an_uninterrupted_one(ws_cache, tmp_path):
    settings = {**SMALL, "steps": 8, "save_every": 2, "val_every": 3, "cache_dir": str(ws_cache)}
    args = ["train", "--method", "real", *cli_flags(settings)]
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    done = run_cli([*args, "--out", str(whole)])
    assert done.returncode == 0, done.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "training", *args, "--out", str(killed)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    marker = killed / "metrics" / "step_000005.parquet"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run did not reach step 5"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid step 6: its checkpoint is step 4
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert open_run(killed).status()["state"] == "running"  # as a crash leaves it

    resumed = run_cli(["train", "--out", str(killed), "--resume", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    # killed during step 6, so the last checkpoint is step 4 (step 6 if the kill landed after its checkpoint)
    assert "from step 4" in resumed.stderr or "from step 6" in resumed.stderr, resumed.stderr

    a, b = open_run(whole), open_run(killed)
    assert a.steps() == b.steps() == list(range(1, 9))
    assert b.status()["state"] == "finished"
    assert_same_logs(whole, killed)
    assert np.isfinite(a.metrics().val_pass1.iloc[[2, 5, 7]]).all()
    events = [json.loads(line)["event"] for line in (killed / "events.jsonl").read_text().splitlines()]
    assert events.count("resume") == 1
    assert not list((killed / "checkpoints").glob(".*"))  # no temporary checkpoint left behind
    assert not [
        f for t in ("metrics", "rollouts", "tokens") for f in (killed / t).iterdir() if f.name.startswith(".")
    ]


def test_resume_can_extend_a_finished_run(ws_cache, tmp_path, capsys):
    from training.cli import main

    out = tmp_path / "run"
    settings = {**SMALL, "steps": 2, "val_every": 0, "cache_dir": str(ws_cache)}
    assert main(["train", "--method", "dapo", *cli_flags(settings), "--out", str(out)]) == 0
    assert main(["train", "--out", str(out), "--resume", "--steps", "3"]) == 0
    run = open_run(out)
    assert run.steps() == [1, 2, 3] and run.config["steps"] == 3 and run.status()["state"] == "finished"
    assert run.method == "dapo" and run.config["hparams"]["eps_high"] == 0.28
    assert "from step 2" in capsys.readouterr().err


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job (`cmd &`) starts


def test_sigint_stops_a_run_started_with_sigint_ignored(ws_cache, tmp_path):
    """The app and the pipeline stop a run with SIGINT. Started from a background shell, the trainer inherits
    SIGINT ignored; it must still log ``stopped`` (and keep its steps), not run on until SIGTERM/SIGKILL."""
    settings = {**SMALL, "steps": 50, "save_every": 0, "val_every": 0, "cache_dir": str(ws_cache)}
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "--method", "grpo", *cli_flags(settings), "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=_ignore_sigint,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    marker = out / "metrics" / "step_000001.parquet"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "the run ended early"
        assert time.monotonic() < deadline, "the run did not reach step 1"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("SIGINT did not stop the trainer") from None
    status = open_run(out).status()
    assert status["state"] == "stopped", status
    assert 1 <= len(open_run(out).steps()) < 50
