"""The RL step of this tree against another revision's, run in turn: did a change make the step faster?

    python benchmarks/ab_step.py --base HEAD            # uncommitted work against the last commit
    python benchmarks/ab_step.py --base main~3 --pairs 5 --steps 12

Checks the ``--base`` revision out into a temporary git worktree (removed afterwards), then runs the tiny preset's
GRPO step (``benchmarks/bench_trl.py``'s workbench side: no KL, full per-token logs) from each tree in turn, in a
fresh process each, ``--pairs`` times: base, this tree, base, this tree, ... so that a drift in the machine's load
hits both alike. Per run: the median of steps 2..N of the wall time, the CPU time (this process and its grader
workers) and each phase's mean. Printed: every pair, and the per-pair differences (this tree minus base) with their
median, range and the 95% bootstrap interval of their mean (``workbench.stats.paired``; with few pairs it is
narrower than the truth, so "resolved" is necessary, not sufficient: at 3 pairs it spans the pairs' range, and
two identical trees give 3 pairs of one sign 1 time in 4). Both trees read the same warm-start cache
(``--cache-dir``). A change is faster when every pair says so; a range across zero is not resolved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, load1, machine
from workbench.stats.paired import bootstrap_mean_interval

# Run inside each tree: the workbench side of bench_trl, one JSON line on stdout.
CHILD = """
import json, statistics, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from benchmarks.bench_trl import ours
seconds, cpu, _, phases = ours(sys.argv[2], int(sys.argv[3]), Path(tempfile.mkdtemp()))
keep = slice(1, None)  # step 1 warms up
print(json.dumps({"step": statistics.median(seconds[keep]), "cpu": statistics.median(cpu[keep]),
                  **{k: statistics.fmean(p[k] for p in phases[keep]) for k in phases[0]}}))
"""


def run_tree(tree: Path, cache_dir: str, steps: int) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), cache_dir, str(steps)],
        cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"the run in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git revision to compare against (e.g. HEAD, main~2)")
    ap.add_argument("--pairs", type=int, default=3, help="runs of each tree, in turn (default 3)")
    ap.add_argument("--steps", type=int, default=12, help="steps per run, the first a warm-up (default 12)")
    ap.add_argument("--cache-dir", default=str(ROOT / "cache"), help="warm-start cache (default: cache/)")
    args = ap.parse_args(argv)
    if args.pairs < 1 or args.steps < 2:
        ap.error("--pairs must be >= 1 and --steps >= 2")
    rev = subprocess.run(["git", "rev-parse", "--verify", args.base + "^{commit}"], cwd=ROOT,
                         capture_output=True, text=True, check=False)  # fmt: skip
    if rev.returncode != 0:
        ap.error(f"--base {args.base!r} is not a revision of this repository")
    m = machine()
    print(f"ab_step  {m['date']}  {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load {load1():.2f}")
    print(
        f"  base {args.base} ({rev.stdout.strip()[:10]}) against this tree; {args.pairs} pairs x {args.steps} steps"
    )
    rows: list[tuple[dict[str, float], dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="ab_step_") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), rev.stdout.strip()],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            for i in range(args.pairs):
                base = run_tree(base_tree, args.cache_dir, args.steps)
                this = run_tree(ROOT, args.cache_dir, args.steps)
                rows.append((base, this))
                print(
                    f"  pair {i + 1}: step {base['step']:.3f} -> {this['step']:.3f} s, CPU {base['cpu']:.3f} -> "
                    f"{this['cpu']:.3f} s, update {base['time_update']:.3f} -> {this['time_update']:.3f} s, "
                    f"sample {base['time_sample']:.3f} -> {this['time_sample']:.3f} s, grade wait "
                    f"{base['time_grade']:.4f} -> {this['time_grade']:.4f} s  (load {load1():.2f})",
                    flush=True,
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
    for key in ("step", "cpu", "time_sample", "time_grade", "time_update"):
        diffs = [this[key] - base[key] for base, this in rows]
        lo, hi = bootstrap_mean_interval(np.asarray(diffs))
        verdict = (
            "fewer than 3 pairs: no interval" if np.isnan(lo)
            else f"mean 95% bootstrap interval {lo:+.4f} .. {hi:+.4f}, "
            + ("resolved" if lo > 0 or hi < 0 else "NOT resolved")
        )  # fmt: skip
        print(
            f"  {key:12s} this - base: median {statistics.median(diffs):+.4f} s "
            f"(pairs {min(diffs):+.4f} .. {max(diffs):+.4f}; {verdict})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
