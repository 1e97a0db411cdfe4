"""Engine-neutral pieces of the run directory: what an engine hook hands to ``workbench.runlog.RunWriter``.

An engine (verl, TRL) calls a ``workbench.objectives`` function on each micro-batch. From that call's
``ObjectiveResult`` this module derives the per-rollout and per-token records of ``ROLLOUTS_SCHEMA`` and
``TOKENS_SCHEMA`` (``update_records``) with the closed forms of ``workbench.closed_forms``; ``rollout_info`` and
``rollout_metrics`` give what the sampler side knows (text, rewards, groups); ``assemble_step`` joins them into the
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

from workbench.closed_forms import breakdown_from_batch, kl_gradient
from workbench.methods import CLIP_METHODS, ClipHParams
from workbench.objectives import ObjectiveResult

RATIO_LOG_CAP = 80.0  # e^80 ~ 5.5e34 still fits float32; the tokens table refuses inf


def update_records(
    method: str,
    result: ObjectiveResult,
    *,
    scale: float,
    rollout_index: Sequence[int],
    minibatch: int | Sequence[int],
    entropy: torch.Tensor | None = None,
    token_ids: torch.Tensor | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-rollout and per-token records of one objective call (one micro-batch at its update).

    ``rollout_index[b]``: the rollout's index within the step (``rollouts.rollout``); ``minibatch``: the update's
    index (one value or one per row). ``entropy`` and ``token_ids`` (``[B, T]``, optional) are copied onto the
    token rows. Returns ``(rollouts, tokens)`` column dicts; rollouts hold ``rollout, minibatch, s_bar,
    advantage, weight, log_c, used`` (an infinite ``log C`` of the no-anchor variant is stored as null); tokens hold ``rollout, pos, old_logp, logp, s, ratio, weight, grad`` (plus
    ``entropy`` and ``token_id`` when given).
    """
    batch, hp = result.batch, result.hparams
    bd = breakdown_from_batch(method, batch, hp)
    agg = hp.loss_agg if isinstance(hp, ClipHParams) else "token-mean"
    grad = (bd.grad - kl_gradient(batch, hp.kl_beta, hp.kl_target, agg)) * scale
    n = batch.n_rollouts
    rollout = np.asarray(rollout_index, dtype=np.int64)
    if rollout.shape != (n,):
        raise ValueError(f"rollout_index has {rollout.shape[0]} entries for {n} rollouts")
    mb = np.broadcast_to(np.asarray(minibatch, dtype=np.int64), (n,))
    nan = np.full(n, np.nan)
    log_c = _np(bd.log_c) if method not in CLIP_METHODS else nan.copy()
    log_c[~np.isfinite(log_c)] = np.nan  # no anchor, one-label group: C = inf (weight 0); stored as null
    rollouts = {
        "rollout": rollout,
        "minibatch": mb.copy(),
        "s_bar": _np(bd.s_bar),
        "advantage": _np(bd.advantage) if method in CLIP_METHODS else nan,
        "weight": _np(bd.rollout_weight),
        "log_c": log_c,
        "used": _np(bd.used).astype(bool),
    }
    mask = batch.mask
    rows, pos = torch.nonzero(mask, as_tuple=True)
    s = batch.s.detach()[mask]
    tokens = {
        "rollout": rollout[_np(rows)],
        "pos": _np(pos),
        "old_logp": _np(batch.old_logp[mask]),
        "logp": _np(batch.logp.detach()[mask]),
        "s": _np(s),
        "ratio": _np(torch.exp(s.clamp(-RATIO_LOG_CAP, RATIO_LOG_CAP))),
        "weight": _np(bd.token_weight[mask]),
        "grad": _np(grad[mask]),
    }
    if entropy is not None:
        tokens["entropy"] = _np(entropy.detach().to(mask.device)[mask])
    if token_ids is not None:
        tokens["token_id"] = _np(token_ids.to(mask.device)[mask])
    return rollouts, tokens


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


def token_texts(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The decoded text of each token id (``tokenizer.decode([id])``), decoding each distinct id once."""
    cache = {i: tokenizer.decode([i]) for i in set(ids)}
    return [cache[i] for i in ids]
