"""The Paper figures page's "train the missing runs": the pipeline's own plan for one figure, the exact command
that trains it (``python -m training paper-figures --figures NAME ...``), started through the one job runner
(``workbench.jobs``) and followed run by run.

The plan and each run's state come from ``training.pipeline`` (``make_plan``, ``inspect_all``), the same code the
command runs, so the page shows what the command will do; nothing here re-derives which runs a figure needs.
``training`` is imported only when the section is opened (it loads the trainer's model code).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app_lib import jobs
from app_lib.config import REPO_ROOT
from app_lib.ui import md_code, md_escape, md_literal
from workbench.jobs import start_job

BY = "Paper figures page"


def job_name(figure: str) -> str:
    """The runner's job name of a figure's pipeline: ``paper-figures-fig2``."""
    return f"paper-figures-{figure}"


def pipeline_args(
    figure: str, preset: str, seeds: int, steps: int | None, root: Path, at_once: int
) -> list[str]:
    """Arguments of ``python -m training`` that train the runs ``figure`` needs under ``root`` (no figure files:
    the page draws the figure from the runs)."""
    args = ["paper-figures", "--figures", figure, "--preset", preset, "--seeds", str(int(seeds))]
    if steps is not None:
        args += ["--steps", str(int(steps))]
    return [
        *args,
        "--runs-root",
        str(root),
        "--jobs",
        str(int(at_once)),
        "--no-figures",
        "--status-every",
        "2",
    ]


@dataclass(frozen=True)
class PlannedRow:
    run: str
    variant: str
    used_by: str
    steps: int
    action: str  # train / resume / skip, or "" when not inspected (the pipeline is running)
    detail: str
    out: Path


def plan_rows(
    figure: str, preset: str, seeds: int, steps: int | None, root: Path, inspect: bool
) -> tuple[list[PlannedRow], str | None]:
    """The runs ``paper-figures --figures FIGURE`` plans, with what it would do to each (``inspect``); the
    second item is the pipeline's refusal (a bad setting or a conflicting folder), if any."""
    from training.pipeline.plan import PlanError, make_plan
    from training.pipeline.state import Conflict, inspect_all

    try:
        plan = make_plan(
            preset=preset, seeds=range(int(seeds)), runs_root=root, steps=steps, figures=[figure]
        )
    except (PlanError, ValueError) as e:
        return [], str(e)
    rows = {r.name: PlannedRow(r.name, r.variant.label, r.variant.used_by(), r.steps, "", "", r.out)
            for r in plan.runs}  # fmt: skip
    if not inspect:
        return list(rows.values()), None
    try:
        states = inspect_all(plan.runs, "plan")
    except Conflict as e:
        return list(rows.values()), str(e)
    out = []
    for s in states:
        row = rows[s.run.name]
        out.append(PlannedRow(row.run, row.variant, row.used_by, row.steps, s.action, s.detail, row.out))
    return out, None


def logged_steps(run_dir: Path) -> int:
    """Complete steps of a run folder (its ``metrics/step_*.parquet`` files), as the pipeline counts them."""
    from training.pipeline.progress import logged_steps as count

    return count(run_dir)


def _progress_table(rows: list[PlannedRow], root: Path) -> tuple[pd.DataFrame, int, int]:
    states, done = [], []
    for r in rows:
        job = jobs.read_job(root, r.run)
        states.append(jobs.job_state(job) if job is not None else (r.detail or "not started"))
        done.append(min(logged_steps(r.out), r.steps))
    frame = pd.DataFrame({"run": [r.run for r in rows], "variant": [r.variant for r in rows], "state": states,
                          "steps": [f"{d} / {r.steps}" for d, r in zip(done, rows, strict=True)]})  # fmt: skip
    return frame, sum(done), sum(r.steps for r in rows)


