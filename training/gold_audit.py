"""The gold audit: does a gold answer accept answers it should not?

REAL trains on rewards as labels, so a gold answer that accepts too much is a wrong label for every rollout that
hits it. ``check-data``'s self-check proves a gold accepts itself, which cannot catch that. The audit grades each
gold, with the real grader and its settings (``GraderConfig``), against fixed probe responses, each written as
``\\boxed{...}``:

- ``0``, ``1``, ``-1``; the gold's ``first`` and ``last`` number; an ``empty`` box; the gold with its words dropped
  (``words``: prose and ``\\text{}`` removed);
- the gold itself (``self``), which must be accepted.

Each gold gets a verdict (and, unless it passes, a ``kind`` from ``KINDS``):

- ``pass``: it accepts itself, and every probe it accepts has the gold's own value (``7\\text{ hours}`` accepting
  ``7``, ``f(x)=1`` accepting ``1``, ``10,\\!080`` accepting ``10080``, ``+2`` accepting ``2``: a unit, an
  equation's value, a thousands separator, a sign);
- ``arguable`` (listed, not flagged): it accepts the bare number of a gold that math-verify reads without its
  suffix: ``unit_letter``, a number followed by a letter read as a unit (OlympiadBench's ``6m`` accepts ``6``;
  there ``m`` is a variable of the problem, so ``6`` is an incomplete answer given full credit), or
  ``base_subscript``, a numeral in another base (MATH's ``52_8`` accepts ``52``: the same digits);
- ``flagged``: it accepts a probe whose value is not the gold's (``accepts_other_value``: OlympiadBench's
  ``(-\\infty, 0) \\cup\\{1\\}.`` accepted ``0`` before its period was removed), an empty box
  (``accepts_empty``), or refuses itself (``refuses_itself``: every rollout would score 0);
- ``unaudited``: the grader timed out or failed on it (``grader_failed``).

Golds are audited once per distinct accepted-answer tuple (DAPO-Math-17K's 17,398 golds are far fewer distinct
integers), in the grader's worker processes (``Grader.audit``: one task per gold, its parse shared by the probes).
Results are cached in ``<cache_dir>/gold_audit/<key>.json`` (``cache_dir`` as the trainer's ``--cache-dir``,
default ``cache``), ``key`` a digest of the file's bytes, its golds, the grader settings and the audit's version.
``audit_rows`` is what the trainer calls at start: the flagged rows of its data.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from training.datasets import fingerprint
from training.gold import normalize_gold, numbers, prose_words, words_dropped
from training.grader_config import GraderConfig
from training.rewards import OK, Grader
from training.task import Problem

AUDIT_VERSION = "gold-audit-v1"
PROBES = ("0", "1", "-1", "first", "last", "empty", "words")
PASS, ARGUABLE, FLAGGED, UNAUDITED = "pass", "arguable", "flagged", "unaudited"


def boxed(text: str) -> str:
    return f"\\boxed{{{text}}}"


def probe_answers(gold: str, config: GraderConfig) -> dict[str, str]:
    """The audit's probe answers for one gold text (name -> the answer, not yet boxed); a probe that repeats an
    earlier one's text or is empty (``words`` of a gold without words) is left out."""
    text = normalize_gold(gold) if config.normalize_gold else gold.strip()
    nums = numbers(text)
    candidates = {"0": "0", "1": "1", "-1": "-1"}
    if nums:
        candidates["first"], candidates["last"] = nums[0], nums[-1]
    candidates["empty"] = ""
    candidates["words"] = words_dropped(text)
    out: dict[str, str] = {}
    for name, answer in candidates.items():
        if name != "empty" and (not answer or _bare(answer) == _bare(text) or answer in out.values()):
            continue
        out[name] = answer
    return out


def _bare(text: str) -> str:
    return re.sub(r"\s+", "", text)


def self_answer(gold: str | tuple[str, ...], config: GraderConfig) -> str:
    """The gold as a model would write it (normalised when the grader normalises golds): the ``self`` probe, and
    what ``check-data``'s self-check boxes."""
    text = gold if isinstance(gold, str) else gold[0]
    return normalize_gold(text) if config.normalize_gold else text


# a unit (with its power: cm^2), degrees, percent, currency, LaTeX spacing, white space
_UNITS = re.compile(
    r"\\(?:text|textbf|textnormal|mathrm|mbox)\s*\{[^{}]*\}(?:\^\{?\d\}?)?|\^\s*\{?\\circ\}?|\\%|%|\\\$|\$"
    r"|\\[,;:! ]|\s|^\\approx"
)
_BOLD = re.compile(r"\\mathbf\s*\{([^{}]*)\}")  # \mathbf{2340}: a number in bold
_LHS = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?(?:\([A-Za-z,]*\))?=")  # x=, x_1=, f(x)=
_FRAC = re.compile(r"^([-+]?)\\[dt]?frac\{?(-?\d+)\}?\{?(-?\d+)\}?$")
_UNIT_LETTER = re.compile(r"^([-+]?\d+(?:\.\d+)?)\\?[a-zA-Z]{1,3}$")  # 6m
_BASE = re.compile(r"^([-+]?\d+)_\{?\d+\}?$")  # 52_8, 4210_{5}


