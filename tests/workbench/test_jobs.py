"""workbench.jobs, the one job runner: real subprocesses (tiny Python commands), queues, stops and states.

The trainer itself runs through the runner in tests/app/test_app_train_real.py (the Train page) and
tests/training/pipeline/test_pipeline_e2e.py (``paper-figures``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench import jobs
from workbench.liveness import pid_alive, process_alive, process_start
from workbench.runs_root import UnsafeRunName, list_run_names

PY = sys.executable


def wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.05)


def sleeper(seconds: float, text: str = "hello") -> list[str]:
    return [PY, "-c", f"import time; print({text!r}, flush=True); time.sleep({seconds})"]


def test_a_queue_runs_k_at_a_time_in_order_and_a_stopped_queued_job_never_starts(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for name in ("a", "b", "c"):
        jobs.enqueue(root, name, sleeper(0.3, f"i am {name}"), queue="q", by="test")
    assert [jobs.job_state(j) for j in jobs.list_jobs(root)] == ["queued"] * 3
    q = jobs.Queue(root, "q", max_running=1)
    started, ended = q.step()
    assert [j.name for j in started] == ["a"] and ended == []
    states = {j.name: jobs.job_state(j) for j in jobs.list_jobs(root)}
    assert states == {"a": "running", "b": "queued", "c": "queued"}
    jobs.stop_jobs([jobs.read_job(root, "b")])  # a queued job: cancelled, never started
    order, ends = [], {}
    while q.active():
        started, ended = q.step()
        order += [j.name for j in started]
        ends.update({j.name: time.time() for j in ended})
        time.sleep(0.05)
    assert order == ["c"] and sorted(ends) == ["a", "c"]
    a, b, c = (jobs.read_job(root, n) for n in "abc")
    assert [jobs.job_state(j) for j in (a, b, c)] == ["finished", "cancelled", "finished"]
    assert b.pid is None and not b.log.exists()
    assert c.started >= a.ended  # at most one at a time
    assert a.returncode == 0 and "i am a" in jobs.log_tail(a) and "=== " in a.log.read_text()
    assert sorted(p.name for p in (root / ".jobs").iterdir()) == [
        ".lock", "a.json", "a.log", "b.json", "c.json", "c.log"
    ]  # fmt: skip
    assert list_run_names(root) == []  # the hidden folder is no run


def test_the_detached_queue_runner_starts_the_rest_and_stop_all_cancels_and_stops(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for name in ("x", "y", "z"):
        jobs.enqueue(root, name, sleeper(60), queue="q2", by="test")
    runner = jobs.spawn_queue_runner(root, "q2", max_running=2)
    wait_for(
        lambda: sum(jobs.job_state(j) == "running" for j in jobs.list_jobs(root)) == 3
    )  # 2 jobs + runner
    states = {j.name: jobs.job_state(j) for j in jobs.list_jobs(root)}
    assert states == {"x": "running", "y": "running", "z": "queued", "queue-q2": "running"}
    t0 = time.time()
    mine = [j for j in jobs.list_jobs(root) if j.queue == "q2"]
    jobs.stop_jobs(mine, grace=10)  # the runner sees nothing left and ends by itself
    assert time.time() - t0 < 8  # SIGINT was enough (python -c raises KeyboardInterrupt)
    wait_for(lambda: not runner.alive, 20)
    states = {j.name: jobs.job_state(j) for j in jobs.list_jobs(root)}
    assert states == {"x": "stopped", "y": "stopped", "z": "cancelled", "queue-q2": "finished"}
    assert jobs.read_job(root, "x").returncode is not None  # the runner, their parent, recorded it


def test_a_queued_job_whose_runner_died_is_not_started_and_a_name_cannot_run_twice(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    jobs.enqueue(root, "orphan", sleeper(0), queue="gone")
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    rec = json.loads((root / ".jobs" / "orphan.json").read_text())
    rec["runner_pid"] = dead.pid
    (root / ".jobs" / "orphan.json").write_text(json.dumps(rec))
    assert jobs.job_state(jobs.read_job(root, "orphan")) == "not started"
    live = jobs.start_job(root, "busy", sleeper(30))
    try:
        with pytest.raises(ValueError, match="still running"):
            jobs.start_job(root, "busy", sleeper(0))
        with pytest.raises(ValueError, match="still running"):
            jobs.enqueue(root, "busy", sleeper(0), queue="q")
    finally:
        jobs.stop_job(live, grace=4)
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(UnsafeRunName):
            jobs.start_job(root, bad, sleeper(0))


def test_a_job_whose_exit_nobody_saw_takes_its_runs_state(tmp_path: Path) -> None:
    """The app that started a job restarted: the record has a pid, no exit code; the run folder tells."""
    root = tmp_path / "runs"
    done = subprocess.Popen([PY, "-c", "pass"])
    done.wait()
    (root / ".jobs").mkdir(parents=True)
    (root / "r").mkdir()
    record = {"name": "r", "run": "r", "pid": done.pid, "command": ["python"], "log": "r.log", "started": 1.0}
    (root / ".jobs" / "r.json").write_text(json.dumps(record))
    for status, want in [({"state": "running", "pid": done.pid}, "interrupted"), ({"state": "finished"}, "finished"),
                         ({"state": "failed"}, "failed")]:  # fmt: skip
        (root / "r" / "status.json").write_text(json.dumps(status))
        assert jobs.job_state(jobs.read_job(root, "r")) == want
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "status.json").write_text(json.dumps({"state": "finished"}))
    (root / ".jobs" / "r.json").write_text(json.dumps({**record, "run": "../outside", "by": "x"}))
    assert jobs.job_state(jobs.read_job(root, "r")) == "ended"  # a record never makes the runner read outside
    old = {"name": "old", "pid": 0, "command": ["x"], "log": "old.log", "started": 0.0, "stopped": None,
           "returncode": 1}  # fmt: skip  # a record written by the app's earlier job module
    (root / ".jobs" / "old.json").write_text(json.dumps(old))
    assert jobs.job_state(jobs.read_job(root, "old")) == "failed" and jobs.read_job(root, "old").run == "old"


def test_process_identity_zombies_and_reused_pids(tmp_path: Path) -> None:
    child = subprocess.Popen([PY, "-c", "pass"])
    deadline = time.time() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":  # ended, not reaped yet
        assert time.time() < deadline
        time.sleep(0.02)
    probe = subprocess.run(  # another process sees our unreaped child: ended, so not alive
        [PY, "-c", f"from workbench.liveness import pid_alive; print(pid_alive({child.pid}))"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(jobs.PROJECT_ROOT)},
    )  # fmt: skip
    assert probe.stdout.strip() == "False", probe.stderr
    child.wait()
    me = os.getpid()
    assert process_alive(me, process_start(me)) and process_alive(me, None)
    assert not process_alive(me, process_start(me) + 1)  # the pid now belongs to a later process
    assert not pid_alive(child.pid) and not process_alive(None)


def test_a_ctrl_c_while_a_job_starts_waits_until_it_is_recorded(tmp_path: Path) -> None:
    """Ctrl-C between starting a job and writing its record would leave a job its stop cannot see: it is held
    back until the record is written, then raised; the job itself starts with no signal blocked or caught."""
    root = tmp_path / "runs"
    # Python's own Ctrl-C handler, as in a terminal (a process started in the background by a non-interactive
    # shell, e.g. CI under nohup, inherits SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_during_a_start(root)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_during_a_start(root: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with jobs._signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # delivered here, were it not held
            job = jobs.start_job(root, "mask", [PY, "-c", "print(open('/proc/self/status').read())"])
            reached_the_end = True
        time.sleep(1)  # the held signal arrives once the block has ended
    assert reached_the_end
    wait_for(lambda: jobs.job_state(jobs.read_job(root, "mask")) == "finished", 20)
    status = dict(line.split(":\t") for line in jobs.log_tail(job, 100).splitlines() if ":\t" in line)
    assert int(status["SigBlk"], 16) == 0 and int(status["SigIgn"], 16) & (1 << (signal.SIGINT - 1)) == 0


def test_a_damaged_records_pid_never_signals_another_process_group(tmp_path: Path) -> None:
    """``killpg(0)`` is the caller's own group and ``killpg(1)`` every process the user owns: a record whose pid
    is 0, 1, negative, too large or not a number has no process (it stays listed, and a stop signals nothing)."""
    root = tmp_path / "runs"
    (root / ".jobs").mkdir(parents=True)
    base = {"command": ["x"], "log": "bad.log", "by": "test", "queue": "q", "queued": time.time()}
    for pid in (0, 1, -5, 2**40, "12x"):
        (root / ".jobs" / "bad.json").write_text(json.dumps({**base, "name": "bad", "pid": pid}))
        job = jobs.read_job(root, "bad")
        assert job is not None and job.pid is None, pid
        assert jobs.job_state(job) in ("queued", "not started", "cancelled")
    (root / ".jobs" / "bad.json").write_text(json.dumps({**base, "name": "bad", "pid": 0}))
    stopper = subprocess.run(  # in a session of its own: without the check it sends SIGTERM to its own group
        [PY, "-c", f"from workbench import jobs; jobs.stop_jobs(jobs.list_jobs({str(root)!r}), grace=0.2); "
         "print('survived')"],
        capture_output=True, text=True, start_new_session=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(jobs.PROJECT_ROOT)},
    )  # fmt: skip
    assert stopper.returncode == 0 and stopper.stdout.strip() == "survived", (
        stopper.returncode,
        stopper.stderr,
    )


def test_a_records_name_is_its_file_name_so_a_stop_never_writes_outside_the_jobs_folder(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    (root / ".jobs").mkdir(parents=True)
    record = {
        "name": "../../escape",
        "command": ["x"],
        "log": "a.log",
        "by": "t",
        "queue": "q",
        "queued": time.time(),
    }
    (root / ".jobs" / "a.json").write_text(json.dumps(record))
    (listed,) = jobs.list_jobs(root)
    assert listed.name == "a"
    jobs.stop_jobs([listed], grace=0.2)
    assert not (tmp_path / "escape.json").exists() and not (tmp_path / "escape.json.tmp").exists()
    assert jobs.job_state(jobs.read_job(root, "a")) == "cancelled"


def test_asking_whether_a_dead_queue_runner_lives_keeps_its_exit_code(tmp_path: Path) -> None:
    """A queued job's state asks whether its runner lives; that runner is the app's child, and the question must
    not reap it (its Popen then reads exit code 0: a killed runner would show as finished)."""
    root = tmp_path / "runs"
    runner = jobs.start_job(root, "queue-q", [PY, "-c", "raise SystemExit(3)"], by="queue runner")
    jobs.enqueue(root, "waiting", sleeper(0), queue="q")
    rec = json.loads((root / ".jobs" / "waiting.json").read_text())
    rec["runner_pid"], rec["runner_start"] = runner.pid, runner.pid_start
    (root / ".jobs" / "waiting.json").write_text(json.dumps(rec))
    wait_for(lambda: Path(f"/proc/{runner.pid}/stat").read_text().split(") ")[1][0] == "Z", 20)
    assert jobs.job_state(jobs.read_job(root, "waiting")) == "not started"
    assert not pid_alive(runner.pid)
    ended = jobs.read_job(root, "queue-q")
    assert ended.returncode == 3 and jobs.job_state(ended) == "failed"


def test_a_job_on_a_reused_pid_never_takes_the_exit_code_of_a_job_this_process_started(
    tmp_path: Path,
) -> None:
    """This process started job A; it ended. Another process's job B now has A's pid (a later process): reading B
    must not record A's exit code as B's."""
    root = tmp_path / "runs"
    a = jobs.start_job(root, "a", [PY, "-c", "pass"])
    wait_for(lambda: jobs.job_state(jobs.read_job(root, "a")) == "finished", 20)
    rec = json.loads((root / ".jobs" / "a.json").read_text())
    b = {**rec, "name": "b", "log": "b.log", "pid_start": a.pid_start + 1, "returncode": None, "ended": None}
    (root / ".jobs" / "b.json").write_text(json.dumps(b))
    read = jobs.read_job(root, "b")
    assert read.returncode is None and jobs.job_state(read) == "ended"  # exit code unseen, no run to read


def test_stopping_an_ended_job_never_signals_a_later_process_group_on_its_pid(tmp_path: Path) -> None:
    """The job's process ended; its pid now leads another process group (a shell's job, say). The stop's
    sweep of the job's leftover group must leave that group alone."""
    root = tmp_path / "runs"
    (root / ".jobs").mkdir(parents=True)
    other = subprocess.Popen(sleeper(30), start_new_session=True)
    try:
        record = {"name": "r", "command": ["x"], "log": "r.log", "by": "t", "started": time.time(),
                  "pid": other.pid, "pid_start": process_start(other.pid) - 1}  # fmt: skip
        (root / ".jobs" / "r.json").write_text(json.dumps(record))
        jobs.stop_jobs([jobs.read_job(root, "r")], grace=0.2)
        time.sleep(0.3)
        assert other.poll() is None, "the stop signalled another process group"
    finally:
        other.kill()
        other.wait()


