"""workbench.runs_root: a reader addresses runs by name and never leaves its runs root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.runs_root import (
    ENV_VAR,
    UnsafeRunName,
    holds_only_logs,
    list_run_names,
    resolve_run_dir,
    runs_root,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "runs"
    (r / "good").mkdir(parents=True)
    (r / ".jobs").mkdir()
    (r / "notes.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", r / "escape")
    os.symlink(r / "good", r / "alias")
    os.symlink(tmp_path / "nowhere", r / "dangling")
    return r


def test_plain_names_resolve_inside(root: Path) -> None:
    assert resolve_run_dir(root, "good") == (root / "good").resolve()
    assert resolve_run_dir(root, "not-yet") == (root / "not-yet").resolve()  # a run about to be created
    assert resolve_run_dir(root, "alias") == (root / "good").resolve()  # a link that stays inside


@pytest.mark.parametrize(
    "name", ["..", ".", "", "../good", "good/../..", "a/b", "a\\b", "/etc", "/tmp/runs/good", "x\x00y"]
)
def test_names_that_leave_or_nest_are_refused(root: Path, name: str) -> None:
    with pytest.raises(UnsafeRunName):
        resolve_run_dir(root, name)


def test_links_out_of_the_root_are_refused(root: Path) -> None:
    with pytest.raises(UnsafeRunName, match="outside the runs root"):
        resolve_run_dir(root, "escape")
    with pytest.raises(UnsafeRunName, match="outside the runs root"):
        resolve_run_dir(root, "dangling")


def test_listing_shows_every_candidate_but_hidden_and_files(root: Path) -> None:
    assert list_run_names(root) == ["alias", "dangling", "escape", "good"]
    assert list_run_names(root / "missing") == []


def test_root_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert runs_root() == Path("runs")
    monkeypatch.setenv(ENV_VAR, "/data/runs")
    assert runs_root() == Path("/data/runs")
    assert runs_root("elsewhere") == Path("elsewhere")


def test_an_old_layout_root_with_a_logs_folder_lists_only_its_runs(tmp_path: Path) -> None:
    """Older pipelines wrote <root>/logs/<run>.log (the app listed it as a broken "no run.json" run); the jobs
    now write <root>/.jobs/. A folder of nothing but logs, under any name, is not a run; anything else is."""
    root = tmp_path / "runs"
    (root / "good").mkdir(parents=True)
    (root / "good" / "run.json").write_text("{}")
    (root / "logs").mkdir()
    (root / "logs" / "good.log").write_text("step 1\n")
    (root / "logs" / ".nfs0001").write_text("")  # hidden entries do not count
    (root / "old-logs").mkdir()
    (root / "old-logs" / "a.log").write_text("")
    (root / ".jobs").mkdir()
    (root / ".jobs" / "good.log").write_text("")
    (root / "empty").mkdir()  # an empty folder is still a candidate (a broken run card says why)
    (root / "mixed").mkdir()
    (root / "mixed" / "a.log").write_text("")
    (root / "mixed" / "notes.txt").write_text("")
    (root / "fake.log").mkdir()  # a folder named *.log inside a folder is not a log file
    (root / "nested").mkdir()
    (root / "nested" / "x.log").mkdir()
    assert list_run_names(root) == ["empty", "fake.log", "good", "mixed", "nested"]
    assert holds_only_logs(root / "logs") and not holds_only_logs(root / "empty")
    # a run that happens to be named "logs" (it has run.json) is still listed, logs or not
    (root / "logs" / "run.json").write_text("{}")
    assert "logs" in list_run_names(root)
    # a link to a folder of logs stays a candidate: links are checked (and refused if they leave) by the reader
    os.symlink(root / "old-logs", root / "link")
    assert "link" in list_run_names(root)
