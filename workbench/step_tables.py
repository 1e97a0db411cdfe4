"""The one step builder: every writer of a run directory (the trainer, the verl and TRL hooks, the synthetic runs)
hands it what it knows of a step and gets the three validated tables of ``workbench.runlog``.

What a writer hands over:

- ``RolloutFacts``: what the sampler and the grader know of each rollout (index = rollout within the step):
  reward, prompt group, length, texts, and optionally ``finished`` / ``grade_status``.
- ``UpdateRecord`` per objective call (mini- or micro-batch update): the rollout and token columns of
  ``workbench.update_records.update_records`` and the epoch (pass over the step's mini-batches) it belongs to.
- ``scalars``: the step's metrics that only the writer knows (loss, grad norm, entropy, times, ...).

What it computes once for all of them: the group facts (``rollout_info``: group numbers, sizes, correct counts),
the reward metrics (``rollout_metrics``: ``reward_mean``, solved ratios, mean length), the join of facts onto the
update rows, the token texts, the defaults of required metrics a writer does not measure (``METRIC_DEFAULTS``),
and the schema check (``workbench.runlog.to_table``), so a malformed step fails here, naming table, row and field,
before anything is written.

Two layouts of the update rows (``every_update``):

- ``True`` (the trainer): one rollout row and one token row per rollout and update that used it (several epochs
  log a rollout once per pass), in update order, with the update's ``epoch``.
- ``False`` (the engines): each rollout's first update only; tokens sorted by ``(rollout, pos)``.

In both, a rollout that no update used gets one row with ``s_bar = weight = 0`` and ``used = False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from workbench.runlog import to_table

# Required metrics a writer may not measure (an engine has no grader timing, ...): what the table gets then.
METRIC_DEFAULTS: dict[str, float] = {
    "val_pass1": math.nan,
    "clip_frac_low": 0.0,
    "clip_frac_high": 0.0,
    "approx_kl": 0.0,
    "time_sample": 0.0,
    "time_grade": 0.0,
    "time_update": 0.0,
    "time_log": 0.0,
    "time_step": 0.0,
    "tokens_per_s": 0.0,
    "grader_timeouts": 0,
    "grader_errors": 0,
}

TokenText = Callable[[np.ndarray], Sequence[str]] | np.ndarray


def rollout_info(
    rewards: Sequence[float], group_ids: Sequence[Any], lengths: Sequence[int]
) -> dict[str, np.ndarray]:
    """Sampler-side rollout columns: ``rollout, group, reward, length, group_size, group_correct``.

    ``group`` numbers the groups 0.. in order of first appearance; a reward > 0.5 counts as correct.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    index: dict[Any, int] = {}
    group = np.array([index.setdefault(g, len(index)) for g in group_ids], dtype=np.int64)
    sizes = np.bincount(group, minlength=len(index))
    correct = np.bincount(group, weights=(rewards > 0.5).astype(np.float64), minlength=len(index))
    return {
        "rollout": np.arange(len(rewards), dtype=np.int64),
        "group": group,
        "reward": rewards,
        "length": np.asarray(lengths, dtype=np.int64),
        "group_size": sizes[group],
        "group_correct": correct[group].astype(np.int64),
    }


