"""Fixtures of the app tests: runs roots holding small SYNTHETIC runs (workbench.synthetic_run) and bad folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from workbench.synthetic_run import write_synthetic_run

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app.py"


def make_good_root(root: Path) -> Path:
    """Two finished runs (REAL, GRPO) of a few steps, small enough for fast tests."""
    root.mkdir(parents=True, exist_ok=True)
    write_synthetic_run(
        root / "real-s0", method="real", steps=6, prompts=4, group_size=6, mean_len=16, seed=0
    )
    write_synthetic_run(
        root / "grpo-s0", method="grpo", steps=6, prompts=4, group_size=6, mean_len=16, seed=1
    )
    return root


def make_bad_folders(root: Path, outside: Path) -> None:
    """An empty folder, a run.json that is not JSON, a run whose step lacks its tokens file, a link out of the root."""
    (root / "empty").mkdir()
    (root / "corrupt").mkdir()
    (root / "corrupt" / "run.json").write_text("{not json")
    write_synthetic_run(root / "partial", method="real", steps=2, prompts=2, group_size=4, mean_len=8, seed=3)
    (root / "partial" / "tokens" / "step_000002.parquet").unlink()
    (root / "partial" / "metrics" / "step_000002.parquet").write_bytes(b"not parquet")
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "run.json").write_text(
        json.dumps({"schema_version": 1, "name": "x", "method": "real", "config": {}})
    )
    os.symlink(outside, root / "escape")


@pytest.fixture(scope="session")
def good_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_good_root(tmp_path_factory.mktemp("runs_good"))


@pytest.fixture(scope="session")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("runs_mixed")
    root = make_good_root(base / "runs")
    make_bad_folders(root, base / "outside")
    return root


@pytest.fixture(scope="session")
def suite_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every variant the run figures need (workbench.synthetic_run.PAPER_VARIANTS), one seed, a few steps."""
    from workbench.synthetic_run import write_synthetic_suite

    root = tmp_path_factory.mktemp("runs_suite")
    write_synthetic_suite(root, seeds=(0,), steps=4, prompts=4, group_size=4, minibatches=2, mean_len=8)
    return root


# ----------------------------------------------------------------------------------------------- hostile runs
# HTML and Markdown a run folder from someone else could hold (issue 13, item 4). Each HTML payload carries an id
# starting with "pwned" so a test can look for the element; every address is loopback (port 9, discard: refused).
PAYLOADS = {
    "iframe": '<iframe src="http://127.0.0.1:9/x" id="pwned-iframe"></iframe>',
    "form": '<form id="pwned-form"><input type="password"></form>',
    "image": "![x](http://127.0.0.1:9/pwned.png)",
    "div": '<div id="pwned-div" style="position:fixed;inset:0;background:#fff"></div>',
    "link": "[click](javascript:alert(1))",
    "emphasis": "**bold** _it_ # heading",
}
ALL_PAYLOADS = " ".join(PAYLOADS.values())
# A folder name cannot hold "/": HTML without closing tags, and Markdown without a URL path.
DIR_PAYLOAD = '**bold** _it_ [click](javascript:alert(1)) <img id="pwned-dir" src="x"> <b id=pwned-b>b'
BAD_DIR_PAYLOAD = "<b id=pwned-bad>bad [click](javascript:alert(1)) **bold**"
# Sorted first, so the Inspector opens on it: its last step cannot be read, and the error names the folder.
STEP_DIR_PAYLOAD = "!![x](pwned.png) **bold** <img id=pwned-step src=x>"


