"""``python -m training check-data PATH...``: does the real grader agree with each file's own gold answers?

For every problem of a file (loaded by ``training.datasets.load_problems``, bad rows skipped and listed):

- **self-check**: each accepted answer ``a`` written as a model would, ``"The answer is \\boxed{a}."`` (``a``
  normalised as the grader normalises golds: no trailing period or prose, ``training.gold``), is graded
  with the trainer's grader (``training.rewards.Grader``, math-verify in worker processes) against ``a`` itself.
  A problem passes when all its accepted answers do. A failure means the grader cannot read that gold answer, so
  training and evaluation would score every response to it 0: fix the normalisation (``normalize_answer``).
- **cross-check**: the problem's primary answer is graded against the gold answers of another problem of the same
  file (a seeded derangement: each problem is some other problem's partner exactly once). It should fail; the
  accepted pairs are counted, and so are those whose answer texts are equal (distinct problems that share an
  answer, e.g. two AIME problems whose answer is 25, are accepted by any grader).
- **gold audit** (``training.gold_audit``): each gold graded against trivial and adversarial answers (``0``,
  ``1``, ``-1``, its first and last number, an empty box, itself with its words dropped); the columns count the
  golds that pass, the arguable ones (``6m`` accepting ``6``), the flagged ones (accepting a
  value that is not theirs, or refusing themselves) and those the grader could not audit; each one not passing
  is listed with its row, what it accepted and what it parsed to. Cached by file digest under ``cache_dir``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.data_sources import load_source, parse_source
from training.datasets import DataFormatError, LoadReport
from training.gold_audit import (
    ARGUABLE,
    FLAGGED,
    PASS,
    UNAUDITED,
    AuditResult,
    audit_problems,
    format_findings,
    self_answer,
)
from training.grader_config import GraderConfig
from training.rewards import Grader
from training.task import Problem


def boxed(answer: str) -> str:
    """A response that states ``answer`` the way the paper's prompt asks for it."""
    return f"The answer is \\boxed{{{answer}}}."


@dataclass
class CheckResult:
    """The outcome of ``check_file`` for one file."""

    path: str
    problems: int
    skipped: int
    answers: int  # accepted answers over all problems (alternatives included)
    self_pass: int  # problems whose every accepted answer verifies against itself
    cross_pairs: int
    cross_accepted: int  # pairs where another problem's answer was accepted
    cross_same_text: int  # of those, pairs whose answer texts are equal
    seconds: float
    grader_timeouts: int = 0
    grader_errors: int = 0
    self_failures: list[dict] = field(default_factory=list)  # problem id, answer, status, detail
    cross_examples: list[dict] = field(default_factory=list)  # accepted pairs whose texts differ (first 10)
    skipped_rows: list[str] = field(default_factory=list)
    audit: dict | None = None  # training.gold_audit.AuditResult as a dict (None: not audited)

    @property
    def self_ok(self) -> bool:
        return self.self_pass == self.problems

    @property
    def audit_ok(self) -> bool:
        """No gold flagged by the audit (arguable golds and unaudited ones do not count)."""
        return self.audit is None or self.audit["counts"].get(FLAGGED, 0) == 0


def derangement(n: int, seed: int) -> np.ndarray:
    """``partner[i] != i`` for every i (n >= 2), each index a partner once: a random cycle through all items."""
    if n < 2:
        raise ValueError("the cross-check needs at least two problems")
    order = np.random.default_rng([seed, 0xC405]).permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner


def check_problems(
    path: str,
    problems: list[Problem],
    grader: Grader,
    *,
    seed: int = 0,
    timeout: float | None = None,
    config: GraderConfig | None = None,
) -> CheckResult:
    """Self- and cross-check ``problems`` (see the module docstring) with the grader's settings, or ``config``."""
    t0 = time.perf_counter()
    cfg = grader.config if config is None else config
    responses, golds, owner = [], [], []
    for k, p in enumerate(problems):
        for a in p.answers:
            responses.append(boxed(self_answer(a, cfg)))
            golds.append(a)
            owner.append(k)
    report = grader.grade(responses, golds, timeout=timeout, config=config)
    ok = np.ones(len(problems), dtype=bool)
    failures = []
    for j, r in enumerate(report.rewards):
        if r < 1.0:
            ok[owner[j]] = False
            p = problems[owner[j]]
            failures.append(
                {"id": p.id, "answer": golds[j], "status": report.status[j], "detail": report.details[j]}
            )
    partner = derangement(len(problems), seed) if len(problems) >= 2 else np.zeros(0, dtype=np.int64)
    cross_resp = [boxed(self_answer(problems[int(partner[k])].answer, cfg)) for k in range(len(partner))]
    cross_gold = [problems[k].gold for k in range(len(partner))]
    cross = grader.grade(cross_resp, cross_gold, timeout=timeout, config=config)
    accepted = same = 0
    examples = []
    for k, r in enumerate(cross.rewards):
        if r < 1.0:
            continue
        accepted += 1
        other = problems[int(partner[k])]
        if set(other.answers) & set(problems[k].answers):
            same += 1
        elif len(examples) < 10:
            examples.append({"id": problems[k].id, "gold": problems[k].gold, "other_id": other.id,
                             "other_answer": other.answer})  # fmt: skip
    return CheckResult(
        path=path,
        problems=len(problems),
        skipped=0,
        answers=len(responses),
        self_pass=int(ok.sum()),
        cross_pairs=len(partner),
        cross_accepted=accepted,
        cross_same_text=same,
        seconds=time.perf_counter() - t0,
        grader_timeouts=report.timeouts + cross.timeouts,
        grader_errors=report.errors + cross.errors,
        self_failures=failures,
        cross_examples=examples,
    )


