"""Loaders for the paper's data files: DeepScaleR-style JSON, JSONL, and verl-style Parquet (DAPO-Math-17K).

Every loader yields ``training.task.Problem`` records and a report of what it skipped. Formats:

- JSON: a list of objects with ``problem`` and ``answer`` (the six benchmarks, ``train/math.json``);
- JSONL: one such object per line;
- Parquet, verl-style: ``prompt`` is a chat list ``[{"role": "user", "content": ...}]`` and the gold answer is
  ``reward_model.ground_truth``; Parquet with plain ``problem`` / ``answer`` columns also works.

Gold answers come in several shapes (see DESIGN.md): plain strings, ints, floats written as text (``142.0``),
lists of alternatives with trailing newlines (``['9.6\\n', '9.6 \\times ...']``, Minerva), one-element lists of
``$...$`` strings (OlympiadBench), and stringified Python lists. ``normalize_answer`` turns each into a tuple of
non-empty strings without surrounding ``$`` (the grader wraps gold answers in ``$...$`` itself); a response is
correct when it matches any of them.

The prompt is the problem text followed by the paper's suffix (``PROMPT_SUFFIX``) unless the text already ends
with it. A chat template, when the tokenizer has one, is applied where prompts are tokenised, not here.

Errors: an unreadable file, a malformed row, a missing field or an empty answer raises ``DataFormatError`` naming
the file, the row and the field; with ``on_error="skip"`` the row is skipped instead and counted in the report.
Nothing is dropped silently.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.task import Problem
from workbench.errors import LocatedError

PROMPT_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."
BENCHMARKS = ("aime", "aime25", "amc", "math", "minerva", "olympiad_bench")


class DataFormatError(LocatedError):
    """A data file that cannot be used as it is. The message names the file, row (0-based) and field."""


@dataclass
class LoadReport:
    """Problems read from one file, and every row skipped with its reason."""

    path: Path | str  # a file, or a data set read through ``datasets`` (its spec)
    problems: list[Problem]
    skipped: list[DataFormatError] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.problems) + len(self.skipped)

    def summary(self) -> str:
        text = f"{self.path}: {len(self.problems)} problems"
        if self.skipped:
            text += f", {len(self.skipped)} rows skipped (first: {self.skipped[0]})"
        return text


# The six benchmarks ship inside the package (``benchmarks/<name>.json``; sources and licences in its README.md).
BUNDLED_DATA_DIR = Path(__file__).resolve().parent / "bundled_data"


def data_dir() -> Path:
    """The data folder the benchmark names resolve in: ``$REAL_DATA_DIR`` if set (an override laid out as
    ``benchmarks/<name>.json``), else the copy shipped with the package (``training/bundled_data``)."""
    env = os.environ.get("REAL_DATA_DIR")
    if env:
        return Path(env)
    return BUNDLED_DATA_DIR


def benchmark_path(name: str) -> Path:
    """The file of one of the paper's six benchmarks (``aime``, ``aime25``, ``amc``, ``math``, ``minerva``,
    ``olympiad_bench``) under ``data_dir()/benchmarks``; a path to a file works too."""
    if name in BENCHMARKS:
        return data_dir() / "benchmarks" / f"{name}.json"
    path = Path(name)
    if path.suffix in (".json", ".jsonl", ".parquet"):
        return path
    raise ValueError(
        f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)} or give a .json/.jsonl/.parquet path"
    )


def _number_text(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"non-finite number {x!r}")
    if x == int(x) and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


_DOLLAR = re.compile(r"(?<!\\)\$")  # an inline-math marker: a '$' not escaped as '\$'


def _strip_dollars(text: str) -> str:
    """Drop inline-math markers: ``'$x$' -> 'x'``, ``'$69$,$84$' -> '69,84'`` (OlympiadBench's multi-part
    answers); escaped dollars (``\\$18.90``, MATH) are text and stay."""
    text = text.strip()
    if len(_DOLLAR.findall(text)) >= 2:
        text = _DOLLAR.sub("", text).strip()  # '$$' alone is empty
    return text


def _string_list(text: str) -> list[str] | None:
    """``"['9.6\\n', '9.6']" -> ['9.6\\n', '9.6']``: a stringified Python list of strings, else None. A bracket
    that holds numbers or LaTeX (``[-9, 9]``, ``[0,3)``: intervals in MATH) is an answer, not a list."""
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(parsed, list) and parsed and all(isinstance(x, str) for x in parsed):
        return parsed
    return None


def normalize_answer(value: Any) -> tuple[str, ...]:
    """A gold answer of any shape found in the data -> its accepted forms: non-empty, in order, no duplicates.

    ``142.0 -> ('142',)``, ``70 -> ('70',)``, ``"['9.6\\n']" -> ('9.6',)``, ``['0.01\\n', '0.02\\n'] ->
    ('0.01', '0.02')`` (Minerva: alternatives), ``['$\\frac{1}{2}$'] -> ('\\frac{1}{2}',)``, ``['$69$,$84$'] ->
    ('69,84',)`` (OlympiadBench: one answer with two parts), ``'[-9, 9]' -> ('[-9, 9]',)`` (an interval).
    Raises ValueError for an empty answer or a type that is not a number, a string or a list of those.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an answer: {value!r}")
    if isinstance(value, int):
        return (str(value),)
    if isinstance(value, float):
        return (_number_text(value),)
    if isinstance(value, str):
        text = value.strip()
        items = _string_list(text)
        if items is not None:
            return normalize_answer(items)
        text = _strip_dollars(text)
        if not text:
            raise ValueError("empty answer")
        return (text,)
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        out: list[str] = []
        for j, item in enumerate(list(value)):
            if isinstance(item, list | tuple):
                raise ValueError(f"nested list in an answer: {value!r}"[:200])
            if isinstance(item, str) and not _strip_dollars(item):
                continue  # an empty alternative next to real ones; an all-empty list fails below
            try:
                alternatives = normalize_answer(item)
            except ValueError as e:
                raise ValueError(f"alternative {j}: {e}") from None
            for alt in alternatives:
                if alt not in out:
                    out.append(alt)
        if not out:
            raise ValueError("empty answer list")
        return tuple(out)
    raise ValueError(f"an answer must be a number, a string or a list, got {type(value).__name__}")


