"""Bounded reads of one step file: the columns and rows a view needs, with every text value size-limited.

``workbench.runlog.read_table_file`` reads whole columns, which is right for the statistics (numeric columns, all
rows). A viewer of one step (the app's rollout inspector) needs a few rows, and must not let a run folder from
someone else decide how much memory it takes: a 17 KB Parquet file can hold four 100 MB strings. ``read_slice``
therefore

- reads only ``columns`` (Parquet column projection) and, with ``where=(column, values)``, only the rows whose
  ``column`` is in ``values``: row groups whose min/max statistics exclude every value are skipped unread, the
  others are read one at a time and filtered at once;
- stops after ``max_rows`` matching rows (the rest of the file is not read; a note says so);
- never reads a text column of a row group whose uncompressed size (from the file's metadata) is over
  ``max_column_bytes``: its values become a placeholder naming the size, and a note says so;
- cuts every text value longer than ``max_text_chars`` characters to that many, with a note naming the column,
  the number of values cut and the longest.

The values read are checked as ``read_table_file`` checks them (types, nulls, finite floats, UTF-8, non-negative
weights); a violation raises ``RunFormatError`` naming the file, the row within the file and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench.runlog import SCHEMAS, RunFormatError, _check_columns, _check_values

MAX_TEXT_CHARS = 200_000  # one text value shown (a prompt, an answer, a token) is cut beyond this
MAX_COLUMN_BYTES = 32_000_000  # a text column of one row group is not read beyond this (uncompressed)


def mb(n: float) -> str:
    """``n`` bytes in MB (10^6), one decimal."""
    return f"{n / 1e6:,.1f} MB"


@dataclass
class Slice:
    """Rows of one step file. ``file_rows[i]``: the row of ``table``'s row ``i`` within the file (0-based).
    ``notes``: one line per limit that changed what was read (text cut or not read, rows left out)."""

    table: pa.Table
    file_rows: np.ndarray
    notes: list[str] = field(default_factory=list)
    complete: bool = True  # False when ``max_rows`` stopped the read


def file_rows(path: Path | str) -> int:
    """Rows of a Parquet file, from its footer (nothing else is read)."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except FileNotFoundError:
        raise RunFormatError(path, "missing") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RunFormatError(path, f"not a readable Parquet file ({e})") from None


