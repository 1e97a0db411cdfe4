"""Grading while sampling: rollouts that end early are graded while the others still decode.

The rollout back end calls ``StreamedGrading.add(rollouts, responses)`` (its ``on_finished`` hook) with the
rollouts that have sampled EOS; their texts are decoded at once and handed to the grader (through ``submit``,
the trainer's one grading thread) as soon as ``min_batch`` of them are waiting. After sampling, ``close`` hands
over every other rollout. The grader's workers run in their own processes, so on a 2-core machine they grade on
the second core while the first decodes, and the wait after sampling is for the last rollouts only.

``result()`` is one ``GradeReport`` for all rollouts, equal to that of one ``Grader.grade`` call over all of them
(rewards, status, details, per-rollout seconds, cache flags and the cache-hit count; only ``seconds``, the
grader's busy time, differs). To keep it so, a (response, answer) pair that was handed over earlier in the same
step is not handed over again: the rollout takes the verdict of the pair's first rollout and counts as a cache hit
exactly when that one did, as every repeat of a pair does within one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future

from torch import Tensor

from training.rewards import OK, GradeReport, gold_answer

Answer = str | tuple[str, ...]


class StreamedGrading:
    """One step's grading, handed over in batches (see the module docstring).

    ``submit(texts, answers)`` starts grading (it returns a ``Future`` of a ``GradeReport``); ``decode(responses)``
    turns token tensors into texts; ``answers[r]`` is rollout ``r``'s gold answer."""

    def __init__(
        self,
        submit: Callable[[list[str], list[Answer]], Future],
        decode: Callable[[list[Tensor]], list[str]],
        answers: Sequence[Answer | list[str]],
        *,
        min_batch: int = 8,
    ):
        if min_batch < 1:
            raise ValueError(f"min_batch must be >= 1, got {min_batch}")
        self._submit, self._decode, self.min_batch = submit, decode, min_batch
        self.answers: list[Answer] = [gold_answer(a, i) for i, a in enumerate(answers)]
        self.texts: list[str | None] = [None] * len(self.answers)
        self._responses: dict[int, Tensor] = {}  # the responses the hook saw, checked against the final ones
        self._waiting: list[int] = []
        self._first: dict[tuple[str, Answer], int] = {}  # (text, answer) -> first rollout handed over
        self._repeat_of: dict[int, int] = {}  # rollout -> the earlier rollout with its (text, answer)
        self.batches: list[tuple[list[int], Future]] = []
        self._where: dict[int, tuple[int, int]] = {}  # rollout handed over -> (its batch, its place in it)
        self.closed = False

    @property
    def futures(self) -> list[Future]:
        return [f for _, f in self.batches]

    def add(self, rollouts: list[int], responses: list[Tensor]) -> None:
        """The back end's ``on_finished`` hook: ``rollouts`` ended with these final ``responses``."""
        if self.closed:
            raise RuntimeError("rollouts reported after the step's grading was closed")
        for r, resp in zip(rollouts, responses, strict=True):
            if not 0 <= r < len(self.answers) or self.texts[r] is not None:
                raise ValueError(f"rollout {r} is out of range or was reported twice")
            self._responses[r] = resp
        for r, text in zip(rollouts, self._decode(list(responses)), strict=True):
            self.texts[r] = text
            self._queue(r)
        if len(self._waiting) >= self.min_batch:
            self._flush()

    def close(self, responses: Sequence[Tensor]) -> list[str]:
        """Hand over every rollout the hook did not report (``responses``: all final responses, in order) and
        return every rollout's text."""
        if len(responses) != len(self.answers):
            raise ValueError(f"{len(responses)} responses for {len(self.answers)} answers")
        for r, resp in self._responses.items():
            if len(resp) != len(responses[r]) or not bool((resp == responses[r].to(resp.device)).all()):
                raise RuntimeError(f"rollout {r}'s response changed after the back end reported it finished")
        rest = [r for r in range(len(self.answers)) if self.texts[r] is None]
        for r, text in zip(rest, self._decode([responses[r] for r in rest]) if rest else [], strict=True):
            self.texts[r] = text
            self._queue(r)
        self._flush()
        self.closed = True
        return [t for t in self.texts if t is not None]

    def result(self) -> GradeReport:
        """Wait for every batch and return the step's report (as one ``grade`` call would give it)."""
        if not self.closed:
            raise RuntimeError("close() the step's grading before reading its result")
        n = len(self.answers)
        rewards, status, details = [0.0] * n, [OK] * n, [""] * n
        elapsed, cached = [0.0] * n, [False] * n
        seconds = 0.0
        for rows, future in self.batches:
            report: GradeReport = future.result()
            seconds += report.seconds
            for j, r in enumerate(rows):
                rewards[r], status[r], details[r] = report.rewards[j], report.status[j], report.details[j]
                elapsed[r], cached[r] = report.elapsed[j], report.cached[j]
        for r, first in self._repeat_of.items():
            rewards[r], status[r], details[r] = rewards[first], status[first], details[first]
            elapsed[r], cached[r] = elapsed[first], cached[first]
        return GradeReport(rewards, status, seconds, sum(cached), details, elapsed, cached)

    def rewards_of(self, rollouts: Sequence[int]) -> list[float]:
        """The rewards of ``rollouts``, waiting only for the batches that hold them (or their pairs' first
        rollouts); a grading error is raised here as in ``result``."""
        if not self.closed:
            raise RuntimeError("close() the step's grading before reading its rewards")
        out = []
        for r in rollouts:
            b, j = self._where[self._repeat_of.get(r, r)]
            out.append(self.batches[b][1].result().rewards[j])
        return out

    def _queue(self, r: int) -> None:
        key = (self.texts[r], self.answers[r])
        first = self._first.setdefault(key, r)  # type: ignore[arg-type]
        if first == r:
            self._waiting.append(r)
        else:
            self._repeat_of[r] = first

    def _flush(self) -> None:
        if not self._waiting:
            return
        rows, self._waiting = self._waiting, []
        future = self._submit([self.texts[r] for r in rows], [self.answers[r] for r in rows])  # type: ignore[misc]
        self._where.update((r, (len(self.batches), j)) for j, r in enumerate(rows))
        self.batches.append((rows, future))