def check_file(
    path: str | Path,
    grader: Grader,
    *,
    seed: int = 0,
    limit: int | None = None,
    timeout: float | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
    config: GraderConfig | None = None,
    audit: bool = True,
    cache_dir: str | Path | None = "cache",
) -> CheckResult:
    """Load ``path`` (a file, a benchmark name, a Hub id or folder: ``training.data_sources``; bad rows skipped
    and counted), check its problems and (``audit``) audit their golds. A string that names no data set raises
    ``DataFormatError``."""
    try:
        src = parse_source(str(path))
    except ValueError as e:
        raise DataFormatError(str(path), str(e).removeprefix(f"{path}: ")) from None
    loaded: LoadReport = load_source(
        src, on_error="skip", limit=limit, problem_field=problem_field, answer_field=answer_field
    )
    where = str(src.path) if src.is_file else src.spec
    result = check_problems(where, loaded.problems, grader, seed=seed, timeout=timeout, config=config)
    if audit:
        res: AuditResult = audit_problems(
            loaded.problems, grader, config=config, path=where, cache_dir=cache_dir, timeout=timeout
        )
        result.audit = asdict(res)
        result.seconds += res.seconds
    result.skipped = len(loaded.skipped)
    result.skipped_rows = [str(e) for e in loaded.skipped]
    return result


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100.0 * a / b:.1f}%)" if b else "-"


def format_results(results: list[CheckResult]) -> str:
    """One line per file, then the details of every failure and skip."""
    name_w = max([len(Path(r.path).name) for r in results] + [4])
    head = (f"{'file':<{name_w}}  {'problems':>8}  {'skipped':>7}  {'answers':>7}  {'self-check':>17}  "
            f"{'cross-check accepted':>20}  {'same text':>9}  {'audit pass':>10}  {'arguable':>8}  "
            f"{'flagged':>7}  {'unaudited':>9}  {'seconds':>7}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{Path(r.path).name:<{name_w}}  {r.problems:>8}  {r.skipped:>7}  {r.answers:>7}  "
            f"{_pct(r.self_pass, r.problems):>17}  {_pct(r.cross_accepted, r.cross_pairs):>20}  "
            f"{r.cross_same_text:>9}  {_audit_cells(r)}  {r.seconds:>7.1f}"
        )
    for r in results:
        name = Path(r.path).name
        for f in r.self_failures:
            lines.append(f"{name}: self-check FAILED for problem {f['id']}: {f['answer']!r} ({f['status']}"
                         + (f": {f['detail']}" if f["detail"] else "") + ")")  # fmt: skip
        for e in r.cross_examples:
            lines.append(f"{name}: problem {e['id']} (gold {e['gold']!r}) accepts problem {e['other_id']}'s "
                         f"answer {e['other_answer']!r}")  # fmt: skip
        if r.audit is not None:
            lines += format_findings(name, AuditResult(**r.audit))
        for s in r.skipped_rows:
            lines.append(f"skipped: {s}")
        if r.grader_timeouts or r.grader_errors:
            lines.append(f"{name}: grader timeouts {r.grader_timeouts}, errors {r.grader_errors}")
    lines.append(
        "self-check: each accepted answer, boxed, graded against itself (must be 100%). cross-check: the answer "
        "of another problem of the same file graded against this one's (accepted pairs; 'same text': the two "
        "problems share an answer text). audit: each gold against 0, 1, -1, its first and last number, an "
        "empty box and itself without words ('arguable': accepts the number of a gold like 6m or 52_8; "
        "'flagged': accepts another value or an empty box, or refuses itself)."
    )
    return "\n".join(lines)


def _audit_cells(r: CheckResult) -> str:
    if r.audit is None:
        return f"{'-':>10}  {'-':>8}  {'-':>7}  {'-':>9}"
    c = r.audit["counts"]
    return f"{c[PASS]:>10}  {c[ARGUABLE]:>8}  {c[FLAGGED]:>7}  {c[UNAUDITED]:>9}"


def run_check(
    paths: list[str],
    *,
    workers: int = 2,
    timeout: float = 10.0,
    seed: int = 0,
    limit: int | None = None,
    json_out: str | None = None,
    log=print,
    problem_field: str | None = None,
    answer_field: str | None = None,
    config: GraderConfig | None = None,
    audit: bool = True,
    cache_dir: str | Path | None = "cache",
) -> tuple[list[CheckResult], list[str]]:
    """Check every path (or data set: see ``check_file``) with the grader settings ``config`` (default: the
    paper's; ``timeout`` replaces its timeout); returns the results and those that could not be read (with the
    reason)."""
    results, unreadable = [], []
    with Grader(workers=workers, timeout=timeout, config=config) as grader:
        for path in paths:
            try:
                results.append(
                    check_file(path, grader, seed=seed, limit=limit, problem_field=problem_field,
                               answer_field=answer_field, audit=audit, cache_dir=cache_dir)
                )  # fmt: skip
            except DataFormatError as e:
                unreadable.append(str(e))
                log(f"error: {e}")
                continue
            r = results[-1]
            log(f"{Path(path).name}: self-check {_pct(r.self_pass, r.problems)}, cross-check accepted "
                f"{_pct(r.cross_accepted, r.cross_pairs)}, {r.skipped} rows skipped"
                + (f", gold audit flagged {r.audit['counts'][FLAGGED]}" if r.audit else "")
                + f" ({r.seconds:.1f} s)")  # fmt: skip
    if json_out:
        Path(json_out).write_text(
            json.dumps({"results": [asdict(r) for r in results], "unreadable": unreadable}, indent=1)
        )
    return results, unreadable
