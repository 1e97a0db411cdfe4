"""``training.label_noise``: logged rewards against a reference grader, on a run whose responses we control."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from training.grader_config import GraderConfig
from training.label_noise import PLAIN_MATH_VERIFY, label_noise
from workbench.runlog import atomic_write_table, open_run, step_file
from workbench.synthetic_run import write_synthetic_run


@pytest.fixture
def plain_text_run(tmp_path):
    """A synthetic run (its responses box the right number when the logged reward is 1) where step 1's wrong
    rollouts are rewritten to state the right answer in plain text: the paper's grader (LaTeX only) scores
    them 0, as logged; math-verify's plain-expression extraction scores them 1."""
    run_dir = write_synthetic_run(tmp_path / "run", steps=2, prompts=4, group_size=4)
    path = step_file(run_dir, "rollouts", 1)
    table = pq.read_table(path)
    rows = table.to_pylist()
    for row in rows:
        if row["reward"] < 0.5:
            row["response"] = f"Adding up, the answer is {row['answer']}"
    atomic_write_table(path, table.from_pylist(rows, schema=table.schema))
    return run_dir


def test_plain_text_answers_are_the_disagreements(grader, plain_text_run):
    frame = open_run(plain_text_run).rollouts().drop_duplicates(["step", "rollout"])
    expected = int(((frame["step"] == 1) & (frame["reward"] < 0.5)).sum())
    assert expected > 0
    noise = label_noise(plain_text_run, grader, sample=10_000)
    assert (noise.rollouts, noise.sampled, noise.graded) == (len(frame), len(frame), len(frame))
    assert noise.disagree == noise.reference_only == expected and noise.logged_only == 0
    assert noise.rate == pytest.approx(expected / len(frame))
    lo, hi = noise.interval()
    assert 0 <= lo < noise.rate < hi <= 1
    ex = noise.examples[0]
    assert (
        ex["step"] == 1
        and ex["logged"] == 0
        and ex["reference"] == 1
        and "the answer is" in ex["response_end"]
    )
    assert noise.to_dict()["reference"] == PLAIN_MATH_VERIFY.to_dict()

    same = label_noise(plain_text_run, grader, sample=10_000, reference=GraderConfig())
    assert same.disagree == 0  # the paper's grader is what logged these rewards


def test_sample_is_seeded_and_validated(grader, plain_text_run):
    a = label_noise(plain_text_run, grader, sample=7, seed=3)
    b = label_noise(plain_text_run, grader, sample=7, seed=3)
    assert a.sampled == 7 and a.to_dict() == b.to_dict()
    with pytest.raises(ValueError, match="sample must be >= 1"):
        label_noise(plain_text_run, grader, sample=0)
    empty = label_noise(plain_text_run, grader, steps=[99])
    assert empty.sampled == 0 and math.isnan(empty.rate)
