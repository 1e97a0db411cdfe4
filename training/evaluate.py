"""``python -m training eval``: Pass@1 on the paper's six benchmarks, laid out like its Tables 1-3.

For each benchmark, each question gets ``k`` samples at temperature ``T`` (the paper: k = 16, T = 0.6, up to 8,192
new tokens); each sample is graded with the trainer's grader (``training.rewards.Grader``: math-verify in worker
processes, correct when it matches any accepted gold answer). Then::

    Pass@1(benchmark) = mean over questions of (correct samples / k)
    Avg               = mean of the benchmarks' Pass@1 (the paper's "Avg." column)

Results are appended to ``<out>/samples/<benchmark>.jsonl`` one chunk of questions at a time (``--batch-prompts``
questions x k samples per generation call), so an interrupted evaluation loses at most one chunk: run the same
command again and it continues where it stopped (``<out>/eval.json`` holds the settings; other settings in the same
``--out`` are refused). Each chunk's sampling seed is derived from (seed, benchmark, chunk), so a resumed
evaluation draws the samples an uninterrupted one would have drawn.

Outputs: ``<out>/results.csv`` and ``<out>/results.md``: one row for this model, columns in the paper's order
(AIME24, AIME25, MATH500, AMC23, Minerva, O-Bench, Avg.), and the paper's reported rows in a separate reference
table, marked as reported values (never measured here).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.data_sources import DataSource, load_source, parse_source, source_fingerprint
from training.datasets import BENCHMARKS, PROMPT_SUFFIX, DataFormatError
from training.seeding import derive_seed
from training.tokenizer import response_texts

# The paper's column order and headers (Tables 1-3).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("aime", "AIME24"),
    ("aime25", "AIME25"),
    ("math", "MATH500"),
    ("amc", "AMC23"),
    ("minerva", "Minerva"),
    ("olympiad_bench", "O-Bench"),
)
HEADER = {name: title for name, title in COLUMNS}
EVAL_VERSION = 1
_EVAL_PURPOSE = 0xE7A1

# Pass@1 as reported in the paper (rewards_as_labels.md, Tables 1-3), columns in COLUMNS order then Avg.
# None: not reported ("–"). A '*' marks values the paper cites from other reports.
PAPER_TABLES: dict[str, tuple[str, list[tuple[str, list[float | None]]]]] = {
    "1": (
        "Table 1: DeepScaleR-Preview data, DeepSeek-R1-Distill-Qwen-1.5B",
        [
            ("OpenAI-o1-Preview*", [0.400, None, 0.814, None, None, None, None]),
            ("DS-Distill-Qwen-1.5B*", [0.181, 0.215, 0.758, 0.515, 0.237, 0.353, 0.376]),
            ("DSR-1.5B-Preview*", [0.358, 0.258, 0.860, 0.679, 0.297, 0.473, 0.488]),
            ("GRPO", [0.235, 0.229, 0.824, 0.600, 0.264, 0.435, 0.431]),
            ("DAPO", [0.298, 0.215, 0.837, 0.663, 0.295, 0.448, 0.459]),
            ("TRPA*", [0.354, 0.235, 0.835, 0.653, 0.283, 0.458, 0.470]),
            ("GSPO", [0.377, 0.296, 0.877, 0.730, 0.326, 0.506, 0.519]),
            ("REAL", [0.406, 0.321, 0.877, 0.734, 0.310, 0.508, 0.526]),
        ],
    ),
    "2": (
        "Table 2: DeepScaleR-Preview data, DeepSeek-R1-Distill-Qwen-7B",
        [
            ("DS-Distill-Qwen-7B*", [0.402, 0.292, 0.873, 0.688, 0.355, 0.471, 0.513]),
            ("GRPO*", [0.498, 0.394, 0.916, 0.807, 0.381, 0.555, 0.592]),
            ("DAPO*", [0.454, 0.335, 0.907, 0.799, 0.388, 0.535, 0.570]),
            ("TRPA*", [0.510, 0.367, 0.898, 0.779, 0.379, 0.534, 0.578]),
            ("GSPO", [0.525, 0.396, 0.926, 0.852, 0.402, 0.588, 0.615]),
            ("REAL", [0.571, 0.433, 0.929, 0.858, 0.402, 0.602, 0.632]),
        ],
    ),
    "3": (
        "Table 3: DAPO-Math-17K data, DeepSeek-R1-Distill-Qwen-1.5B",
        [
            ("GRPO", [0.342, 0.256, 0.842, 0.672, 0.267, 0.458, 0.473]),
            ("DAPO", [0.275, 0.229, 0.812, 0.653, 0.256, 0.441, 0.444]),
            ("TRPA*", [0.346, 0.279, 0.836, 0.683, 0.281, 0.450, 0.479]),
            ("GSPO", [0.365, 0.290, 0.867, 0.736, 0.313, 0.499, 0.511]),
            ("REAL", [0.402, 0.306, 0.866, 0.759, 0.312, 0.495, 0.523]),
        ],
    ),
}


class EvalError(ValueError):
    """Bad evaluation settings, or an ``--out`` that holds another evaluation."""


@dataclass
class EvalSettings:
    """Everything that determines an evaluation's samples (stored in ``<out>/eval.json``)."""

    model: str
    benchmarks: list[str]
    k: int = 16
    temperature: float = 0.6
    max_new_tokens: int = 8192
    seed: int = 0
    limit: int | None = None
    batch_prompts: int = 8
    prompt_template: str = "{prompt}"
    prompt_suffix: str = PROMPT_SUFFIX
    chat_template: bool = True
    backend: str = "transformers"
    dtype: str = "float32"
    data: dict[str, str] = field(default_factory=dict)  # benchmark -> fingerprint of its data
    problem_field: str | None = None  # --problem-field / --answer-field: other column names
    answer_field: str | None = None
    version: int = EVAL_VERSION

    def check(self) -> None:
        if not self.benchmarks:
            raise EvalError("--benchmarks names no benchmark")
        if len(set(self.benchmarks)) != len(self.benchmarks):
            raise EvalError(f"--benchmarks names a benchmark twice: {','.join(self.benchmarks)}")
        for name, low in (("k", 1), ("max_new_tokens", 1), ("batch_prompts", 1)):
            if getattr(self, name) < low:
                raise EvalError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise EvalError(f"--limit must be >= 1, got {self.limit}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise EvalError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if "{prompt}" not in self.prompt_template:
            raise EvalError("--prompt-template must contain {prompt}")


@dataclass
class BenchmarkResult:
    name: str
    questions: int
    k: int
    pass1: float  # mean over questions of the share of correct samples
    pass_at_k: float  # share of questions with at least one correct sample
    mean_length: float  # response tokens
    truncated: float  # share of samples that hit --max-new-tokens
    grader_timeouts: int
    grader_errors: int


def _name_code(name: str) -> int:
    """A stable integer for a benchmark name (its samples do not depend on which other benchmarks run)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def column_title(name: str) -> str:
    return HEADER.get(name, name)


# ------------------------------------------------------------------------------------------------ resume store


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a samples file; a torn last line (killed mid-write) is ignored."""
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn write: that chunk is redone
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def _truncate_to(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite ``path`` with only ``records`` (drops a torn tail before appending)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tmp.replace(path)


def prepare_out(out: Path, settings: EvalSettings) -> None:
    """Create ``out`` with ``eval.json``, or check that it holds an evaluation with the same settings."""
    meta = out / "eval.json"
    if meta.is_file():
        saved = json.loads(meta.read_text())
        mine = asdict(settings)
        diff = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v}
        if diff:
            details = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise EvalError(
                f"--out {out} holds an evaluation with other settings ({details}): choose another --out"
            )
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EvalError(f"--out {out} exists and holds no evaluation: choose another --out")
    (out / "samples").mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(asdict(settings), indent=1))


