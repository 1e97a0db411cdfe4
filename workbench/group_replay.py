"""Replay a logged prompt group under every method: how would GRPO, DAPO, GSPO or REAL have weighted its tokens?

From one group's rows of a run's ``rollouts`` and ``tokens`` tables (``docs/run_format.md``), ``logged_group``
rebuilds the padded batch the objective saw (``logp``, ``old_logp``, ``mask``, ``rewards``, ``group_ids``), and
``replay(method, group)`` calls ``workbench.closed_forms.token_gradient`` on it: the per-token weight
(``GradientBreakdown.token_weight``: GRPO/DAPO ``|A| e^{s_t} I / |o|``, GSPO ``|A| e^{s_bar} I / |o|``, REAL family
``W_k / |o^k|``), the clip indicator, and per rollout the advantage or ``log C`` and the rollout weight.

A group is replayed on its own: every per-token weight depends only on the rollout's group, so it equals what
the method would have logged inside its mini-batch. KL terms are left out (``kl_beta = 0``), as in the logged
``tokens.weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.closed_forms import token_gradient
from workbench.methods import DEFAULTS, REAL_METHODS, check_method


@dataclass(frozen=True)
class LoggedGroup:
    """One prompt group's rollouts as the padded batch ``[G, T]`` the objectives take."""

    rollout_ids: np.ndarray  # [G] the rollouts' ids within the step, in row order
    logp: torch.Tensor
    old_logp: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    group_ids: torch.Tensor
    pos: torch.Tensor  # [G, T] token position (-1 on padding)

    @property
    def binary(self) -> bool:
        return bool(((self.rewards == 0) | (self.rewards == 1)).all())


def logged_group(rollouts: pd.DataFrame, tokens: pd.DataFrame) -> LoggedGroup:
    """Batch of the rollouts in ``rollouts`` (one group) from their ``tokens`` rows (any order).

    Raises ``ValueError`` if a rollout has no token row.
    """
    if rollouts.empty:
        raise ValueError("the group holds no rollout")
    ids = rollouts["rollout"].to_numpy()
    tok = tokens[tokens["rollout"].isin(ids)]
    counts = tok.groupby("rollout").size().reindex(ids, fill_value=0)
    if (counts == 0).any():
        missing = counts.index[counts.to_numpy() == 0].tolist()[:5]
        raise ValueError(f"rollout(s) {missing} have no logged tokens")
    row_of = {int(r): i for i, r in enumerate(ids)}
    rows = tok["rollout"].map(row_of).to_numpy()
    cols = tok["pos"].to_numpy()
    g, t = len(ids), int(cols.max()) + 1
    logp = np.zeros((g, t))
    old = np.zeros((g, t))
    mask = np.zeros((g, t), dtype=bool)
    pos = np.full((g, t), -1, dtype=np.int64)
    logp[rows, cols] = tok["logp"].to_numpy(dtype=float)
    old[rows, cols] = tok["old_logp"].to_numpy(dtype=float)
    mask[rows, cols] = True
    pos[rows, cols] = cols
    return LoggedGroup(
        rollout_ids=ids,
        logp=torch.from_numpy(logp),
        old_logp=torch.from_numpy(old),
        mask=torch.from_numpy(mask),
        rewards=torch.tensor(rollouts["reward"].to_numpy(dtype=float)),
        group_ids=torch.zeros(g, dtype=torch.long),
        pos=torch.from_numpy(pos),
    )


@dataclass(frozen=True)
class Replay:
    """``tokens``: one row per response token (``rollout``, ``pos``, ``weight``, ``grad``, ``kept``);
    ``rollouts``: one row per rollout (``rollout``, ``weight``, ``advantage``, ``log_c``, ``used``)."""

    method: str
    tokens: pd.DataFrame
    rollouts: pd.DataFrame


def replay(method: str, group: LoggedGroup, hparams: dict[str, Any] | None = None) -> Replay:
    """``token_gradient(method, ...)`` on a logged group, as tables. ``hparams`` override the paper's defaults.

    Raises ``ValueError`` for a REAL-family method on non-binary rewards (it needs labels 0/1).
    """
    check_method(method)
    hp = dict(hparams or {})
    hp["kl_beta"] = 0.0
    if method in REAL_METHODS and not group.binary:
        raise ValueError(
            f"{method} needs binary rewards (0/1); this group's rewards are {group.rewards.tolist()}"
        )
    bd = token_gradient(method, group.logp, group.old_logp, group.mask, group.rewards, group.group_ids, **hp)
    m = group.mask.numpy()
    rows, cols = np.nonzero(m)
    tokens = pd.DataFrame(
        {
            "rollout": group.rollout_ids[rows],
            "pos": cols,
            "weight": bd.token_weight.numpy()[rows, cols],
            "grad": bd.grad.numpy()[rows, cols],
            "kept": bd.keep.numpy()[rows, cols],
        }
    )
    n = len(group.rollout_ids)
    rollouts = pd.DataFrame(
        {
            "rollout": group.rollout_ids,
            "weight": bd.rollout_weight.numpy(),
            "advantage": bd.advantage.numpy() if bd.advantage is not None else np.full(n, np.nan),
            "log_c": bd.log_c.numpy() if bd.log_c is not None else np.full(n, np.nan),
            "used": bd.used.numpy(),
        }
    )
    return Replay(method, tokens, rollouts)


def replay_all(
    group: LoggedGroup, methods: list[str], hparams: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, Replay], dict[str, str]]:
    """``replay`` for each method; methods that cannot run on this group go into the second dict with the reason."""
    done: dict[str, Replay] = {}
    skipped: dict[str, str] = {}
    for m in methods:
        try:
            done[m] = replay(m, group, (hparams or {}).get(m))
        except ValueError as e:
            skipped[m] = str(e)
    return done, skipped


def run_hparams(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """The resolved hyper-parameters a run logged in ``config["hparams"]``, restricted to ``method``'s family."""
    hp = config.get("hparams") or {}
    names = set(DEFAULTS[check_method(method)].__dataclass_fields__)
    return {k: v for k, v in hp.items() if k in names}
