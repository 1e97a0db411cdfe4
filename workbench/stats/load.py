"""Column-projected, vectorised reads of a run's rollouts and tokens, joined on ``(step, rollout)``.

All statistics go through here. Only the columns a statistic needs are read (Parquet column projection), kept
as numpy arrays of their stored width (no pandas object columns), and tokens are joined to their rollouts by a
sorted-key ``searchsorted`` over the whole run, never per step in Python.

Mini-batch selection: ``s`` is exactly 0 in each step's first mini-batch (the policy has not moved yet), so every
ratio statistic takes ``minibatches="later"`` by default: only rollouts whose ``minibatch`` is above the step's
smallest ``minibatch`` (and their tokens). ``"all"`` keeps every mini-batch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from workbench.runlog import SCHEMAS, Run, RunFormatError, read_table_file
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
    step_code: np.ndarray  # int32 index into ``steps``
    steps: np.ndarray  # int64 steps, ascending

    def __len__(self) -> int:
        return len(self.step_code)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def step_values(self) -> np.ndarray:
        """The step of every row (int64)."""
        return self.steps[self.step_code]

    def compact(self) -> Columns:
        """The same rows, with ``steps`` reduced to the steps that have rows."""
        present = np.bincount(self.step_code, minlength=len(self.steps)) > 0
        if present.all():
            return self
        remap = np.cumsum(present) - 1
        return Columns(self.cols, remap[self.step_code], self.steps[present])

    def take(self, mask: np.ndarray) -> Columns:
        """Rows where ``mask`` holds; ``steps`` keeps only steps that still have rows."""
        cols = {k: v[mask] for k, v in self.cols.items()}
        return Columns(cols, self.step_code[mask], self.steps).compact()


def _to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    if col.null_count:
        return col.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
    return col.to_numpy()


def read_table_columns(run: Run, table: str, columns: list[str]) -> Columns:
    """``columns`` of ``table`` over the run's complete steps, one checked file per step.

    The step of each row is taken from its file (``step_NNNNNN.parquet``), so the ``step`` column is not
    read unless asked for. ``steps`` is every complete step, including steps without rows (call
    ``compact()`` to drop those).
    """
    names = list(dict.fromkeys(columns)) or ["step"]
    steps = np.asarray(run.steps(), dtype=np.int64)
    parts = [read_table_file(f, table, names) for f in run.files(table, steps.tolist())]
    counts = np.array([p.num_rows for p in parts], dtype=np.int64)
    if parts:
        tbl = pa.concat_tables(parts, promote_options="permissive")
    else:
        tbl = pa.schema([SCHEMAS[table].field(c) for c in names]).empty_table()
    cols = {name: _to_numpy(tbl.column(name)) for name in names}
    return Columns(cols, np.repeat(np.arange(len(steps), dtype=np.int32), counts), steps)


def advantage_sign(rollouts: Columns) -> np.ndarray:
    """Sign (+1, -1, 0; int8) of each rollout's advantage.

    Clip family: the sign of the logged ``advantage``. Where it is null (REAL family), the sign of
    ``reward - mean reward of its group`` (the GRPO advantage's sign: correct rollouts of mixed groups +1,
    wrong ones -1, single-label groups 0). Needs ``advantage``, ``reward`` and ``group``.
    """
    adv = rollouts["advantage"].astype(np.float64)
    reward = rollouts["reward"].astype(np.float64)
    gkey = _keys(rollouts.step_code, rollouts["group"])
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


def read_rollouts_uncompacted(run: Run, columns: list[str]) -> Columns:
    """Rollout ``columns`` (stored or ``DERIVED``) over every complete step, ``steps`` not compacted."""
    stored = [c for c in columns if c not in DERIVED]
    for c in columns:
        if c in DERIVED:
            stored += DERIVED[c][0]
    out = read_table_columns(run, "rollouts", list(dict.fromkeys(stored)))
    for c in columns:
        if c in DERIVED:
            out.cols[c] = DERIVED[c][1](out)
    return out


def read_rollouts(run: RunLike, columns: list[str], minibatches: Minibatches = "all") -> Columns:
    """Rollout columns of every complete step, optionally of later mini-batches only.

    ``Columns.step_values()`` gives each row's step. Nullable float columns (``advantage``, ``log_c``) come
    back as float64 with NaN for null. Derived columns (``DERIVED``: ``sign`` of the advantage, ``correct`` =
    reward > 0.5) may be asked for by name; they are computed on whole steps before mini-batches are selected.
    """
    run = as_run(run)
    check_minibatches(minibatches)
    out = read_rollouts_uncompacted(run, [*columns, *(["minibatch"] if minibatches == "later" else [])])
    if minibatches == "later":
        return out.take(later_minibatch_mask(out))
    return out.compact()


def later_minibatch_mask(rollouts: Columns) -> np.ndarray:
    """True for rollouts whose ``minibatch`` is above the smallest ``minibatch`` of their step."""
    mb = rollouts["minibatch"].astype(np.int64)
    first = np.full(len(rollouts.steps), np.iinfo(np.int64).max)
    np.minimum.at(first, rollouts.step_code, mb)
    return mb > first[rollouts.step_code]


def _keys(step: np.ndarray, rollout: np.ndarray) -> np.ndarray:
    return (step.astype(np.int64) << 32) | rollout.astype(np.int64)


def join_index(run: Run, tokens: Columns, rollouts: Columns) -> np.ndarray:
    """For every token row, the row of its rollout in ``rollouts`` (both read over the same ``steps``).

    Fast path: each step's rollouts stored as ``rollout = 0..n-1`` in order, so the row is the step's offset
    plus ``rollout``. Otherwise one sorted-key ``searchsorted``. Raises ``RunFormatError`` when a step logs
    the same rollout twice or a token names a rollout its step's rollouts table lacks.
    """
    n_steps = len(rollouts.steps)
    r_count = np.bincount(rollouts.step_code, minlength=n_steps)
    r_start = np.cumsum(r_count) - r_count
    t_roll = tokens["rollout"]
    dense = np.array_equal(rollouts["rollout"], np.arange(len(rollouts)) - r_start[rollouts.step_code])
    if dense:
        bad = (t_roll < 0) | (t_roll >= r_count[tokens.step_code])
        idx = r_start[tokens.step_code] + t_roll
    else:
        r_key = _keys(rollouts.step_code, rollouts["rollout"])
        order = np.argsort(r_key, kind="stable")
        sorted_keys = r_key[order]
        dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if len(dup):
            k = int(sorted_keys[dup[0]])
            step = int(rollouts.steps[k >> 32])
            raise RunFormatError(run.dir / "rollouts", f"step {step} logs rollout {k & 0xFFFFFFFF} twice")
        t_key = _keys(tokens.step_code, t_roll)
        pos = np.minimum(np.searchsorted(sorted_keys, t_key), max(len(sorted_keys) - 1, 0))
        bad = sorted_keys[pos] != t_key if len(sorted_keys) else np.ones(len(t_key), dtype=bool)
        idx = order[pos] if len(sorted_keys) else pos
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        step = int(tokens.steps[tokens.step_code[i]])
        raise RunFormatError(
            run.dir / "tokens",
            f"step {step}: tokens of rollout {int(t_roll[i])}, which the rollouts table lacks",
        )
    return idx


# Every token statistic needs at most these columns; they are read together once per run and cached.
TOKEN_COLUMNS: tuple[str, ...] = ("s", "weight")
ROLLOUT_COLUMNS: tuple[str, ...] = (
    "rollout",
    "minibatch",
    "used",
    "correct",
    "sign",
    "weight",
    "s_bar",
    "reward",
)
CACHE_RUNS = 2  # joined token tables kept (about 20 bytes per token each)
_cache: OrderedDict[tuple, tuple[Columns, Columns, np.ndarray]] = OrderedDict()


def clear_cache() -> None:
    """Forget the cached joined token tables."""
    _cache.clear()


def _fingerprint(run: Run) -> tuple | None:
    """Identity of a run's complete token and rollout files (name, mtime, size); None if one is missing."""
    steps = run.steps()
    try:
        stats = tuple(
            (f.name, st.st_mtime_ns, st.st_size)
            for f in run.files("tokens", steps) + run.files("rollouts", steps)
            for st in (f.stat(),)
        )
    except FileNotFoundError:
        return None
    return (str(run.dir.resolve()), stats)


