"""Label noise the grader leaves: how often the run's logged rewards and a reference grader disagree.

REAL reads rewards as class labels. ``label_noise(run, grader)`` draws a seeded sample of a run's logged rollouts
(one row per rollout: a rollout used by several mini-batch updates counts once), grades each logged response
against its logged answer with a reference grader configuration, and counts where the reference's verdict
differs from the logged reward. The default reference, ``PLAIN_MATH_VERIFY``, is math-verify as it ships: the
response read with LaTeX and plain-expression extraction, the gold text as it stands (no project
normalisation). A disagreement is a rollout one of the two graders labels wrong; which one needs a look at the
examples returned with the counts.

Only rollouts the run graded (``grade_status == 'ok'``, when logged) are sampled: a timeout is a zero reward by
rule, not a verdict. The logged ``answer`` is the problem's primary gold answer (alternatives are not logged).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.grader_config import GraderConfig
from training.rewards import OK, Grader
from workbench.runlog import Run, open_run

PLAIN_MATH_VERIFY = GraderConfig(extraction="latex+expr", normalize_gold=False)


@dataclass
class LabelNoise:
    """Counts of one ``label_noise`` call (rates over the graded sample)."""

    run: str
    reference: dict[str, Any]  # the reference GraderConfig
    rollouts: int  # distinct graded rollouts in the run
    sampled: int
    graded: int  # of the sample, those the reference graded (no timeout or error)
    disagree: int
    logged_only: int  # logged reward 1, reference 0
    reference_only: int  # logged reward 0, reference 1
    examples: list[dict] = field(default_factory=list)  # up to 10 disagreements

    @property
    def rate(self) -> float:
        """Share of the graded sample on which the two disagree (NaN for an empty sample)."""
        return self.disagree / self.graded if self.graded else math.nan

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval of ``rate`` (95% by default)."""
        n = self.graded
        if n == 0:
            return (math.nan, math.nan)
        p = self.disagree / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, centre - half), min(1.0, centre + half))

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.interval()
        return {**asdict(self), "rate": self.rate, "interval95": [lo, hi]}


def label_noise(
    run: Run | str | Path,
    grader: Grader,
    *,
    sample: int = 1000,
    seed: int = 0,
    reference: GraderConfig = PLAIN_MATH_VERIFY,
    steps: list[int] | None = None,
) -> LabelNoise:
    """Grade a seeded sample of ``sample`` logged rollouts of ``run`` (all, if fewer) with ``reference`` and
    count the disagreements with their logged rewards."""
    if sample < 1:
        raise ValueError(f"the label-noise sample must be >= 1 rollout, got {sample}")
    run = run if isinstance(run, Run) else open_run(run)
    frame = run.rollouts(steps=steps)
    missing = {"step", "rollout", "response", "answer", "reward"} - set(frame.columns)
    if missing:
        raise ValueError(f"{run.dir}: the rollouts table lacks {', '.join(sorted(missing))}")
    frame = frame.drop_duplicates(["step", "rollout"])
    if "grade_status" in frame.columns:
        frame = frame[frame["grade_status"] == OK]
    n = len(frame)
    rng = np.random.default_rng([seed, 0x1ABE1])
    take = np.sort(rng.choice(n, size=min(sample, n), replace=False)) if n else np.zeros(0, dtype=np.int64)
    part = frame.iloc[take]
    report = grader.grade(part["response"].tolist(), part["answer"].tolist(), config=reference)
    logged = (part["reward"].to_numpy() > 0.5).astype(int)
    ref = (np.asarray(report.rewards) > 0.5).astype(int)
    ok = np.asarray(report.status) == OK
    differ = ok & (logged != ref)
    examples = [
        {"step": int(r.step), "rollout": int(r.rollout), "answer": r.answer, "response_end": r.response[-200:],
         "logged": int(lg), "reference": int(rf)}
        for r, lg, rf in zip(part[differ].itertuples(), logged[differ], ref[differ], strict=True)
    ][:10]  # fmt: skip
    return LabelNoise(
        run=str(run.dir),
        reference=reference.to_dict(),
        rollouts=n,
        sampled=len(part),
        graded=int(ok.sum()),
        disagree=int(differ.sum()),
        logged_only=int((differ & (logged == 1)).sum()),
        reference_only=int((differ & (ref == 1)).sum()),
        examples=examples,
    )
