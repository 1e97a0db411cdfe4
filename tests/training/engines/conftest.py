"""Runs the engine-side checks (``verl_checks.py``, ``trl_checks.py``) inside the engines' own environments.

verl and TRL pin their own transformers, so their checks run in ``.venv-verl`` / ``.venv-trl`` (made by
``bash install.sh test`` or ``bash install.sh engines``) through a subprocess, from the repository root with the
source tree on PYTHONPATH. Set REAL_SKIP_ENGINE_TESTS=1 to skip them on a machine without those environments.
ms-swift's checks run in ``.venv-swift`` (a manual step, docs/engines.md "ms-swift"): skipped without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def run_checks(engine: str, checks: str, tmp_path: Path, timeout: int = 600, optional: bool = False) -> None:
    """Run ``pytest tests/engines/<checks>`` with ``.venv-<engine>/bin/python``; fail with its output if it fails.
    A missing environment fails the test, or skips it when ``optional``."""
    if os.environ.get("REAL_SKIP_ENGINE_TESTS") == "1":
        pytest.skip("REAL_SKIP_ENGINE_TESTS=1")
    python = REPO / f".venv-{engine}" / "bin" / "python"
    if optional and not python.exists():
        pytest.skip(f"{python} is missing (optional; how to build it: docs/engines.md)")
    if not python.exists():
        pytest.fail(
            f"{python} is missing: run `bash install.sh engines` (or `bash install.sh test`) to build the "
            f"{engine} test environment, or set REAL_SKIP_ENGINE_TESTS=1 to skip these tests"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("OMP_NUM_THREADS", "2")
    cmd = [
        str(python),
        "-m",
        "pytest",
        f"tests/training/engines/{checks}",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={tmp_path / 'basetemp'}",
        "-W",
        "ignore::UserWarning",
        "-W",
        "ignore::FutureWarning",
    ]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{checks} in .venv-{engine} ran past {timeout} s:\n{(e.stdout or '')[-4000:]}")
    tail = (proc.stdout + proc.stderr)[-6000:]
    sys.stdout.write(tail)
    if proc.returncode != 0:
        pytest.fail(f"{checks} failed in .venv-{engine} (exit {proc.returncode}):\n{tail}", pytrace=False)
    assert " passed" in tail and " failed" not in tail, tail


@pytest.fixture
def engine_checks(tmp_path):
    """``engine_checks(engine, checks_file)``: run the engine-side checks, failing with their output."""
    return lambda engine, checks, optional=False: run_checks(engine, checks, tmp_path, optional=optional)
