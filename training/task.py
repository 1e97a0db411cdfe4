"""The embedded verifiable task: multi-step integer arithmetic, generated locally and deterministically.

A problem is an expression over integers ``1..max_operand`` with ``min_ops..max_ops`` operators from ``+ - *``,
e.g. ``7+5*3-4``. Its worked solution reduces the expression one operation per line, products first (left to
right), then sums and differences (left to right), and ends with the answer in ``\\boxed{}``::

    prompt    7+5*3-4=?
    solution  5*3=15
              7+15=22
              22-4=18
              \\boxed{18}
    answer    18

``make_splits(spec)`` draws distinct expressions from ``spec.seed`` and partitions them into four disjoint splits:
``val``, ``test`` (held out), ``train`` (RL prompts) and ``sft`` (the warm start's worked solutions). The same
spec always gives the same problems, whatever the run's seed, so every method and seed sees the same data.

``Problem(id, prompt, answer, solution, source, alternatives)`` is the record every data source produces (the
real-data loaders of ``training.datasets`` too); ``encode_prompt`` turns one into the token ids the policy sees.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

OPERATORS = ("+", "-", "*")
SPLITS = ("val", "test", "train", "sft")


@dataclass(frozen=True)
class Problem:
    """One verifiable problem. ``id`` is unique within its data source; ``answer`` is the gold answer as text;
    ``alternatives`` are further accepted forms of it (a response is correct when it matches any of them)."""

    id: int
    prompt: str
    answer: str
    solution: str | None = None  # a worked solution ending in \\boxed{answer}, when the source has one
    source: str = ""
    alternatives: tuple[str, ...] = ()

    @property
    def answers(self) -> tuple[str, ...]:
        """Every accepted answer: ``answer`` first, then the alternatives."""
        return (self.answer, *self.alternatives)

    @property
    def gold(self) -> str | tuple[str, ...]:
        """What the grader takes: the answer text alone, or the tuple of accepted answers when there are several
        (``training.rewards.Grader.grade`` accepts both)."""
        return (self.answer, *self.alternatives) if self.alternatives else self.answer


@dataclass(frozen=True)
class ArithmeticSpec:
    """Everything that determines the embedded task's problems."""

    seed: int = 1234
    min_ops: int = 2
    max_ops: int = 3
    max_operand: int = 9
    n_val: int = 256
    n_test: int = 512
    n_train: int = 4096
    n_sft: int = 20000

    def __post_init__(self) -> None:
        if not 1 <= self.min_ops <= self.max_ops:
            raise ValueError(f"need 1 <= min_ops <= max_ops, got {self.min_ops} and {self.max_ops}")
        if self.max_ops > 8:
            raise ValueError(f"max_ops must be <= 8, got {self.max_ops}")
        if self.max_operand < 2:
            raise ValueError(f"max_operand must be >= 2, got {self.max_operand}")
        for name in ("n_val", "n_test", "n_train", "n_sft"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        total = self.n_val + self.n_test + self.n_train + self.n_sft
        if total > self.space_size():
            raise ValueError(
                f"the task has only {self.space_size()} distinct expressions with {self.min_ops}..{self.max_ops} "
                f"operators over 1..{self.max_operand}, but the splits ask for {total}: raise max_operand or "
                "max_ops, or ask for fewer problems"
            )

    def space_size(self) -> int:
        """Number of distinct expressions: ``sum_n max_operand^(n+1) * 3^n``."""
        return sum(
            self.max_operand ** (n + 1) * len(OPERATORS) ** n for n in range(self.min_ops, self.max_ops + 1)
        )

    def key(self) -> str:
        """A short hash of the spec (names the splits in caches)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer: Any, template: str, problem: Problem, *, chat: bool = True) -> str:
    """The text the policy sees: ``template`` with ``{prompt}`` replaced by the problem's text (other braces kept
    as written), wrapped as one user turn by the tokenizer's chat template (with the assistant's generation
    prompt) when ``chat`` is on and the tokenizer has a template; the plain text otherwise."""
    text = template.replace("{prompt}", problem.prompt)
    if chat and has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


def encode_prompt(tokenizer: Any, template: str, problem: Problem, *, chat: bool = True) -> list[int]:
    """Token ids of ``prompt_text(...)``. The tokenizer adds no special tokens of its own: a chat template
    writes the ones its model expects (e.g. a BOS token) into the text."""
    return list(
        tokenizer(prompt_text(tokenizer, template, problem, chat=chat), add_special_tokens=False)["input_ids"]
    )


def solve(operands: list[int], ops: list[str]) -> tuple[int, list[str]]:
    """Evaluate ``operands[0] ops[0] operands[1] ...`` with ``*`` before ``+``/``-`` (each left to right).

    Returns the value and the worked lines ``"a*b=c"``, one per operation, in the order they are done.
    """
    vals, ops = list(operands), list(ops)
    lines: list[str] = []
    for kinds in (("*",), ("+", "-")):
        i = 0
        while i < len(ops):
            if ops[i] in kinds:
                a, b, op = vals[i], vals[i + 1], ops[i]
                c = a * b if op == "*" else a + b if op == "+" else a - b
                lines.append(f"{a}{op}{b}={c}")
                vals[i : i + 2] = [c]
                del ops[i]
            else:
                i += 1
    return vals[0], lines


def format_expression(operands: list[int], ops: list[str]) -> str:
    return "".join(f"{a}{op}" for a, op in zip(operands, ops, strict=False)) + str(operands[-1])


def make_problem(pid: int, operands: list[int], ops: list[str]) -> Problem:
    value, lines = solve(operands, ops)
    answer = str(value)
    solution = "\n".join([*lines, f"\\boxed{{{answer}}}"])
    return Problem(
        id=pid,
        prompt=f"{format_expression(operands, ops)}=?",
        answer=answer,
        solution=solution,
        source="arith",
    )


def _decode(code: int, n_ops: int, max_operand: int) -> tuple[list[int], list[str]]:
    """The ``code``-th expression with ``n_ops`` operators (mixed-radix: operands then operators)."""
    operands, ops = [], []
    for _ in range(n_ops + 1):
        code, r = divmod(code, max_operand)
        operands.append(r + 1)
    for _ in range(n_ops):
        code, r = divmod(code, len(OPERATORS))
        ops.append(OPERATORS[r])
    return operands, ops


def make_splits(spec: ArithmeticSpec) -> dict[str, list[Problem]]:
    """Distinct problems drawn from ``spec.seed``, split into disjoint ``val``, ``test``, ``train`` and ``sft``.

    The expression space is enumerated by a mixed-radix code per operator count; distinct codes are drawn
    without replacement (uniform over all expressions), so no expression appears in two splits. Ids are the position in the draw, unique across splits.
    """
    sizes = [spec.max_operand ** (n + 1) * len(OPERATORS) ** n for n in range(spec.min_ops, spec.max_ops + 1)]
    offsets = list(itertools.accumulate([0, *sizes]))
    total = spec.n_val + spec.n_test + spec.n_train + spec.n_sft
    rng = np.random.default_rng([spec.seed, 0xA817])
    flat = rng.choice(offsets[-1], size=total, replace=False)  # distinct codes (set-based for a large space)
    problems = []
    for pid, c in enumerate(flat.tolist()):
        k = int(np.searchsorted(offsets, c, side="right") - 1)
        operands, ops = _decode(c - offsets[k], spec.min_ops + k, spec.max_operand)
        problems.append(make_problem(pid, operands, ops))
    bounds = list(itertools.accumulate([0, spec.n_val, spec.n_test, spec.n_train, spec.n_sft]))
    return {name: problems[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}
