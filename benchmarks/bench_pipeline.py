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


def sessions(record: Path) -> list[dict]:
    """The sessions in a pipeline record: ``{"start": event, "end": event or None, "jobs": [job_end events]}``."""
    out: list[dict] = []
    for line in record.read_text().splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("event") == "session_start":
            out.append({"start": ev, "end": None, "jobs": []})
        elif out and ev.get("event") == "job_end":
            out[-1]["jobs"].append(ev)
        elif out and ev.get("event") == "session_end":
            out[-1]["end"] = ev
    return out


def full_session(record: Path) -> dict | None:
    """The latest session that trained every run from scratch and built the figures, if any."""
    for s in reversed(sessions(record)):
        runs = s["start"].get("runs", {})
        end = s["end"] or {}
        if runs and all(a == "train" for a in runs.values()) and end.get("result") == "ok":
            return s
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, default=ROOT / "runs" / "paper-tiny" / "paper-figures.jsonl",
                    help="the pipeline's session record (default: runs/paper-tiny/paper-figures.jsonl)")  # fmt: skip
    ap.add_argument("--per-run-seconds", type=float, default=None,
                    help="measured seconds of one tiny run (setup + 100 steps): for the estimate")  # fmt: skip
    ap.add_argument("--run", action="store_true", help="run the whole pipeline now into --runs-root")
    ap.add_argument("--runs-root", type=Path, default=ROOT / "cache" / "bench_pipeline" / "runs",
                    help="where --run trains (default: cache/bench_pipeline/runs; must not hold other runs)")  # fmt: skip
    ap.add_argument("--json", default=None, help="write the result record here")
    args = ap.parse_args(argv)
    load0 = load1()
    sizes = "preset tiny, seeds 0-2, every run the figures declare (100 steps each), then every figure"
    if not pipeline_available():
        print(
            "bench_pipeline: `python -m training paper-figures` is not in this checkout yet: nothing measured"
        )
        write_results(args.json, [result(
            "pipeline", "full figure pipeline (paper-figures, tiny, 3 seeds): wall time", float("nan"), "s",
            TARGET_S, "lower", ours="not measured: the pipeline is not in this checkout", baseline="-",
            sizes=sizes, load=(load0, load1()), status="pending",
        )])  # fmt: skip
        return 0
    record = args.record
    if args.run:
        args.runs_root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, *COMMAND, "--runs-root", str(args.runs_root)], cwd=ROOT)
        print(f"pipeline exit {rc} after {time.perf_counter() - t0:.0f} s")
        record = args.runs_root / "paper-figures.jsonl"
    session = full_session(record) if record.is_file() else None
    if session is not None:
        end, start = session["end"], session["start"]
        wall = float(end["seconds"])
        runs = len(start["runs"])
        status = "measured"
        ours = (f"{wall / 60:.1f} min for {runs} runs + figures (session of {start['time']}, {start.get('cpus')} "
                f"CPUs, nice {start.get('nice')}, mean 1-min load {end.get('load1_mean')}; training "
                f"{float(end.get('train_seconds', wall)) / 60:.1f} min)")  # fmt: skip
        load = (start.get("load1", load0), end.get("load1", load1()))
    else:
        if args.per_run_seconds is None:
            print(
                f"bench_pipeline: no complete session in {record} and no --per-run-seconds: nothing to report"
            )
            write_results(args.json, [result(
                "pipeline", "full figure pipeline (paper-figures, tiny, 3 seeds): wall time", float("nan"), "s",
                TARGET_S, "lower", ours=f"not measured: no complete session in {record}", baseline="-",
                sizes=sizes, load=(load0, load1()), status="pending",
            )])  # fmt: skip
            return 0
        runs = planned_runs(args.runs_root)
        jobs = os.cpu_count() or 1
        wall = runs * args.per_run_seconds / jobs
        status = "estimate"
        ours = (f"ESTIMATE {wall / 60:.1f} min = {runs} runs x {args.per_run_seconds:.0f} s per run (measured "
                f"now, one run alone) / {jobs} parallel jobs; figures not included")  # fmt: skip
        load = (load0, load1())
    print(f"bench_pipeline ({status}): {ours}; target < {TARGET_S / 60:.0f} min: "
          f"{'met' if wall < TARGET_S else 'MISSED'}")  # fmt: skip
    write_results(args.json, [result(
        "pipeline", "full figure pipeline (paper-figures, tiny, 3 seeds): wall time", round(wall, 1), "s",
        TARGET_S, "lower", ours=ours, baseline="-", sizes=f"{sizes}; {runs} runs", load=load, status=status,
    )])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