def rollout_metrics(info: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``reward_mean``, ``solved_all_ratio``, ``solved_none_ratio``, ``response_len_mean`` of a step's rollouts."""
    group = info["group"]
    n_groups = int(group.max()) + 1 if len(group) else 0
    first = np.unique(group, return_index=True)[1]
    correct, size = info["group_correct"][first], info["group_size"][first]
    return {
        "reward_mean": float(np.mean(info["reward"])) if len(group) else math.nan,
        "solved_all_ratio": float(np.mean(correct == size)) if n_groups else math.nan,
        "solved_none_ratio": float(np.mean(correct == 0)) if n_groups else math.nan,
        "response_len_mean": float(np.mean(info["length"])) if len(group) else math.nan,
    }


@dataclass
class RolloutFacts:
    """Per-rollout facts of a step from the sampler and the grader (index = rollout within the step).

    ``group``: any hashable key of the rollout's prompt (numbered 0.. in order of first appearance);
    a reward > 0.5 counts as correct. ``prompt_id`` defaults to -1 (unknown); ``finished`` (ended with EOS) and
    ``grade_status`` (``ok | timeout | error``) are logged when given.
    """

    reward: Sequence[float]
    group: Sequence[Hashable]
    length: Sequence[int]
    prompt: Sequence[str]
    response: Sequence[str]
    answer: Sequence[str]
    prompt_id: Sequence[int] | None = None
    finished: Sequence[bool] | None = None
    grade_status: Sequence[str] | None = None

    def info(self) -> dict[str, np.ndarray]:
        return rollout_info(self.reward, self.group, self.length)


@dataclass
class UpdateRecord:
    """The rollout and token columns of one objective call (``update_records``) and its epoch."""

    rollouts: Mapping[str, np.ndarray]
    tokens: Mapping[str, np.ndarray]
    epoch: int = 0


class StepTables(NamedTuple):
    """One step's tables, checked against the schemas: ``RunWriter.write_step(step, *tables)``.

    ``metrics`` stays a dict (a writer may add late values, e.g. the time the logging took); ``rollouts`` and
    ``tokens`` are the Arrow tables that will be written."""

    metrics: dict[str, Any]
    rollouts: pa.Table
    tokens: pa.Table


@dataclass
class _Rows:
    rollouts: dict[str, np.ndarray] = field(default_factory=dict)
    tokens: dict[str, np.ndarray] = field(default_factory=dict)


def build_step(
    step: int,
    facts: RolloutFacts,
    updates: Sequence[UpdateRecord],
    scalars: Mapping[str, Any],
    *,
    every_update: bool = True,
    token_text: TokenText | None = None,
    log_tokens: bool = True,
    rollout_extra: Mapping[str, Any] | None = None,
) -> StepTables:
    """The three tables of step ``step`` (see the module doc for what is joined and how).

    ``token_text``: an array indexed by token id, or a function of the ids, giving ``tokens.token``; without it (or
    where an id is unknown, ``-1``) the texts are empty. ``log_tokens=False`` writes an empty tokens table.
    ``rollout_extra``: further rollout columns, one value for every row or one per rollout (indexed by rollout).
    Raises ``ValueError`` for an update naming a rollout the step lacks and ``RunFormatError`` for a table the
    schema refuses.
    """
    info = facts.info()
    n = len(info["rollout"])
    rows = _every_update(updates, n) if every_update else _first_update(updates, n)
    roll = rows.rollouts
    idx = roll["rollout"]
    roll["step"] = np.full(len(idx), step, dtype=np.int64)
    for key in ("group", "reward", "length", "group_size", "group_correct"):
        roll[key] = info[key][idx]
    for key in ("prompt", "response", "answer"):
        roll[key] = np.asarray([str(x) for x in getattr(facts, key)], dtype=object)[idx]
    prompt_id = facts.prompt_id if facts.prompt_id is not None else np.full(n, -1)
    roll["prompt_id"] = np.asarray(prompt_id, dtype=np.int64)[idx]
    for key in ("finished", "grade_status"):
        if getattr(facts, key) is not None:
            roll[key] = np.asarray(getattr(facts, key))[idx]
    for key, value in (rollout_extra or {}).items():
        value = np.asarray(value)
        roll[key] = value[idx] if value.ndim else np.full(len(idx), value)
    tokens = _token_table(step, rows.tokens if log_tokens else {}, token_text)
    metrics = {**METRIC_DEFAULTS, **rollout_metrics(info), **dict(scalars)}
    to_table("metrics", {k: [v] for k, v in {**metrics, "step": step}.items()})  # checked now, written later
    return StepTables(metrics, to_table("rollouts", roll), to_table("tokens", tokens))


def _check_index(idx: np.ndarray, n: int) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise ValueError(f"update records name rollout {bad} of a step with {n} rollouts")


def _every_update(updates: Sequence[UpdateRecord], n: int) -> _Rows:
    """One row per rollout and update, in update order, each with its update's epoch."""
    if not updates:
        return _unused(np.arange(n), _Rows())
    out = _Rows()
    keys = [k for k in updates[0].rollouts if all(k in u.rollouts for u in updates)]
    out.rollouts = {k: np.concatenate([np.asarray(u.rollouts[k]) for u in updates]) for k in keys}
    out.rollouts["rollout"] = out.rollouts["rollout"].astype(np.int64)
    _check_index(out.rollouts["rollout"], n)
    out.rollouts["epoch"] = np.concatenate(
        [np.full(len(u.rollouts["rollout"]), u.epoch, dtype=np.int32) for u in updates]
    )
    tkeys = set.intersection(*(set(u.tokens) for u in updates))
    out.tokens = {
        k: np.concatenate([np.asarray(u.tokens[k]) for u in updates]) for k in updates[0].tokens if k in tkeys
    }
    missing = np.setdiff1d(np.arange(n), out.rollouts["rollout"])
    return _unused(missing, out) if missing.size else out


def _first_update(updates: Sequence[UpdateRecord], n: int) -> _Rows:
    """Each rollout's first update only (rollout order); tokens sorted by ``(rollout, pos)``."""
    seen = np.zeros(n, dtype=bool)
    first: dict[str, list[np.ndarray]] = {}
    token_parts = []
    for u in updates:
        idx = np.asarray(u.rollouts["rollout"], dtype=np.int64)
        _check_index(idx, n)
        once = np.zeros(len(idx), dtype=bool)
        once[np.unique(idx, return_index=True)[1]] = True  # a rollout twice in one record keeps its first row
        fresh = ~seen[idx] & once
        seen[idx] = True
        for key, value in u.rollouts.items():
            first.setdefault(key, []).append(np.asarray(value)[fresh])
        first.setdefault("epoch", []).append(np.full(int(fresh.sum()), u.epoch, dtype=np.int32))
        keep = np.isin(np.asarray(u.tokens["rollout"], dtype=np.int64), idx[fresh])
        token_parts.append({k: np.asarray(v)[keep] for k, v in u.tokens.items()})
    out = _Rows()
    if first:
        keys = [k for k, parts in first.items() if len(parts) == len(first["epoch"])]
        cat = {k: np.concatenate(first[k]) for k in keys}
        order = np.argsort(cat["rollout"], kind="stable")
        out.rollouts = {k: v[order] for k, v in cat.items()}
        out.rollouts["rollout"] = out.rollouts["rollout"].astype(np.int64)
    if token_parts:
        keys = set.intersection(*(set(p) for p in token_parts))
        tok = {k: np.concatenate([p[k] for p in token_parts]) for k in token_parts[0] if k in keys}
        order = np.lexsort((tok["pos"], tok["rollout"]))
        out.tokens = {k: v[order] for k, v in tok.items()}
    missing = np.flatnonzero(~seen)
    if missing.size:
        out = _unused(missing, out)
        order = np.argsort(out.rollouts["rollout"], kind="stable")
        out.rollouts = {k: v[order] for k, v in out.rollouts.items()}
    return out


def _unused(missing: np.ndarray, rows: _Rows) -> _Rows:
    """Append one row per rollout no update used: ``s_bar = weight = 0``, ``used = False``, nulls elsewhere."""
    m = len(missing)
    blank = {
        "rollout": missing.astype(np.int64),
        "minibatch": np.zeros(m, np.int64),
        "s_bar": np.zeros(m),
        "advantage": np.full(m, np.nan),
        "weight": np.zeros(m),
        "log_c": np.full(m, np.nan),
        "used": np.zeros(m, bool),
        "epoch": np.zeros(m, np.int32),
    }
    if not rows.rollouts:
        rows.rollouts = blank
        return rows
    for key in list(rows.rollouts):
        extra = blank.get(key)
        if extra is None:
            dtype = rows.rollouts[key].dtype
            extra = np.full(m, np.nan) if dtype.kind == "f" else np.zeros(m, dtype)
        rows.rollouts[key] = np.concatenate([rows.rollouts[key], extra])
    return rows


def _token_table(step: int, tokens: Mapping[str, np.ndarray], token_text: TokenText | None) -> dict[str, Any]:
    """Token columns with ``step``, ``token`` (from the ids) and the defaults of an engine that lacks entropies
    (0) or ids (-1, empty text)."""
    if not tokens:
        tokens = {
            k: np.zeros(0) for k in ("rollout", "pos", "old_logp", "logp", "s", "ratio", "weight", "grad")
        }
    out = dict(tokens)
    m = len(out["rollout"])
    out["step"] = np.full(m, step, dtype=np.int64)
    out.setdefault("token_id", np.full(m, -1, dtype=np.int64))
    out.setdefault("entropy", np.zeros(m))
    out["entropy"] = np.nan_to_num(np.asarray(out["entropy"]), nan=0.0)
    ids = np.asarray(out["token_id"], dtype=np.int64)
    text = np.full(m, "", dtype=object)
    known = ids >= 0  # an unknown id (-1) keeps an empty text; the others are looked up
    if token_text is not None and known.any():
        if isinstance(token_text, np.ndarray):
            text[known] = token_text[ids[known]]
        else:
            looked_up = list(token_text(ids[known]))
            if len(looked_up) != int(known.sum()):
                raise ValueError(f"the token texts are {len(looked_up)} for {int(known.sum())} tokens")
            text[known] = looked_up
    out["token"] = text
    return out
