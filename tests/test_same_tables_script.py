"""scripts/same_tables.py: identical logs (two runs written with the same seed) pass, a different run fails and
names what differs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from workbench.synthetic_run import write_synthetic_run

ROOT = Path(__file__).resolve().parents[1]


def test_same_tables_tells_identical_from_different_runs(tmp_path: Path) -> None:
    a = write_synthetic_run(tmp_path / "a", method="real", seed=0, steps=2)
    b = write_synthetic_run(tmp_path / "b", method="real", seed=0, steps=2)
    c = write_synthetic_run(tmp_path / "c", method="real", seed=1, steps=2)
    script = [sys.executable, str(ROOT / "scripts" / "same_tables.py")]
    same = subprocess.run([*script, str(a), str(b)], capture_output=True, text=True, cwd=ROOT)
    assert same.returncode == 0 and same.stdout.count("identical") == 3, same.stdout + same.stderr
    other = subprocess.run([*script, str(a), str(c)], capture_output=True, text=True, cwd=ROOT)
    assert other.returncode == 1 and "differ in" in other.stdout