def gold_value(gold: str) -> Fraction | None:
    """The number a gold is, when it is one once units, ``\\text{}``, degrees, percent, currency, spacing and a
    left side (``x=``, ``f(x)=``) are set aside: ``7\\text{ hours} -> 7``, ``864 \\mbox{ inches}^2 -> 864``,
    ``\\$32348 -> 32348``, ``x=-\\frac{1}{2} -> -1/2``, ``+2 -> 2``; else None (``2\\sqrt{2}``, ``6m``, a set)."""
    core = _LHS.sub("", _UNITS.sub("", _BOLD.sub(r"\1", gold)))
    try:
        m = _FRAC.match(core)
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) == "-" else value
        if re.fullmatch(r"[-+]?\d+(?:\.\d+)?(?:/\d+)?", core):
            return Fraction(core)
    except (ValueError, ZeroDivisionError):
        return None
    return None


# What a verdict other than pass is about.
KINDS = {
    "unit_letter": "math-verify reads the letter after the number as a unit, so the bare number gets full credit",
    "base_subscript": "math-verify drops the base subscript, so the digits alone get full credit",
    "accepts_other_value": "accepts an answer whose value is not the gold's",
    "accepts_empty": "accepts an empty \\boxed{}",
    "refuses_itself": "refuses itself written as \\boxed{gold}: every response would score 0",
    "grader_failed": "the grader timed out or failed on this gold",
}


@dataclass
class GoldVerdict:
    """The audit of one problem's gold (the file's row ``row``)."""

    row: int
    gold: str | tuple[str, ...]
    verdict: str  # pass | arguable | flagged | unaudited
    kind: str = ""  # a key of KINDS
    accepted: dict[str, str] = field(
        default_factory=dict
    )  # probe name -> answer, accepted and not the gold's value
    parsed: str = ""  # what math-verify parsed the gold to
    reason: str = ""


def judge(
    gold: str | tuple[str, ...],
    probes: dict[str, str],
    verdicts: tuple[float, ...] | None,
) -> tuple[str, str, dict[str, str]]:
    """``(verdict, kind, accepted probes that count against the gold)`` from the probe rewards: ``verdicts`` in
    the order of ``probes``, then ``self`` last (None: the grader gave none)."""
    if verdicts is None:
        return UNAUDITED, "grader_failed", {}
    *probe_rewards, self_reward = verdicts
    alts = (gold,) if isinstance(gold, str) else gold
    texts = [normalize_gold(a) for a in alts]  # the gold's value is judged on its normalised text either way
    values = {v for v in map(gold_value, texts) if v is not None}
    accepted = {n: a for (n, a), r in zip(probes.items(), probe_rewards, strict=True) if r >= 1.0}
    # the words probe counts against a gold only when it had prose (words outside \text{}: units and labels go)
    prose = any(prose_words(a) for a in alts)
    against = {n: a for n, a in accepted.items()
               if n == "empty" or (n == "words" and prose) or (n != "words" and gold_value(a) not in values)}  # fmt: skip
    if self_reward < 1.0:
        return FLAGGED, "refuses_itself", against
    if "empty" in against:
        return FLAGGED, "accepts_empty", against
    if not against:
        return PASS, "", {}
    for kind, pattern in (("unit_letter", _UNIT_LETTER), ("base_subscript", _BASE)):
        numbers_of = {Fraction(m.group(1)) for m in map(pattern.match, texts) if m}
        if numbers_of and all(gold_value(a) in numbers_of for a in against.values()):
            return ARGUABLE, kind, against
    return FLAGGED, "accepts_other_value", against


@dataclass
class AuditResult:
    """The audit of one file (or list of problems)."""

    path: str
    problems: int
    distinct_golds: int
    config: dict[str, Any]
    counts: dict[str, int]  # verdict -> problems
    seconds: float
    cached: bool = False
    findings: list[dict] = field(default_factory=list)  # every GoldVerdict that is not a pass, as a dict

    @property
    def flagged_rows(self) -> list[int]:
        """Rows the trainer must refuse or skip: flagged golds (accepting too much, or refusing themselves)."""
        return [f["row"] for f in self.findings if f["verdict"] == FLAGGED]


