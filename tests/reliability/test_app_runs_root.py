"""The app and its runs root under hostile names and bad files.

- Names: ``..``, absolute paths, nesting, NUL, and symbolic links (direct, chained, dangling, to ``/``, to the
  root's parent) that leave the root are refused by ``workbench.runs_root.resolve_run_dir``, by the app's run
  cards (``app_lib.data.read_card``) and by its training launcher (``app_lib.jobs.start_job``), and nothing is
  created outside the root. Harmless odd names (``...``, ``~``, spaces, non-ASCII) and links that stay inside
  are accepted.
- Bad files: each damaged run shows its error on its own card on the Runs page (``streamlit.testing``
  AppTest), naming the file (and row and field where there is one), while the good run next to it still reads.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from app_lib import data, jobs
from tests.reliability.edge_runs import write_edge_run
from workbench.runs_root import UnsafeRunName, resolve_run_dir

REPO = Path(__file__).resolve().parents[2]

REFUSED_NAMES = [
    "..",
    ".",
    "",
    "../x",
    "x/../..",
    "good/..",
    "a/b",
    "a\\b",
    "/etc",
    "/",
    "x\x00y",
    "../runs/good",
]
ACCEPTED_NAMES = ["...", "~", "..x", "run with spaces", "ünïcödé-λ", "good"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A runs root with one good run and links of every kind; ``tmp_path/outside`` lies next to it."""
    r = tmp_path / "runs"
    r.mkdir()
    write_edge_run(r, "real").rename(r / "good")
    outside = tmp_path / "outside"
    shutil.copytree(r / "good", outside)  # a readable run, so that only the path check can stop it
    os.symlink(outside, r / "escape")
    os.symlink(tmp_path, r / "parent")
    os.symlink("/", r / "slash")
    os.symlink(r / "escape", r / "chain")  # a link to a link out
    os.symlink(tmp_path / "nowhere", r / "dangling")
    os.symlink("../runs/good", r / "relative-inside")  # a relative link that climbs out and back in
    os.symlink("../outside", r / "relative-outside")
    return r


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_names_that_leave_the_root_are_refused_everywhere(root, name):
    before = _tree(root.parent)
    with pytest.raises(UnsafeRunName) as refused:
        resolve_run_dir(root, name)
    card = data.read_card(root, name)
    assert not card.ok and card.path is None and card.error == str(refused.value)
    with pytest.raises(UnsafeRunName):
        jobs.start_job(root, name, [sys.executable, "-c", "pass"])
    assert _tree(root.parent) == before  # nothing written, inside or out


@pytest.mark.parametrize("link", ["escape", "parent", "slash", "chain", "dangling", "relative-outside"])
def test_links_that_leave_the_root_are_refused(root, link):
    with pytest.raises(UnsafeRunName, match="outside the runs root"):
        resolve_run_dir(root, link)
    card = data.read_card(root, link)
    assert not card.ok and "outside the runs root" in card.error and not card.steps
    with pytest.raises(ValueError, match="outside the runs root"):
        jobs.start_job(root, link, [sys.executable, "-c", "pass"])


@pytest.mark.parametrize("name", ACCEPTED_NAMES)
def test_odd_but_harmless_names_stay_inside(root, name):
    path = resolve_run_dir(root, name)
    assert path.is_relative_to(root.resolve()) and path != root.resolve()


def test_links_that_stay_inside_are_followed(root, tmp_path):
    assert resolve_run_dir(root, "relative-inside") == (root / "good").resolve()
    assert data.read_card(root, "relative-inside").ok
    # a runs root that is itself a link: names resolve inside its target
    alias = tmp_path / "alias-root"
    os.symlink(root, alias)
    assert resolve_run_dir(alias, "good") == (root / "good").resolve()
    with pytest.raises(UnsafeRunName):
        resolve_run_dir(alias, "escape")


# ------------------------------------------------------------------------------------------------ bad files


