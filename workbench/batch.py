"""A validated batch of rollouts, the common input of every objective and closed form.

Notation (paper Eq. 4 and Eq. 5):

- ``s_t = log pi_theta(o_t) - log pi_old(o_t)``, the token log-ratio, 0 on padding;
- ``s_bar^k = (1/|o^k|) sum_t s_t^k``, the length-normalised rollout score.

Bad input raises ``ValueError`` naming the problem; nothing non-finite from a response token can reach a loss.
Values on padding (``mask == 0``) are ignored, whatever they hold (NaN included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from workbench.groups import GroupLayout


@dataclass(frozen=True)
class RolloutBatch:
    """Rollouts of one (mini-)batch, checked and pre-reduced. Shapes: B rollouts, T token positions."""

    logp: Tensor  # [B, T] current log-probs, 0 on padding; carries the autograd graph
    old_logp: Tensor  # [B, T] old log-probs, detached, 0 on padding
    mask: Tensor  # [B, T] bool
    s: Tensor  # [B, T] token log-ratio s_t, 0 on padding
    lengths: Tensor  # [B] float, |o^k|
    s_bar: Tensor  # [B] length-normalised score (Eq. 5)
    rewards: Tensor  # [B] float
    group_ids: Tensor  # [B] long
    layout: GroupLayout
    ref_logp: Tensor | None  # [B, T] reference log-probs (detached, 0 on padding) or None

    @property
    def n_rollouts(self) -> int:
        return int(self.s.shape[0])

    @property
    def n_tokens(self) -> Tensor:
        return self.lengths.sum()


def _as_float(name: str, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def prepare_batch(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    binary_rewards: bool = False,
) -> RolloutBatch:
    """Validate the inputs of an objective and compute ``s_t``, ``|o|`` and ``s_bar``.

    Raises ``ValueError`` on: shapes that do not agree; a mask with values other than 0/1; a response with no
    token; NaN or +-inf in ``logp``, ``old_logp`` or ``ref_logp`` on a response token; non-finite rewards;
    rewards outside {0, 1} when ``binary_rewards``; non-integer group ids.
    """
    logp = _as_float("logp", logp)
    old_logp = _as_float("old_logp", old_logp).detach()
    if logp.dim() != 2:
        raise ValueError(f"logp must have shape [B, T], got {tuple(logp.shape)}")
    if old_logp.shape != logp.shape:
        raise ValueError(f"old_logp has shape {tuple(old_logp.shape)}, logp has {tuple(logp.shape)}")
    if not isinstance(mask, Tensor) or mask.shape != logp.shape:
        raise ValueError(
            f"mask must be a tensor of shape {tuple(logp.shape)}, got {getattr(mask, 'shape', mask)}"
        )
    if mask.dtype != torch.bool:
        if torch.is_floating_point(mask) and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 and 1")
        mask = mask != 0
    n = logp.shape[0]
    if n == 0:
        raise ValueError("the batch holds no rollout")
    for name, x in (("rewards", rewards), ("group_ids", group_ids)):
        if not isinstance(x, Tensor) or x.dim() != 1 or x.shape[0] != n:
            raise ValueError(f"{name} must be a 1-D tensor of length B={n}, got {getattr(x, 'shape', x)}")
    if torch.is_floating_point(group_ids) or group_ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be integers, got dtype {group_ids.dtype}")
    rewards = rewards.to(logp.dtype)
    if ref_logp is not None:
        ref_logp = _as_float("ref_logp", ref_logp).detach()
        if ref_logp.shape != logp.shape:
            raise ValueError(f"ref_logp has shape {tuple(ref_logp.shape)}, logp has {tuple(logp.shape)}")

    lengths = mask.sum(1)
    checks = [
        (lengths == 0).sum(),
        (~torch.isfinite(logp.detach()) & mask).sum(),
        (~torch.isfinite(old_logp) & mask).sum(),
        (~torch.isfinite(rewards)).sum(),
        ((rewards != 0) & (rewards != 1)).sum(),
        (~torch.isfinite(ref_logp) & mask).sum() if ref_logp is not None else lengths.new_zeros(()),
    ]
    empty, bad_logp, bad_old, bad_r, non_binary, bad_ref = torch.stack(checks).tolist()
    if empty:
        rows = torch.nonzero(lengths == 0).flatten()[:5].tolist()
        raise ValueError(f"{empty} response(s) have no token (mask row all 0), e.g. rows {rows}")
    for count, name, x in (
        (bad_logp, "logp", logp),
        (bad_old, "old_logp", old_logp),
        (bad_ref, "ref_logp", ref_logp),
    ):
        if count:
            where = torch.nonzero(~torch.isfinite(x.detach()) & mask)[0].tolist()
            raise ValueError(
                f"{name} holds {count} NaN/inf value(s) on response tokens, first at [row, pos] = {where}"
            )
    if bad_r:
        raise ValueError(f"rewards hold {bad_r} NaN/inf value(s)")
    if binary_rewards and non_binary:
        bad = rewards[(rewards != 0) & (rewards != 1)][:5].tolist()
        raise ValueError(f"the REAL family needs binary rewards (0 or 1); got values such as {bad}")

    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    logp_m = torch.where(mask, logp, zero)
    old_m = torch.where(mask, old_logp, zero)
    s = logp_m - old_m
    lengths_f = lengths.to(logp.dtype)
    s_bar = s.sum(1) / lengths_f
    ref_m = torch.where(mask, ref_logp, zero) if ref_logp is not None else None
    group_ids = group_ids.long()
    return RolloutBatch(
        logp=logp_m,
        old_logp=old_m,
        mask=mask,
        s=s,
        lengths=lengths_f,
        s_bar=s_bar,
        rewards=rewards,
        group_ids=group_ids,
        layout=GroupLayout.from_ids(group_ids),
        ref_logp=ref_m,
    )
