"""A process that logs steps with ``RunWriter`` as fast as it can, for the kill tests.

``python -m tests.reliability.writer_loop RUN_DIR STEPS [PAUSE_S]`` creates the run (or, if it exists, resumes it after
its last complete step, as the trainer does after its last checkpoint) and writes steps up to ``STEPS``. Each
step's tables depend only on the step number, so a run killed and resumed any number of times must end up
equal, file for file, to one written in one go. Prints ``started`` once the writer is open. ``PAUSE_S`` (default
0) is a sleep after each step, so that on an idle machine the run does not end before a test's kills are armed
(a step's write itself is not slowed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from workbench.runlog import METRICS_SCHEMA, ROLLOUTS_SCHEMA, TOKENS_SCHEMA, RunWriter, open_run

ROLLOUTS, TOKENS_PER_ROLLOUT = 64, 96  # ~6k token rows a step: a write takes milliseconds, not microseconds


def step_tables(step: int) -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(step)
    n, t = ROLLOUTS, TOKENS_PER_ROLLOUT
    rollouts = {f.name: rng.random(n) for f in ROLLOUTS_SCHEMA}
    rollouts.update(
        step=np.full(n, step), minibatch=np.arange(n) // 16, rollout=np.arange(n), group=np.arange(n) // 8,
        prompt_id=np.arange(n), prompt=[f"p{step}.{i}" for i in range(n)], response=["r"] * n,
        answer=["1"] * n, used=np.ones(n, dtype=bool), group_size=np.full(n, 8), length=np.full(n, t),
        group_correct=np.full(n, 4), log_c=np.full(n, np.nan),
    )  # fmt: skip
    tokens = {f.name: rng.random(n * t) for f in TOKENS_SCHEMA}
    tokens.update(
        step=np.full(n * t, step), rollout=np.repeat(np.arange(n), t), pos=np.tile(np.arange(t), n),
        token_id=np.zeros(n * t, dtype=int), token=["x"] * (n * t),
    )  # fmt: skip
    metrics = {f.name: float(rng.random()) for f in METRICS_SCHEMA if f.name != "step"}
    metrics.update(grader_timeouts=0, grader_errors=0)
    return metrics, rollouts, tokens


def main(argv: list[str]) -> int:
    run_dir, steps = Path(argv[0]), int(argv[1])
    pause = float(argv[2]) if len(argv) > 2 else 0.0
    if (run_dir / "run.json").exists():
        done = max(open_run(run_dir).steps(), default=0)
        writer = RunWriter.resume(run_dir, last_step=done)
    else:
        done = 0
        writer = RunWriter.create(run_dir, name=run_dir.name, method="real", config={"steps": steps}, env={})
    print("started", flush=True)
    for step in range(done + 1, steps + 1):
        writer.write_step(step, *step_tables(step))
        writer.event("step", step=step)
        time.sleep(pause)
    writer.set_status("finished", last_step=steps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