def _golds_digest(problems: list[Problem]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in problems:
        h.update(json.dumps([p.id, list(p.answers)]).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def cache_key(problems: list[Problem], config: GraderConfig, path: str | Path | None = None) -> str:
    """Digest of everything the audit's result depends on: the file's bytes (when read from a file), its golds,
    the grader settings that decide verdicts, math-verify's version and the audit's."""
    from importlib.metadata import version

    spec = {
        "audit": AUDIT_VERSION,
        "math_verify": version("math-verify"),
        "file": fingerprint(path) if path is not None and Path(path).is_file() else None,
        "golds": _golds_digest(problems),
        "config": list(config.verdict_key()),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def audit_problems(
    problems: list[Problem],
    grader: Grader,
    *,
    config: GraderConfig | None = None,
    path: str | Path | None = None,
    cache_dir: str | Path | None = "cache",
    timeout: float | None = None,
) -> AuditResult:
    """Audit every gold of ``problems`` with ``config`` (default: the grader's); read from and written to the cache
    under ``cache_dir`` (None: no cache)."""
    config = grader.config if config is None else config
    t0 = time.perf_counter()
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / "gold_audit" / f"{cache_key(problems, config, path)}.json"
        try:
            result = AuditResult(**json.loads(cache_file.read_text()))
            result.cached, result.seconds, result.path = True, time.perf_counter() - t0, str(path or "")
            return result
        except (OSError, ValueError, TypeError):
            pass  # absent or unreadable: audit again and rewrite it
    by_gold: dict[str | tuple[str, ...], list[Problem]] = {}
    for p in problems:
        by_gold.setdefault(p.gold, []).append(p)
    golds = list(by_gold)
    probes = [probe_answers(g if isinstance(g, str) else g[0], config) for g in golds]
    responses = [[boxed(a) for a in ps.values()] + [boxed(self_answer(g, config))] for g, ps in
                 zip(golds, probes, strict=True)]  # fmt: skip
    graded = grader.audit(golds, responses, timeout=timeout, config=config)
    counts = {PASS: 0, ARGUABLE: 0, FLAGGED: 0, UNAUDITED: 0}
    findings = []
    for gold, ps, (verdicts, status, detail, parsed) in zip(golds, probes, graded, strict=True):
        verdict, kind, against = judge(gold, ps, verdicts if status == OK else None)
        reason = KINDS.get(kind, "") + (f" ({status}: {detail})" if verdict == UNAUDITED else "")
        for p in by_gold[gold]:
            counts[verdict] += 1
            if verdict != PASS:
                findings.append(asdict(GoldVerdict(p.id, gold, verdict, kind, against, parsed, reason)))
    findings.sort(key=lambda f: f["row"])
    result = AuditResult(str(path or ""), len(problems), len(golds), config.to_dict(), counts,
                         time.perf_counter() - t0, findings=findings)  # fmt: skip
    if cache_file is not None:
        from workbench.runlog import atomic_write_json

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache_file, {k: v for k, v in asdict(result).items() if k != "cached"})
    return result


def audit_rows(
    problems: list[Problem],
    grader: Grader,
    *,
    config: GraderConfig | None = None,
    path: str | Path | None = None,
    cache_dir: str | Path | None = "cache",
) -> list[int]:
    """The rows (``Problem.id``) whose gold the audit flags, for the trainer to refuse or skip at start (cached
    by file digest: a second start on the same data and settings grades nothing)."""
    return audit_problems(problems, grader, config=config, path=path, cache_dir=cache_dir).flagged_rows


def format_findings(name: str, result: AuditResult) -> list[str]:
    """One line per gold that did not pass: file, row, verdict, what it accepted, what it parsed to, why."""
    lines = []
    for f in result.findings:
        gold = f["gold"] if isinstance(f["gold"], str) else " | ".join(f["gold"])
        accepted = ", ".join(f"\\boxed{{{a}}}" for a in f["accepted"].values()) or "-"
        lines.append(f"{name}: row {f['row']}: gold audit {f['verdict']} ({f['kind']}): gold {gold!r} accepted "
                     f"{accepted}, parsed to {f['parsed']!r}: {f['reason']}")  # fmt: skip
    return lines


def screen_problems(
    problems: list[Problem],
    grader: Grader,
    *,
    bad_rows: str = "raise",
    config: GraderConfig | None = None,
    path: str | Path | None = None,
    cache_dir: str | Path | None = "cache",
) -> tuple[list[Problem], dict[str, Any]]:
    """What a trainer does with its data at start: audit the golds (cached), then with ``bad_rows="raise"``
    refuse flagged problems (``DataFormatError`` naming the file, how many and the first), with ``"skip"`` leave
    them out. Returns the problems kept and a summary for ``run.json`` / a ``gold_audit`` event (counts, flagged
    rows, the first findings)."""
    from training.datasets import DataFormatError

    if bad_rows not in ("raise", "skip"):
        raise ValueError(f"bad_rows must be 'raise' or 'skip', got {bad_rows!r}")
    res = audit_problems(problems, grader, config=config, path=path, cache_dir=cache_dir)
    flagged = set(res.flagged_rows)
    first = next((f for f in res.findings if f["verdict"] == FLAGGED), None)
    if flagged and bad_rows == "raise":
        accepted = ", ".join(f"\\boxed{{{a}}}" for a in first["accepted"].values()) or "nothing"
        raise DataFormatError(
            path or "problems",
            f"the gold audit flags {len(flagged)} gold answer(s) (first: row {first['row']} {first['gold']!r} "
            f"accepts {accepted}: {first['reason']}); --bad-rows skip leaves them out",
        )
    kept = [p for p in problems if p.id not in flagged]
    info = {"counts": res.counts, "flagged_rows": sorted(flagged), "skipped": len(problems) - len(kept),
            "cached": res.cached, "findings": res.findings[:20]}  # fmt: skip
    return kept, info
