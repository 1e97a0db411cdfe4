"""Peak memory of the rollout inspector's loading path on hostile runs (issue 13, item 7).

    python -m benchmarks.inspector_memory [--text-mb 100 --tokens 10000000] [--cache DIR]

Builds (once, under ``cache/bench_app/hostile``) two SYNTHETIC run folders with ``workbench.hostile_runs``: a
small run whose step-1 rollouts file holds four 100 MB strings (a file of a few tens of KB), and a run of one step of
10 M tokens. Then, in a fresh Python process, drives the app with ``streamlit.testing.v1.AppTest``: the Train page
first (every library the inspector needs is then imported: the baseline), then the inspector on each hostile
step (the huge-text step, the long-text step, the 10 M-token step, a later window of its first rollout). It prints
the process's peak RSS (``VmHWM``) after the baseline and at the end, their difference (what the inspector's reads
and drawing added) and its ratio to ``CAP_MB``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CAP_MB = 256.0  # what the inspector's loading path may add to the app process's peak RSS
TEXT_RUN, STEP_RUN = "huge-texts", "huge-step"


def vm_hwm_mb() -> float:
    """Peak resident memory of this process (``VmHWM``), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def build_root(cache: Path, text_mb: float, tokens: int) -> Path:
    """The hostile runs root (built once per size; a half-built one is rebuilt)."""
    from workbench.hostile_runs import write_huge_step_run, write_huge_text_run

    root = cache / f"hostile-{text_mb:g}mb-{tokens}"
    done = root / ".complete"
    if done.exists():
        return root
    if root.exists():
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True)
    write_huge_text_run(root / TEXT_RUN, text_mb=text_mb)
    write_huge_step_run(root / STEP_RUN, tokens=tokens)
    done.write_text("")
    return root


def _child(root: Path) -> dict[str, Any]:
    """Run in a fresh process: the baseline page, then the inspector on every hostile step."""
    os.environ["REAL_RUNS_ROOT"] = str(root)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    at.run()
    at.switch_page("app_pages/train.py").run()
    import altair  # noqa: F401  (imported by the inspector; counted in the baseline, as in a running app)
    import torch  # noqa: F401

    import workbench.group_replay  # noqa: F401

    base = vm_hwm_mb()
    t0 = time.perf_counter()
    at.switch_page("app_pages/inspector.py").run()  # opens on the first run by name: huge-step
    html = [len(h.value) for h in at.get("html")]
    at.number_input(key="insp_from").set_value(100_000).run()
    html += [len(h.value) for h in at.get("html")]
    at.selectbox(key="insp_run").set_value(TEXT_RUN).run()
    for step in (1, 2):
        at.select_slider(key="insp_step").set_value(step).run()
        html += [len(h.value) for h in at.get("html")]
    errors = [str(e.value) for e in at.exception]
    notes = [w.value for w in at.warning] + [i.value for i in at.info]
    return {
        "base_mb": round(base, 1),
        "peak_mb": round(vm_hwm_mb(), 1),
        "seconds": round(time.perf_counter() - t0, 2),
        "largest_html_kb": round(max(html, default=0) / 1e3, 1),
        "errors": errors,
        "notes": len(notes),
    }


def measure(root: Path, timeout: float = 600) -> dict[str, Any]:
    """Peak RSS of the inspector on the hostile runs under ``root``, measured in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.inspector_memory", "--child", str(root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"inspector memory child failed ({out.returncode}): {out.stderr[-2000:]}")
    r = json.loads(lines[-1])
    r["added_mb"] = round(r["peak_mb"] - r["base_mb"], 1)
    r["cap_mb"] = CAP_MB
    r["ratio"] = round(r["added_mb"] / CAP_MB, 3)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text-mb", type=float, default=100, help="size of each of the four huge strings")
    ap.add_argument("--tokens", type=int, default=10_000_000, help="tokens of the huge step")
    ap.add_argument("--cache", type=Path, default=REPO / "cache" / "bench_app" / "hostile")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child)))
        return 0
    t0 = time.perf_counter()
    root = build_root(args.cache, args.text_mb, args.tokens)
    print(f"hostile runs under {root} (built or found in {time.perf_counter() - t0:.1f} s)")
    r = measure(root)
    print(f"inspector on 4 x {args.text_mb:g} MB strings and a {args.tokens:,}-token step: baseline peak RSS "
          f"{r['base_mb']:.0f} MB, after {r['peak_mb']:.0f} MB: added {r['added_mb']:.0f} MB = {r['ratio']:.2f} x the "
          f"{CAP_MB:.0f} MB cap; {r['seconds']:.1f} s; largest HTML {r['largest_html_kb']:.0f} KB; "
          f"errors {r['errors'] or 'none'}")  # fmt: skip
    return 0 if r["ratio"] <= 1 and not r["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
