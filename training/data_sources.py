"""Where problems come from: a benchmark name, a data file, or a data set read through Hugging Face ``datasets``.

A data set is named by one string (``--train-data``, ``--val-data``, ``eval --benchmarks``, ``check-data``;
several are comma-separated where a command takes several):

- a benchmark name (``aime``, ``aime25``, ``amc``, ``math``, ``minerva``, ``olympiad_bench``): its file under
  ``training.datasets.data_dir()`` (``$REAL_DATA_DIR``, else the copy shipped with the package);
- a ``.json``, ``.jsonl`` or ``.parquet`` file: read by ``training.datasets.load_problems``, whose errors name the
  file, row and field;
- a Hugging Face Hub id (``owner/name``; ``hf:name`` for an id without an owner) or a local folder of data files,
  optionally followed by ``:split=S``, ``:name=C`` (the config; ``config=`` works too) and ``:revision=R``, e.g.
  ``agentica-org/DeepScaleR-Preview-Dataset:split=train``. It is loaded with ``datasets.load_dataset``, so it is
  downloaded once into the ``datasets`` cache (``$HF_DATASETS_CACHE``) and read from there afterwards, also with
  ``HF_HUB_OFFLINE=1``. Without a split, a data set with a single split uses it; with several it is an error
  naming them.

Rows are turned into problems by the same code whatever the source (``training.datasets.problems_from_rows``):
the same normalisation of answers, the same errors and the same skip counting. ``problem_field`` /
``answer_field`` (``--problem-field``, ``--answer-field``) name other columns, e.g. ``question``, or ``prompt`` and
``solution`` (a worked solution gives the content of its last ``\\boxed{}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from training.datasets import (
    BENCHMARKS,
    PROMPT_SUFFIX,
    READERS,
    DataFormatError,
    LoadReport,
    benchmark_path,
    fingerprint,
    load_problems,
    problems_from_rows,
)
from training.task import Problem

OPTION_KEYS = {"split": "split", "name": "config", "config": "config", "revision": "revision"}
_OPTIONS = re.compile(r"^(?P<id>.+?)(?P<opts>(?::[A-Za-z_]+=[^:]*)*)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class DataSource:
    """One data set: a file (``path``) or something ``datasets.load_dataset`` reads (``dataset``: a hub id or a
    local folder, with ``split``, ``config`` and ``revision``). ``name`` is its short name: the benchmark name, a
    file's stem, a folder's or hub id's last part."""

    spec: str
    name: str
    path: Path | None = None
    dataset: str | None = None
    split: str | None = None
    config: str | None = None
    revision: str | None = None

    @property
    def is_file(self) -> bool:
        return self.path is not None


def parse_source(item: str) -> DataSource:
    """One data set's string -> ``DataSource`` (module docstring). Raises ValueError, naming the choices, for a
    string that is none of them."""
    item = item.strip()
    if item in BENCHMARKS:
        return DataSource(item, item, path=benchmark_path(item))
    match = _OPTIONS.match(item)
    ident, opts = (match["id"], match["opts"]) if match else (item, "")
    if not opts and Path(item).suffix in READERS:
        return DataSource(item, Path(item).stem, path=Path(item))
    options: dict[str, str] = {}
    for part in filter(None, opts.split(":")):
        key, _, value = part.partition("=")
        if key not in OPTION_KEYS:
            raise ValueError(f"{item}: unknown option {key!r} (use :split=, :name= or :revision=)")
        if not value:
            raise ValueError(f"{item}: empty value for {key}=")
        options[OPTION_KEYS[key]] = value
    if Path(ident).suffix in READERS:
        raise ValueError(
            f"{item}: options (:split=, :name=, :revision=) are for Hub ids and folders, not files"
        )
    hub = ident.removeprefix("hf:")
    if ident.startswith("hf:") or Path(ident).is_dir() or _HUB_ID.match(ident):
        name = Path(hub.rstrip("/")).name or hub
        return DataSource(item, name, dataset=hub, **options)
    if opts:
        raise ValueError(f"{item}: {ident!r} is neither a local folder nor a Hub id (owner/name)")
    raise ValueError(
        f"unknown benchmark {item!r}; choose from {', '.join(BENCHMARKS)}, give a .json/.jsonl/.parquet path, "
        "a folder, or a Hugging Face Hub id (owner/name[:split=S][:name=C][:revision=R])"
    )


