"""Grading while sampling (``training.grading_stream``): the step's report equals one ``grade`` call's, with the
real math-verify workers and the embedded tokenizer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from training.grading_stream import StreamedGrading
from training.rewards import OK, Grader
from training.tokenizer import build_tokenizer, response_texts

TOK = build_tokenizer()


def _ids(text: str) -> torch.Tensor:
    return torch.tensor(TOK(text, add_special_tokens=False)["input_ids"])


def _decode(responses: list[torch.Tensor]) -> list[str]:
    return response_texts(TOK, responses)  # as the trainer decodes


# Rollouts of a step: repeats of one (response, answer) pair in different batches, a pair cached before the step,
# a wrong answer, and an answer given as alternatives.
TEXTS = ["$3$", "$4$", "$3$", "$7$", "$3$", "$x=3$", "$4$", "$9$", "$3$", "$2$"]
ANSWERS: list = ["3", "3", "3", "7", "3", "3", "3", ("9", "10"), "3", "7"]
CACHED_BEFORE = [("$7$", "7"), ("$3$", "3")]


def _stream(grader: Grader, pool: ThreadPoolExecutor, order: list[list[int]], min_batch: int):
    stream = StreamedGrading(
        lambda t, a: pool.submit(grader.grade, t, a), _decode, ANSWERS, min_batch=min_batch
    )
    responses = [_ids(t) for t in TEXTS]
    for rollouts in order:
        stream.add(rollouts, [responses[r] for r in rollouts])
    texts = stream.close(responses)
    return stream, texts


@pytest.mark.parametrize("min_batch", [1, 3])
def test_the_streamed_report_equals_one_grade_call(min_batch):
    with Grader(workers=2, timeout=5.0) as one, Grader(workers=2, timeout=5.0) as streamed:
        for g in (one, streamed):  # the same cache before the step
            g.grade([t for t, _ in CACHED_BEFORE], [a for _, a in CACHED_BEFORE])
        expected = one.grade(TEXTS, ANSWERS)
        with ThreadPoolExecutor(1) as pool:
            stream, texts = _stream(streamed, pool, [[4], [0, 6], [2, 1], [8, 7]], min_batch)
            got = stream.result()
            assert stream.rewards_of([2, 9, 5]) == [expected.rewards[i] for i in (2, 9, 5)]
    assert texts == TEXTS
    assert len(stream.batches) > 1  # handed over in several batches, repeats of a pair not handed over again
    assert sum(len(rows) for rows, _ in stream.batches) == len(
        set(zip(TEXTS, map(str, ANSWERS), strict=True))
    )
    assert got.rewards == expected.rewards == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert got.status == expected.status == [OK] * len(TEXTS)
    assert got.details == expected.details
    assert (
        got.cached == expected.cached and got.cache_hits == expected.cache_hits == 5
    )  # four "$3$"s and "$7$"
    assert [e == 0.0 for e in got.elapsed] == [e == 0.0 for e in expected.elapsed]


def test_one_answer_in_a_list_is_keyed_as_the_grader_keys_it(grader):
    """``["3"]`` and ``"3"`` are one answer to the grader (one digest); so they are to the stream: the second
    rollout repeats the first's pair, and neither is a cache hit unless the pair was cached before."""
    answers = ["3", ["3"], ("3",)]
    texts = ["$3$ is new here", "$3$ is new here", "$3$ is new here"]
    with ThreadPoolExecutor(1) as pool:
        stream = StreamedGrading(lambda t, a: pool.submit(grader.grade, t, a), _decode, answers, min_batch=1)
        responses = [_ids(t) for t in texts]
        stream.add([0], [responses[0]])
        stream.close(responses)
        report = stream.result()
    assert sum(len(rows) for rows, _ in stream.batches) == 1
    assert report.rewards == [1.0, 1.0, 1.0] and report.cached == [False] * 3


def test_misuse_is_an_error_not_a_wrong_reward(grader):
    with ThreadPoolExecutor(1) as pool:
        stream = StreamedGrading(lambda t, a: pool.submit(grader.grade, t, a), _decode, ANSWERS)
        responses = [_ids(t) for t in TEXTS]
        stream.add([0], [responses[0]])
        with pytest.raises(ValueError, match="reported twice"):
            stream.add([0], [responses[0]])
        with pytest.raises(ValueError, match="out of range"):
            stream.add([len(TEXTS)], [responses[0]])
        with pytest.raises(RuntimeError, match="close"):
            stream.result()
        changed = list(responses)
        changed[0] = _ids("$5$")
        with pytest.raises(RuntimeError, match="changed after"):
            stream.close(changed)
        with pytest.raises(ValueError, match="responses for"):
            stream.close(responses[:3])
        stream.close(responses)
        with pytest.raises(RuntimeError, match="after the step's grading was closed"):
            stream.add([1], [responses[1]])
        assert stream.result().rewards[0] == 1.0
    with pytest.raises(ValueError, match="min_batch"):
        StreamedGrading(lambda t, a: None, _decode, ANSWERS, min_batch=0)
    with pytest.raises(ValueError, match="answer 1 must be a string"):  # the grader's own check, at once
        StreamedGrading(lambda t, a: None, _decode, ["3", []])


def test_a_run_graded_while_it_samples_logs_what_a_run_graded_afterwards_logs(
    ws_cache, grader, tmp_path, monkeypatch
):
    """The trainer end to end: grading during sampling (the default) and all after it log the same values in
    every table (rewards and grader counts included; the grader cache's hits are shared between the runs)."""
    import training.loop
    from tests.training.conftest import assert_same_logs, small_config
    from training.loop import Trainer

    handed: list[int] = []
    add = StreamedGrading.add

    def counting(self, rollouts, responses):
        handed.append(len(rollouts))
        return add(self, rollouts, responses)

    monkeypatch.setattr(StreamedGrading, "add", counting)
    for streamed in (True, False):
        monkeypatch.setattr(training.loop, "GRADE_WHILE_SAMPLING", streamed)
        cfg = small_config("grpo", ws_cache, steps=2, save_every=0, val_every=0, kl_beta=0.0)
        Trainer(cfg, tmp_path / str(streamed), grader=grader, log=lambda _: None).run()
        if streamed:
            assert sum(handed) > 0
            during = len(handed)
    assert len(handed) == during  # nothing handed over during sampling with the switch off
    assert_same_logs(tmp_path / "True", tmp_path / "False")
