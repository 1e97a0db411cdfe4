"""The run directory: a versioned, documented schema, one writer and one reader (see docs/run_format.md).

Layout of ``runs/<name>/``::

    run.json                      schema_version, name, method, config, env (packages, seed, git commit)
    status.json                   state (running | finished | failed | stopped), last_step, pid, updated, error
    metrics/step_000001.parquet   one row: the step's scalar metrics
    rollouts/step_000001.parquet  one row per rollout
    tokens/step_000001.parquet    one row per response token
    events.jsonl                  notable events (grader timeouts, resumes), one JSON object per line

Every file is written to a temporary name in its folder and renamed into place, so a reader never sees half a
file. A step is complete once its ``metrics`` file exists; the writer writes it last. A crash therefore loses at
most the step in flight, and a run can be read while it trains.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench.errors import LocatedError
from workbench.liveness import run_is_live

SCHEMA_VERSION = 1
TABLES = ("metrics", "rollouts", "tokens")

F32, F64, I32, I64 = pa.float32(), pa.float64(), pa.int32(), pa.int64()

# Required columns of each table. Writers may add more columns; readers rely only on these.
METRICS_SCHEMA = pa.schema(
    [
        ("step", I64),
        ("reward_mean", F64),  # mean reward over the step's rollouts
        ("solved_all_ratio", F64),  # share of prompts solved by all G rollouts ("100% solved ratio")
        ("solved_none_ratio", F64),  # share of prompts solved by none
        ("entropy_mean", F64),  # mean token entropy of the sampling policy over response tokens
        ("val_pass1", F64),  # validation Pass@1 (mean over k samples per prompt); null when not validated
        ("loss", F64),  # mean of the mini-batch losses
        ("grad_norm", F64),  # mean gradient norm before clipping
        ("clip_frac_low", F64),
        ("clip_frac_high", F64),
        ("approx_kl", F64),  # k3 estimate of KL(pi_old || pi_theta) at update time
        ("response_len_mean", F64),
        ("time_sample", F64),  # seconds per phase
        ("time_grade", F64),  # decoding what sampling left ungraded + waiting for rewards (grading overlaps)
        ("time_update", F64),
        ("time_log", F64),
        ("time_step", F64),
        ("tokens_per_s", F64),  # response tokens sampled per second of sampling
        ("grader_timeouts", I64),
        ("grader_errors", I64),
    ]
)

ROLLOUTS_SCHEMA = pa.schema(
    [
        ("step", I64),
        ("minibatch", I32),  # index of the mini-batch update that used the rollout
        ("rollout", I32),  # index within the step
        ("group", I32),  # prompt group index within the step
        ("prompt_id", I64),  # the prompt's id in its data set
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("answer", pa.string()),  # gold answer
        ("reward", F32),
        ("length", I32),  # response tokens
        ("s_bar", F32),  # mean token log-ratio at the time of its update (Eq. 5)
        ("advantage", F32),  # clip family: group-normalised advantage; REAL family: null
        ("weight", F32),  # rollout gradient weight: REAL W_k, clip family sum_t |A| rho_t I_t / |o|
        ("log_c", F32),  # REAL family: log C+ (correct) or log C- (wrong); clip family: null
        ("used", pa.bool_()),  # whether its group entered the loss
        ("group_size", I32),
        ("group_correct", I32),  # correct rollouts in its group
    ]
)

TOKENS_SCHEMA = pa.schema(
    [
        ("step", I64),
        ("rollout", I32),
        ("pos", I32),  # position within the response
        ("token_id", I32),
        ("token", pa.string()),  # decoded text of the token
        ("old_logp", F32),
        ("logp", F32),  # log-prob under the policy at its mini-batch update
        ("s", F32),  # logp - old_logp
        ("ratio", F32),  # e^s
        ("entropy", F32),  # entropy of the sampling distribution at this position
        ("weight", F32),  # per-token gradient magnitude with per-rollout normalisation (see closed_forms)
        ("grad", F32),  # exact dL/dlogp in the mini-batch loss (aggregation included, KL left out)
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "metrics": METRICS_SCHEMA,
    "rollouts": ROLLOUTS_SCHEMA,
    "tokens": TOKENS_SCHEMA,
}
NULLABLE = {("metrics", "val_pass1"), ("rollouts", "advantage"), ("rollouts", "log_c")}
# Magnitudes: a gradient weight is >= 0 (docs/run_format.md); the statistics sort and sum them as such.
NONNEGATIVE = {("rollouts", "weight"), ("tokens", "weight")}


class RunFormatError(LocatedError):
    """A run directory or one of its files does not follow the schema. The message names file, row and field."""


def step_file(run_dir: Path, table: str, step: int) -> Path:
    return run_dir / table / f"step_{step:06d}.parquet"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    _atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def atomic_write_table(path: Path, table: pa.Table) -> None:
    """Write a Parquet file through a temporary file and a rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_table(name: str, columns: Mapping[str, Any]) -> pa.Table:
    """Build a table of ``name`` from columns (lists or numpy arrays), cast to the schema; extra columns kept.

    Raises ``RunFormatError`` for a missing required column, unequal lengths, or a non-finite float where the
    schema does not allow nulls (NaN is written as null only in nullable columns). Extra float columns have
    no schema: NaN is written as null there, and +-inf is refused. No NaN or inf is ever written: where a caller
    has an infinite value with a meaning (REAL w/o anchor's log C in a one-label group), it decides what to log.
    """
    schema = SCHEMAS[name]
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        raise RunFormatError(name, f"missing required column(s) {', '.join(missing)}")
    arrays, fields = [], []
    for fld in schema:
        arrays.append(_to_array(name, fld, columns[fld.name]))
        fields.append(fld)
    for key, values in columns.items():
        if key in schema.names:
            continue
        arr = _extra_array(name, key, values)
        arrays.append(arr)
        fields.append(pa.field(key, arr.type))
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise RunFormatError(name, f"columns have unequal lengths {sorted(lengths)}")
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _to_array(table: str, fld: pa.Field, values: Any) -> pa.Array:
    if pa.types.is_floating(fld.type):
        arr = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            if (table, fld.name) not in NULLABLE or np.isinf(arr).any():
                row = int(np.flatnonzero(bad)[0])
                raise RunFormatError(table, f"non-finite value {float(arr[row])}", field=fld.name, row=row)
            return pa.array(arr, mask=bad).cast(fld.type)
        return pa.array(arr).cast(fld.type)
    if pa.types.is_integer(fld.type):
        return pa.array(np.asarray(values, dtype=np.int64)).cast(fld.type)
    if pa.types.is_boolean(fld.type):
        return pa.array(np.asarray(values, dtype=bool))
    return pa.array(list(values), type=fld.type)


