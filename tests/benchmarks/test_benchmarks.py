"""The benchmark suite (``python -m benchmarks``): its quick mode runs every item end to end and prints one table,
and the pipeline item reads the pipeline's own log (interrupted and resumed sessions included).

The quick suite trains nothing new beyond the tiny warm start (``cache/warmstart``, shared with the benchmarks)
and takes a few minutes on 2 busy cores. Its TRL item needs ``.venv-trl`` (``bash install.sh engines``);
``REAL_SKIP_ENGINE_TESTS=1`` runs every other item.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_pipeline import full_pipeline, plan_estimate, planned_study
from benchmarks.bench_pipeline import main as bench_pipeline_main
from benchmarks.run_all import ITEMS

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "sampler": {"sampler"},
    "rl_step": {"rl_step"},
    "logging": {"logging", "tiny_run"},
    "objectives": {"objectives"},
    "stats": {"stats_time", "stats_memory"},
    "app": {
        "app",
        "app_inspector_memory",
        "app_runs_page_first",
        "app_runs_page_cold",
        "app_runs_page_warm",
        "app_downloads",
    },
    "pipeline": {"pipeline", "pipeline_estimate", "study_estimate"},
}


def _event(time: str, event: str, **kw) -> str:
    return json.dumps({"time": f"2026-01-01T{time}+0000", "event": event, "load1": 1.5, **kw})


def write_record(path: Path, runs: list[str], *, interrupted_after: int | None = None) -> Path:
    """A pipeline log: one fresh session training ``runs`` (interrupted after ``interrupted_after`` runs, then
    a second session resuming the rest), each run 60 s, then figures (10 s) and ``session_end`` ok."""
    cut = len(runs) if interrupted_after is None else interrupted_after
    lines = [_event("10:00:00", "session_start", runs=dict.fromkeys(runs, "train"), cpus=2, nice=10)]
    lines += [
        _event(f"10:0{i + 1}:00", "job_end", run=r, rc=0, seconds=60.0) for i, r in enumerate(runs[:cut])
    ]
    if interrupted_after is not None:
        lines.append(_event(f"10:0{cut}:30", "progress", done=cut))  # then the session is killed
        plan = {r: ("skip" if i < cut else "train") for i, r in enumerate(runs)}
        lines.append(_event("11:00:00", "session_start", runs=plan, cpus=2, nice=10))
        lines += [
            _event(f"11:0{i + 1}:00", "job_end", run=r, rc=0, seconds=60.0) for i, r in enumerate(runs[cut:])
        ]
    end = "11:05:10" if interrupted_after is not None else "10:05:10"
    lines.append(_event(end, "figures", rc=0, seconds=10.0))
    lines.append(_event(end, "session_end", result="ok", seconds=0.0, load1_mean=1.5))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pipeline_record_one_session(tmp_path):
    f = full_pipeline(write_record(tmp_path / "log.jsonl", ["a", "b", "c"]))
    assert f is not None
    assert f["runs"] == 3 and f["sessions"] == 1 and f["interrupted"] == 0
    assert f["wall_s"] == pytest.approx(310.0)  # 10:00:00 -> 10:05:10
    assert f["run_seconds"] == pytest.approx(180.0) and f["figures_s"] == pytest.approx(10.0)


def test_pipeline_record_interrupted_and_resumed(tmp_path):
    f = full_pipeline(write_record(tmp_path / "log.jsonl", ["a", "b", "c", "d"], interrupted_after=2))
    assert f is not None
    assert f["sessions"] == 2 and f["interrupted"] == 1
    # first session: start to its last event (10:02:30); second: 11:00:00 -> 11:05:10
    assert f["spans_s"] == pytest.approx([150.0, 310.0])
    assert f["wall_s"] == pytest.approx(460.0)
    assert f["run_seconds"] == pytest.approx(240.0)


def test_pipeline_record_unfinished_is_not_a_measurement(tmp_path):
    path = write_record(tmp_path / "log.jsonl", ["a", "b"])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")  # no figures, no session_end
    assert full_pipeline(path) is None
    # a failed run: not a complete pipeline either
    path.write_text(path.read_text().replace('"rc": 0', '"rc": 1', 1) + "\n".join(lines[-2:]) + "\n")
    assert full_pipeline(path) is None


@pytest.mark.slow  # 27 s of dry-run subprocesses; the quick suite's test already checks both rows are written
def test_study_and_pipeline_wall_times_are_estimated_from_their_dry_runs(tmp_path):
    from training.study.plan import DEFAULT_LAGS, DEFAULT_VARIANTS, STUDY_SETTINGS

    runs, steps = planned_study(tmp_path / "study")
    assert (runs, steps) == (len(DEFAULT_LAGS) * len(DEFAULT_VARIANTS) * 5, STUDY_SETTINGS["steps"])
    assert plan_estimate(10, 40, 5.0, 0.5, 2) == pytest.approx(10 * (5.0 + 40 * 0.5) / 2)
    out = tmp_path / "r.json"
    # no pipeline log: the pipeline is estimated from its dry run too; one tiny run = 5 s setup + 100 x 0.6 s
    argv = ["--record", str(tmp_path / "none.jsonl"), "--per-run-seconds", "65", "--setup-seconds", "5"]
    assert bench_pipeline_main([*argv, "--json", str(out)]) == 0
    got = {r["key"]: r for r in json.loads(out.read_text())["results"]}
    assert set(got) == {"pipeline", "pipeline_estimate", "study_estimate"} and math.isnan(
        got["pipeline"]["value"]
    )
    jobs = os.cpu_count() or 1
    assert got["study_estimate"]["value"] == pytest.approx(runs * (5 + steps * 0.6) / jobs, abs=0.1)
    assert got["pipeline_estimate"]["value"] == pytest.approx(
        33 * 65 / jobs, abs=0.1
    )  # 11 variants x 3 seeds
    assert all(got[k]["status"] == "estimate" and "DRY-RUN" in got[k]["ours"] for k in got if k != "pipeline")
    # with CPU seconds (3 s/step here): the idle-machine estimate is the value, the wall one beside it
    assert bench_pipeline_main([*argv, "--per-run-cpu-seconds", "305", "--json", str(out)]) == 0
    got = {r["key"]: r for r in json.loads(out.read_text())["results"]}
    assert got["study_estimate"]["value"] == pytest.approx(runs * (5 + steps * 3.0) / jobs, abs=0.1)
    assert got["study_estimate"]["wall_estimate_s"] == pytest.approx(runs * (5 + steps * 0.6) / jobs, abs=0.1)


# Items that load no model: no warm start to train (the others train the tiny preset's, ~2 min on a fresh clone).
MODEL_FREE = ["objectives", "stats", "pipeline"]


@pytest.mark.slow  # ~1.5 min with the tiny warm start cached, ~3.5 min on a fresh clone (it trains it)
def test_quick_suite_prints_one_table_with_every_item(tmp_path):
    _quick_suite(tmp_path, list(ITEMS))


def test_quick_suite_of_the_model_free_items_prints_one_table(tmp_path):
    """The default run's check of the suite's machinery (subprocess per item, records, one table): the items
    that need no model; ``-m slow`` runs every item."""
    _quick_suite(tmp_path, MODEL_FREE)


def _quick_suite(tmp_path, items: list[str]) -> None:
    if os.environ.get("REAL_SKIP_ENGINE_TESTS") == "1" and "rl_step" in items:
        items.remove("rl_step")
    elif "rl_step" in items and not (REPO / ".venv-trl" / "bin" / "python").exists():
        pytest.fail(
            "the rl_step item needs .venv-trl: run `bash install.sh engines`, or set REAL_SKIP_ENGINE_TESTS=1"
        )
    record = write_record(tmp_path / "paper-figures.jsonl", ["a", "b", "c"])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--pipeline-record", str(record)]
    cmd += ["--only", *items]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    tail = (proc.stdout + proc.stderr)[-5000:]
    assert proc.returncode == 0, tail

    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True and not results["failed"]
    assert results["machine"]["cores"] >= 1 and results["machine"]["date"]
    records = results["results"]
    expected = set().union(*(KEYS[i] for i in items))
    if "logging" not in items:  # no per-run time measured: no estimates
        expected -= {"pipeline_estimate", "study_estimate"}
    assert {r["key"] for r in records} == expected, tail
    for r in records:
        assert isinstance(r["value"], float | int) and math.isfinite(r["value"]) and r["value"] > 0, r
        assert isinstance(r["met"], bool) and r["sizes"] and len(r["load"]) == 2, r
    by_key = {r["key"]: r for r in records}
    # the pipeline record was read from the log above: 310 s wall for 3 runs
    assert by_key["pipeline"]["value"] == pytest.approx(310.0)
    if "logging" in items:  # the estimates take the per-run time the logging item measured
        assert by_key["pipeline_estimate"]["value"] > 0

    # one table, printed and written, with a row per record and the machine, date and load in its heading
    table = (out / "table.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith(("| item", "| ---"))]
    assert len(rows) == len(records)
    for r in records:
        assert any(line.startswith(f"| {r['label']} |") for line in rows), r["label"]
        assert f"| {r['label']} |" in proc.stdout
    assert "cores" in table[0] and "load" in table[0] and "quick sizes" in table[0]


def _ab_step(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "benchmarks/ab_step.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ab_step_explains_itself_and_refuses_a_revision_that_does_not_exist():
    helped = _ab_step("--help")
    assert helped.returncode == 0 and "in turn" in helped.stdout and "--base" in helped.stdout
    bad = _ab_step("--base", "no-such-revision-anywhere")
    assert bad.returncode == 2 and "is not a revision of this repository" in bad.stderr
    assert _ab_step("--base", "HEAD", "--steps", "1").returncode == 2


@pytest.mark.slow
def test_ab_step_runs_both_trees_in_turn_and_removes_its_worktree():
    before = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True).stdout
    done = _ab_step("--base", "HEAD", "--pairs", "1", "--steps", "2", timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pair 1: step" in done.stdout and "time_update  this - base" in done.stdout
    assert "fewer than 3 pairs: no interval" in done.stdout  # one pair cannot carry an interval
    assert (
        subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True).stdout == before
    )


def test_bootstrap_interval_of_a_ratio():
    """The interval holds the point estimate, narrows with more repeats, has no width without spread, and pairing
    removes what the rounds share (a slow round slows both sides)."""
    import numpy as np

    from benchmarks.common import bootstrap_interval, interval_text

    rng = np.random.default_rng(1)
    ratio = lambda x, y: float(np.median(x) / np.median(y))  # noqa: E731
    a, b = 0.5 + 0.05 * rng.standard_normal(10), 1.0 + 0.05 * rng.standard_normal(10)
    lo, hi = bootstrap_interval(ratio, a, b)
    assert lo < ratio(a, b) < hi and 0.4 < lo and hi < 0.6
    a4, b4 = 0.5 + 0.05 * rng.standard_normal(160), 1.0 + 0.05 * rng.standard_normal(160)
    lo4, hi4 = bootstrap_interval(ratio, a4, b4)
    assert hi4 - lo4 < (hi - lo) / 2
    assert bootstrap_interval(ratio, [0.5, 0.5, 0.5], [1.0, 1.0]) == (0.5, 0.5)
    load = rng.uniform(1, 3, 12)  # each round's machine speed, shared by both sides of the round
    ours, base = 0.5 * load, 1.0 * load * (1 + 0.01 * rng.standard_normal(12))
    total = lambda x, y: float(x.sum() / y.sum())  # noqa: E731
    plo, phi = bootstrap_interval(total, ours, base, paired=True)
    ulo, uhi = bootstrap_interval(total, ours, base)
    assert phi - plo < (uhi - ulo) / 5
    with pytest.raises(ValueError, match="one length"):
        bootstrap_interval(total, [1.0, 2.0], [1.0, 2.0, 3.0], paired=True)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_interval(total, [1.0], [1.0, 2.0])
    assert interval_text(0.46, 0.53, 0.5, "steps").endswith("crosses the target")
    assert interval_text(0.41, 0.48, 0.5, "steps").endswith("clear of the target")
