"""The runs root: the one folder a reader (the app) may read runs from, and the check that keeps it there.

A run is addressed by its *name*, a single path component under the root. ``resolve_run_dir(root, name)``
returns the run's real path or raises ``UnsafeRunName``; it refuses:

- empty names, ``.``, ``..`` and names holding ``/``, ``\\`` or NUL (no nesting, no climbing);
- absolute paths;
- names whose real path (symbolic links followed) is not strictly inside the root's real path.

A link inside the root that points to another folder inside the root is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "REAL_RUNS_ROOT"
DEFAULT_ROOT = Path("runs")
LOG_SUFFIX = ".log"


class UnsafeRunName(ValueError):
    """A run name that would make a reader leave its runs root."""


def runs_root(flag: str | os.PathLike[str] | None = None) -> Path:
    """The runs root: ``flag`` if given, else ``$REAL_RUNS_ROOT`` if set and non-empty, else ``runs/``."""
    if flag:
        return Path(flag)
    env = os.environ.get(ENV_VAR, "")
    return Path(env) if env else DEFAULT_ROOT


def check_run_name(name: str) -> str:
    """``name`` if it is one harmless path component, else ``UnsafeRunName`` saying why."""
    if not isinstance(name, str) or not name:
        raise UnsafeRunName("a run name must be a non-empty string")
    if name in (".", ".."):
        raise UnsafeRunName(f"run name {name!r} is refused: it names the root or its parent")
    if "/" in name or "\\" in name or "\x00" in name:
        raise UnsafeRunName(f"run name {name!r} is refused: it must be one folder name, without / or \\")
    if Path(name).is_absolute():
        raise UnsafeRunName(f"run name {name!r} is refused: absolute paths are not allowed")
    return name


def resolve_run_dir(root: str | os.PathLike[str], name: str) -> Path:
    """The real path of run ``name`` under ``root``; ``UnsafeRunName`` if it would leave the root.

    The run need not exist (the trainer may be about to create it); if it exists as a symbolic link, the
    link's target must lie inside the root.
    """
    check_run_name(name)
    real_root = Path(root).resolve()
    real = (real_root / name).resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise UnsafeRunName(
            f"run name {name!r} is refused: it resolves to {real}, outside the runs root {real_root}"
        )
    return real


def list_run_names(root: str | os.PathLike[str]) -> list[str]:
    """Names of the folders (and links to folders) directly under ``root`` that may be runs, sorted.

    Every such folder is a candidate run, including empty or broken ones, so that a reader can show an error
    for each instead of hiding it. Left out: entries that are not folders, hidden ones (``.x``: the jobs' logs
    and records in ``.jobs``, locks), and folders that only hold logs (``holds_only_logs``, such as the
    ``logs/`` folder older versions of the pipeline wrote). A missing root gives ``[]``.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    names = []
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if not (entry.is_dir() or entry.is_symlink()) or holds_only_logs(entry):
            continue
        names.append(entry.name)
    return sorted(names)


def holds_only_logs(folder: Path) -> bool:
    """Whether ``folder`` is a real folder (not a link) without ``run.json`` whose visible entries are one or more
    files named ``*.log`` and nothing else: a folder of logs, never a run (a run always has ``run.json``; the
    trainer writes no ``.log`` file before it)."""
    if folder.is_symlink() or not folder.is_dir() or (folder / "run.json").exists():
        return False
    try:
        visible = [e for e in folder.iterdir() if not e.name.startswith(".")]
    except OSError:
        return False
    return bool(visible) and all(e.name.endswith(LOG_SUFFIX) and e.is_file() for e in visible)