def test_two_starts_of_one_name_at_once_start_one_job(tmp_path: Path) -> None:
    """Two app sessions press Start for the same run together: both pass the early check, then start in turn
    under the lock; the second must be refused there, not start a second trainer on the same run."""
    import threading

    root = tmp_path / "runs"
    outcomes: list[object] = []

    def start() -> None:
        try:
            outcomes.append(jobs.start_job(root, "same", sleeper(30)))
        except ValueError as e:
            outcomes.append(e)

    with jobs._locked(root):  # both threads get past the early check and wait for the lock
        threads = [threading.Thread(target=start) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)
    for t in threads:
        t.join(30)
    started = [o for o in outcomes if isinstance(o, jobs.Job)]
    try:
        assert len(outcomes) == 2 and len(started) == 1, outcomes
        assert "still running" in str(next(o for o in outcomes if isinstance(o, ValueError)))
    finally:
        jobs.stop_jobs(started, grace=4)


def test_a_job_whose_process_cannot_start_fails_and_the_queue_goes_on(tmp_path: Path) -> None:
    """A start refused by the system (program missing, no fork) was an exception out of ``Queue.step``: the
    queue runner (or the pipeline) died and left the rest of the queue unstarted and its running jobs unwatched."""
    root = tmp_path / "runs"
    jobs.enqueue(root, "bad", [str(tmp_path / "no-such-program")], queue="q")
    jobs.enqueue(root, "good", [PY, "-c", "pass"], queue="q")
    assert jobs.run_queue(root, "q", max_running=1, poll_s=0.05) == 1  # one failed
    bad, good = jobs.read_job(root, "bad"), jobs.read_job(root, "good")
    assert jobs.job_state(bad) == "failed" and bad.returncode == jobs.FAILED_START and bad.pid is None
    assert "could not start" in jobs.log_tail(bad) and jobs.job_state(good) == "finished"
    jobs.stop_jobs([bad], grace=0.2)
    assert jobs.job_state(jobs.read_job(root, "bad")) == "failed"  # a stop does not turn it into "cancelled"


