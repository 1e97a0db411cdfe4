"""What every writer of a step (the trainer, the engines' hooks, the synthetic runs) computes the same way from
the step's rollouts: the per-rollout group facts and the step's reward metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


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