# ------------------------------------------------------------------------------------------------ evaluation


def summarize(name: str, records: list[dict[str, Any]], k: int) -> BenchmarkResult:
    correct = np.array([r["correct"] for r in records], dtype=np.float64).reshape(len(records), k)
    lengths = np.array([r["lengths"] for r in records], dtype=np.float64)
    finished = np.array([r["finished"] for r in records], dtype=bool)
    return BenchmarkResult(
        name=name,
        questions=len(records),
        k=k,
        pass1=float(correct.mean()) if len(records) else math.nan,
        pass_at_k=float((correct.max(1) > 0.5).mean()) if len(records) else math.nan,
        mean_length=float(lengths.mean()) if lengths.size else math.nan,
        truncated=float((~finished).mean()) if finished.size else math.nan,
        grader_timeouts=int(sum(r.get("timeouts", 0) for r in records)),
        grader_errors=int(sum(r.get("errors", 0) for r in records)),
    )


def run_eval(
    settings: EvalSettings,
    out: Path,
    *,
    backend,
    tokenizer,
    grader,
    progress: bool = True,
    save_responses: bool = False,
    bad_rows: str = "raise",
    log: Callable[[str], None] = print,
) -> list[BenchmarkResult]:
    """Evaluate every benchmark of ``settings`` into ``out`` (resuming what is there); returns the results."""
    from tqdm import tqdm

    from training.task import encode_prompt

    problems_of = {}
    for name, src in benchmark_sources(settings.benchmarks).items():
        report = load_source(
            src, on_error=bad_rows, limit=settings.limit, prompt_suffix=settings.prompt_suffix, source=name,
            problem_field=settings.problem_field, answer_field=settings.answer_field,
        )  # fmt: skip
        if report.skipped:
            log(report.summary())
        problems_of[name] = report.problems
    total = sum(len(p) for p in problems_of.values())
    done: dict[str, list[dict[str, Any]]] = {}
    for name in problems_of:
        path = out / "samples" / f"{name}.jsonl"
        records = _read_records(path)
        if path.is_file():
            _truncate_to(path, records)
        done[name] = records
    already = sum(len(r) for r in done.values())
    if already:
        log(f"resuming {out}: {already} of {total} questions already evaluated")
    bar = tqdm(total=total, initial=already, desc="eval", unit="question", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)  # fmt: skip
    results = []
    try:
        for name, problems in problems_of.items():
            finished_ids = {r["id"] for r in done[name]}
            path = out / "samples" / f"{name}.jsonl"
            for start in range(0, len(problems), settings.batch_prompts):
                chunk = problems[start : start + settings.batch_prompts]
                if all(p.id in finished_ids for p in chunk):
                    continue
                bar.set_description(f"eval {name}")
                prompts = [
                    encode_prompt(tokenizer, settings.prompt_template, p, chat=settings.chat_template)
                    for p in chunk
                ]
                t0 = time.perf_counter()
                gens = backend.generate(
                    prompts,
                    settings.k,
                    temperature=settings.temperature,
                    max_new_tokens=settings.max_new_tokens,
                    seed=derive_seed(settings.seed, _EVAL_PURPOSE, _name_code(name), start),
                )
                texts = response_texts(tokenizer, gens.responses)
                golds = [chunk[i // settings.k].gold for i in range(len(texts))]
                report = grader.grade(texts, golds)
                seconds = time.perf_counter() - t0
                new = []
                for q, p in enumerate(chunk):
                    rows = range(q * settings.k, (q + 1) * settings.k)
                    record = {
                        "id": p.id,
                        "correct": [int(report.rewards[i] > 0.5) for i in rows],
                        "lengths": [len(gens.responses[i]) for i in rows],
                        "finished": [bool(gens.finished[i]) for i in rows],
                        "timeouts": sum(report.status[i] == "timeout" for i in rows),
                        "errors": sum(report.status[i] == "error" for i in rows),
                        "seconds": seconds / len(chunk),
                    }
                    if save_responses:
                        record["responses"] = [texts[i] for i in rows]
                    new.append(record)
                with open(path, "a", encoding="utf-8") as f:
                    f.write("".join(json.dumps(r) + "\n" for r in new))
                done[name] += new
                bar.update(len(chunk))
                bar.set_postfix(pass1=f"{summarize(name, done[name], settings.k).pass1:.3f}",
                                tok_s=f"{gens.n_tokens / max(seconds, 1e-9):.0f}")  # fmt: skip
            order = {p.id: i for i, p in enumerate(problems)}
            records = sorted((r for r in done[name] if r["id"] in order), key=lambda r: order[r["id"]])
            results.append(summarize(name, records, settings.k))
    finally:
        bar.close()
    return results


# ------------------------------------------------------------------------------------------------ tables


def _fmt(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def average(results: list[BenchmarkResult]) -> float:
    return float(np.mean([r.pass1 for r in results])) if results else math.nan


def table_rows(results: list[BenchmarkResult], label: str) -> tuple[list[str], list[str]]:
    """Header and our row, columns in the paper's order (benchmarks not evaluated are '–')."""
    by_name = {r.name: r for r in results}
    names = [n for n, _ in COLUMNS] + [r.name for r in results if r.name not in HEADER]
    header = ["Model", *[column_title(n) for n in names], "Avg."]
    avg = average(results)
    row = [label, *[_fmt(by_name[n].pass1) if n in by_name else "–" for n in names], _fmt(avg)]
    return header, row


def markdown(results: list[BenchmarkResult], label: str, settings: EvalSettings, tables: list[str]) -> str:
    header, row = table_rows(results, label)
    all_six = {r.name for r in results} >= set(BENCHMARKS)
    lines = [
        f"## Pass@1 of {label} (measured here)",
        "",
        f"k = {settings.k} samples per question at temperature {settings.temperature}, up to "
        f"{settings.max_new_tokens} new tokens, seed {settings.seed}"
        + (f", first {settings.limit} questions of each benchmark" if settings.limit else "")
        + f"; model {settings.model}; back end {settings.backend}, {settings.dtype}.",
        "",
        "| " + " | ".join(header) + " |",
        "| --- | " + " | ".join("---:" for _ in header[1:]) + " |",
        "| " + " | ".join(row) + " |",
        "",
        "Avg. is the mean of the benchmarks evaluated"
        + ("." if all_six else " (not all six: not comparable with the paper's Avg.)."),
        "",
        "| benchmark | questions | Pass@1 | Pass@k | mean length (tokens) | truncated | grader timeouts/errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {column_title(r.name)} | {r.questions} | {_fmt(r.pass1)} | {_fmt(r.pass_at_k)} | "
            f"{r.mean_length:.0f} | {r.truncated:.1%} | {r.grader_timeouts}/{r.grader_errors} |"
        )
    for key in tables:
        title, rows = PAPER_TABLES[key]
        lines += [
            "",
            f"### Reference only: the paper's reported Pass@1 ({title})",
            "",
            "Reported in *Rewards as Labels* (not measured here); '*' marks values the paper cites from other "
            "reports.",
            "",
            "| " + " | ".join(["Paper row", *[t for _, t in COLUMNS], "Avg."]) + " |",
            "| --- | " + " | ".join("---:" for _ in range(len(COLUMNS) + 1)) + " |",
        ]
        for name, values in rows:
            lines.append("| " + " | ".join([f"{name} (paper)", *[_fmt(v) for v in values]]) + " |")
    return "\n".join(lines) + "\n"


def write_csv(
    path: Path, results: list[BenchmarkResult], label: str, settings: EvalSettings, tables: list[str]
) -> None:
    """One row per model: ``source`` is ``measured`` for this evaluation and ``paper Table N (reported)`` for
    the paper's rows; the Pass@1 columns are in the paper's order."""
    names = [n for n, _ in COLUMNS] + [r.name for r in results if r.name not in HEADER]
    by_name = {r.name: r for r in results}
    fields = ["source", "row", *[column_title(n) for n in names], "Avg.", "k", "temperature", "max_new_tokens",
              "questions"]  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(fields)
        w.writerow(
            ["measured", label, *[f"{by_name[n].pass1:.6f}" if n in by_name else "" for n in names],
             f"{average(results):.6f}", settings.k, settings.temperature, settings.max_new_tokens,
             sum(r.questions for r in results)]
        )  # fmt: skip
        for key in tables:
            for name, values in PAPER_TABLES[key][1]:
                cells = ["" if v is None else f"{v:.3f}" for v in values]
                extra = [""] * (len(names) - len(COLUMNS))
                w.writerow(
                    [f"paper Table {key} (reported)", name, *cells[:-1], *extra, cells[-1], 16, 0.6, "", ""]
                )


def benchmark_sources(specs: list[str]) -> dict[str, DataSource]:
    """Benchmark names, data files or data sets (``training.data_sources``) -> {name: source}; a file's name is
    its stem (``x.jsonl`` -> ``x``), a Hub id's or folder's its last part."""
    out: dict[str, DataSource] = {}
    for spec in specs:
        src = parse_source(spec)
        if src.name in out:
            raise EvalError(f"--benchmarks names {src.name!r} twice")
        out[src.name] = src
    return out


def data_fingerprints(benchmarks: list[str]) -> dict[str, str]:
    """{name: fingerprint of its data}: a resumed evaluation checks that it reads the same data."""
    out = {}
    for name, src in benchmark_sources(benchmarks).items():
        if src.is_file and not src.path.is_file():
            raise EvalError(
                f"benchmark {name}: no such file {src.path} (the six benchmarks ship in training/bundled_data; "
                "$REAL_DATA_DIR overrides them)"
            )
        try:
            out[name] = source_fingerprint(src)
        except DataFormatError as e:
            raise EvalError(f"benchmark {name}: {e}") from None
    return out
