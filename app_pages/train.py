"""Page 5: start a training run in the background (python -m training train ...), follow it, stop it."""

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
    seed = c4.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    with st.expander(
        f"{method_label(method)} settings (defaults: the method's own; any variant can be trained)"
    ):
        chosen = objective_widgets(method, key=f"train_hp_{method}")
    name = st.text_input(
        "Run name", key="train_name", placeholder="leave empty for METHOD-PRESET-sSEED, e.g. real-tiny-s0"
    )
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")

if submitted:
    run_name = name.strip() or f"{method}-{preset}-s{int(seed)}"
    try:
        resolve_run_dir(root, run_name)
        job = jobs.start_training(root, run_name, method, preset, int(steps), int(seed), chosen)
    except UnsafeRunName as e:
        st.error(f"Refused: {md_literal(e)}")
    except ValueError as e:
        st.error(md_literal(e))
    else:
        st.success(f"Started **{md_escape(run_name)}** (pid {job.pid}): {md_code(' '.join(job.command[1:]))}")

job_list = jobs.list_jobs(root)

st.subheader("Every run under the root")
cards = data.scan(root)
if cards:
    started_here = {j.name for j in job_list}
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
                "started from": ["this app" if c.name in started_here else "elsewhere" for c in cards],
            }
        ),
        hide_index=True,
    )
    st.caption(
        "Runs started anywhere (the command line, another session) appear here within a few seconds. "
        "The app can stop the runs it started (below); stop others where they run (Ctrl-C), then resume "
        "them with `--resume`."
    )
else:
    st.caption(f"No run folder under {md_code(root)} yet.")

st.subheader("Jobs started from the app")
if not job_list:
    st.caption(f"None yet. Their output goes to {md_code(root / jobs.JOBS_DIR)}.")


def _jobs_body(refreshing: bool = False) -> None:
    listed = jobs.list_jobs(root)
    for job in listed:
        card = data.read_card(Path(root), job.name)
        alive = job.alive
        with st.container(border=True):
            head, btn = st.columns([5, 1])
            if alive:
                state = "running"
            elif job.stopped:
                state = "stopped from the app"
            elif card.ok and card.state in ("finished", "failed", "stopped"):
                state = card.state
            else:
                state = "ended" + (f" (exit code {job.returncode})" if job.returncode is not None else "")
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.started))
            head.markdown(
                f"**{md_escape(job.name)}** · {md_escape(state)} · pid {job.pid} · started {started}"
            )
            if alive and btn.button("Stop", key=f"stop_{job.name}", icon=":material/stop:"):
                jobs.stop_job(root, job)
                st.rerun()
            if card.ok:
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
            elif alive:
                st.caption("Waiting for the trainer to create the run folder…")
            else:
                st.caption(f"Run folder: {md_literal(card.error)}")
            tail = jobs.log_tail(job, lines=12)
            if tail:
                st.code(tail, language=None)
    if refreshing and not any(j.alive for j in listed):
        st.rerun()  # the last job ended: redraw the page once, without the timer


if job_list:
    if any(j.alive for j in job_list):
        st.fragment(run_every=2)(_jobs_body)(refreshing=True)
    else:
        _jobs_body()
