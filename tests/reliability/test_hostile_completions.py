"""Hostile completions against the real grader (``training.rewards``, math-verify in worker processes).

What must hold for every pathological output of ``tests/reliability/hostile.py``:

- it is graded (reward 0 or 1, status ok | timeout | error) within the timeout plus ``MARGIN`` seconds, measured
  per completion (``GradeReport.elapsed``: from handing it to a worker to its result, a kill included);
- the workers' peak RSS stays under the grader's memory cap (sampled from ``/proc``);
- a crashed (SIGKILL, SIGSEGV) or hung (SIGSTOP) worker is replaced and grading goes on: every killed worker is
  gone, the pool is back to full strength;
- the normal completions graded in the same batches, by the same workers, keep their exact rewards. A normal
  completion may itself time out when the machine is starved of CPU (the deadline is wall-clock): it is then
  graded again on its own with a generous timeout and must get its exact reward; such cases are counted and
  must stay rare.

The fast test grades one item of each family; the slow one (``-m slow``) grades 1,224 (72 per family).
"""

from __future__ import annotations

import collections
import os
import random
import resource
import signal
import sys
import threading
import time

import pytest

from tests.reliability.conftest import WorkerMemory, alive, report
from tests.reliability.hostile import NAMES, Hostile, hostile, normal
from training.rewards import ERROR, OK, TIMEOUT, Grader

FAST_TIMEOUT_S = 1.0  # the default run's per-completion deadline
FUZZ_TIMEOUT_S = 2.0  # the slow fuzz's: more headroom for normal completions on a loaded machine
NORMAL_RETRY_TIMEOUT_S = 30.0
MAX_STARVED_SHARE = 0.02  # of the normal completions: timed out under CPU starvation, right when graded again
MARGIN = 0.5  # seconds over the timeout: the kill of a worker and the parent's reaction
MEMORY_CAP_MB = 4096  # the grader's default RLIMIT_AS per worker


class Chaos:
    """Kills or freezes a worker that is busy with a hostile item, ``delay`` seconds into a batch."""

    def __init__(self, grader: Grader, hostile_slots: set[int], sig: signal.Signals, delay: float = 0.2):
        self.grader, self.slots, self.sig, self.delay = grader, hostile_slots, sig, delay
        self.victim: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        time.sleep(self.delay)
        end = time.monotonic() + 2.0
        while time.monotonic() < end and self.victim is None:
            for w in list(self.grader._workers):
                if w.task in self.slots and w.alive():
                    if self.sig == signal.SIGSEGV:  # a crash, but no core file wherever cores are enabled
                        resource.prlimit(w.pid, resource.RLIMIT_CORE, (0, 0))
                    os.kill(w.pid, self.sig)
                    self.victim = w.pid
                    return
            time.sleep(0.005)

    def start(self) -> Chaos:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join()


