"""Turn one RL step into the three tables of the run format (``workbench.runlog``), vectorised.

Each mini-batch update contributes the rollout and token columns of ``workbench.update_records.update_records``
(the closed-form breakdown of its objective, flattened through the response mask); this module concatenates the
updates of a step and joins the per-rollout facts the sampler and grader know (prompt, response, reward, group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UpdateRecord:
    """The rollout and token columns of one mini-batch update (``update_records``) and its epoch."""

    epoch: int
    rollouts: dict[str, np.ndarray]
    tokens: dict[str, np.ndarray]


@dataclass
class RolloutFacts:
    """Per-rollout facts of a step (index = rollout within the step)."""

    group: np.ndarray  # [N] prompt group within the step
    prompt_id: np.ndarray  # [N]
    prompt: np.ndarray  # [N] object (str)
    response: np.ndarray  # [N] object (str)
    answer: np.ndarray  # [N] object (str)
    reward: np.ndarray  # [N] float
    length: np.ndarray  # [N] int
    finished: np.ndarray  # [N] bool: ended with EOS
    grade_status: np.ndarray  # [N] object: ok | timeout | error
    group_size: np.ndarray  # [N]
    group_correct: np.ndarray  # [N]


FACT_COLUMNS = ("group", "prompt_id", "prompt", "response", "answer", "reward", "length", "group_size",
                "group_correct", "finished", "grade_status")  # fmt: skip


def rollout_columns(step: int, records: list[UpdateRecord], facts: RolloutFacts) -> dict[str, np.ndarray]:
    """ROLLOUTS_SCHEMA columns (plus ``epoch``, ``finished``, ``grade_status``): one row per rollout and update."""
    cols = {k: np.concatenate([r.rollouts[k] for r in records]) for k in records[0].rollouts}
    rows = cols["rollout"]
    cols["epoch"] = np.concatenate(
        [np.full(len(r.rollouts["rollout"]), r.epoch, dtype=np.int32) for r in records]
    )
    cols["step"] = np.full(len(rows), step, dtype=np.int64)
    for name in FACT_COLUMNS:
        cols[name] = getattr(facts, name)[rows]
    return cols


def token_columns(step: int, records: list[UpdateRecord], token_text: np.ndarray) -> dict[str, np.ndarray]:
    """TOKENS_SCHEMA columns (plus ``minibatch``, ``keep`` and, with a KL term, ``grad_kl``): one row per
    response token and update; ``token`` is looked up from the token ids in ``token_text``."""
    if not records:
        return {"rollout": np.zeros(0, np.int32), "token_id": np.zeros(0, np.int32), "token": np.zeros(0, object),
                **{k: np.zeros(0, np.float32) for k in ("pos", "old_logp", "logp", "s", "ratio", "entropy", "weight", "grad")},
                "step": np.zeros(0, np.int64)}  # fmt: skip
    cols = {k: np.concatenate([r.tokens[k] for r in records]) for k in records[0].tokens}
    cols["token"] = token_text[cols["token_id"]]
    cols["step"] = np.full(len(cols["rollout"]), step, dtype=np.int64)
    return cols
