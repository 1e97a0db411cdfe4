"""Engine-neutral pieces of the run directory: what an engine hook hands to ``workbench.runlog.RunWriter``.

An engine (verl, TRL) calls a ``workbench.objectives`` function on each micro-batch. From that call's
``ObjectiveResult`` this module derives the per-rollout and per-token records of ``ROLLOUTS_SCHEMA`` and
``TOKENS_SCHEMA`` (``update_records``) with the closed forms of ``workbench.closed_forms``; ``workbench.step_tables``'s
``rollout_info`` and ``rollout_metrics`` give what the sampler side knows (text, rewards, groups); ``assemble_step`` joins them into the
three tables of one step. Nothing here imports an engine.

``grad`` in the token records is ``scale * dL_mb/dlogp`` without the KL term, where ``L_mb`` is the objective's
loss on the micro-batch and ``scale`` the factor the engine multiplies it by (its share of the mini-batch loss), so
``grad`` is the exact gradient of the mini-batch loss with respect to that token's log-prob.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.step_tables import rollout_info, rollout_metrics
from workbench.update_records import update_records

__all__ = [
    "assemble_step",
    "read_update_shards",
    "rollout_info",
    "rollout_metrics",
    "update_records",
]


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


def assemble_step(
    step: int,
    info: Mapping[str, Any],
    text: Mapping[str, Sequence[Any]],
    updates: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
    metrics: Mapping[str, Any],
    decode: Callable[[Sequence[int]], list[str]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Join sampler-side rollouts with the update records of one step into ``(metrics, rollouts, tokens)``.

    ``info``: ``rollout_info`` of the step. ``text``: per rollout ``prompt, response, answer, prompt_id``.
    ``updates``: ``update_records`` outputs; a rollout used by several updates (several PPO epochs) keeps its
    first. A rollout no update used (e.g. a padded or skipped one) gets ``s_bar = weight = 0``, ``used = False``.
    ``metrics``: engine metrics; ``loss``, ``grad_norm`` and ``entropy_mean`` must be given (the writer names a
    missing one), the other required ones default to ``METRIC_DEFAULTS`` (``val_pass1`` null, times 0).
    ``decode``: maps the tokens' ids to their texts (``tokens.token``); without it, or without ids, texts are empty.
    """
    n = len(info["rollout"])
    roll: dict[str, Any] = {k: np.asarray(v) for k, v in info.items()}
    for key in ("prompt", "response", "answer"):
        roll[key] = [str(x) for x in text.get(key, [""] * n)]
    roll["prompt_id"] = np.asarray(text.get("prompt_id", [-1] * n), dtype=np.int64)
    roll["step"] = np.full(n, step, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    upd = {
        "minibatch": np.zeros(n, np.int64),
        "s_bar": np.zeros(n),
        "advantage": np.full(n, np.nan),
        "weight": np.zeros(n),
        "log_c": np.full(n, np.nan),
        "used": np.zeros(n, bool),
    }
    token_parts = []
    for r_cols, t_cols in updates:
        idx = np.asarray(r_cols["rollout"], dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"update records name rollout {int(idx.max())} of a step with {n} rollouts")
        fresh = ~seen[idx]
        for key in upd:
            upd[key][idx[fresh]] = np.asarray(r_cols[key])[fresh]
        keep_rollouts = set(idx[fresh].tolist())
        seen[idx] = True
        t_roll = np.asarray(t_cols["rollout"], dtype=np.int64)
        sel = np.isin(t_roll, list(keep_rollouts))
        token_parts.append({k: np.asarray(v)[sel] for k, v in t_cols.items()})
    roll.update(upd)
    tokens: dict[str, Any] = {}
    if token_parts:
        keys = set.intersection(*(set(p) for p in token_parts))
        tokens = {k: np.concatenate([p[k] for p in token_parts]) for k in keys}
    else:
        tokens = {
            k: np.zeros(0) for k in ("rollout", "pos", "old_logp", "logp", "s", "ratio", "weight", "grad")
        }
    m = len(tokens["rollout"])
    order = np.lexsort((tokens["pos"], tokens["rollout"]))
    tokens = {k: v[order] for k, v in tokens.items()}
    tokens["step"] = np.full(m, step, dtype=np.int64)
    tokens.setdefault("token_id", np.full(m, -1, dtype=np.int64))
    tokens.setdefault("entropy", np.full(m, np.nan))
    tokens["entropy"] = np.nan_to_num(np.asarray(tokens["entropy"], dtype=np.float64), nan=0.0)
    ids = np.asarray(tokens["token_id"], dtype=np.int64)
    tokens["token"] = (
        list(decode(ids.tolist())) if decode is not None and m and (ids >= 0).all() else [""] * m
    )
    if len(tokens["token"]) != m:
        raise ValueError(f"decode returned {len(tokens['token'])} texts for {m} tokens")
    met = {**METRIC_DEFAULTS, **rollout_metrics(info), **dict(metrics)}
    return met, roll, tokens


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64 if torch.is_floating_point(x) else x.dtype).cpu().numpy()


def read_update_shards(shard_dir: Any) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """The ``(rollouts, tokens)`` record pairs that workers wrote under ``shard_dir/{rollouts,tokens}/NAME``."""
    import pyarrow.parquet as pq

    root = Path(shard_dir)
    pairs = []
    folder = root / "rollouts"
    names = sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []
    for name in names:
        tok_path = root / "tokens" / name
        if not tok_path.is_file():
            raise FileNotFoundError(
                f"{tok_path} is missing: the worker that wrote {folder / name} did not finish"
            )
        r = pq.read_table(folder / name).to_pydict()
        t = pq.read_table(tok_path).to_pydict()
        pairs.append(({k: np.asarray(v) for k, v in r.items()}, {k: np.asarray(v) for k, v in t.items()}))
    return pairs