def with_suffix(problem_text: str, suffix: str = PROMPT_SUFFIX) -> str:
    """``problem_text`` followed by the paper's instruction, unless it already ends with it."""
    text = problem_text.strip()
    if not suffix or text.endswith(suffix):
        return text
    return f"{text}\n\n{suffix}"


def _decode_error(
    path: Path, e: UnicodeDecodeError, row: int | None = None, field: str | None = None
) -> DataFormatError:
    return DataFormatError(
        path, f"not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r})", row=row, field=field
    )


def _rows_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise DataFormatError(path, "malformed JSON: nested too deeply") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataFormatError(path, f"expected a JSON list of objects, got {type(data).__name__}")
    yield from enumerate(data)


def _rows_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows are line numbers (0-based); blank lines are not rows."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                yield i, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield i, _decode_error(path, e, row=i)
            except (json.JSONDecodeError, RecursionError) as e:
                yield (
                    i,
                    DataFormatError(path, f"malformed JSON: {getattr(e, 'msg', 'nested too deeply')}", row=i),
                )


def _rows_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows of a Parquet file. A foreign writer can store text that is not UTF-8 in a string column: such a row
    is a ``DataFormatError`` naming its row and column (skippable like any bad row), not a failed file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataFormatError(path, f"not a readable Parquet file ({type(e).__name__}: {e})") from None
    try:
        rows = table.to_pylist()
    except UnicodeDecodeError:  # look for the bad rows one at a time (only for such a file)
        for i in range(table.num_rows):
            try:
                yield i, table.slice(i, 1).to_pylist()[0]
            except UnicodeDecodeError as e:
                bad = (c for c in table.column_names if _undecodable(table.column(c).slice(i, 1)))
                yield i, _decode_error(path, e, row=i, field=next(bad, None))
        return
    yield from enumerate(rows)


def _undecodable(value: Any) -> bool:
    """Whether an Arrow array (a one-row slice of a column, nested columns included) holds text that is not
    UTF-8."""
    try:
        value.to_pylist()
    except UnicodeDecodeError:
        return True
    return False


_MISSING = object()


