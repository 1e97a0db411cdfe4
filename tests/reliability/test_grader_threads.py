"""``training.rewards.grade`` and a shared ``Grader`` called from several threads at once give every thread its
own correct rewards (two threads once read each other's replies: 19-24 of 200 plain completions wrong)."""

from __future__ import annotations

import random
import threading

from training import rewards as R


def _batch(seed: int, n: int = 60, towers: int = 2) -> tuple[list[str], list[str], list[float]]:
    r = random.Random(seed)
    responses, answers, expected = [], [], []
    for _ in range(n):
        k = r.randint(0, 10_000)
        right = r.random() < 0.5
        responses.append(f"so the answer is \\boxed{{{k if right else k + 1}}}")
        answers.append(str(k))
        expected.append(1.0 if right else 0.0)
    for _ in range(towers):  # hostile: hangs or blows up math-verify; scored 0 by the deadline at worst
        responses.append("\\boxed{" + "^".join(str(r.randint(2, 99)) for _ in range(6)) + "}")
        answers.append(str(r.randint(0, 99)))
        expected.append(0.0)
    order = list(range(len(responses)))
    r.shuffle(order)
    return [responses[i] for i in order], [answers[i] for i in order], [expected[i] for i in order]


def _hammer(call, threads: int = 3) -> dict[int, list[float]]:
    got: dict[int, list[float]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            responses, answers, _ = _batch(t)
            barrier.wait()
            got[t] = call(responses, answers)
        except BaseException as e:  # reported below
            errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    for p in pool:
        p.join(timeout=300)
    assert not errors, errors
    return got


def test_module_grade_from_threads_gives_every_reward():
    got = _hammer(lambda resp, ans: R.grade(resp, ans, timeout=1.0))
    for t, rewards in got.items():
        assert rewards == _batch(t)[2], f"thread {t}"


def test_a_shared_grader_from_threads_gives_every_reward():
    with R.Grader(workers=2, timeout=1.0) as grader:
        got = _hammer(lambda resp, ans: grader.grade(resp, ans).rewards)
    for t, rewards in got.items():
        assert rewards == _batch(t)[2], f"thread {t}"