def _read_joined(run: Run, token_columns: list[str], rollout_columns: list[str]):
    rol = read_rollouts_uncompacted(run, list(dict.fromkeys(["rollout", *rollout_columns])))
    tok = read_table_columns(run, "tokens", list(dict.fromkeys(["rollout", *token_columns])))
    idx = join_index(run, tok, rol)
    if "rollout" not in token_columns:
        del tok.cols["rollout"]
    return tok, rol, idx


def _joined(run: Run, token_columns: list[str], rollout_columns: list[str]):
    """The whole run's tokens joined to rollouts; served from the cache when the columns are the usual ones."""
    if not (set(token_columns) <= set(TOKEN_COLUMNS) and set(rollout_columns) <= set(ROLLOUT_COLUMNS)):
        return _read_joined(run, token_columns, rollout_columns)
    key = _fingerprint(run)
    if key is not None and key in _cache:
        _cache.move_to_end(key)
        tok, rol, idx = _cache[key]
    else:
        tok, rol, idx = _read_joined(run, list(TOKEN_COLUMNS), list(ROLLOUT_COLUMNS))
        for arr in (*tok.cols.values(), *rol.cols.values(), tok.step_code, rol.step_code, idx):
            arr.flags.writeable = False  # shared between callers
        if key is not None:
            _cache[key] = (tok, rol, idx)
            while len(_cache) > CACHE_RUNS:
                _cache.popitem(last=False)
    return (
        Columns(dict(tok.cols), tok.step_code, tok.steps),
        Columns(dict(rol.cols), rol.step_code, rol.steps),
        idx,
    )


