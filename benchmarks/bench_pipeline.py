"""Wall time of the full figure pipeline on the embedded default (``python -m training paper-figures --preset tiny
--seeds 3``): target under one hour on this 2-core machine.

    python benchmarks/bench_pipeline.py                              # from the pipeline's own session record
    python benchmarks/bench_pipeline.py --record PATH/paper-figures.jsonl
    python benchmarks/bench_pipeline.py --per-run-seconds 150        # no complete record: estimate from this
    nice python benchmarks/bench_pipeline.py --run                   # run the whole pipeline now (about an hour)

The measurement is the pipeline's own record (``<runs root>/paper-figures.jsonl``: a ``session_start`` listing
every run and its action, ``job_end`` per run, ``session_end`` with the wall seconds and the mean load). A session
counts as the full pipeline only if it trained every run from scratch and ended ``ok`` (figures built). Without
such a session the result is an estimate, labelled so: the plan's number of runs x the measured seconds of one
run (``--per-run-seconds``, e.g. from ``bench_training.py``) / the parallel jobs (one per core).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, load1, result, write_results

TARGET_S = 3600.0
COMMAND = ["-m", "training", "paper-figures", "--preset", "tiny", "--seeds", "3"]


def pipeline_available() -> bool:
    proc = subprocess.run([sys.executable, *COMMAND[:3], "--help"], cwd=ROOT, capture_output=True, text=True)
    return proc.returncode == 0


def planned_runs(runs_root: Path) -> int:
    """Number of runs in the plan (from ``--dry-run``)."""
    proc = subprocess.run([sys.executable, *COMMAND, "--dry-run", "--runs-root", str(runs_root)], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    found = re.search(r"=\s*(\d+)\s+runs", proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"could not read the plan from --dry-run:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return int(found.group(1))


STUDY_COMMAND = ["-m", "training", "study", "offpolicy"]  # its default: 3 lags x 7 variants x 5 seeds
TINY_STEPS = 100  # the steps of the run the per-run seconds were measured on (the tiny preset's)


def planned_study(runs_root: Path) -> tuple[int, int]:
    """(runs, steps per run) of the off-policy study's default plan (from its ``--dry-run``)."""
    proc = subprocess.run([sys.executable, *STUDY_COMMAND, "--dry-run", "--runs-root", str(runs_root)], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    found = re.search(r"=\s*(\d+)\s+runs of (\d+) steps", proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(
            f"could not read the study's plan from --dry-run:\n{(proc.stdout + proc.stderr)[-2000:]}"
        )
    return int(found.group(1)), int(found.group(2))


def plan_estimate(runs: int, steps: int, setup_s: float, per_step_s: float, jobs: int) -> float:
    """Wall seconds of ``runs`` runs of ``steps`` steps, ``jobs`` at once: runs x (setup + steps x seconds per
    step) / jobs (no figures, no queueing losses)."""
    return runs * (setup_s + steps * per_step_s) / jobs


def _time(ev: dict) -> datetime.datetime:
    return datetime.datetime.fromisoformat(ev["time"])


def sessions(record: Path) -> list[dict]:
    """The sessions in a pipeline record: ``{"start": event, "end": event or None, "jobs": [job_end events],
    "last": the session's last event}``."""
    out: list[dict] = []
    for line in record.read_text().splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("event") == "session_start":
            out.append({"start": ev, "end": None, "jobs": [], "figures": None, "last": ev, "loads": []})
        if out and isinstance(ev.get("load1"), int | float):
            out[-1]["loads"].append(float(ev["load1"]))
        if ev.get("event") == "session_start":
            continue
        if not out:
            continue
        out[-1]["last"] = ev
        if ev.get("event") == "job_end":
            out[-1]["jobs"].append(ev)
        elif ev.get("event") == "figures":
            out[-1]["figures"] = ev
        elif ev.get("event") == "session_end":
            out[-1]["end"] = ev
    return out


def full_pipeline(record: Path) -> dict | None:
    """The latest complete pipeline in the record: the sessions from one that trains every run from scratch up
    to the first that ends ``ok`` (figures built), with every run's training ended with exit 0 on the way (a
    pipeline interrupted and resumed spans several sessions). ``None`` if there is none.

    Returns ``wall_s`` (the sum of the sessions' spans, start to end, or to the last event of a session that
    was interrupted), ``run_seconds`` (the sum of every run's own time, job_end), ``runs``, ``sessions``,
    ``figures_s``, the mean load and the CPUs and nice of the first session."""
    all_sessions = sessions(record)
    for i in range(len(all_sessions) - 1, -1, -1):
        first = all_sessions[i]
        runs = first["start"].get("runs", {})
        if not runs or not all(a == "train" for a in runs.values()):
            continue
        chain = []
        for s in all_sessions[i:]:
            chain.append(s)
            if (s["end"] or {}).get("result") == "ok":
                break
        else:
            continue  # this pipeline has not finished: look for an earlier one
        done = {j["run"] for s in chain for j in s["jobs"] if j.get("rc") == 0}
        if not set(runs) <= done:
            continue
        spans = [(_time(s["end"] or s["last"]) - _time(s["start"])).total_seconds() for s in chain]
        loads = [x for s in chain for x in s["loads"]]
        figures = [float(s["figures"]["seconds"]) for s in chain if s["figures"]]
        return {
            "wall_s": sum(spans),
            "spans_s": spans,
            "run_seconds": sum(float(j["seconds"]) for s in chain for j in s["jobs"]),
            "runs": len(runs),
            "sessions": len(chain),
            "interrupted": sum(1 for s in chain if s["end"] is None),
            "figures_s": sum(figures),
            "load1_mean": round(sum(loads) / len(loads), 2) if loads else float("nan"),
            "load1_range": [min(loads, default=float("nan")), max(loads, default=float("nan"))],
            "cpus": first["start"].get("cpus"),
            "nice": first["start"].get("nice"),
            "start": first["start"]["time"],
            "end": chain[-1]["end"]["time"],
        }
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, default=ROOT / "runs" / "paper-tiny" / "paper-figures.jsonl",
                    help="the pipeline's session record (default: runs/paper-tiny/paper-figures.jsonl)")  # fmt: skip
    ap.add_argument("--per-run-seconds", type=float, default=None,
                    help="measured seconds of one tiny run (setup + 100 steps): for the estimate")  # fmt: skip
    ap.add_argument("--per-run-cpu-seconds", type=float, default=None,
                    help="CPU seconds of one tiny run (trainer + grader workers, + setup): the idle-machine estimate")  # fmt: skip
    ap.add_argument("--setup-seconds", type=float, default=0.0,
                    help="the setup part of --per-run-seconds (scaled apart from the steps for the study)")  # fmt: skip
    ap.add_argument("--run", action="store_true", help="run the whole pipeline now into --runs-root")
    ap.add_argument("--runs-root", type=Path, default=ROOT / "cache" / "bench_pipeline" / "runs",
                    help="where --run trains (default: cache/bench_pipeline/runs; must not hold other runs)")  # fmt: skip
    ap.add_argument("--json", default=None, help="write the result record here")
    args = ap.parse_args(argv)
    load0 = load1()
    sizes = "preset tiny, seeds 0-2, every run the figures declare (100 steps each), then every figure"
    label = "full figure pipeline (paper-figures, tiny, 3 seeds): wall time"
    record = args.record
    if args.run:
        if not pipeline_available():
            print(
                "bench_pipeline: `python -m training paper-figures` is not in this checkout", file=sys.stderr
            )
            return 2
        args.runs_root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, *COMMAND, "--runs-root", str(args.runs_root)], cwd=ROOT)
        print(f"pipeline exit {rc} after {time.perf_counter() - t0:.0f} s")
        record = args.runs_root / "paper-figures.jsonl"
    found = full_pipeline(record) if record.is_file() else None
    records = []
    if found is None:
        print(f"bench_pipeline: no complete pipeline in {record}: nothing measured")
        records.append(result("pipeline", label, float("nan"), "s", TARGET_S, "lower",
                              ours=f"not measured: no complete pipeline in {record}", baseline="-", sizes=sizes,
                              load=(load0, load1()), status="pending"))  # fmt: skip
    else:
        f = found
        resumed = (f" in {f['sessions']} sessions ({f['interrupted']} interrupted, then resumed; spans "
                   f"{', '.join(f'{x / 60:.1f}' for x in f['spans_s'])} min)" if f["sessions"] > 1 else "")  # fmt: skip
        ours = (f"{f['wall_s'] / 60:.1f} min wall{resumed}, {f['start']} to {f['end']}: {f['runs']} runs (their own "
                f"times sum to {f['run_seconds'] / 60:.0f} min, {f['cpus']} parallel jobs at nice {f['nice']}) + "
                f"figures {f['figures_s']:.0f} s; 1-min load over the log's events: mean {f['load1_mean']:g} "
                f"(range {f['load1_range'][0]:g}-{f['load1_range'][1]:g}) on {f['cpus']} cores; from the pipeline's own log {record}, not rerun here")  # fmt: skip
        print(f"bench_pipeline: {ours}")
        records.append(result("pipeline", label, round(f["wall_s"], 1), "s", TARGET_S, "lower", ours=ours,
                              baseline="-", sizes=f"{sizes}; {f['runs']} runs", load=tuple(f["load1_range"]),
                              status="from its log", **f))  # fmt: skip
        if args.per_run_seconds is not None:
            jobs = f["cpus"] or os.cpu_count() or 1
            est = f["runs"] * args.per_run_seconds / jobs + f["figures_s"]
            ours = (f"ESTIMATE {est / 60:.1f} min = {f['runs']} runs x {args.per_run_seconds:.0f} s (one run of "
                    f"this code, wall time measured in this suite at its load) / {jobs} parallel jobs + figures "
                    f"{f['figures_s']:.0f} s (from the log)")  # fmt: skip
            extra = {}
            if args.per_run_cpu_seconds is not None:
                idle = f["runs"] * args.per_run_cpu_seconds / jobs + f["figures_s"]
                extra["idle_estimate_s"] = round(idle, 1)
                ours += (f"; on an idle machine (CPU seconds of a run, {args.per_run_cpu_seconds:.0f} s, for its "
                         f"wall time): {idle / 60:.1f} min")  # fmt: skip
            print(f"bench_pipeline: {ours}")
            records.append(result("pipeline_estimate", "full figure pipeline at this code's per-run time (estimate)",
                                  round(est, 1), "s", TARGET_S, "lower", ours=ours, baseline="-",
                                  sizes=f"{sizes}; {f['runs']} runs", load=(load0, load1()), status="estimate",
                                  **extra))  # fmt: skip
    if args.per_run_seconds is not None:
        records += plan_estimates(args, load0, have_pipeline_estimate=any(
            r["key"] == "pipeline_estimate" for r in records))  # fmt: skip
    write_results(args.json, records)
    return 0