def _lookup(row: dict[str, Any], dotted: str) -> Any:
    """``row["a"]["b"]`` for ``"a.b"`` (a top-level key that contains the dot wins); ``_MISSING`` if absent."""
    if dotted in row:
        return row[dotted]
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (braces matched), or None if there is none; raises
    ValueError for a ``\\boxed{`` that is never closed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    raise ValueError("a \\boxed{ that is never closed")


def _problem_text(row: dict[str, Any], path: Path | str, i: int, field: str | None = None) -> str:
    """The problem statement: ``problem``, else the last user message of a verl-style ``prompt`` chat list; with
    ``field`` (``--problem-field``), that column (dotted for nested ones), a string or a chat list."""
    if field is not None:
        key, chat = field, _lookup(row, field)
        if chat is _MISSING:
            raise DataFormatError(path, "missing (named by --problem-field)", row=i, field=key)
    elif "problem" in row:
        key, chat = "problem", row["problem"]
    elif "prompt" in row:
        key, chat = "prompt", row["prompt"]
    else:
        raise DataFormatError(
            path, "missing (need 'problem', or a verl-style 'prompt' chat list)", row=i, field="problem"
        )
    if key == "problem" and field is None:
        text = chat
    elif isinstance(chat, str):
        text = chat
    elif isinstance(chat, list | tuple) or type(chat).__name__ == "ndarray":
        users = [m.get("content") for m in chat if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise DataFormatError(path, "a chat list without a user message", row=i, field=key)
        text = users[-1]
    else:
        raise DataFormatError(
            path, f"must be a string or a chat list, got {type(chat).__name__}", row=i, field=key
        )
    if not isinstance(text, str):
        raise DataFormatError(path, f"must be a string, got {type(text).__name__}", row=i, field=key)
    if not text.strip():
        raise DataFormatError(path, "empty problem text", row=i, field=key)
    return text


def _answer(row: dict[str, Any], path: Path | str, i: int, field: str | None = None) -> tuple[str, ...]:
    """The accepted answers: ``answer``, else ``reward_model.ground_truth``; with ``field`` (``--answer-field``),
    that column (dotted for nested ones), and a worked solution there (text with ``\\boxed{}``, e.g. MATH's
    ``solution``) gives the content of its last ``\\boxed{}``."""
    if field is not None:
        key, value = field, _lookup(row, field)
        if value is _MISSING:
            raise DataFormatError(path, "missing (named by --answer-field)", row=i, field=key)
        if isinstance(value, str):
            try:
                boxed = last_boxed(value)
            except ValueError as e:
                raise DataFormatError(path, str(e), row=i, field=key) from None
            value = value if boxed is None else boxed
    elif "answer" in row:
        key, value = "answer", row["answer"]
    elif isinstance(row.get("reward_model"), dict) and "ground_truth" in row["reward_model"]:
        key, value = "reward_model.ground_truth", row["reward_model"]["ground_truth"]
    else:
        raise DataFormatError(
            path, "missing (need 'answer' or 'reward_model.ground_truth')", row=i, field="answer"
        )
    if value is None:
        raise DataFormatError(path, "empty answer (null)", row=i, field=key)
    try:
        return normalize_answer(value)
    except ValueError as e:
        raise DataFormatError(path, str(e), row=i, field=key) from None


READERS = {".json": _rows_json, ".jsonl": _rows_jsonl, ".parquet": _rows_parquet}


def load_problems(
    path: Path | str,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    limit: int | None = None,
    prompt_suffix: str = PROMPT_SUFFIX,
    source: str | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
) -> LoadReport:
    """Read a ``.json``, ``.jsonl`` or ``.parquet`` file of problems (format from the suffix).

    Problem ids are row numbers (JSONL: line numbers). With ``on_error="skip"`` a bad row is skipped and listed
    in the report; else the first one raises ``DataFormatError``. A file that cannot be read at all always
    raises. ``limit`` stops after that many problems. Each prompt gets ``prompt_suffix`` unless it ends with it.
    ``problem_field`` / ``answer_field`` name other columns for the problem and the answer (see ``_answer``).
    """
    path = Path(path)
    _check_on_error(on_error)
    if not path.exists():
        raise DataFormatError(path, "no such file")
    if not path.is_file():
        raise DataFormatError(path, "not a file")
    if path.suffix not in READERS:
        raise DataFormatError(path, f"unknown format {path.suffix!r}; use .json, .jsonl or .parquet")
    try:
        return problems_from_rows(
            READERS[path.suffix](path), path, on_error=on_error, limit=limit, prompt_suffix=prompt_suffix,
            source=source or path.stem, problem_field=problem_field, answer_field=answer_field,
        )  # fmt: skip
    except PermissionError:
        raise DataFormatError(path, "not readable (permission denied)") from None
    except IsADirectoryError:
        raise DataFormatError(path, "not a file") from None


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def problems_from_rows(
    rows: Iterable[tuple[int, Any]],
    where: Path | str,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    limit: int | None = None,
    prompt_suffix: str = PROMPT_SUFFIX,
    source: str,
    problem_field: str | None = None,
    answer_field: str | None = None,
) -> LoadReport:
    """Problems from ``(row number, row)`` pairs read from ``where`` (a file, or a data set loaded through
    ``datasets``): each row's problem and answers, bad rows raised or skipped and counted per ``on_error``; a
    source with no row, or no usable row, raises."""
    _check_on_error(on_error)
    report = LoadReport(where, [])
    for i, row in rows:
        try:
            if isinstance(row, DataFormatError):
                raise row
            if not isinstance(row, dict):
                raise DataFormatError(where, f"must be an object, got {type(row).__name__}", row=i)
            text = _problem_text(row, where, i, problem_field)
            answers = _answer(row, where, i, answer_field)
        except DataFormatError as e:
            if on_error == "raise":
                raise
            report.skipped.append(e)
            continue
        report.problems.append(
            Problem(
                id=i,
                prompt=with_suffix(text, prompt_suffix),
                answer=answers[0],
                alternatives=answers[1:],
                source=source,
            )
        )
        if limit is not None and len(report.problems) >= limit:
            break
    if not report.problems and not report.skipped:
        raise DataFormatError(where, "holds no rows")
    if not report.problems:
        raise DataFormatError(
            where, f"no usable row: all {len(report.skipped)} rows are bad (first: {report.skipped[0]})"
        )
    return report


def resolve(spec: str) -> list[tuple[str, Path]]:
    """``"aime,amc"`` or ``"data/x.jsonl"`` or a mix -> [(name, path)]: benchmark names map to their files under
    ``data_dir()/benchmarks``, anything else is a path (its name is the file's stem)."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise ValueError("no data set named")
    out = []
    for item in items:
        path = benchmark_path(item)
        out.append((item if item in BENCHMARKS else path.stem, path))
    return out


def fingerprint(path: Path | str) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits): tells whether a resumed evaluation reads the same data."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
