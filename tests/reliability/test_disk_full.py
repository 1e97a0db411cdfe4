"""A disk that fills up mid-run: the run ends as ``failed`` with one line naming the cause, leaves no temporary
file, keeps its complete steps, and ``--resume`` continues once there is space again. Needs a small tmpfs
(``mount``, as root on Linux); skipped where it cannot be mounted."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.training.conftest import SMALL, cli_flags, run_cli


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_fails_in_one_line_and_resume_continues(ws_cache, small_disk):
    out = small_disk / "run"
    settings = {**SMALL, "steps": 40, "save_every": 1, "val_every": 0, "cache_dir": str(ws_cache)}
    done = run_cli(["train", "--method", "real", *cli_flags(settings), "--no-progress", "--out", str(out)])
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "No space left on device" in last and "--resume" in last, last
    assert "Traceback" not in done.stderr
    status = json.loads((out / "status.json").read_text())
    complete = sorted(int(p.stem[5:]) for p in (out / "metrics").glob("step_*.parquet"))
    assert (
        status["state"] == "failed" and status["last_step"] == complete[-1] and "No space" in status["error"]
    )
    assert complete == list(range(1, len(complete) + 1)) and len(complete) < 40
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") and p.name != ".writer.lock"]
    assert not leftovers, leftovers

    grow = subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], capture_output=True)
    assert grow.returncode == 0, grow.stderr
    again = run_cli(
        ["train", "--out", str(out), "--resume", "--steps", str(len(complete) + 2), "--no-progress"]
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