def plan_estimates(args: argparse.Namespace, load0: float, have_pipeline_estimate: bool) -> list[dict]:
    """Dry-run estimates of the wall time of the paper-figures pipeline (when its log gave none) and of the
    off-policy study's default plan: the plan's runs (``--dry-run``) x one run of this code (setup + steps x the
    measured seconds per step of the tiny preset) / one job per core; figures and reports not included. With
    ``--per-run-cpu-seconds`` the value is the idle-machine estimate (a run's CPU seconds for its wall time: on
    a loaded machine the wall time measures the other jobs too), and the wall-time estimate is given beside it."""
    import tempfile

    jobs = os.cpu_count() or 1
    setup = args.setup_seconds
    per_step = (args.per_run_seconds - setup) / TINY_STEPS
    cpu_step = None if args.per_run_cpu_seconds is None else (args.per_run_cpu_seconds - setup) / TINY_STEPS
    basis = (f"one tiny run of this code measured in this suite: setup {setup:.0f} s + {per_step:.2f} s/step wall"
             + (f", {cpu_step:.2f} CPU s/step" if cpu_step is not None else ""))  # fmt: skip

    def estimate(key: str, label: str, runs: int, steps: int, sizes: str) -> dict:
        wall = plan_estimate(runs, steps, setup, per_step, jobs)
        idle = None if cpu_step is None else plan_estimate(runs, steps, setup, cpu_step, jobs)
        value = wall if idle is None else idle
        ours = (f"DRY-RUN ESTIMATE, {'idle machine (CPU seconds)' if idle is not None else 'wall time'}: "
                f"{value / 60:.1f} min = {runs} runs (--dry-run) x (setup + {steps} steps) / {jobs} parallel jobs; "
                f"{basis}; at this suite's load (wall): {wall / 60:.1f} min; figures not included")  # fmt: skip
        print(f"bench_pipeline: {label}: {ours}")
        return result(key, label, round(value, 1), "s", TARGET_S, "lower", ours=ours, baseline="-", sizes=sizes,
                      load=(load0, load1()), status="estimate", wall_estimate_s=round(wall, 1))  # fmt: skip

    out = []
    with tempfile.TemporaryDirectory(prefix="bench_plans_") as tmp:
        if not have_pipeline_estimate:
            runs = planned_runs(Path(tmp) / "pipeline")
            out.append(estimate("pipeline_estimate", "full figure pipeline at this code's per-run time (estimate)",
                                runs, TINY_STEPS, f"paper-figures --preset tiny --seeds 3: {runs} runs x {TINY_STEPS} "
                                "steps"))  # fmt: skip
        runs, steps = planned_study(Path(tmp) / "study")
        out.append(estimate("study_estimate", "off-policy study, default plan, wall time (estimate)", runs, steps,
                            f"study offpolicy (default lags, variants, seeds): {runs} runs x {steps} steps"))  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main())
