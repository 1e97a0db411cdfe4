"""Page 5: start training runs in the background (python -m training train ...; several seeds queued), follow
them, stop them. Every job under the runs root is listed: the app's and the pipeline's (workbench.jobs)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app_lib import data, jobs
from app_lib.config import get_runs_root
from app_lib.ui import md_code, md_escape, md_literal, method_label, objective_widgets
from workbench.methods import METHODS
from workbench.runs_root import UnsafeRunName, resolve_run_dir

st.title("Train")
root = get_runs_root()
available = jobs.trainer_available()
st.markdown(
    f"Start a run of the built-in trainer in the background. It writes to {md_code(f'{root}/NAME')} in the run format "
    "(`docs/run_format.md`) and appears on the **Runs** page as soon as its first step lands. The `tiny` preset "
    "trains on this machine's CPU; the `paper-*` presets expect a GPU."
)
if not available:
    st.warning(
        "The training module (`python -m training`) is not in this checkout, so the app cannot start runs here.",
        icon=":material/warning:",
    )

method = st.selectbox(
    "Method", list(METHODS), index=list(METHODS).index("real"), format_func=method_label, key="train_method"
)
with st.form("train_form", border=True):
    c2, c3, c4 = st.columns(3)
    preset = c2.selectbox("Preset", jobs.PRESETS)
    steps = c3.number_input("Steps", min_value=1, max_value=100_000, value=20, step=10)
    seed = c4.number_input(
        "Seed (the first, with several)", min_value=0, max_value=2**31 - 1, value=0, step=1
    )
    c5, c6, _ = st.columns(3)
    n_seeds = c5.number_input(
        "Seeds", min_value=1, max_value=64, value=1, step=1, key="train_seeds",
        help="Several seeds train one run each (NAME-sSEED), queued: at most the number on the right at a time.",
    )  # fmt: skip
    at_once = c6.number_input(
        "At most at once", min_value=1, max_value=32, value=1, step=1, key="train_at_once",
        help="How many of the seeds' runs train at the same time; the others wait in the queue.",
    )  # fmt: skip
    with st.expander(
        f"{method_label(method)} settings (defaults: the method's own; any variant can be trained)"
    ):
        chosen = objective_widgets(method, key=f"train_hp_{method}")
    name = st.text_input(
        "Run name", key="train_name", placeholder="leave empty for METHOD-PRESET-sSEED, e.g. real-tiny-s0"
    )
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")

if submitted:
    seeds = list(range(int(seed), int(seed) + int(n_seeds)))
    base = name.strip() or (f"{method}-{preset}-s{int(seed)}" if len(seeds) == 1 else f"{method}-{preset}")
    try:
        if len(seeds) == 1:
            resolve_run_dir(root, base)
            job = jobs.start_training(root, base, method, preset, int(steps), int(seed), chosen)
        else:
            queued = jobs.start_seeds(root, base, method, preset, int(steps), seeds, int(at_once), chosen)
    except UnsafeRunName as e:
        st.error(f"Refused: {md_literal(e)}")
    except ValueError as e:
        st.error(md_literal(e))
    else:
        if len(seeds) == 1:
            st.success(f"Started **{md_escape(base)}** (pid {job.pid}): {md_code(' '.join(job.command[1:]))}")
        else:
            st.success(
                f"Queued **{len(queued)}** runs ({md_escape(', '.join(j.name for j in queued))}), at most "
                f"{int(at_once)} at a time: {md_code(' '.join(queued[0].command[1:]))} and the same for each seed"
            )

job_list = [j for j in jobs.list_jobs(root) if j.by != jobs.QUEUE_RUNNER]
STARTED_BY_APP = ("", jobs.BY)  # "": records of the app's earlier job module
ACTIVE = ("queued", "running")
SHOWN = 24  # job cards drawn (newest first); a pipeline root can hold hundreds of records

st.subheader("Every run under the root")
cards = data.scan(root)
if cards:
    by_run = {j.run or j.name: j for j in reversed(job_list)}  # the newest job of each run

    def _origin(run: str) -> str:
        job = by_run.get(run)
        if job is None:
            return "elsewhere"
        return "this app" if job.by in STARTED_BY_APP else job.by

    st.dataframe(
        pd.DataFrame(
            {
                "run": [c.name for c in cards],
                "method": [c.label if c.ok else "" for c in cards],
                "state": [("live" if c.live else c.display_state) if c.ok else "unreadable" for c in cards],
                "steps": [
                    f"{c.last_step} / {c.total_steps}" if c.total_steps else str(c.last_step) for c in cards
                ],
                "pid": [str(c.status.get("pid", "")) if c.live else "" for c in cards],
                "started from": [_origin(c.name) for c in cards],
            }
        ),
        hide_index=True,
    )
    st.caption(
        "Runs started anywhere (the command line, another session) appear here within a few seconds. "
        "The app can stop every job recorded under the root (below: the Train page's, the pipeline's); stop "
        "others where they run (Ctrl-C), then resume them with `--resume`."
    )
else:
    st.caption(f"No run folder under {md_code(root)} yet.")

st.subheader("Jobs under this root")
if not job_list:
    st.caption(
        f"None yet. Their output and records go to {md_code(root / jobs.JOBS_DIR)}, with the pipeline's "
        "(`python -m training paper-figures`, `study`)."
    )


def _state_label(job: jobs.Job, state: str) -> str:
    if state == "stopped" and job.stopped and job.by in STARTED_BY_APP:
        return "stopped from the app"
    if state == "failed" and job.returncode is not None:
        return f"failed (exit code {job.returncode})"
    return {
        "queued": "queued (waits for a free slot)",
        "not started": "not started (its queue runner ended)",
    }.get(state, state)


def _jobs_body(refreshing: bool = False) -> None:
    listed = [j for j in jobs.list_jobs(root) if j.by != jobs.QUEUE_RUNNER]
    states = {j.name: jobs.job_state(j) for j in listed}
    active = [j for j in listed if states[j.name] in ACTIVE]
    if len(active) > 1:
        n_q = sum(states[j.name] == "queued" for j in active)
        left, right = st.columns([5, 1])
        left.markdown(f"**{len(active) - n_q} running, {n_q} queued**")
        if right.button("Stop all", key="stop_all_jobs", icon=":material/stop_circle:"):
            jobs.stop_jobs(active)
            st.rerun()
    for job in listed[:SHOWN]:
        state = states[job.name]
        card = data.read_card(Path(root), job.run) if job.run else None
        with st.container(border=True):
            head, btn = st.columns([5, 1])
            when = job.started or job.queued or 0.0
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
            pid = f" · pid {job.pid}" if job.pid else ""
            by = f" · by {md_escape(job.by)}" if job.by and job.by != jobs.BY else ""
            head.markdown(
                f"**{md_escape(job.name)}** · {md_escape(_state_label(job, state))}{pid}{by} · "
                f"{'started' if job.started else 'queued'} {at}"
            )
            if state in ACTIVE and btn.button("Stop", key=f"stop_{job.name}", icon=":material/stop:"):
                jobs.stop_job(root, job)
                st.rerun()
            if card is not None and card.ok:
                total = card.total_steps
                done = card.last_step
                if total:
                    st.progress(min(done / total, 1.0), text=f"step {done} / {total}")
                else:
                    st.caption(f"{done} complete step(s)")
                if done:
                    st.page_link(
                        "app_pages/runs.py",
                        label="Its dynamics on the Runs page",
                        icon=":material/monitoring:",
                    )
                if card.state == "failed" and card.status.get("error"):
                    st.error(md_literal(str(card.status["error"])[:1000]))
            elif state == "running":
                st.caption("Waiting for the trainer to create the run folder…")
            elif card is not None and state != "queued":
                st.caption(f"Run folder: {md_literal(card.error)}")
            tail = jobs.log_tail(job, lines=12)
            if tail:
                st.code(tail, language=None)
            runner = jobs.queue_runner(job) if state == jobs.ABANDONED else None
            if runner is not None:  # why it never started: the runner's own output
                st.caption(f"Its queue runner ({md_code(runner.name)}, {jobs.job_state(runner)}) wrote:")
                st.code(jobs.log_tail(runner, lines=12) or "(nothing)", language=None)
    if len(listed) > SHOWN:
        st.caption(
            f"{len(listed) - SHOWN} older job(s) not shown; their logs are in {md_code(root / jobs.JOBS_DIR)}."
        )
    if refreshing and not active:
        st.rerun()  # the last job ended: redraw the page once, without the timer


if job_list:
    if any(jobs.job_state(j) in ACTIVE for j in job_list):
        st.fragment(run_every=2)(_jobs_body)(refreshing=True)
    else:
        _jobs_body()
