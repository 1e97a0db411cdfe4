"""The project works from a clone alone: the six benchmarks ship inside the package.

The project's tracked files (``git ls-files``) are copied into an empty folder, with no ``../shared`` beside it and
no ``$REAL_DATA_DIR``; ``check-data`` on the six benchmarks and a 2-question ``eval`` on a tiny model built from a
config run there in subprocesses whose ``PYTHONPATH`` is the copy. A wheel built from the copy carries the files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.training.conftest import ROOT
from training.datasets import BENCHMARKS

SIZES = {"aime": 30, "aime25": 30, "amc": 83, "math": 500, "minerva": 272, "olympiad_bench": 675}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The tracked files of this checkout, copied into ``<tmp>/empty/project`` (nothing beside it)."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: nothing to list with git ls-files")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    dest = tmp_path_factory.mktemp("empty") / "project"
    for name in filter(None, listed):
        src = ROOT / name.decode()
        if src.is_symlink() or not src.is_file():  # deleted in the work tree, or a link out of it
            continue
        (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name.decode())
    assert not (dest.parent / "shared").exists()
    return dest


def _run(clone: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REAL_DATA_DIR"}
    env["PYTHONPATH"] = str(clone)
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_check_data_runs_on_the_six_shipped_benchmarks(clone, tmp_path):
    out = tmp_path / "check.json"
    r = _run(clone, ["check-data", "benchmarks", "--limit", "20", "--json", str(out)], timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads(out.read_text())
    assert results["unreadable"] == []
    by_name = {Path(res["path"]).stem: res for res in results["results"]}
    assert sorted(by_name) == sorted(BENCHMARKS)
    shipped = clone / "training" / "bundled_data" / "benchmarks"
    for name, res in by_name.items():
        assert Path(res["path"]).parent == shipped  # the copy's own files
        assert res["problems"] == 20 and res["self_pass"] == 20 and res["skipped"] == 0, (name, res)
    for name in BENCHMARKS:  # the full files are there, with every row
        rows = json.loads((clone / "training" / "bundled_data" / "benchmarks" / f"{name}.json").read_text())
        assert len(rows) == SIZES[name]


def test_eval_runs_two_questions_on_a_tiny_model(clone, chat_model, tmp_path):
    out = tmp_path / "ev"
    r = _run(clone, ["eval", "--model", str(chat_model), "--benchmarks", "aime", "--limit", "2", "--k", "1",
                     "--max-new-tokens", "4", "--out", str(out), "--no-progress", "--paper-tables", "none"],
             timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    records = [json.loads(x) for x in (out / "samples" / "aime.jsonl").read_text().splitlines()]
    assert [x["id"] for x in records] == [0, 1] and all(len(x["correct"]) == 1 for x in records)
    assert "| tinychat |" in (out / "results.md").read_text()


def test_a_wheel_built_from_the_clone_carries_the_benchmarks_and_their_readme(clone, tmp_path):
    pytest.importorskip(
        "setuptools", reason="building the wheel offline needs setuptools in this environment"
    )
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(clone), "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"training/bundled_data/benchmarks/{n}.json" for n in BENCHMARKS}
    assert expected | {"training/bundled_data/README.md"} <= names