def _extra_array(table: str, key: str, values: Any) -> pa.Array:
    """A column outside the schema as written: NaN becomes null, +-inf is refused (naming row and field)."""
    arr = pa.array(np.asarray(values)) if isinstance(values, np.ndarray) else pa.array(values)
    if pa.types.is_floating(arr.type):
        x = arr.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls read as NaN
        if np.isinf(x).any():
            row = int(np.flatnonzero(np.isinf(x))[0])
            raise RunFormatError(table, f"non-finite value {float(x[row])}", field=key, row=row)
        if np.isnan(x).any():
            arr = pa.array(x, mask=np.isnan(x)).cast(arr.type)
    return arr


class RunWriter:
    """Writes one run directory. Create with ``RunWriter.create`` (new run) or ``RunWriter.resume``."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)

    @classmethod
    def create(
        cls, run_dir: Path | str, *, name: str, method: str, config: Mapping[str, Any], env: Mapping[str, Any]
    ) -> RunWriter:
        run_dir = Path(run_dir)
        if (run_dir / "run.json").exists():
            raise FileExistsError(
                f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "method": method,
            "config": dict(config),
            "env": dict(env),
        }
        atomic_write_json(run_dir / "run.json", meta)
        writer = cls(run_dir)
        writer.set_status("running", last_step=0)
        return writer

    @classmethod
    def resume(cls, run_dir: Path | str, last_step: int) -> RunWriter:
        """Reopen a run after a crash: drop every log of steps after ``last_step`` (they will be redone)."""
        writer = cls(Path(run_dir))
        read_meta(writer.dir)
        for table in (
            "metrics",
            "rollouts",
            "tokens",
        ):  # metrics first: the step stops being complete at once
            folder = writer.dir / table
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                if f.name.startswith("."):
                    f.unlink(missing_ok=True)  # temporary file of a killed writer
                elif _parse_step(f) is not None and _parse_step(f) > last_step:
                    f.unlink()
        writer.set_status("running", last_step=last_step)
        writer.event("resume", from_step=last_step)
        return writer

    def write_step(
        self,
        step: int,
        metrics: Mapping[str, Any],
        rollouts: Mapping[str, Any] | pa.Table,
        tokens: Mapping[str, Any] | pa.Table,
        *,
        late_metrics: Callable[[], Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Write the three tables of ``step``; ``metrics`` last, which marks the step complete. ``rollouts`` and
        ``tokens`` are columns, or tables already checked by ``to_table`` (``workbench.step_tables.build_step``
        gives both). Returns the
        metrics row as written (schema types; a NaN is None), for trackers that mirror the metrics table.

        ``late_metrics``, if given, is called after the tokens and rollouts files are written and its values
        update ``metrics`` before that file is written (e.g. the time the logging itself took).
        """
        tok = tokens if isinstance(tokens, pa.Table) else to_table("tokens", tokens)
        rol = rollouts if isinstance(rollouts, pa.Table) else to_table("rollouts", rollouts)
        met = to_table("metrics", {k: [v] for k, v in {**metrics, "step": step}.items()})
        atomic_write_table(step_file(self.dir, "tokens", step), tok)
        atomic_write_table(step_file(self.dir, "rollouts", step), rol)
        if late_metrics is not None:
            met = to_table(
                "metrics", {k: [v] for k, v in {**metrics, **late_metrics(), "step": step}.items()}
            )
        atomic_write_table(step_file(self.dir, "metrics", step), met)
        return met.to_pylist()[0]

    def set_status(self, state: str, *, last_step: int, error: str | None = None, **extra: Any) -> None:
        status = {
            "state": state,
            "last_step": last_step,
            "pid": os.getpid(),
            "updated": pd.Timestamp.now("UTC").isoformat(),
        }
        if error:
            status["error"] = error
        status.update(extra)
        atomic_write_json(self.dir / "status.json", status)

    def event(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"time": pd.Timestamp.now("UTC").isoformat(), "event": kind, **fields}, default=str)
        with open(self.dir / "events.jsonl", "a") as f:
            f.write(line + "\n")


