"""What an existing run directory means for a planned run: train it, resume it, skip it, or stop (a conflict).

A planned run's directory is
- absent or empty: ``train`` (a new run);
- a run whose logged config is the planned one (objective compared as the figures compare it, by method +
  resolved hyper-parameters; settings a resume may change, ``training.config.RESUME_MUTABLE``, ignored) and
  - finished with the planned number of steps, every step logged: ``skip`` (finished with steps missing is a
    conflict: the trainer would not redo them);
  - stopped, failed, crashed (status ``running`` with no live trainer) or finished with fewer steps: ``resume``
    (``train --resume``, with ``--steps N`` when the logged count differs; the trainer continues from its last
    checkpoint and redoes the steps after it);
- anything else is a ``Conflict`` naming the directory and what differs: another config, more steps than
  planned, files without ``run.json``, a trainer still running on it, or a job queued or running for it
  (``workbench.jobs``). Nothing is overwritten or deleted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from training.config import OBJECTIVE_FIELDS, RESUME_MUTABLE, TrainConfig
from training.pipeline.plan import PlannedRun
from training.runlock import visible_entries
from workbench.jobs import QUEUED, RUNNING, job_state, jobs_dir, read_job
from workbench.liveness import run_is_live
from workbench.runlog import RunFormatError, open_run
from workbench.stats.variants import variant_from

TRAIN, RESUME, SKIP = "train", "resume", "skip"
# Compared field by field; the objective is compared through its variant, the step count on its own.
COMPARED = tuple(
    f.name
    for f in fields(TrainConfig)
    if f.metadata.get("cli") is not False
    and f.name not in RESUME_MUTABLE
    and f.name not in OBJECTIVE_FIELDS
    and f.name != "steps"
)


# A setting absent from an older run.json (added to the trainer after the run was made) had its default then:
# the trainer's own ``train --resume`` reads such a config the same way (``TrainConfig.from_dict``).
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.name in COMPARED}


class Conflict(Exception):
    """A planned run's directory holds something the pipeline must not touch; the message says what to do."""


@dataclass(frozen=True)
class RunState:
    run: PlannedRun
    action: str  # TRAIN, RESUME or SKIP
    done_steps: int  # complete steps logged so far
    detail: str  # for people: "new", "finished (100 steps)", "stopped at step 40", ...
    resume_steps: int | None = None  # --steps to pass on resume (the logged run asks for another count)

    def args(self) -> list[str]:
        """``python -m training`` arguments of the job (empty for ``skip``)."""
        if self.action == TRAIN:
            return self.run.train_args()
        if self.action == RESUME:
            return self.run.resume_args(self.resume_steps)
        return []


def config_differences(logged: dict[str, Any], planned: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Settings where a logged config differs from the planned one: name -> (logged, planned).

    The objective counts as one setting, ``variant``, compared by method + resolved hyper-parameters. A setting
    the logged config lacks counts as its ``TrainConfig`` default (the run predates it), so it differs only where
    the plan asks another value.
    """
    want = planned.to_log()
    diff = {}
    for k in COMPARED:
        got = logged.get(k, _DEFAULTS.get(k, "<missing>"))
        if got != want[k]:
            diff[k] = (got if k in logged else f"<not logged: default {got!r}>", want[k])
    planned_variant = variant_from(planned.method, asdict(planned.hparams()))
    try:
        got = variant_from(str(logged.get("method")), logged.get("hparams") or {})
    except (ValueError, TypeError) as e:
        diff["variant"] = (f"unreadable ({e})", planned_variant.key)
        return diff
    if got != planned_variant:
        diff["variant"] = (got.key, planned_variant.key)
    return diff


def inspect(run: PlannedRun) -> RunState:
    """The state of ``run``'s directory; raises ``Conflict`` where the pipeline must not go on."""
    out = run.out
    job = read_job(out.parent, run.name)
    if job is not None and job_state(job) in (QUEUED, RUNNING):
        raise Conflict(
            f"{out}: a job is {job_state(job)} for it ({jobs_dir(out.parent) / run.name}.json, started by "
            f"{job.by or 'another process'}): wait for it or stop it, then re-run"
        )
    if not out.exists() or (out.is_dir() and not visible_entries(out)):
        return RunState(run, TRAIN, 0, "new")
    if not out.is_dir():
        raise Conflict(f"{out} exists and is not a folder: move it away")
    if not (out / "run.json").is_file():
        raise Conflict(f"{out} holds files but no run.json (not a run): move it away or delete it")
    try:
        logged = open_run(out)
        status = logged.status()
    except RunFormatError as e:
        raise Conflict(f"{out}: unreadable run ({e}): move it away or delete it") from None
    diff = config_differences(logged.config, run.config)
    if diff:
        what = "; ".join(f"{k}: run has {a!r}, plan wants {b!r}" for k, (a, b) in sorted(diff.items()))
        raise Conflict(
            f"{out} holds a run with another config ({what}): move it away, or choose another --runs-root"
        )
    logged_steps = logged.config.get("steps")
    if not isinstance(logged_steps, int):
        raise Conflict(f"{out}/run.json: config.steps is {logged_steps!r}, not an int: move the run away")
    if logged_steps > run.steps:
        raise Conflict(
            f"{out} was trained for {logged_steps} steps and the plan asks {run.steps}: pass --steps "
            f"{logged_steps}, or move the run away"
        )
    done = len(logged.steps())
    state = status.get("state")
    if run_is_live(out, status):
        raise Conflict(
            f"{out} is being trained right now (pid {status['pid']}): wait for it or stop it, then re-run"
        )
    resume_steps = run.steps if logged_steps != run.steps else None
    if state == "finished" and logged_steps == run.steps and done == run.steps:
        return RunState(run, SKIP, done, f"finished ({done} steps)")
    if state == "finished" and logged_steps == run.steps:
        raise Conflict(
            f"{out} is marked finished but logs {done} of its {run.steps} steps (files were removed): move it "
            "away or delete it"
        )
    if state == "finished":
        detail = f"finished at {logged_steps} steps, extend to {run.steps}"
    elif state == "running":
        detail = f"crashed (status running, no trainer alive) after {done}/{run.steps} steps"
    else:
        detail = f"{state} after {done}/{run.steps} steps"
    return RunState(run, RESUME, done, detail, resume_steps)


def inspect_all(runs: list[PlannedRun] | tuple[PlannedRun, ...], what: str = "plan") -> list[RunState]:
    """``inspect`` every planned run; one ``Conflict`` listing every conflicting folder (nothing is started)."""
    states, conflicts = [], []
    for r in runs:
        try:
            states.append(inspect(r))
        except Conflict as e:
            conflicts.append(str(e))
    if conflicts:
        raise Conflict(
            f"{len(conflicts)} run folder(s) conflict with the {what}; nothing was started:\n  "
            + "\n  ".join(conflicts)
        )
    return states