def _rewrite_strings(table_dir: Path, columns: dict[str, object]) -> None:
    """Rewrite text columns of every step file of a table: ``columns`` maps a column to a value or a function of
    the row index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in sorted(table_dir.glob("step_*.parquet")):
        t = pq.read_table(f)
        for col, value in columns.items():
            vals = [value(i) if callable(value) else value for i in range(t.num_rows)]
            t = t.set_column(t.schema.get_field_index(col), col, pa.array(vals, pa.string()))
        pq.write_table(t, f)


def make_hostile_root(root: Path) -> Path:
    """Run folders with HTML and Markdown payloads in every field the app shows.

    - ``DIR_PAYLOAD``: a valid REAL run (sorted first, so the Inspector opens on it): folder name, run.json's name,
      status.json's state ``failed`` and error, skipped data rows (``env.data``: split and messages), and the
      prompt, response, answer and token texts of every step;
    - ``unknown-method``: a valid run whose ``method``, ``config.seed`` (a string) and status.json ``state`` are
      payloads;
    - ``BAD_DIR_PAYLOAD``: an unreadable folder (run.json not JSON) whose name and error are payloads;
    - ``STEP_DIR_PAYLOAD``: a valid run whose last step lacks its tokens file (the Inspector's error names it);
    - a job record (``.jobs/hostile.json``) whose starter and command hold payloads.
    """
    root.mkdir(parents=True, exist_ok=True)
    kw = {"steps": 2, "prompts": 2, "group_size": 4, "minibatches": 2, "mean_len": 8}
    run = write_synthetic_run(root / DIR_PAYLOAD, method="real", seed=0, **kw)
    meta = json.loads((run / "run.json").read_text())
    meta["name"] = PAYLOADS["iframe"] + " " + PAYLOADS["emphasis"]
    meta["env"]["data"] = {
        PAYLOADS["link"]: {"skipped": 2, "skipped_rows": [PAYLOADS["form"], PAYLOADS["image"]]},
    }
    (run / "run.json").write_text(json.dumps(meta))
    status = json.loads((run / "status.json").read_text())
    status.update(state="failed", error=ALL_PAYLOADS)
    (run / "status.json").write_text(json.dumps(status))
    payloads = list(PAYLOADS.values())
    _rewrite_strings(
        run / "rollouts",
        {"prompt": PAYLOADS["image"] + " " + ALL_PAYLOADS, "response": ALL_PAYLOADS, "answer": ALL_PAYLOADS},
    )
    _rewrite_strings(run / "tokens", {"token": lambda i: payloads[i % len(payloads)]})

    other = write_synthetic_run(root / "unknown-method", method="grpo", seed=1, **kw)
    meta = json.loads((other / "run.json").read_text())
    meta["method"] = PAYLOADS["div"] + PAYLOADS["iframe"] + PAYLOADS["form"] + PAYLOADS["image"]
    meta["config"]["seed"] = PAYLOADS["image"] + " " + PAYLOADS["div"]
    (other / "run.json").write_text(json.dumps(meta))
    status = json.loads((other / "status.json").read_text())
    status["state"] = PAYLOADS["emphasis"] + " " + PAYLOADS["link"]
    (other / "status.json").write_text(json.dumps(status))

    broken = write_synthetic_run(root / STEP_DIR_PAYLOAD, method="real", seed=2, **kw)
    (broken / "tokens" / "step_000002.parquet").unlink()

    (root / BAD_DIR_PAYLOAD).mkdir()
    (root / BAD_DIR_PAYLOAD / "run.json").write_text("{not json")

    # a job record (runs root's .jobs/) whose starter ("by", shown on the Train page) and command hold the payloads
    # (a record's own "name" is not read: a job is named by its file); pid 0: no process
    (root / ".jobs").mkdir()
    job = {"name": ALL_PAYLOADS, "by": ALL_PAYLOADS, "run": None, "pid": 0,
           "command": ["python", "-m", "training", "--out", ALL_PAYLOADS],
           "log": "hostile.log", "started": 0.0, "stopped": None, "returncode": 1}  # fmt: skip
    (root / ".jobs" / "hostile.json").write_text(json.dumps(job))
    return root


@pytest.fixture(scope="session")
def hostile_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hostile_root(tmp_path_factory.mktemp("runs_hostile"))