def _parse_step(path: Path) -> int | None:
    stem = path.name
    if not (stem.startswith("step_") and stem.endswith(".parquet")):
        return None
    try:
        return int(stem[5:-8])
    except ValueError:
        return None


def read_meta(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run, checked: raises RunFormatError naming the file and field."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise RunFormatError(run_dir, "not a run directory (no run.json)")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFormatError(path, f"not valid UTF-8 JSON ({e})") from None
    if not isinstance(meta, dict):
        raise RunFormatError(path, "must hold a JSON object")
    for key, typ in (("schema_version", int), ("name", str), ("method", str), ("config", dict)):
        if key not in meta:
            raise RunFormatError(path, "missing", field=key)
        if not isinstance(meta[key], typ):
            raise RunFormatError(path, f"must be {typ.__name__}, got {type(meta[key]).__name__}", field=key)
        if typ is str and not meta[key].strip():
            raise RunFormatError(path, "is empty", field=key)
    if meta["schema_version"] > SCHEMA_VERSION:
        raise RunFormatError(
            path,
            f"schema version {meta['schema_version']} is newer than this workbench reads ({SCHEMA_VERSION})",
            field="schema_version",
        )
    return meta


def measures_the_machine(column: str) -> bool:
    """Whether a logged column measures the machine, not the run (wall times ``time_*``, throughput, memory): two
    runs of one seed and code may differ there and nowhere else."""
    return column.startswith("time_") or column in ("tokens_per_s", "max_rss_mb")


@dataclass(frozen=True)
class StepFilesRead:
    """What ``Run.read_files`` read: the table, the steps whose files it read, and each file's row count when
    all files had the table's schema (else ``None``)."""

    table: pa.Table
    steps: list[int]
    rows: list[int] | None


@dataclass
class Run:
    """A run directory opened for reading. Only complete steps (those with a metrics file) are visible."""

    dir: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def method(self) -> str:
        return str(self.meta["method"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta["config"])

    @property
    def env(self) -> dict[str, Any]:
        return dict(self.meta.get("env", {}))

    def is_live(self) -> bool:
        """Whether a trainer still writes this run (``workbench.liveness.run_is_live``)."""
        return run_is_live(self.dir, self.status())

    def status(self) -> dict[str, Any]:
        path = self.dir / "status.json"
        try:
            status = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return {"state": "unknown", "last_step": None}
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunFormatError(path, f"not valid UTF-8 JSON ({e})") from None
        if not isinstance(status, dict):
            raise RunFormatError(path, f"must hold a JSON object, got {type(status).__name__}")
        return status

    def steps(self) -> list[int]:
        """Complete steps, ascending."""
        folder = self.dir / "metrics"
        if not folder.is_dir():
            return []
        return sorted(s for f in folder.iterdir() if (s := _parse_step(f)) is not None)

    def files(self, table: str, steps: Iterable[int] | None = None) -> list[Path]:
        wanted = self.steps() if steps is None else sorted(set(steps) & set(self.steps()))
        return [step_file(self.dir, table, s) for s in wanted]

    def read(
        self, table: str, steps: Iterable[int] | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """Concatenate ``table`` over complete ``steps`` (default all), checking each file against the schema.

        Files that share one schema and pass the checks together are read in one pass (``_read_uniform``); any
        other case (a damaged, missing, retyped or differently typed file, a value the checks refuse) is read
        file by file through ``read_table_file``, whose error names the file, row and field."""
        return self.read_files(table, steps, columns).table

    def read_files(
        self, table: str, steps: Iterable[int] | None = None, columns: list[str] | None = None
    ) -> StepFilesRead:
        """``read``'s table, with the steps whose files it read and, when every file had one schema (that of
        the table), each file's row count (``None`` otherwise: types were merged across files)."""
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")
        files = self.files(table, steps)
        read = [s for f in files if (s := _parse_step(f)) is not None]
        fast = _read_uniform(files, table, columns)
        if fast is not None:
            return StepFilesRead(fast[0], read, fast[1])
        parts = [read_table_file(f, table, columns) for f in files]
        if not parts:
            cols = columns or SCHEMAS[table].names
            empty = pa.schema(
                [SCHEMAS[table].field(c) for c in cols if c in SCHEMAS[table].names]
            ).empty_table()
            return StepFilesRead(empty, read, [])
        whole = pa.concat_tables(parts, promote_options="permissive")
        uniform = all(t.schema.equals(whole.schema) for t in parts)
        return StepFilesRead(whole, read, [t.num_rows for t in parts] if uniform else None)

    def read_every_column(self, table: str, steps: Iterable[int] | None = None) -> pd.DataFrame:
        """Every column of complete ``steps``' ``table`` files as written, the writer's extra ones too (``read``
        keeps the schema's), without the reader's checks: for comparing two runs' logs."""
        frames = [pq.read_table(f).to_pandas() for f in self.files(table, steps)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def metrics(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read("metrics", columns=columns).to_pandas()

    def rollouts(self, steps: Iterable[int] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read("rollouts", steps, columns).to_pandas()

    def tokens(self, steps: Iterable[int] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read("tokens", steps, columns).to_pandas()


def read_table_file(path: Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """Read one step file and check it: readable Parquet, required columns present with the right types, and
    their values present (no null outside the nullable columns), finite (no NaN or inf in a float column; the
    nullable ones may hold NaN, read as a missing value) and text valid UTF-8. A violation raises
    ``RunFormatError`` naming the file, the row (0-based within the file) and the field."""
    schema = SCHEMAS[table]
    try:
        file_schema = pq.read_schema(path)
    except FileNotFoundError:
        raise RunFormatError(
            path, "missing (the step is marked complete but this table was not written)"
        ) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RunFormatError(path, f"not a readable Parquet file ({e})") from None
    needed = columns if columns is not None else schema.names
    _check_columns(path, table, file_schema, needed)
    try:
        tbl = pq.read_table(path, columns=list(needed))
    except (pa.ArrowInvalid, OSError) as e:
        raise RunFormatError(path, f"not a readable Parquet file ({e})") from None
    check_values(path, table, tbl)
    return tbl


def _read_columns(path: Path, columns: list[str]) -> pa.Table:
    """One file's columns, decoded on the calling thread (``_read_uniform`` runs several at once; Arrow's own
    threads and pre-buffering on top cost ~20% on small files)."""
    with pq.ParquetFile(path, pre_buffer=False) as pf:
        return pf.read(columns=columns, use_threads=False)


def _read_uniform(
    files: list[Path], table: str, columns: list[str] | None
) -> tuple[pa.Table, list[int]] | None:
    """The files' ``columns`` as one table, with each file's row count, when every file reads, all have the same
    schema, and that schema and the concatenated values pass ``read_table_file``'s checks; else None (the caller
    reads file by file, which raises the located error or concatenates differing types). The same result as the file-by-file
    read, at a quarter of its cost: the schema and the values are checked once, not once per file."""
    if len(files) < 2:
        return None
    needed = list(columns if columns is not None else SCHEMAS[table].names)
    try:
        # Parquet decoding releases the GIL: the files are read a few at a time (threads of this call only)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(files))) as pool:
            parts = list(pool.map(lambda f: _read_columns(f, needed), files))
        schema = parts[0].schema
        if any(not t.schema.equals(schema) for t in parts[1:]) or schema.names != needed:
            return None
        _check_columns(files[0], table, schema, needed)
        whole = pa.concat_tables(parts)
        check_values(files[0], table, whole)
    except (RunFormatError, pa.ArrowException, OSError, ValueError, KeyError):
        return None
    return whole, [t.num_rows for t in parts]


def check_values(path: Path, table: str, tbl: pa.Table) -> None:
    """``read_table_file``'s value checks on every schema column of ``tbl`` (read from ``path``, which the error
    names): no null outside the nullable columns, finite floats, valid UTF-8, non-negative magnitudes."""
    for name in tbl.column_names:
        if name in SCHEMAS[table].names:
            _check_values(path, table, name, tbl.column(name))


def _check_columns(path: Path, table: str, file_schema: pa.Schema, needed: Iterable[str]) -> None:
    """Every column of ``needed`` is in the file, and a schema column has a type the schema accepts."""
    schema = SCHEMAS[table]
    for name in needed:
        if name not in schema.names:
            if name not in file_schema.names:
                raise RunFormatError(path, "no such column", field=name)
            continue
        if name not in file_schema.names:
            raise RunFormatError(path, "required column missing", field=name)
        expected, got = schema.field(name).type, file_schema.field(name).type
        if not _compatible(expected, got):
            raise RunFormatError(path, f"has type {got}, expected {expected}", field=name)


def _first(mask: pa.ChunkedArray) -> int | None:
    """Index of the first True of a boolean column (nulls count as False), or None."""
    hits = pc.indices_nonzero(mask.fill_null(False))
    return int(hits[0].as_py()) if len(hits) else None


def _check_values(path: Path, table: str, name: str, col: pa.ChunkedArray) -> None:
    nullable = (table, name) in NULLABLE
    if col.null_count and not nullable and not pa.types.is_null(col.type):
        raise RunFormatError(
            path, "is empty (null) in a required column", field=name, row=_first(col.is_null())
        )
    if pa.types.is_null(col.type) and not nullable and len(col):
        raise RunFormatError(path, "is empty (null) in a required column", field=name, row=0)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        offset = 0
        for chunk in col.chunks:  # Parquet readers do not check UTF-8; pandas would fail on it later
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid as e:
                at = re.search(r"index (\d+)", str(e))
                row = offset + int(at.group(1)) if at else None
                raise RunFormatError(path, f"text is not valid UTF-8 ({e})", field=name, row=row) from None
            offset += len(chunk)
    if pa.types.is_floating(col.type):
        bad = pc.is_inf(col) if nullable else pc.invert(pc.is_finite(col))
        if pc.any(bad).as_py():  # one vectorised pass; the row is looked up only on failure
            row = _first(bad)
            raise RunFormatError(path, f"non-finite value {col[row].as_py()!r}", field=name, row=row)
    if (table, name) in NONNEGATIVE and (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        bad = pc.less(col, 0)
        if pc.any(bad).as_py():
            row = _first(bad)
            raise RunFormatError(
                path, f"negative value {col[row].as_py()!r} (a gradient weight is a magnitude, >= 0)",
                field=name, row=row,
            )  # fmt: skip


def _compatible(expected: pa.DataType, got: pa.DataType) -> bool:
    if expected == got:
        return True
    if pa.types.is_floating(expected):
        return pa.types.is_floating(got) or pa.types.is_integer(got) or pa.types.is_null(got)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(got)
    if pa.types.is_string(expected):
        return pa.types.is_string(got) or pa.types.is_large_string(got)
    return pa.types.is_null(got)


def open_run(run_dir: Path | str) -> Run:
    """Open a run for reading; raises RunFormatError when ``run.json`` is missing or malformed."""
    run_dir = Path(run_dir)
    return Run(run_dir, read_meta(run_dir))


def find_runs(root: Path | str) -> list[Path]:
    """Run directories (folders holding run.json) directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "run.json").is_file())
