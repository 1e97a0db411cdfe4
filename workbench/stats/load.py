"""Column-projected, vectorised reads of a run's rollouts and tokens, joined on ``(step, rollout)``.

All statistics go through here. Only the columns a statistic needs are read (Parquet column projection), kept
as numpy arrays of their stored width (no pandas object columns), and tokens are joined to their rollouts by a
sorted-key ``searchsorted`` over the whole run, never per step in Python.

Mini-batch selection: ``s`` is exactly 0 in each step's first mini-batch (the policy has not moved yet), so every
ratio statistic takes ``minibatches="later"`` by default: only rollouts whose ``minibatch`` is above the step's
smallest ``minibatch`` (and their tokens). ``"all"`` keeps every mini-batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from workbench.runlog import Run, RunFormatError
from workbench.stats.segments import segment_codes
from workbench.stats.variants import RunLike, as_run

Minibatches = Literal["later", "all"]
MINIBATCH_CHOICES: tuple[str, ...] = ("later", "all")
MINIBATCH_NOTE = {
    "later": "Only each step's later mini-batches are used (s = 0 in the first)",
    "all": "All mini-batches are used, including each step's first, where s = 0",
}


def check_minibatches(minibatches: str) -> str:
    if minibatches not in MINIBATCH_CHOICES:
        raise ValueError(f"minibatches={minibatches!r} is not one of {', '.join(MINIBATCH_CHOICES)}")
    return minibatches


@dataclass
class Columns:
    """Numpy columns of one table, all of equal length, with ``step_code`` indexing ``steps``."""

    cols: dict[str, np.ndarray]
    step_code: np.ndarray  # int64 index into ``steps``
    steps: np.ndarray  # int64 distinct steps, ascending

    def __len__(self) -> int:
        return len(self.step_code)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def take(self, mask: np.ndarray) -> Columns:
        """Rows where ``mask`` holds; ``steps`` keeps only steps that still have rows."""
        cols = {k: v[mask] for k, v in self.cols.items()}
        code = self.step_code[mask]
        used = np.unique(code)
        remap = np.full(len(self.steps), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return Columns(cols, remap[code], self.steps[used])


def _read_columns(run: Run, table: str, columns: list[str]) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(["step", *columns]))
    tbl = run.read(table, columns=names)
    out = {}
    for name in names:
        col = tbl.column(name)
        if col.null_count:
            out[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
        else:
            out[name] = col.to_numpy()
    return out


def advantage_sign(rollouts: Columns) -> np.ndarray:
    """Sign (+1, -1, 0; int8) of each rollout's advantage.

    Clip family: the sign of the logged ``advantage``. Where it is null (REAL family), the sign of
    ``reward - mean reward of its group`` (the GRPO advantage's sign: correct rollouts of mixed groups +1,
    wrong ones -1, single-label groups 0). Needs ``advantage``, ``reward`` and ``group``.
    """
    adv = rollouts["advantage"].astype(np.float64)
    reward = rollouts["reward"].astype(np.float64)
    gkey = _keys(rollouts.steps[rollouts.step_code], rollouts["group"])
    gcode, groups = segment_codes(gkey)
    with np.errstate(invalid="ignore", divide="ignore"):
        gmean = np.bincount(gcode, weights=reward, minlength=len(groups)) / np.bincount(
            gcode, minlength=len(groups)
        )
    derived = reward - gmean[gcode]
    value = np.where(np.isnan(adv), derived, adv)
    return np.sign(value).astype(np.int8)


# Columns computed from stored ones before any mini-batch selection: name -> (stored columns, function).
DERIVED = {
    "sign": (["advantage", "reward", "group"], advantage_sign),
    "correct": (["reward"], lambda r: r["reward"] > 0.5),
}


def read_rollouts(run: RunLike, columns: list[str], minibatches: Minibatches = "all") -> Columns:
    """Rollout columns of every complete step (``step`` always included), optionally later mini-batches only.

    Nullable float columns (``advantage``, ``log_c``) come back as float64 with NaN for null. Derived columns
    (``DERIVED``: ``sign`` of the advantage, ``correct`` = reward > 0.5) may be asked for by name; they are
    computed on the whole step before mini-batches are selected.
    """
    run = as_run(run)
    check_minibatches(minibatches)
    stored = [c for c in columns if c not in DERIVED]
    for c in columns:
        if c in DERIVED:
            stored += DERIVED[c][0]
    need = list(dict.fromkeys([*stored, *(["minibatch"] if minibatches == "later" else [])]))
    cols = _read_columns(run, "rollouts", need)
    code, steps = segment_codes(cols["step"])
    out = Columns(cols, code, steps)
    for c in columns:
        if c in DERIVED:
            out.cols[c] = DERIVED[c][1](out)
    if minibatches == "later":
        out = out.take(later_minibatch_mask(out))
    return out


def later_minibatch_mask(rollouts: Columns) -> np.ndarray:
    """True for rollouts whose ``minibatch`` is above the smallest ``minibatch`` of their step."""
    mb = rollouts["minibatch"].astype(np.int64)
    first = np.full(len(rollouts.steps), np.iinfo(np.int64).max)
    np.minimum.at(first, rollouts.step_code, mb)
    return mb > first[rollouts.step_code]


def _keys(step: np.ndarray, rollout: np.ndarray) -> np.ndarray:
    return (step.astype(np.int64) << 32) | rollout.astype(np.int64)


def join_index(run: Run, tokens: dict[str, np.ndarray], rollouts: dict[str, np.ndarray]) -> np.ndarray:
    """For every token row, the row of its rollout in ``rollouts`` (both need ``step`` and ``rollout``).

    Raises ``RunFormatError`` when a step logs the same rollout index twice or a token names a rollout that
    the step's rollouts table does not hold.
    """
    r_key = _keys(rollouts["step"], rollouts["rollout"])
    t_key = _keys(tokens["step"], tokens["rollout"])
    if len(r_key) > 1 and np.all(r_key[1:] > r_key[:-1]):
        order, sorted_keys = None, r_key
    else:
        order = np.argsort(r_key, kind="stable")
        sorted_keys = r_key[order]
        dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if len(dup):
            k = int(sorted_keys[dup[0]])
            raise RunFormatError(run.dir / "rollouts", f"step {k >> 32} logs rollout {k & 0xFFFFFFFF} twice")
    if len(sorted_keys) == 0:
        if len(t_key):
            raise RunFormatError(run.dir / "rollouts", "tokens are logged but no rollouts are")
        return np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, t_key)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    bad = sorted_keys[pos] != t_key
    if bad.any():
        k = int(t_key[np.flatnonzero(bad)[0]])
        raise RunFormatError(
            run.dir / "tokens",
            f"step {k >> 32}: tokens of rollout {k & 0xFFFFFFFF}, which the rollouts table lacks",
        )
    return pos if order is None else order[pos]


def read_tokens_joined(
    run: RunLike,
    token_columns: list[str],
    rollout_columns: list[str],
    minibatches: Minibatches = "later",
) -> tuple[Columns, Columns, np.ndarray]:
    """Tokens joined to their rollouts: ``(tokens, rollouts, rollout_row)``.

    ``rollout_row[i]`` is the row in ``rollouts`` of token ``i``. With ``minibatches="later"`` both tables
    keep only the rollouts of later mini-batches and their tokens.
    """
    run = as_run(run)
    check_minibatches(minibatches)
    later = ["minibatch"] if minibatches == "later" else []
    rol = read_rollouts(run, list(dict.fromkeys(["rollout", *rollout_columns, *later])), "all")
    t_cols = _read_columns(run, "tokens", ["rollout", *token_columns])
    idx = join_index(run, t_cols, rol.cols)
    code, steps = segment_codes(t_cols["step"])
    tok = Columns(t_cols, code, steps)
    if minibatches == "later":
        keep_r = later_minibatch_mask(rol)
        new_row = np.cumsum(keep_r) - 1
        keep_t = keep_r[idx]
        tok = tok.take(keep_t)
        idx = new_row[idx[keep_t]]
        rol = rol.take(keep_r)
    return tok, rol, idx