def render(figure: str, root: Path, *, expanded: bool = False) -> None:
    """The section: settings, the plan and its command, the start and stop buttons, the progress."""
    name = job_name(figure)
    job = jobs.read_job(root, name)
    active = job is not None and jobs.job_state(job) in ("queued", "running")
    st.subheader("Train the missing runs")
    if not jobs.trainer_available():
        st.caption(
            "The training module (`python -m training`) is not in this checkout, so the app cannot train."
        )
        return
    if not st.toggle(
        "Plan the runs this figure needs (the plan of `python -m training paper-figures --figures "
        f"{figure}`)", value=expanded or active, key=f"pf_plan_{figure}",
    ):  # fmt: skip
        return
    settings = _settings(figure, job if active else None)
    args = pipeline_args(figure, root=root, **settings)
    rows, refusal = plan_rows(
        figure, settings["preset"], settings["seeds"], settings["steps"], root, not active
    )
    if active and job is not None:
        _follow(figure, root, job, rows)
        return
    if refusal:
        st.error(md_literal(refusal), icon=":material/block:")
        return
    todo = [r for r in rows if r.action != "skip"]
    frame = pd.DataFrame({"run": [r.run for r in rows], "variant": [r.variant for r in rows],
                          "for": [r.used_by for r in rows], "action": [r.action for r in rows],
                          "state": [r.detail for r in rows]})  # fmt: skip
    st.dataframe(frame, hide_index=True)
    from training.pipeline.plan import shell_command

    st.markdown(f"Runs it: {md_code(shell_command(args))}")
    if job is not None:
        st.caption(f"Last time: {md_escape(jobs.job_state(job))} (log {md_code(job.log)}).")
    if not todo:
        st.success("Every run this figure needs is trained: pick them above.")
        return
    if st.button(f"Train the {len(todo)} missing run(s)", key=f"pf_start_{figure}", type="primary",
                 icon=":material/play_arrow:"):  # fmt: skip
        try:
            start_job(root, name, [sys.executable, "-m", "training", *args], cwd=REPO_ROOT, by=BY)
        except ValueError as e:
            st.error(md_literal(e))
            return
        st.rerun()


def cli_defaults() -> argparse.Namespace:
    """The defaults of ``python -m training paper-figures`` (preset, seeds, steps, jobs), read from its parser."""
    from training.pipeline.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([])


def _settings(figure: str, running: jobs.Job | None) -> dict[str, Any]:
    """The pipeline's settings: from the widgets, or (while it runs) from the running command itself."""
    if running is not None:
        cmd = running.command

        def value(flag: str) -> str | None:  # a damaged record may lack the value: then None
            at = cmd.index(flag) + 1 if flag in cmd else len(cmd)
            return cmd[at] if at < len(cmd) else None

        def integer(flag: str) -> int | None:
            text = value(flag)
            return int(text) if text is not None and text.isdigit() and int(text) > 0 else None

        return {"preset": value("--preset") or "tiny", "seeds": integer("--seeds") or 1,
                "steps": integer("--steps"), "at_once": integer("--jobs") or 1}  # fmt: skip
    default = cli_defaults()
    a, b, c, d = st.columns(4)
    preset = a.selectbox(
        "Preset", jobs.PRESETS, index=jobs.PRESETS.index(default.preset), key=f"pf_preset_{figure}"
    )
    seeds = b.number_input(
        "Seeds (0..N-1)", min_value=1, max_value=64, value=default.seeds, key=f"pf_seeds_{figure}"
    )
    steps = c.number_input(
        "Steps (0: the preset's)", min_value=0, max_value=100_000, value=default.steps or 0,
        key=f"pf_steps_{figure}",
    )  # fmt: skip
    at_once = d.number_input(
        "At most at once", min_value=1, max_value=64, value=min(default.jobs, 64), key=f"pf_jobs_{figure}",
        help="Trainers at the same time (--jobs); the others wait in the pipeline's queue.",
    )  # fmt: skip
    return {"preset": preset, "seeds": int(seeds), "steps": int(steps) or None, "at_once": int(at_once)}


def _follow(figure: str, root: Path, job: jobs.Job, rows: list[PlannedRow]) -> None:
    """Progress of a running pipeline, redrawn every 2 s until it ends."""
    from training.pipeline.plan import shell_command

    st.markdown(f"Running: {md_code(shell_command(job.command[3:]))} (pid {job.pid})")
    if st.button("Stop", key=f"pf_stop_{figure}", icon=":material/stop:"):
        jobs.stop_job(root, job, grace=60)  # the pipeline stops its trainers first (SIGINT, up to 60 s)
        st.rerun()

    @st.fragment(run_every=2)
    def progress() -> None:
        now = jobs.read_job(root, job.name) or job
        state = jobs.job_state(now)
        frame, done, total = _progress_table(rows, root)
        st.progress(min(done / total, 1.0) if total else 0.0, text=f"{state}: {done} / {total} steps")
        st.dataframe(frame, hide_index=True)
        tail = jobs.log_tail(now, lines=6)
        if tail:
            st.code(tail, language=None)
        if state not in ("queued", "running"):
            st.rerun()

    progress()