def grade_interleaved(
    grader: Grader, items: list[Hostile], batch_index: int, seed: int, chaos: signal.Signals | None = None
) -> dict:
    """Grade ``[normal, hostile, normal, hostile, ...]`` in one call and check every per-completion promise.

    Each text gets a unique first line so that all pairs are distinct (no cache hit, no merging): slot ``k`` of
    the batch is then task ``k`` of the grader, which lets ``Chaos`` pick a worker busy with a hostile item.
    """
    responses, answers, expected = [], [], {}
    for j, h in enumerate(items):
        n = normal(seed, batch_index * 1000 + j)
        expected[len(responses)] = n.reward
        responses += [f"[{batch_index}.{j}n]\n{n.response}", f"[{batch_index}.{j}h]\n{h.response}"]
        answers += [n.answer, h.answer]
    assert len(set(zip(responses, answers, strict=True))) == len(responses)
    hostile_slots = set(range(1, len(responses), 2))
    agent = Chaos(grader, hostile_slots, chaos).start() if chaos is not None else None
    t0 = time.monotonic()
    rep = grader.grade(responses, answers)  # the grader's own timeout
    wall = time.monotonic() - t0
    if agent is not None:
        agent.join()
        assert agent.victim is not None, "the chaos agent found no worker busy with a hostile item"
        assert not alive(agent.victim)  # killed, crashed or (frozen, then killed at its deadline) and reaped

    assert len(rep.rewards) == len(rep.status) == len(rep.elapsed) == len(responses)
    assert rep.cache_hits == 0
    for k, (reward, st, took) in enumerate(zip(rep.rewards, rep.status, rep.elapsed, strict=True)):
        what = items[k // 2] if k % 2 else f"normal completion {k}"
        assert reward in (0.0, 1.0) and st in (OK, TIMEOUT, ERROR), what
        assert 0.0 < took <= grader.timeout + MARGIN, f"{what}: graded in {took:.2f} s"
    starved = []
    for k, reward in expected.items():
        assert rep.status[k] in (OK, TIMEOUT), f"normal completion {k}: {rep.status[k]} {rep.details[k]}"
        if rep.status[k] == TIMEOUT:
            starved.append(k)
        else:
            assert reward == rep.rewards[k], f"normal completion {k}: {responses[k]!r} vs {answers[k]!r}"
    if starved:
        again = grader.grade(
            [responses[k] for k in starved], [answers[k] for k in starved], NORMAL_RETRY_TIMEOUT_S
        )
        assert again.status == [OK] * len(starved)
        assert again.rewards == [expected[k] for k in starved]
    return {
        "wall": wall,
        "starved_normals": len(starved),
        "status": [
            (items[(k - 1) // 2].family, rep.status[k], rep.elapsed[k]) for k in sorted(hostile_slots)
        ],
        "victim": agent.victim if agent else None,
    }


def fuzz(
    per_family: int, seed: int, batch_size: int, chaos_every: int, timeout: float, progress: int = 0
) -> dict:
    """Grade ``per_family`` items of every family in interleaved batches, injecting chaos every
    ``chaos_every`` batches (SIGKILL, SIGSEGV and SIGSTOP in turn); returns the figures."""
    n = per_family * len(NAMES)
    signals = [signal.SIGKILL, signal.SIGSEGV, signal.SIGSTOP]
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    max_elapsed: dict[str, float] = collections.defaultdict(float)
    victims: list[int] = []
    starved = 0
    walls: list[float] = []
    order = list(range(n))
    random.Random(seed).shuffle(order)  # families mixed within batches
    t0 = time.monotonic()
    with Grader(workers=2, timeout=timeout, memory_limit_mb=MEMORY_CAP_MB) as grader:
        grader.grade(["\\boxed{1}", "\\boxed{2}"], ["1", "1"])  # both workers up
        pids: set[int] = set()
        with WorkerMemory(grader) as mem:
            for b, start in enumerate(range(0, n, batch_size)):
                items = [hostile(seed, i) for i in order[start : start + batch_size]]
                pids |= {w.pid for w in grader._workers}
                sig = signals[(b // chaos_every) % 3] if chaos_every and b % chaos_every == 0 else None
                out = grade_interleaved(grader, items, b, seed, sig)
                pids |= {w.pid for w in grader._workers}
                walls.append(out["wall"])
                starved += out["starved_normals"]
                if out["victim"]:
                    victims.append(out["victim"])
                for family, st, took in out["status"]:
                    by_family[family][st] += 1
                    max_elapsed[family] = max(max_elapsed[family], took)
                if progress and (b + 1) % progress == 0:
                    done = min(start + batch_size, n)
                    print(f"  hostile {done}/{n}, {time.monotonic() - t0:.0f} s, replaced {grader.replaced}",
                          file=sys.stderr, flush=True)  # fmt: skip
            # Grading goes on: a full pool of live workers, every replaced one gone, normal rewards still right.
            final = [normal(seed, 10**6 + i) for i in range(8)]
            rep = grader.grade([x.response for x in final], [x.answer for x in final])
            assert rep.rewards == [x.reward for x in final] and rep.status == [OK] * 8
            live = {w.pid for w in grader._workers}
            assert len(live) == 2 and all(w.alive() for w in grader._workers)
            assert not [p for p in pids - live if alive(p)], "a replaced worker is still alive"
            replaced = grader.replaced
    assert not [p for p in pids if alive(p)], "a worker outlived the grader"
    counts = collections.Counter()
    for c in by_family.values():
        counts.update(c)
    assert sum(counts.values()) == n
    assert replaced >= len(victims)
    assert mem.max_mb < MEMORY_CAP_MB
    assert starved <= max(1, MAX_STARVED_SHARE * n), f"{starved} of {n} normal completions timed out"
    return {
        "completions": n,
        "normal_completions": n + 8,
        "normal_timeouts_under_load": starved,
        "families": len(NAMES),
        "status": dict(counts),
        "by_family": {f: dict(c) for f, c in sorted(by_family.items())},
        "max_elapsed_s": round(max(max_elapsed.values()), 3),
        "max_elapsed_by_family": {f: round(v, 3) for f, v in sorted(max_elapsed.items())},
        "timeout_s": timeout,
        "max_batch_wall_s": round(max(walls), 2),
        "workers_replaced": replaced,
        "chaos_kills": len(victims),
        "max_worker_rss_mb": round(mem.max_mb, 1),
        "workers_seen": len(pids),
        "seconds": round(time.monotonic() - t0, 1),
    }


def test_one_of_each_family_is_graded_in_time_with_bounded_memory():
    figures = fuzz(per_family=1, seed=7, batch_size=len(NAMES), chaos_every=0, timeout=FAST_TIMEOUT_S)
    report("hostile_fast", **figures)
    assert figures["completions"] == len(NAMES) >= 16


def test_a_crashed_or_hung_worker_is_replaced_and_grading_goes_on():
    """A worker killed (SIGKILL), crashed (SIGSEGV) or frozen (SIGSTOP: alive but hung) while it grades a hostile
    item costs that item only: it is scored 0 (error or timeout), the worker is replaced, the batch finishes."""
    with Grader(workers=2, timeout=FAST_TIMEOUT_S) as grader:
        grader.grade(["\\boxed{1}", "\\boxed{2}"], ["1", "1"])
        for b, sig in enumerate([signal.SIGKILL, signal.SIGSEGV, signal.SIGSTOP]):
            before = grader.replaced
            # a power tower and a nested-fraction stack: both keep a worker busy for most of the timeout
            out = grade_interleaved(grader, [hostile(3, 0), hostile(3, 8)], b, 3, chaos=sig)
            assert grader.replaced > before, sig
            assert out["victim"] not in {w.pid for w in grader._workers}
        again = grade_interleaved(grader, [hostile(3, 1)], 9, 3)  # the pool still grades
    assert len(again["status"]) == 1


def test_cache_memory_does_not_grow_with_response_length():
    """The grader remembers graded pairs under a fixed-size digest, not the strings: long responses that grade
    fine do not accumulate in the parent."""
    with Grader(workers=1, timeout=5.0) as grader:
        long = ["x" * 200_000 + f" so \\boxed{{{i}}}" for i in range(10)]
        rep = grader.grade(long, [str(i) for i in range(10)])
        assert rep.rewards == [1.0] * 10 and rep.status == [OK] * 10
        cached = list(grader._cache)
        assert len(cached) == 10 and all(isinstance(k, bytes) and len(k) == 16 for k in cached)
        again = grader.grade(long[:3], ["0", "1", "2"])
        assert again.cache_hits == 3 and again.rewards == [1.0] * 3
        surrogate = grader.grade(["\ud800 \\boxed{4}"] * 2, ["4", "4"])  # invalid Unicode is a key like any
        assert surrogate.status == [OK, OK]


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_fuzz_1224_hostile_completions():
    figures = fuzz(
        per_family=72, seed=2026, batch_size=8, chaos_every=10, timeout=FUZZ_TIMEOUT_S, progress=10
    )
    report("hostile_fuzz", **figures)
    assert figures["completions"] >= 1000
    assert figures["chaos_kills"] >= 10
