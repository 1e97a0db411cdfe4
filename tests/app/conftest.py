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
    """Every variant the run figures need (workbench.stats.synthetic), one seed, a few steps."""
    from workbench.stats.synthetic import write_synthetic_suite

    root = tmp_path_factory.mktemp("runs_suite")
    write_synthetic_suite(root, seeds=(0,), steps=4)
    return root
