"""A run's checked metrics kept on disk between app processes, so the Runs page opens fast after a restart.

Each card of the runs list shows a damaged metrics file, so the app reads and checks every run's metrics on its
first look (``workbench.runlog``; about 0.5 ms a step file, 1.8 s for 33 runs of 100 steps). This module keeps
what passed those checks, one Arrow IPC file per run, with the key of every step file it came from::

    key(file) = (device, inode, size, mtime_ns)   # os.stat; run files are written by an atomic rename

``checked_metrics(run)`` returns ``run.read("metrics")`` exactly (same rows, order, columns, types and schema
metadata): the rows of the longest run of leading step files whose keys are unchanged come from the cache, every
other file is read and checked by ``Run.read`` as without a cache (a live run reads only its new steps; a
replaced, removed or damaged file is read again, and its error is raised as before). An entry is written only
when every file had the same schema and none changed while it was read, and is checked again when read back. The cache is also void when the log schema or
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
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from workbench.runlog import METRICS_SCHEMA, Run, check_values, step_file

ENV_VAR = "REAL_WORKBENCH_CACHE"
FORMAT = 2
MAX_ENTRIES = (
    2048  # run files kept (~25 KB each for 100 steps); past this the least recently written half goes
)
_SCHEMA_KEY = hashlib.sha256(str(METRICS_SCHEMA).encode()).hexdigest()[:16]
_META = b"real_workbench_metrics_cache"

log = logging.getLogger(__name__)

FileKey = tuple[str, int, int, int, int]  # file name, device, inode, size, mtime_ns


def cache_dir() -> Path | None:
    """The cache folder, or None when ``$REAL_WORKBENCH_CACHE`` is ``off`` (or ``0``, or empty) or there is no
    home folder to put it in."""
    value = os.environ.get(ENV_VAR)
    try:
        if value is not None:
            return None if value.strip().lower() in ("", "0", "off", "none") else Path(value).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except (RuntimeError, KeyError, OSError):
        return None
    return Path(base) / "real-workbench"


def checked_metrics(run: Run) -> pa.Table:
    """``run.read("metrics")``, its unchanged leading step files taken from the disk cache (module docstring).

    A ``RunFormatError`` of a step file read now is raised as ``Run.read`` raises it (nothing is cached then).
    Only a run whose files all have one schema is cached (per-file row counts from the reader): where the reader
    merges types across files, a part of the files could read as other types."""
    entry = _entry(run)
    if entry is None:
        return run.read("metrics")
    steps = run.steps()
    keys = _keys(run, steps)
    if keys is None:  # a file vanished between the listing and its stat: no shortcut
        return run.read("metrics")
    cached = _load(entry, run)
    same, offset = 0, 0
    if cached is not None:
        for new, old, n in zip(keys, cached.keys, cached.rows, strict=False):
            if new != old:
                break
            same, offset = same + 1, offset + n
        if same == len(keys) == len(cached.keys):
            return cached.table
    if cached is not None and same:
        head = cached.table.slice(0, offset)
        if same == len(steps):  # only trailing files were removed
            _store_if_unchanged(entry, run, head, steps, keys, cached.rows[:same])
            return head
        fresh = run.read_files("metrics", steps[same:])
        if fresh.rows is not None and fresh.table.schema.equals(head.schema):
            whole = pa.concat_tables([head, fresh.table])
            if fresh.steps == steps[same:]:
                _store_if_unchanged(entry, run, whole, steps, keys, cached.rows[:same] + fresh.rows)
            return whole
    got = run.read_files("metrics", steps)
    if got.rows is not None and got.steps == steps:
        _store_if_unchanged(entry, run, got.table, steps, keys, got.rows)
    return got.table


@dataclass(frozen=True)
class _Cached:
    table: pa.Table
    keys: list[FileKey]
    rows: list[int]


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


def _keys(run: Run, steps: list[int]) -> list[FileKey] | None:
    keys = [_file_key(step_file(run.dir, "metrics", s)) for s in steps]
    return None if any(k is None for k in keys) else keys  # type: ignore[return-value]


def _load(entry: Path, run: Run) -> _Cached | None:
    """The cached table, its files' keys and row counts, or None (absent, unreadable, foreign, stale). What it
    holds is checked again (Arrow's full validation and the reader's value checks): a damaged cache entry is
    never served."""
    try:
        table = pa.ipc.open_file(pa.py_buffer(entry.read_bytes())).read_all()
        metadata = dict(table.schema.metadata or {})
        meta = json.loads(metadata.pop(_META))
        if meta["format"] != FORMAT or meta["schema"] != _SCHEMA_KEY or meta["run"] != str(run.dir.resolve()):
            return None
        keys = [tuple(k) for k in meta["files"]]
        rows = [int(n) for n in meta["rows"]]
        if len(keys) != len(rows) or sum(rows) != table.num_rows or min(rows, default=0) < 0:
            return None
        table = table.replace_schema_metadata(metadata or None)
        table.validate(full=True)
        check_values(entry, "metrics", table)
    except Exception:  # an entry that does not read back whole is no entry
        return None
    return _Cached(table, keys, rows)  # type: ignore[arg-type]


def _store_if_unchanged(
    entry: Path, run: Run, table: pa.Table, steps: list[int], keys: list[FileKey], rows: list[int]
) -> None:
    """Cache ``table`` (every one of ``steps``' files read, ``rows`` rows each) under ``keys``, only if the files
    still have the keys they had before they were read (none was replaced or moved meanwhile)."""
    if len(rows) == len(keys) and sum(rows) == table.num_rows and _keys(run, steps) == keys:
        _store(entry, run, table, keys, rows)


def _store(entry: Path, run: Run, table: pa.Table, keys: list[FileKey], rows: list[int]) -> None:
    meta = {
        "format": FORMAT,
        "schema": _SCHEMA_KEY,
        "run": str(run.dir.resolve()),
        "files": keys,
        "rows": rows,
    }
    # one record batch, not one per step file (a run of 100 steps: ~25 KB on disk instead of ~140 KB)
    table = table.combine_chunks().replace_schema_metadata(
        {**(table.schema.metadata or {}), _META: json.dumps(meta)}
    )
    try:
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f, pa.ipc.new_file(f, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _prune(entry.parent)
    except (OSError, ValueError, pa.ArrowException) as e:
        log.debug("metrics cache not written (%s): %s", entry, e)


def _prune(folder: Path) -> None:
    """Keep at most ``MAX_ENTRIES`` entries (the least recently written half goes), and no temporary file of a
    writer killed over an hour ago."""
    now = time.time()
    stamped = []
    for p in folder.iterdir():
        try:
            mtime = p.stat().st_mtime
            if p.name.endswith(".tmp") and now - mtime > 3600:
                p.unlink()
            elif p.suffix == ".arrow":
                stamped.append((mtime, p))
        except OSError:  # removed by another app process meanwhile
            continue
    if len(stamped) > MAX_ENTRIES:
        for _, p in sorted(stamped)[: len(stamped) // 2]:
            p.unlink(missing_ok=True)
