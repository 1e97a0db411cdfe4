"""The status line: runs done / running / left, steps, throughput and ETA."""

from __future__ import annotations

import io

from training.pipeline.execute import Console
from training.pipeline.progress import DONE, FAILED, RUNNING, Tracker, fmt_duration, logged_steps


def test_durations():
    assert [fmt_duration(s) for s in (0, 59.4, 61, 3600, 3725, -3)] == ["0:00", "0:59", "1:01", "1:00:00",
                                                                      "1:02:05", "0:00"]  # fmt: skip


def test_eta_is_the_remaining_steps_over_the_throughput_since_the_first_step():
    # c finished before the session; a resumes from step 2; b is new
    t = Tracker.start({"a": 10, "b": 10, "c": 10}, {"a": 2, "c": 10}, finished=["c"])
    t.set_state("a", RUNNING)
    t.set_state("b", RUNNING)
    t.set_steps("a", 2, now=50.0)  # nothing gained yet: no clock
    assert t.rate(60.0) is None and t.eta(60.0) is None
    line = t.line(60.0, 60.0, phases={"a": "starting", "b": "setup"})
    assert line == (
        "[1:00] runs 1/3 done, 2 running (a starting, b setup), 0 left | steps 12/30 | ETA: measuring"
    )
    t.set_steps("a", 3, now=100.0)  # first step of the session starts the clock
    t.set_steps("b", 2, now=110.0)
    t.set_steps("a", 6, now=110.0)
    # gained since the clock started: (6 - 3) + 2 = 5 steps in 10 s; remaining (10 - 6) + (10 - 2) = 12
    assert t.rate(110.0) == 0.5
    assert t.eta(110.0) == 24.0
    assert t.line(110.0, 130.0) == (
        "[2:10] runs 1/3 done, 2 running (a 6/10, b 2/10), 0 left | steps 18/30 | 0.50 steps/s | ETA 0:24"
    )
    t.set_state("b", FAILED)
    t.set_state("a", DONE)
    t.set_steps("a", 10, now=118.0)
    assert t.remaining() == 8  # b failed at step 2: its steps are still to do
    assert "runs 2/3 done, 0 running, 0 left, 1 failed" in t.line(118.0, 138.0)


def test_a_resume_that_redoes_steps_does_not_count_them_twice():
    t = Tracker.start({"a": 10}, {"a": 6}, finished=[])
    t.set_steps("a", 4, now=1.0)  # the trainer dropped steps 5-6 (after its checkpoint at 4)
    assert t.gained() == 0 and t.started is None
    t.set_steps("a", 7, now=2.0)
    assert t.gained() == 1


def test_logged_steps_counts_complete_steps(tmp_path):
    assert logged_steps(tmp_path / "absent") == 0
    (tmp_path / "metrics").mkdir()
    for name in ("step_000001.parquet", "step_000002.parquet", ".step_000003.parquet.tmp", "other.txt"):
        (tmp_path / "metrics" / name).write_text("")
    assert logged_steps(tmp_path) == 2


def test_console_prints_status_every_n_seconds_or_rewrites_a_terminal_line():
    out = io.StringIO()
    c = Console(out, every=30.0, tty=False)
    assert c.status("s1", now=0.0) and not c.status("s2", now=10.0) and c.status("s3", now=31.0)
    c.say("event")
    assert out.getvalue() == "s1\ns3\nevent\n"
    term = io.StringIO()
    c = Console(term, every=30.0, tty=True)
    c.status("a", now=0.0)
    c.status("b", now=1.0)
    c.say("event")
    c.close()
    assert term.getvalue() == "\r\033[Ka\r\033[Kb\r\033[Kevent\n"
