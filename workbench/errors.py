"""Errors that say where: a file, and where known the row (0-based) and field of the bad value."""

from __future__ import annotations

from pathlib import Path


class LocatedError(ValueError):
    """``"<path>[, row R][, field 'F']: <problem>"``; the parts stay available as ``path``, ``row``, ``field``,
    ``problem`` for readers that show them apart (the app's run cards, skip reports)."""

    def __init__(self, path: Path | str, problem: str, *, row: int | None = None, field: str | None = None):
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")
        self.path, self.row, self.field, self.problem = Path(path), row, field, problem