def read_tokens_joined(
    run: RunLike,
    token_columns: list[str],
    rollout_columns: list[str],
    minibatches: Minibatches = "later",
    *,
    used_only: bool = False,
) -> tuple[Columns, Columns, np.ndarray]:
    """Tokens joined to their rollouts: ``(tokens, rollouts, rollout_row)``.

    ``rollout_row[i]`` is the row in ``rollouts`` of token ``i``. With ``minibatches="later"`` both tables
    keep only the rollouts of later mini-batches and their tokens; with ``used_only`` only rollouts whose
    group entered the loss (``used``) and their tokens.

    The statistics share one read: the joined table of ``TOKEN_COLUMNS`` and ``ROLLOUT_COLUMNS`` of the last
    ``CACHE_RUNS`` runs is kept, keyed by every step file's name, mtime and size (a run that grows or is
    resumed is read again). Returned arrays of a cached read are read-only.
    """
    run = as_run(run)
    check_minibatches(minibatches)
    extra = (["minibatch"] if minibatches == "later" else []) + (["used"] if used_only else [])
    tok, rol, idx = _joined(run, token_columns, list(dict.fromkeys([*rollout_columns, *extra])))
    keep_r = np.ones(len(rol), dtype=bool)
    if minibatches == "later":
        keep_r &= later_minibatch_mask(rol)
    if used_only:
        keep_r &= rol["used"].astype(bool)
    if keep_r.all():
        return tok.compact(), rol.compact(), idx
    new_row = np.cumsum(keep_r) - 1
    keep_t = keep_r[idx]
    return tok.take(keep_t), rol.take(keep_r), new_row[idx[keep_t]]
