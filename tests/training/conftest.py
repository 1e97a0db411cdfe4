"""Shared fixtures of the training tests: a small but real configuration, its warm start trained once per session
(in a temporary cache), and a grader pool.

The test configuration is the ``tiny`` preset scaled down for speed (one-operator sums of numbers up to 20, a
2-layer model, 4 prompts x 4 rollouts per step, temperature 1.0 so that groups mix correct and wrong rollouts),
run through the same code path as the preset.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from training.config import TrainConfig, build_config, flag
from workbench.runlog import measures_the_machine, open_run

ROOT = Path(__file__).resolve().parents[2]

SMALL: dict[str, Any] = {
    "task_min_ops": 1,
    "task_max_ops": 1,
    "task_max_operand": 20,
    "n_train": 256,
    "n_val": 16,
    "n_test": 16,
    "n_sft": 800,
    "tiny_hidden": 64,
    "tiny_layers": 2,
    "tiny_heads": 2,
    "tiny_intermediate": 128,
    "warmstart_target": 0.3,
    "temperature": 1.0,
    "max_new_tokens": 24,
    "steps": 3,
    "batch_prompts": 4,
    "minibatch_prompts": 1,
    "group_size": 4,
    "val_every": 2,
    "val_prompts": 8,
    "val_k": 2,
    "save_every": 2,
    "grader_workers": 1,
    "progress": False,
}


LOGGED = ("metrics", "rollouts", "tokens")


def machine_column(column: str) -> bool:
    """A column two runs of one seed may log differently: the machine's measurements, and the grader cache's hits
    (the tests' runs share one grader, so a later run finds the earlier one's verdicts)."""
    return measures_the_machine(column) or column == "grader_cache_hits"


def logged_table(run_dir: Path | str, table: str) -> pd.DataFrame:
    """Every column of every complete step's ``table`` file of a run (the writer's extra ones included), the
    machine's measurements left out."""
    df = open_run(run_dir).read_every_column(table)
    return df.drop(columns=[c for c in df.columns if machine_column(c)])


def assert_same_logs(a: Path | str, b: Path | str) -> None:
    """Two runs logged the same values, bit for bit, in every table (machine measurements aside)."""
    assert open_run(a).steps() == open_run(b).steps()
    for table in LOGGED:
        pd.testing.assert_frame_equal(
            logged_table(a, table), logged_table(b, table), check_exact=True, obj=table
        )


def small_config(method: str, cache_dir: Path, **overrides: Any) -> TrainConfig:
    return build_config("tiny", {**SMALL, "method": method, "cache_dir": str(cache_dir), **overrides})


def cli_flags(settings: dict[str, Any]) -> list[str]:
    """Command-line flags that set ``settings``."""
    out: list[str] = []
    for k, v in settings.items():
        if isinstance(v, bool):
            out.append(flag(k) if v else "--no-" + k.replace("_", "-"))
        else:
            out += [flag(k), str(v)]
    return out


def run_cli(
    args: list[str], timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``$REAL_DATA_DIR`` or ``../shared/data``: benchmarks and training sets). Missing:
    skipped on a developer's machine (say where to point ``REAL_DATA_DIR``), a failure in CI."""
    path = Path(os.environ.get("REAL_DATA_DIR") or ROOT.parent / "shared" / "data")
    if not (path / "benchmarks").is_dir() or not (path / "train").is_dir():
        message = f"no shared data at {path}: set REAL_DATA_DIR (e.g. REAL_DATA_DIR=/work/shared/data)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory) -> Path:
    """A tiny randomly initialised model folder with a chat-template tokenizer, built locally."""
    from training.model import save_tiny_model_folder

    return save_tiny_model_folder(tmp_path_factory.mktemp("models") / "tinychat")


def data_env(shared: Path) -> dict[str, str]:
    return {"REAL_DATA_DIR": str(shared)}


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_main(args: list[str], capsys) -> CliResult:
    """``python -m training ARGS`` in this process (no interpreter start-up: the same ``main``)."""
    from training.cli import main

    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