def _may_hold(stats: pq.Statistics | None, values: np.ndarray) -> bool:
    """Whether a row group whose column has these min/max statistics can hold one of ``values``."""
    if stats is None or not stats.has_min_max or not len(values):
        return bool(len(values)) or stats is None
    try:
        lo, hi = float(stats.min), float(stats.max)
    except (TypeError, ValueError):
        return True
    return bool(((values >= lo) & (values <= hi)).any())


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def read_slice(
    path: Path | str,
    table: str,
    columns: Sequence[str],
    *,
    where: tuple[str, Sequence[int]] | None = None,
    max_rows: int | None = None,
    max_text_chars: int = MAX_TEXT_CHARS,
    max_column_bytes: int = MAX_COLUMN_BYTES,
) -> Slice:
    """``columns`` of the rows of step file ``path`` (a ``table`` of the run format) that a view needs, bounded as
    the module says. ``where=(column, values)`` keeps the rows whose integer ``column`` is in ``values``."""
    path = Path(path)
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}")
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise RunFormatError(
            path, "missing (the step is marked complete but this table was not written)"
        ) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RunFormatError(path, f"not a readable Parquet file ({e})") from None
    file_schema = pf.schema_arrow
    needed = list(dict.fromkeys([*columns, *([where[0]] if where else [])]))
    _check_columns(path, table, file_schema, needed)
    wanted = np.unique(np.asarray(list(where[1]), dtype=np.int64)) if where else None
    where_idx = file_schema.names.index(where[0]) if where else -1
    meta = pf.metadata
    parts: list[pa.Table] = []
    rows_of: list[np.ndarray] = []
    skipped_text: dict[str, int] = {}  # column -> largest uncompressed size of a row group left unread
    kept, offset, complete = 0, 0, True
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        n = rg.num_rows
        start, offset = offset, offset + n
        if wanted is not None and not _may_hold(rg.column(where_idx).statistics, wanted):
            continue
        if max_rows is not None and kept >= max_rows:
            complete = False
            break
        readable = []
        for name in needed:
            j = file_schema.names.index(name)
            size = rg.column(j).total_uncompressed_size
            if (
                _is_text(file_schema.field(name).type)
                and size > max_column_bytes
                and name != (where or ("",))[0]
            ):
                skipped_text[name] = max(skipped_text.get(name, 0), size)
            else:
                readable.append(name)
        try:
            part = pf.read_row_group(i, columns=readable)
        except (pa.ArrowInvalid, OSError) as e:
            raise RunFormatError(path, f"not a readable Parquet file ({e})") from None
        idx = np.arange(n, dtype=np.int64)
        if wanted is not None:
            mask = pc.is_in(
                part.column(where[0]), value_set=pa.array(wanted).cast(part.schema.field(where[0]).type)
            )
            idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
            part = part.take(pa.array(idx))
        if max_rows is not None and kept + len(idx) > max_rows:
            idx, part, complete = idx[: max_rows - kept], part.slice(0, max_rows - kept), False
        for name in readable:
            if name in SCHEMAS[table].names:
                try:
                    _check_values(path, table, name, part.column(name))
                except RunFormatError as e:
                    row = None if e.row is None else int(start + idx[e.row])
                    raise RunFormatError(path, e.problem, field=e.field, row=row) from None
        for name in needed:
            if name not in readable:
                text = f"[not read: {name} text of {mb(skipped_text[name])} in this file, over the {mb(max_column_bytes)} limit]"
                part = part.append_column(name, pa.array([text] * len(idx), pa.string()))
        parts.append(part.select(needed))
        rows_of.append(start + idx)
        kept += len(idx)
    notes = [
        f"{path.parent.name}/{path.name}: the {name} text was not read ({mb(size)} uncompressed, over the "
        f"{mb(max_column_bytes)} read of one text column)"
        for name, size in skipped_text.items()
    ]
    if parts:
        out = pa.concat_tables(parts, promote_options="permissive")
    else:
        out = pa.schema([file_schema.field(c) for c in needed]).empty_table()
    out, cut = _cut_texts(out, max_text_chars)
    notes += [
        f"{path.parent.name}/{path.name}: {count} {name} value(s) longer than {max_text_chars:,} characters "
        f"(the longest {largest:,}) shown cut to their first {max_text_chars:,}"
        for name, (count, largest) in cut.items()
    ]
    if not complete:
        which = "matching rows" if where else "rows"
        notes.append(f"{path.parent.name}/{path.name}: only the first {max_rows:,} {which} were read")
    return Slice(out, np.concatenate(rows_of) if rows_of else np.zeros(0, np.int64), notes, complete)


def _cut_texts(tbl: pa.Table, limit: int) -> tuple[pa.Table, dict[str, tuple[int, int]]]:
    """Every text value of ``tbl`` longer than ``limit`` characters cut to its first ``limit``; per column cut,
    the number of values cut and the longest length (characters) before."""
    cut: dict[str, tuple[int, int]] = {}
    for i, fld in enumerate(tbl.schema):
        if not _is_text(fld.type) or not tbl.num_rows:
            continue
        col = tbl.column(i)
        lengths = pc.utf8_length(col)
        over = pc.greater(lengths, limit)
        count = pc.sum(over).as_py() or 0
        if not count:
            continue
        largest = pc.max(lengths).as_py()
        short = pc.utf8_slice_codeunits(col, 0, limit)  # counts characters (code points)
        tbl = tbl.set_column(i, fld, pc.if_else(over, short, col))
        cut[fld.name] = (int(count), int(largest))
    return tbl, cut