def _damage(root: Path) -> dict[str, str]:
    """Copies of the good run, each damaged one way; returns folder -> text its card must show."""
    good = root / "good"
    cases = {}

    def copy(name: str) -> Path:
        shutil.copytree(good, root / name)
        return root / name

    p = copy("truncated-metrics") / "metrics" / "step_000002.parquet"
    p.write_bytes(p.read_bytes()[:100])
    cases["truncated-metrics"] = f"{p}: not a readable Parquet file"
    p = copy("nan-loss") / "metrics" / "step_000004.parquet"
    t = pq.read_table(p)
    pq.write_table(t.set_column(t.schema.get_field_index("loss"), "loss", pa.array([np.nan])), p)
    cases["nan-loss"] = f"{p}, row 0, field 'loss': non-finite value nan"
    p = copy("status-list") / "status.json"
    p.write_text('["running"]')
    cases["status-list"] = f"{p}: must hold a JSON object"
    p = copy("latin1-run-json") / "run.json"
    p.write_bytes(p.read_bytes().replace(b'"real"', b'"r\xe9al"'))
    cases["latin1-run-json"] = f"{p}: not valid UTF-8 JSON"
    p = copy("empty-method") / "run.json"
    meta = json.loads(p.read_text())
    meta["method"] = ""
    p.write_text(json.dumps(meta))
    cases["empty-method"] = f"{p}, field 'method': is empty"
    return cases


def test_each_bad_run_shows_its_error_on_its_card(root, monkeypatch):
    for link in ("escape", "parent", "slash", "chain", "dangling", "relative-outside", "relative-inside"):
        (root / link).unlink()
    cases = _damage(root)
    for name, text in cases.items():  # the cards themselves
        card = data.read_card(root, name)
        shown = (
            card.error if not card.ok else card.problem
        )  # a bad step's metrics: the other steps still read
        assert shown and text in shown, (name, card.error, card.problem)
    assert data.read_card(root, "good").ok

    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value for e in at.error]
    for name, text in cases.items():
        assert any(text in e for e in shown), (name, shown)
    table = at.dataframe[0].value  # the good run still reads and draws
    assert list(table.index) == ["good"]
    # its step with |s_bar|/tau = 1e4 has log C = 1e4: C is beyond float range and is said to be left out
    at.session_state["runs_tab"] = "C+ and C-"  # the tab is computed when open
    at.run()
    assert any("left out of the charts" in c.value for c in at.caption)


# ------------------------------------------------------------------------------------------ bad data rows


def test_bad_data_rows_a_run_skipped_are_counted_on_its_card(chat_model, tmp_path, capsys, monkeypatch):
    """A run trained with ``--bad-rows skip`` on damaged data files (a row without an answer, a line that is not
    UTF-8, an answer of the wrong type) logs the skipped rows in ``run.json``; its card on the Runs page
    counts them per split and names file, row and field of each."""
    from tests.training.conftest import run_main

    train = tmp_path / "train.jsonl"
    lines = [json.dumps({"problem": f"What is {a}+{a}?", "answer": str(2 * a)}).encode() for a in range(6)]
    lines[1] = json.dumps({"problem": "No answer here"}).encode()
    lines[3] = '{"problem": "caf\u00e9 1+1?", "answer": "2"}'.encode("latin-1")
    train.write_bytes(b"\n".join(lines) + b"\n")
    val = tmp_path / "val.json"
    val.write_text(json.dumps([{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": {"x": 4}}]))
    root = tmp_path / "runs"
    args = ["train", "--method", "real", "--model", str(chat_model), "--train-data", str(train),
            "--val-data", str(val), "--bad-rows", "skip", "--steps", "1", "--batch-prompts", "2",
            "--minibatch-prompts", "1", "--group-size", "2", "--max-new-tokens", "4", "--val-every", "1",
            "--val-prompts", "1", "--val-k", "1", "--save-every", "1", "--prompt-template", "{prompt}",
            "--grader-workers", "1", "--no-progress", "--out", str(root / "skipped")]  # fmt: skip
    done = run_main(args, capsys)
    assert done.returncode == 0, done.stderr[-3000:]

    card = data.read_card(root, "skipped")
    assert card.ok and card.steps == [1]
    assert card.data_skipped == {"train": 2, "val": 1}
    expected = [
        f"{train}, row 1, field 'answer'",
        f"{train}, row 3: not UTF-8 text",
        f"{val}, row 1, field 'answer'",
    ]
    for text in expected:
        assert any(text in r for r in card.data_skipped_rows), (text, card.data_skipped_rows)

    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [w.value for w in at.warning if "bad data rows skipped" in w.value]
    assert len(shown) == 1 and shown[0].startswith("3 bad data rows skipped (train 2, val 1)"), shown
    assert all(text in shown[0] for text in expected), shown[0]
