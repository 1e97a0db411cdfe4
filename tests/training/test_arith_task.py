"""The embedded task: deterministic, disjoint splits, correct worked solutions that math-verify accepts."""

from __future__ import annotations

import re

import pytest

from training.task import ArithmeticSpec, make_splits, solve
from training.tokenizer import build_tokenizer, token_texts

SPEC = ArithmeticSpec(n_val=50, n_test=60, n_train=300, n_sft=500)


def test_same_spec_same_problems_and_disjoint_splits():
    a, b = make_splits(SPEC), make_splits(SPEC)
    assert a == b
    sizes = {k: len(v) for k, v in a.items()}
    assert sizes == {"val": 50, "test": 60, "train": 300, "sft": 500}
    prompts = [p.prompt for split in a.values() for p in split]
    ids = [p.id for split in a.values() for p in split]
    assert len(set(prompts)) == len(prompts)
    assert len(set(ids)) == len(ids)
    other = make_splits(ArithmeticSpec(seed=SPEC.seed + 1, n_val=50, n_test=60, n_train=300, n_sft=500))
    assert [p.prompt for p in other["train"]] != [p.prompt for p in a["train"]]


def test_answers_and_solutions_are_correct():
    for split in make_splits(SPEC).values():
        for p in split:
            expr = p.prompt.removesuffix("=?")
            assert int(p.answer) == eval(expr)  # Python's precedence is the task's
            lines = p.solution.split("\n")
            assert lines[-1] == f"\\boxed{{{p.answer}}}"
            n_ops = len(re.findall(r"(?<=\d)[+*-]", expr))
            assert len(lines) == n_ops + 1
            assert SPEC.min_ops <= n_ops <= SPEC.max_ops
            for line in lines[:-1]:
                lhs, rhs = line.split("=")
                assert eval(lhs) == int(rhs)


def test_solve_does_products_first_left_to_right():
    value, lines = solve([2, 6, 7, 3], ["-", "*", "+"])
    assert value == 2 - 6 * 7 + 3
    assert lines == ["6*7=42", "2-42=-40", "-40+3=-37"]


def test_too_many_problems_for_the_space_is_refused():
    with pytest.raises(ValueError, match="distinct expressions"):
        ArithmeticSpec(min_ops=1, max_ops=1, max_operand=3, n_val=10, n_test=10, n_train=10, n_sft=10)


def test_math_verify_accepts_every_gold_solution_and_rejects_a_wrong_one(grader):
    problems = make_splits(SPEC)["val"]
    rewards = grader.grade([p.solution for p in problems], [p.answer for p in problems]).rewards
    assert rewards == [1.0] * len(problems)
    wrong = grader.grade([p.solution for p in problems[1:]], [p.answer for p in problems[:-1]]).rewards
    assert sum(wrong) < len(wrong) / 2


def test_tokenizer_round_trips_task_text():
    tok = build_tokenizer()
    for p in make_splits(SPEC)["sft"][:50]:
        text = p.prompt + "\n" + p.solution
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
        assert ids.count(tok.convert_tokens_to_ids("\\boxed{")) == 1
    texts = token_texts(tok)
    assert texts[tok.convert_tokens_to_ids("7")] == "7"
    assert texts[tok.eos_token_id] == "<eos>"
    # the engines' form: the texts of given ids, in order, repeats included; the same as the vocabulary table
    some = [tok.eos_token_id, tok.convert_tokens_to_ids("7"), tok.convert_tokens_to_ids("7"), 5]
    assert list(token_texts(tok, some)) == [texts[i] for i in some] and len(token_texts(tok, [])) == 0


def test_response_texts_leave_out_eos_and_take_tensors_or_lists():
    import torch

    from training.tokenizer import response_texts

    tok = build_tokenizer()
    texts = [p.solution for p in make_splits(SPEC)["sft"][:5]]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    tensors = [torch.tensor(i) for i in ids]
    assert response_texts(tok, tensors) == texts == response_texts(tok, ids)
    assert response_texts(tok, [torch.tensor([], dtype=torch.long)]) == [""]
