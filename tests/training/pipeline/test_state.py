"""Skip / resume / conflict decisions on existing run directories (real run.json and step files)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from training.pipeline.plan import make_plan
from training.pipeline.state import RESUME, SKIP, TRAIN, Conflict, inspect
from workbench.runlog import RunWriter
from workbench.synthetic_run import step_tables


@pytest.fixture
def plan(tmp_path):
    return make_plan(preset="tiny", seeds=[0], runs_root=tmp_path / "runs", steps=4, figures=["fig2"])


def _grpo(plan):
    return next(r for r in plan.runs if r.name == "grpo__s0")


def _write(run_dir: Path, config: dict, method: str, steps_done: int, state: str, **status) -> None:
    """A run directory as the trainer leaves it: run.json, ``steps_done`` complete steps, status.json."""
    writer = RunWriter.create(run_dir, name=run_dir.name, method=method, config=config, env={})
    rng = np.random.default_rng(0)
    for step in range(1, steps_done + 1):
        writer.write_step(step, *step_tables(rng, step, method))
    writer.set_status(state, last_step=steps_done, **status)


def _set_pid(run_dir: Path, pid: int) -> None:
    path = run_dir / "status.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": pid}))


def _logged(run, **changes) -> dict:
    cfg = replace(run.config, **changes)
    return {**cfg.to_log(), "hparams": asdict(cfg.hparams())}


def test_absent_or_empty_folders_are_trained(plan):
    run = _grpo(plan)
    assert inspect(run).action == TRAIN
    run.out.mkdir(parents=True)
    state = inspect(run)
    assert (state.action, state.done_steps, state.args()) == (TRAIN, 0, run.train_args())


def test_a_finished_run_with_the_planned_config_is_skipped(plan):
    run = _grpo(plan)
    _write(run.out, _logged(run), "grpo", 4, "finished")
    state = inspect(run)
    assert (state.action, state.done_steps, state.args()) == (SKIP, 4, [])


def test_the_objective_is_compared_as_the_figures_compare_it(plan):
    """GRPO trained with an explicit --kl-beta 0.001 (its default) is the same variant: skipped, not a conflict."""
    run = _grpo(plan)
    _write(run.out, _logged(run, kl_beta=0.001, kl_target="ref"), "grpo", 4, "finished")
    assert inspect(run).action == SKIP


@pytest.mark.parametrize(
    ("state", "status", "detail"),
    [
        ("stopped", {"error": "interrupted"}, "stopped after 2/4 steps"),
        ("failed", {"error": "RuntimeError: boom"}, "failed after 2/4 steps"),
        ("running", {}, "crashed (status running, no trainer alive) after 2/4 steps"),
    ],
)
def test_partial_runs_are_resumed(plan, state, status, detail):
    run = _grpo(plan)
    _write(run.out, _logged(run), "grpo", 2, state, **status)
    if state == "running":  # as a SIGKILL leaves it: the pid in status.json is gone
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        _set_pid(run.out, int(dead.stdout))
    got = inspect(run)
    assert (got.action, got.done_steps, got.detail) == (RESUME, 2, detail)
    assert got.args() == ["train", "--out", str(run.out), "--resume", "--no-progress"]


def test_a_shorter_finished_run_is_extended(plan):
    run = _grpo(plan)
    _write(run.out, _logged(run, steps=3), "grpo", 3, "finished")
    got = inspect(run)
    assert (got.action, got.resume_steps) == (RESUME, 4)
    assert got.args() == ["train", "--out", str(run.out), "--resume", "--steps", "4", "--no-progress"]


def test_a_run_being_trained_is_not_touched(plan):
    run = _grpo(plan)
    _write(run.out, _logged(run), "grpo", 1, "running")
    # a live process whose command line looks like a trainer's
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "training", "train"])
    try:
        _set_pid(run.out, proc.pid)
        with pytest.raises(Conflict, match=f"being trained right now \\(pid {proc.pid}\\)"):
            inspect(run)
    finally:
        proc.kill()
        proc.wait()
    assert inspect(run).action == RESUME  # once it is gone, the run is resumed


@pytest.mark.parametrize(
    ("changes", "method", "message"),
    [
        ({"lr": 3e-4}, "grpo", "lr: run has 0.0003, plan wants 0.0001"),
        ({"clip_mode": "bidirectional"}, "grpo", "variant: run has 'grpo\\[clip_mode=bidirectional\\]'"),
        ({"kl_beta": 0.0}, "grpo", "variant: run has 'grpo\\[kl_beta=0\\]', plan wants 'grpo'"),
        ({"steps": 9}, "grpo", "trained for 9 steps and the plan asks 4"),
    ],
)
def test_another_config_in_the_folder_is_a_conflict(plan, changes, method, message):
    run = _grpo(plan)
    _write(run.out, _logged(run, **changes), method, 1, "stopped")
    with pytest.raises(Conflict, match=message):
        inspect(run)


def test_folders_that_are_not_runs_and_incomplete_finished_runs_are_conflicts(plan):
    run = _grpo(plan)
    run.out.mkdir(parents=True)
    (run.out / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match=r"holds files but no run\.json"):
        inspect(run)
    (run.out / "notes.txt").unlink()
    _write(run.out, _logged(run), "grpo", 4, "finished")
    (run.out / "metrics" / "step_000002.parquet").unlink()
    with pytest.raises(Conflict, match="marked finished but logs 3 of its 4 steps"):
        inspect(run)


def test_a_run_logged_before_a_setting_existed_counts_as_that_settings_default(tmp_path, plan):
    """run.json files from an older trainer lack later settings: the default is what those runs used."""
    run = _grpo(plan)
    logged = _logged(run)
    assert logged["logit_chunk_tokens"] == 0 and logged["chat_template"] is True
    for added_later in ("logit_chunk_tokens", "chat_template", "train_data", "save_final_model"):
        del logged[added_later]
    _write(run.out, logged, "grpo", 4, "finished")
    assert inspect(run).action == SKIP
    # the same folder under a plan that asks a non-default value of a setting the run never logged
    chunked = make_plan(preset="tiny", seeds=[0], runs_root=tmp_path / "runs", steps=4, figures=["fig2"],
                        train_settings={"logit_chunk_tokens": 16})  # fmt: skip
    with pytest.raises(
        Conflict, match=r"logit_chunk_tokens: run has '<not logged: default 0>', plan wants 16"
    ):
        inspect(_grpo(chunked))


def test_a_job_queued_or_running_for_a_planned_run_is_a_conflict(plan):
    """The app (or another pipeline) queued the same run through the job runner: the pipeline must not start it
    too. Once that job is cancelled, the run is trained as planned."""
    from workbench.jobs import enqueue, read_job, stop_jobs

    run = _grpo(plan)
    enqueue(run.out.parent, run.name, [sys.executable, "-c", "pass"], queue="elsewhere", by="Train page")
    with pytest.raises(Conflict, match=r"a job is queued for it .* started by Train page"):
        inspect(run)
    stop_jobs([read_job(run.out.parent, run.name)])
    assert inspect(run).action == TRAIN