def resolve_sources(spec: str) -> list[DataSource]:
    """``"aime,amc"``, ``"data/x.jsonl"``, ``"owner/name:split=test"`` or a mix -> their ``DataSource``s."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise ValueError("no data set named")
    return [parse_source(item) for item in items]


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get(k, "").upper() for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(f in ("1", "ON", "YES", "TRUE") for f in flags)


def _load_dataset(dataset: str, config: str | None, split: str | None, revision: str | None) -> Any:
    """``datasets.load_dataset``: a second call reads its cache (prepared Arrow files), and sees changed files."""
    import datasets

    return datasets.load_dataset(dataset, config, split=split, revision=revision)


def load_dataset_rows(src: DataSource) -> Any:
    """The ``datasets.Dataset`` of ``src`` (one split), through the ``datasets`` cache. Every failure is one
    ``DataFormatError`` line naming the data set: not installed, offline and not cached, not found, a split or
    config that does not exist, several splits and none chosen."""
    assert src.dataset is not None
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise DataFormatError(
            src.spec, "reading a Hub data set or a folder needs the 'datasets' package (pip install datasets)"
        ) from None
    try:
        loaded = _load_dataset(src.dataset, src.config, src.split, src.revision)
    except ConnectionError as e:
        why = "HF_HUB_OFFLINE is set" if _offline() else f"no network: {_first_line(e)}"
        raise DataFormatError(
            src.spec,
            f"not in the local datasets cache and the Hugging Face Hub cannot be reached ({why}); load it once "
            "with network (it is cached then), or pass a local .json/.jsonl/.parquet file or folder",
        ) from None
    except FileNotFoundError as e:
        raise DataFormatError(src.spec, f"no such data set: {_first_line(e)}") from None
    except Exception as e:  # an unknown split or config, a malformed file, ...: one line
        raise DataFormatError(src.spec, f"cannot be loaded ({type(e).__name__}: {_first_line(e)})") from None
    if hasattr(loaded, "keys"):  # a DatasetDict: no split was named
        splits = sorted(loaded.keys())
        if len(splits) != 1:
            raise DataFormatError(
                src.spec,
                f"has splits {', '.join(splits)}: name one with :split=NAME (e.g. {src.spec}:split=...)",
            )
        loaded = loaded[splits[0]]
    return loaded


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def load_source(
    src: DataSource,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    limit: int | None = None,
    prompt_suffix: str = PROMPT_SUFFIX,
    source: str | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
) -> LoadReport:
    """The problems of ``src`` (see ``training.datasets.load_problems`` for ``on_error``, ``limit`` and the
    fields); problem ids are row numbers. The fields map the columns of files and data sets, not of the six
    benchmarks named by name (their columns are known), so ``--val-data aime`` works beside a mapped
    ``--train-data``."""
    if src.spec in BENCHMARKS:
        problem_field = answer_field = None
    if src.is_file:
        return load_problems(
            src.path, on_error=on_error, limit=limit, prompt_suffix=prompt_suffix, source=source or src.name,
            problem_field=problem_field, answer_field=answer_field,
        )  # fmt: skip
    rows = load_dataset_rows(src)
    return problems_from_rows(
        enumerate(rows), src.spec, on_error=on_error, limit=limit, prompt_suffix=prompt_suffix,
        source=source or src.name, problem_field=problem_field, answer_field=answer_field,
    )  # fmt: skip


def source_fingerprint(src: DataSource) -> str:
    """Tells whether two reads saw the same data: a file's SHA-256 (16 hex digits), a loaded data set's
    ``datasets`` fingerprint (derived from its files and revision)."""
    if src.is_file:
        if not src.path.is_file():
            raise DataFormatError(src.path, "no such file")
        return fingerprint(src.path)
    return str(load_dataset_rows(src)._fingerprint)


def read_split(
    spec: str,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    prompt_suffix: str = PROMPT_SUFFIX,
    problem_field: str | None = None,
    answer_field: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[Problem], dict[str, Any]]:
    """The problems of every data set named in ``spec`` (comma-separated), in order, and what was read from each
    (for ``run.json``: name, path or spec, fingerprint, problems, skipped rows); logs one summary line per set."""
    problems: list[Problem] = []
    files: list[dict[str, Any]] = []
    skipped: list[str] = []
    for src in resolve_sources(spec):
        report = load_source(src, on_error=on_error, prompt_suffix=prompt_suffix, problem_field=problem_field,
                             answer_field=answer_field)  # fmt: skip
        problems += report.problems
        entry: dict[str, Any] = {"name": src.name}
        if src.is_file:
            entry.update(path=str(src.path), sha256_16=source_fingerprint(src))
        else:
            entry.update(dataset=src.spec, fingerprint=source_fingerprint(src))
        files.append({**entry, "problems": len(report.problems), "skipped": len(report.skipped)})
        skipped += [str(e) for e in report.skipped]
        log(report.summary())
    info = {"files": files, "problems": len(problems), "skipped": len(skipped), "skipped_rows": skipped[:50]}
    return problems, info