def test_a_stop_that_comes_after_the_job_ended_keeps_its_outcome(tmp_path: Path) -> None:
    """'Stop all' pressed on a page drawn while the job still ran: the job has failed meanwhile, and the stop must
    not relabel that failure 'stopped'."""
    root = tmp_path / "runs"
    job = jobs.start_job(root, "crash", [PY, "-c", "raise SystemExit(1)"])
    wait_for(lambda: jobs.job_state(jobs.read_job(root, "crash")) == "failed", 20)
    jobs.stop_jobs([job], grace=0.2)
    after = jobs.read_job(root, "crash")
    assert jobs.job_state(after) == "failed" and after.stopped is None


def test_a_damaged_records_times_that_no_clock_can_show_are_no_times(tmp_path: Path) -> None:
    """NaN, infinite or far-off times in a record made the Train page's time.localtime raise: they read as None."""
    root = tmp_path / "runs"
    (root / ".jobs").mkdir(parents=True)
    for bad in (float("nan"), float("inf"), 1e20, -5.0, "soon"):
        record = {"name": "t", "command": ["x"], "log": "t.log", "by": "t", "queued": bad, "started": bad,
                  "ended": bad, "stopped": bad}  # fmt: skip
        (root / ".jobs" / "t.json").write_text(json.dumps(record))
        job = jobs.read_job(root, "t")
        assert job is not None, bad
        assert (job.queued, job.started, job.ended, job.stopped) == (None, None, None, None), bad
        time.localtime(job.sort_time)  # what the Train page shows
