"""The math-verify grader: right answers, hard timeouts on hanging inputs, crashed workers, standalone use."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from training.rewards import ERROR, OK, TIMEOUT, Grader, grade

TOWER = "\\boxed{9^{9^{9^{9^{9}}}}}"


def test_grades_equivalent_forms_and_requires_latex(grader):
    responses = [
        "so \\boxed{18}",
        "\\boxed{17}",
        "\\boxed{18.0}",
        "\\boxed{\\frac{1}{2}}",
        "the answer is 18",
        "\\boxed{-94}",
    ]
    answers = ["18", "18", "18", "0.5", "18", "-94"]
    report = grader.grade(responses, answers)
    assert report.rewards == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert report.status == [OK] * 6 and report.timeouts == 0 and report.errors == 0


def test_repeated_pairs_are_graded_once(grader):
    report = grader.grade(["\\boxed{3}"] * 5 + ["\\boxed{4}"], ["3"] * 6)
    assert report.rewards == [1.0] * 5 + [0.0]
    again = grader.grade(["\\boxed{3}", "\\boxed{4}"], ["3", "3"])
    assert again.cache_hits == 2 and again.rewards == [1.0, 0.0]


def test_power_tower_costs_one_reward_not_the_batch():
    with Grader(workers=1, timeout=1.0) as g:
        g.grade(["\\boxed{1}"], ["1"])  # worker started
        t0 = time.monotonic()
        report = g.grade(["\\boxed{2}", TOWER, "\\boxed{5}"], ["2", "1", "5"])
        took = time.monotonic() - t0
    assert report.rewards == [1.0, 0.0, 1.0]
    assert report.status == [OK, TIMEOUT, OK] and report.timeouts == 1
    assert took < 1.0 + 2.0  # within the deadline plus a margin


def test_hard_deadline_kills_and_replaces_a_hung_worker():
    """With the worker's own timer off, only the parent's deadline can stop the tower: the worker is killed,
    a fresh one takes over, and grading goes on."""
    with Grader(workers=1, timeout=1.0, soft_fraction=None) as g:
        g.grade(["\\boxed{1}"], ["1"])
        pid = g._workers[0].proc.pid
        t0 = time.monotonic()
        report = g.grade([TOWER, "\\boxed{7}"], ["1", "7"])
        took = time.monotonic() - t0
        assert g.replaced == 1 and g._workers[0].proc.pid != pid
        assert not _alive(pid)
    assert report.status == [TIMEOUT, OK] and report.rewards == [0.0, 1.0]
    assert took < 1.0 + 10.0  # deadline + a worker restart (imports math-verify)


def test_a_worker_that_dies_is_an_error_and_is_replaced():
    with Grader(workers=1, timeout=20.0, soft_fraction=None) as g:
        g.grade(["\\boxed{1}"], ["1"])
        pid = g._workers[0].proc.pid
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()  # dies while stuck on the tower
        report = g.grade([TOWER, "\\boxed{3}"], ["1", "3"])
        assert g.replaced == 1
    assert report.status == [ERROR, OK] and report.errors == 1 and report.rewards == [0.0, 1.0]
    assert "exited" in report.details[0] or "died" in report.details[0]


def test_standalone_grade_function():
    assert grade(["\\boxed{42}", "\\boxed{41}", TOWER], ["42", "42", "3"], timeout=1.0) == [1.0, 0.0, 0.0]


def test_bad_arguments(grader):
    with pytest.raises(ValueError, match="2 responses but 1 answers"):
        grader.grade(["a", "b"], ["1"])
    with pytest.raises(ValueError, match="timeout"):
        grader.grade(["a"], ["1"], timeout=0)
    with pytest.raises(ValueError, match="at least one worker"):
        Grader(workers=0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_that_cannot_start_stop_the_grader_with_a_reason():
    """A worker whose memory cap is too small to import math-verify dies before it is ready: after a few
    replacements the grader gives up with an error instead of respawning forever."""
    with Grader(workers=1, timeout=1.0, memory_limit_mb=48) as g:
        with pytest.raises(RuntimeError, match="exit before they start"):
            g.grade(["\\boxed{1}"], ["1"])
