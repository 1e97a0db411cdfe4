"""The benchmark suite: every speed target of the workbench, each against its baseline in the same run.

    python -m benchmarks                     # full sizes (about 6 min on 2 busy cores; the first run also
                                             # writes the stats and app inputs to cache/: +10 min)
    python -m benchmarks --quick             # small sizes: checks that everything runs (about 2 min;
                                             # tests/benchmarks/test_benchmarks.py runs it in the default pytest run)
    python -m benchmarks --only sampler rl_step
    python -m benchmarks --pipeline-record PATH/paper-figures.jsonl

Each item runs its own script (``benchmarks/bench_*.py``) in a fresh process, which writes a result record
(``benchmarks/common.py``); the suite prints one table with the machine, the date, the sizes and the load
average, and writes ``results.json``, ``table.md`` and each item's output to ``--out`` (default
``cache/benchmarks/<date-time>/``). A target missed is reported, not an error; an item that fails to run is.

| item | measures | baseline (same run) | target |
| --- | --- | --- | --- |
| sampler | rollout tokens/s of the default back end, tiny model | ``transformers`` ``generate``, same model/batch/lengths/T | >= 2.5x |
| rl_step | seconds per RL step at equal work (and CPU seconds) | TRL ``GRPOTrainer`` (``.venv-trl``, a subprocess) | <= 0.5x |
| logging | logging's share of an RL step, full per-token logs | the step itself | <= 5% |
| objectives | each objective's forward+backward | ``grpo``'s, interleaved rounds | <= 1.2x |
| stats_time, stats_memory | all statistics over ~10 M logged tokens | a plain pyarrow read | 10 s, 4 GiB |
| app | slowest warm page response, 200 steps x 512 rollouts | AppTest on an empty page | 2 s |
| app_runs_page_* | the Runs page opened first (no cache), after a restart (disk cache) and warm, 33 runs of 100 steps | - | 2 s |
| app_downloads | slowest Paper figures download (PNG, PDF, CSV), warm | - | 5 s |
| pipeline | wall time of ``paper-figures --preset tiny --seeds 3`` | - (read from the pipeline's own log, not rerun) | < 1 h |
| pipeline_estimate | the same at this code's per-run time (logging item) | - (runs x seconds per run / cores) | < 1 h |
| study_estimate | wall time of ``study offpolicy``'s default plan (dry-run runs x this code's per-run time) | - | < 1 h |
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, load1, machine

ITEMS = ("sampler", "rl_step", "logging", "objectives", "stats", "app", "pipeline")


def commands(quick: bool) -> dict[str, list[str]]:
    """The script and arguments of each item (``--json PATH`` is appended)."""
    b = "benchmarks/"
    if quick:
        return {
            "sampler": [b + "bench_sampler.py", "--rounds", "2"],
            "rl_step": [b + "bench_trl.py", "--steps", "1"],
            "logging": [b + "bench_training.py", "--steps", "2", "--sampler-repeats", "0"],
            "objectives": [
                b + "bench_objectives.py",
                "--rollouts",
                "128",
                "--tokens",
                "1024",
                "--repeats",
                "1",
            ],
            "stats": [b + "bench_stats.py", "--tokens", "5e5", "--repeat", "1"],
            "app": [
                b + "bench_app.py",
                "--steps",
                "5",
                "--prompts",
                "8",
                "--repeats",
                "1",
                "--hostile-text-mb",
                "40",
                "--hostile-tokens",
                "1000000",
                "--runs-page-seeds",
                "1",
                "--runs-page-steps",
                "5",
            ],
            "pipeline": [b + "bench_pipeline.py"],
        }
    return {
        "sampler": [b + "bench_sampler.py", "--rounds", "8"],
        "rl_step": [b + "bench_trl.py", "--steps", "10"],
        "logging": [b + "bench_training.py", "--steps", "20", "--sampler-repeats", "0"],
        "objectives": [b + "bench_objectives.py"],
        "stats": [b + "bench_stats.py"],
        "app": [b + "bench_app.py"],
        "pipeline": [b + "bench_pipeline.py"],
    }


def fmt_value(r: dict) -> str:
    v = r["value"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not measured"
    unit = r["unit"]
    if unit == "%":
        return f"{v:.2f}%"
    if unit.startswith("x"):
        return f"{v:.2f}x"
    if r["key"].startswith(("pipeline", "study")):
        return f"{v / 60:.1f} min"
    return f"{v:.2f} {unit}"


def fmt_target(r: dict) -> str:
    sign = ">=" if r["better"] == "higher" else "<="
    t = r["target"]
    if r["key"].startswith(("pipeline", "study")):
        return f"< {t / 60:.0f} min"
    unit = r["unit"]
    if unit == "%":
        return f"{sign} {t:g}%"
    if unit.startswith("x"):
        return f"{sign} {t:g}x"
    return f"{sign} {t:g} {unit}"


def verdict(r: dict) -> str:
    v = r["value"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return r.get("status", "not measured")
    tag = "met" if r["met"] else "MISSED"
    if r.get("status") == "estimate":
        tag += " (estimate)"
    return tag


def table(records: list[dict]) -> list[str]:
    """One markdown row per record: value and target first, then what was measured against what."""
    lines = [
        "| item | value | target | | ours | baseline (same run) | load (1-min, before-after) |",
        "| --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    for r in records:
        load = "-".join(f"{x:g}" for x in r.get("load", []))
        cells = [r["label"], fmt_value(r), fmt_target(r), verdict(r), r["ours"], r["baseline"], load]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (checks that every item runs)")
    ap.add_argument("--only", nargs="+", choices=ITEMS, default=None, metavar="ITEM",
                    help=f"run only these items ({', '.join(ITEMS)})")  # fmt: skip
    ap.add_argument(
        "--out", type=Path, default=None, help="results folder (default cache/benchmarks/<date-time>)"
    )
    ap.add_argument("--pipeline-record", type=Path, default=None,
                    help="the pipeline's session record (default: runs/paper-tiny/paper-figures.jsonl)")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per item before it is stopped")
    args = ap.parse_args(argv)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "cache" / "benchmarks" / stamp
    out.mkdir(parents=True, exist_ok=True)
    items = args.only or list(ITEMS)
    cmds = commands(args.quick)
    m = machine()
    command = "python -m benchmarks" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    head = (f"{command}  |  {m['date']}  |  {m['cpu']}, {m['cores']} cores, torch {m['torch']}, Python "
            f"{m['python']}  |  load {load1()} at start  |  {'quick' if args.quick else 'full'} sizes")  # fmt: skip
    print(head, flush=True)
    records: list[dict] = []
    failed: list[str] = []
    t_suite = time.perf_counter()
    for item in items:
        cmd = [sys.executable, *cmds[item], "--json", str(out / f"{item}.json")]
        if item == "pipeline":
            if args.pipeline_record is not None:
                cmd += ["--record", str(args.pipeline_record)]
            tiny = next((r for r in records if r["key"] == "tiny_run"), None)
            if tiny is not None:  # one run alone: its setup + 100 steps (measured by the logging item)
                cmd += ["--per-run-seconds", str(tiny["value"] + tiny.get("setup_s", 0.0)),
                        "--setup-seconds", str(tiny.get("setup_s", 0.0))]  # fmt: skip
                if "cpu_s" in tiny:
                    cmd += ["--per-run-cpu-seconds", str(tiny["cpu_s"] + tiny.get("setup_s", 0.0))]
        print(f"[{item}] {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        with open(out / f"{item}.log", "w") as log:
            try:
                rc = subprocess.run(
                    cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        took = time.perf_counter() - t0
        path = out / f"{item}.json"
        if not path.is_file():
            failed.append(item)
            tail = (out / f"{item}.log").read_text()[-1500:]
            print(f"[{item}] FAILED (exit {rc}, {took:.0f} s); the end of its output:\n{tail}", flush=True)
            continue
        got = json.loads(path.read_text())["results"]
        for r in got:
            r["seconds"] = round(took, 1)
            r["command"] = " ".join(cmds[item])
        records.extend(got)
        for r in got:
            print(f"[{item}] {r['label']}: {fmt_value(r)} (target {fmt_target(r)}: {verdict(r)}), {took:.0f} s",
                  flush=True)  # fmt: skip
    lines = table(records)
    print()
    print(head)
    print("\n".join(lines))
    for r in records:
        print(f"  {r['key']}: {r['sizes']}")
    print(f"suite: {time.perf_counter() - t_suite:.0f} s; load {load1()} at end; results in {out}")
    (out / "results.json").write_text(json.dumps({"command": command, "machine": m, "quick": args.quick,
                                                  "results": records, "failed": failed}, indent=2, default=str))  # fmt: skip
    sizes = [f"- {r['key']}: {r['sizes']} (`{r['command']}`)" for r in records]
    (out / "table.md").write_text(
        "\n".join([f"`{command}` — {head.split('  |  ', 1)[1]}", "", *lines, "", *sizes, ""])
    )
    if failed:
        print(f"failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
