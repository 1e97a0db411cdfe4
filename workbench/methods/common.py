"""Pieces every method's objective and closed form are built from.

Objective side (differentiable, autograd is the judge): ``ObjectiveResult``, ``aggregate``, ``kl_penalty``,
``finish``. Closed-form side (no autograd): ``GradientBreakdown``, ``aggregation_scale``, ``kl_gradient``.
Neither side calls the other, so a closed form stays an independent check of its objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from workbench.batch import RolloutBatch

# ----------------------------------------------------------------------------------------------- objective side


@dataclass
class ObjectiveResult:
    """``loss``: scalar tensor to minimise. ``metrics``: floats (clip fractions, KL, groups used, ...).

    ``batch`` and ``hparams`` are what the loss was computed from, for logging the closed-form weights
    (``workbench.closed_forms.breakdown_from_batch``) without redoing the validation.
    """

    loss: Tensor
    metrics: dict[str, float]
    batch: RolloutBatch
    hparams: Any


def aggregate(token_loss: Tensor, batch: RolloutBatch, loss_agg: str) -> Tensor:
    """``token-mean``: ``sum(l * m) / sum(m)``; ``seq-mean-token-mean``: ``mean_k( sum_t l m / |o^k| )``."""
    masked = torch.where(batch.mask, token_loss, torch.zeros_like(token_loss))
    if loss_agg == "token-mean":
        return masked.sum() / batch.lengths.sum()
    if loss_agg == "seq-mean-token-mean":
        return (masked.sum(1) / batch.lengths).mean()
    raise ValueError(f"loss_agg={loss_agg!r} is not one of token-mean, seq-mean-token-mean")


def kl_penalty(
    batch: RolloutBatch,
    kl_beta: float,
    kl_target: str,
    loss_agg: str | Callable[[Tensor, RolloutBatch], Tensor],
) -> Tensor:
    """``beta * agg(k3)``, ``k3 = e^{q - p} - (q - p) - 1`` with ``q`` the reference or old log-prob (Schulman's k3);
    ``loss_agg``: an ``aggregate`` mode, or the method's own aggregation ``f(token_values, batch)``."""
    if kl_beta == 0:
        return batch.logp.new_zeros(())
    target = batch.old_logp if kl_target == "old" else batch.ref_logp
    if target is None:
        raise ValueError(
            "kl_beta > 0 with kl_target='ref' needs ref_logp; pass ref_logp, kl_target='old' or kl_beta=0"
        )
    d = torch.where(batch.mask, target - batch.logp, torch.zeros_like(batch.logp))
    k3 = torch.exp(d) - d - 1
    return kl_beta * (loss_agg(k3, batch) if callable(loss_agg) else aggregate(k3, batch, loss_agg))


def _approx_kl_old(batch: RolloutBatch) -> Tensor:
    """k3 estimate of ``KL(pi_old || pi_theta)`` on the sampled tokens: mean of ``(rho - 1) - s``."""
    s = batch.s.detach().clamp(-20, 20)
    k3 = torch.where(batch.mask, torch.expm1(s) - s, torch.zeros_like(s))
    return k3.sum() / batch.lengths.sum()


def _kl_log_ratio_max(batch: RolloutBatch, kl_target: str) -> float:
    """Largest ``log pi_target - log pi_theta`` over response tokens (for the KL overflow message)."""
    target = batch.old_logp if kl_target == "old" else batch.ref_logp
    if target is None:
        return math.nan
    d = torch.where(batch.mask, target - batch.logp.detach(), torch.full_like(batch.s, -torch.inf))
    return float(d.max())


def finish(
    loss: Tensor, pg: Tensor, kl: Tensor, stats: dict[str, Tensor], batch: RolloutBatch, hp: Any
) -> ObjectiveResult:
    """The result of an objective: its loss, the metrics every method logs plus ``stats``; a loss that is not
    finite raises ValueError naming the cause (the KL's overflow, or a log-ratio too large for ``e^s``)."""
    stats = {
        "loss": loss.detach(),
        "pg_loss": pg.detach(),
        "kl_loss": kl.detach(),
        "approx_kl": _approx_kl_old(batch),
        "s_abs_max": torch.where(batch.mask, batch.s.detach().abs(), torch.zeros_like(batch.s)).max(),
        "rollouts": torch.tensor(float(batch.n_rollouts)),
        "tokens": batch.lengths.sum(),
        "groups": torch.tensor(float(batch.layout.n_groups)),
        **stats,
    }
    keys = list(stats)
    values = torch.stack([v.detach().to(torch.float64).cpu().reshape(()) for v in stats.values()]).tolist()
    metrics = dict(zip(keys, values, strict=True))
    if not math.isfinite(metrics["loss"]):
        if not math.isfinite(metrics["kl_loss"]):
            raise ValueError(
                f"the KL penalty is not finite ({metrics['kl_loss']}): its k3 term e^d - d - 1 overflows where "
                f"d = log pi_{hp.kl_target} - log pi_theta is large on a response token (largest d = "
                f"{_kl_log_ratio_max(batch, hp.kl_target):.3g}; float32 overflows beyond 88, float64 beyond 709)"
            )
        raise ValueError(
            f"the loss is not finite ({metrics['loss']}); largest |s_t| = {metrics['s_abs_max']:.3g}. "
            "For the clip family set log_ratio_cap (default 20) so that e^s cannot overflow."
        )
    return ObjectiveResult(loss=loss, metrics=metrics, batch=batch, hparams=hp)


# ----------------------------------------------------------------------------------------------- closed-form side


@dataclass(frozen=True)
class GradientBreakdown:
    """Closed-form gradient of a method's mini-batch loss, and what it is made of.

    - ``grad``: ``dL/dlogp`` ``[B, T]``, the loss's exact gradient (aggregation and KL included), 0 on padding.
    - ``token_weight``: ``[B, T]`` the paper's per-token magnitude with per-rollout length normalisation:
      GRPO/DAPO ``|A| e^{s_t} I / |o|``, GSPO ``|A| e^{s_bar} I / |o|``, REAL family ``W_k / |o^k|``
      (0 for rollouts of dropped groups); aggregation over the batch and the KL term are left out.
    - ``rollout_weight``: ``[B]`` the sum of ``token_weight`` over the rollout (REAL: ``W_k``).
    - ``keep``: ``[B, T]`` bool, the clip indicator (all True on response tokens for the REAL family).
    - ``advantage`` (clip family) or ``log_c`` (REAL family): ``[B]``, the other is None.
    - ``used``: ``[B]`` bool, whether the rollout's group contributes to the loss.
    - ``grad_kl``: ``[B, T]`` the KL penalty's share of ``grad`` (zeros without a penalty).
    """

    grad: Tensor
    token_weight: Tensor
    rollout_weight: Tensor
    keep: Tensor
    used: Tensor
    advantage: Tensor | None
    log_c: Tensor | None
    s_bar: Tensor
    grad_kl: Tensor


def aggregation_scale(batch: RolloutBatch, loss_agg: str) -> Tensor:
    """``d(aggregate)/d(token loss)``: ``mask / sum(mask)`` (token-mean) or ``mask / (|o| B)`` (seq-mean-token-mean)."""
    m = batch.mask.to(batch.s.dtype)
    if loss_agg == "token-mean":
        return m / m.sum()
    if loss_agg == "seq-mean-token-mean":
        return m / (batch.lengths.unsqueeze(1) * batch.n_rollouts)
    raise ValueError(f"loss_agg={loss_agg!r} is not one of token-mean, seq-mean-token-mean")


def kl_gradient(batch: RolloutBatch, kl_beta: float, kl_target: str, scale: Tensor) -> Tensor:
    """Gradient of ``beta * agg(k3)``, ``k3 = e^{q - p} - (q - p) - 1``: ``beta * scale * (1 - e^{q - p})``,
    with ``scale = d(agg)/d(token loss)`` (``aggregation_scale``)."""
    if kl_beta == 0:
        return torch.zeros_like(batch.s)
    target = batch.old_logp if kl_target == "old" else batch.ref_logp
    if target is None:
        raise ValueError("kl_target='ref' with kl_beta > 0 needs ref_logp")
    d = torch.where(batch.mask, target - batch.logp.detach(), torch.zeros_like(batch.s))
    return kl_beta * scale * (1 - torch.exp(d))
