"""A run's checked metrics kept on disk between app processes, so the Runs page opens fast after a restart.

Each card of the runs list shows a damaged metrics file, so the app reads and checks every run's metrics on its
first look (``workbench.runlog``; about 0.5 ms a step file, 1.8 s for 33 runs of 100 steps). This module keeps
what passed those checks, one Arrow IPC file per run, with the key of every step file it came from::

    key(file) = (device, inode, size, mtime_ns)   # os.stat; run files are written by an atomic rename

``checked_metrics(run)`` returns ``run.read("metrics")`` exactly (same rows, order, columns and types): the rows
of the longest run of leading step files whose keys are unchanged come from the cache, every other file is read
and checked by ``Run.read`` as without a cache (a live run reads only its new steps; a replaced, removed or
damaged file is read again, and its error is raised as before). The cache is also void when the log schema or
this module's format changes (``FORMAT``). Like ``make`` and ``git``, it trusts a file whose key is unchanged: a
file rewritten in place with the same inode, size and modification time would not be read again.

Where: ``$REAL_WORKBENCH_CACHE`` (``off`` turns the cache off), else ``$XDG_CACHE_HOME/real-workbench``, else
``~/.cache/real-workbench``; under it ``metrics/<hash of the run folder's path>.arrow``. A cache that cannot be
written or read is skipped (the run is read from its files), never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import pyarrow as pa

from workbench.runlog import METRICS_SCHEMA, Run, step_file

ENV_VAR = "REAL_WORKBENCH_CACHE"
FORMAT = 1
MAX_ENTRIES = 4096  # run files kept; past this the least recently written half is removed
_SCHEMA_KEY = hashlib.sha256(str(METRICS_SCHEMA).encode()).hexdigest()[:16]
_META = b"real_workbench_metrics_cache"

log = logging.getLogger(__name__)

FileKey = tuple[str, int, int, int, int]  # file name, device, inode, size, mtime_ns


def cache_dir() -> Path | None:
    """The cache folder, or None when ``$REAL_WORKBENCH_CACHE`` is ``off`` (or ``0``, or empty)."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "real-workbench"


def _entry(run: Run) -> Path | None:
    root = cache_dir()
    if root is None:
        return None
    digest = hashlib.sha256(str(run.dir.resolve()).encode()).hexdigest()[:32]
    return root / "metrics" / f"{digest}.arrow"


def _file_key(path: Path) -> FileKey | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (path.name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _load(entry: Path, run: Run) -> tuple[pa.Table, list[FileKey], list[int]] | None:
    """The cached table, its files' keys and their row counts, or None (absent, unreadable, foreign, stale)."""
    try:
        table = pa.ipc.open_file(pa.py_buffer(entry.read_bytes())).read_all()
        meta = json.loads((table.schema.metadata or {})[_META])
        if meta["format"] != FORMAT or meta["schema"] != _SCHEMA_KEY or meta["run"] != str(run.dir.resolve()):
            return None
        keys = [tuple(k) for k in meta["files"]]
        rows = [int(n) for n in meta["rows"]]
        if len(keys) != len(rows) or sum(rows) != table.num_rows:
            return None
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return None
    return table.replace_schema_metadata(None), keys, rows  # type: ignore[return-value]


def _store(entry: Path, run: Run, table: pa.Table, keys: list[FileKey], rows: list[int]) -> None:
    meta = {
        "format": FORMAT,
        "schema": _SCHEMA_KEY,
        "run": str(run.dir.resolve()),
        "files": keys,
        "rows": rows,
    }
    table = table.replace_schema_metadata({_META: json.dumps(meta)})
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f, pa.ipc.new_file(f, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _prune(entry.parent)
    except (OSError, pa.ArrowException) as e:
        log.debug("metrics cache not written (%s): %s", entry, e)


def _prune(folder: Path) -> None:
    entries = list(folder.glob("*.arrow"))
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort(key=lambda p: p.stat().st_mtime_ns)
    for p in entries[: len(entries) // 2]:
        p.unlink(missing_ok=True)


def checked_metrics(run: Run) -> pa.Table:
    """``run.read("metrics")``, its unchanged leading step files taken from the disk cache (module docstring).

    A ``RunFormatError`` of a step file read now is raised as ``Run.read`` raises it (nothing is cached then)."""
    entry = _entry(run)
    if entry is None:
        return run.read("metrics")
    steps = run.steps()
    keys = [_file_key(step_file(run.dir, "metrics", s)) for s in steps]
    if any(k is None for k in keys):  # a file vanished between the listing and its stat: no shortcut
        return run.read("metrics")
    cached = _load(entry, run)
    same, offset = 0, 0
    if cached is not None:
        table, old_keys, old_rows = cached
        for new, old, n in zip(keys, old_keys, old_rows, strict=False):
            if new != old:
                break
            same, offset = same + 1, offset + n
        if same == len(keys) == len(old_keys):
            return table
    if cached is None or same == 0:
        whole, rows = run.read("metrics", steps), []
    elif same == len(steps):  # only trailing files were removed
        whole, rows = cached[0].slice(0, offset), cached[2][:same]
    else:
        fresh = run.read("metrics", steps[same:])
        if fresh.schema.equals(cached[0].schema):
            whole, rows = pa.concat_tables([cached[0].slice(0, offset), fresh]), cached[2][:same]
        else:  # the new files have other types (another writer): read all as Run.read does
            whole, rows = run.read("metrics", steps), []
    rows = rows + _row_counts(steps[len(rows) :], whole.slice(sum(rows)))
    if len(rows) == len(keys) and sum(rows) == whole.num_rows:
        _store(entry, run, whole, keys, rows)  # type: ignore[arg-type]
    return whole


def _row_counts(steps: list[int], fresh: pa.Table) -> list[int]:
    """Rows each of ``steps``' files gave (by the rows' ``step`` column, in file order), or [] when the rows do
    not come in that order (then nothing is cached)."""
    values = fresh.column("step").to_pylist() if fresh.num_rows else []
    counts, at = [], 0
    for s in steps:
        n = 0
        while at < len(values) and values[at] == s:
            n, at = n + 1, at + 1
        counts.append(n)
    return counts if at == len(values) else []
