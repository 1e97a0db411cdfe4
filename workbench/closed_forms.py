"""Closed-form gradient weights of every method (paper Eq. 3, Eq. 9/10, and their BCE / no-anchor analogues).

Two levels:

1. Paper-level, elementwise, on numpy arrays or torch tensors (the type in is the type out):
   ``grpo_token_weight`` (Eq. 3: ``|A| e^{s_t} * I_clip``), ``gspo_sequence_weight`` and ``real_weight``
   (Eq. 9: ``(1/tau) / (1 + C e^{+-s_bar/tau})``).
2. Batch-level, torch: ``token_gradient(method, logp, old_logp, mask, rewards, group_ids, **hp)`` returns
   ``dL/dlogp`` for every token of a batch, exactly what autograd gives through ``workbench.objectives``,
   computed without autograd, plus the per-rollout quantities (advantage, C, W) behind it.

All three REAL variants share one form. For a correct rollout k (``+``) or a wrong one (``-``),
``W_k = (1/tau) / (1 + C_k e^{+-s_bar_k/tau}) = (1/tau) * sigmoid(-(+-s_bar_k/tau + log C_k))`` with

- REAL (anchor):   ``C+_k = 1 + sum_{i in O+, i != k} e^{-s_bar_i/tau}``,  ``C-_k = 1 + sum_{j in O-, j != k} e^{s_bar_j/tau}``
- no anchor:       ``C+_k = sum_{i in O+, i != k} e^{-s_bar_i/tau} + 1 / sum_{j in O-} e^{s_bar_j/tau}`` (and symmetrically)
- BCE:             ``C = 1``

Each token of rollout k then carries ``W_k / |o^k|``. Every variant's ``W_k`` lies in ``(0, 1/tau)`` because ``C > 0``;
the anchor's 1 decides when weights vanish, not whether they are bounded (``docs/derivation.md`` Sec. 3). Everything is evaluated in log space (``log C`` by a
leave-one-out logsumexp), so ``|s_bar| / tau`` of 1e4 gives finite, exact weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from workbench.batch import RolloutBatch, prepare_batch
from workbench.groups import (
    GroupLayout,
    group_advantages,
    leave_one_out_logsumexp,
    masked_logsumexp,
    real_group_usage,
    real_normaliser,
)
from workbench.methods import CLIP_METHODS, DEFAULTS, ClipHParams, RealHParams, check_method, resolve_hparams

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def _is_torch(*xs: Any) -> bool:
    return any(isinstance(x, Tensor) for x in xs)


def log_sigmoid(x: ArrayT) -> ArrayT:
    """``log sigmoid(x) = -log(1 + e^{-x})``, stable for any finite x."""
    if isinstance(x, Tensor):
        return torch.nn.functional.logsigmoid(x)
    return -np.logaddexp(0.0, -np.asarray(x, dtype=float))


def keep_indicator(
    log_ratio: ArrayT,
    advantage: ArrayT | float,
    eps_low: float = DEFAULTS["grpo"].eps_low,
    eps_high: float = DEFAULTS["grpo"].eps_high,
    clip_mode: str = "vanilla",
    dual_clip: float | None = None,
    log_ratio_cap: float | None = None,
) -> ArrayT:
    """``I_clip`` of Eq. 3: True where a token (or GSPO sequence) keeps its gradient.

    With ``rho = e^{log_ratio}``:
    - ``vanilla``: drop ``A > 0`` with ``rho > 1 + eps_high`` and ``A < 0`` with ``rho < 1 - eps_low``;
    - ``bidirectional``: drop every ``rho`` outside ``[1 - eps_low, 1 + eps_high]``;
    - ``none``: keep all.
    ``dual_clip = c`` also drops ``A < 0`` with ``rho > c``; ``log_ratio_cap`` drops ``|log_ratio| > cap``.
    Compared in log space, so no ratio overflows.
    """
    torch_mode = _is_torch(log_ratio, advantage)
    xp = torch if torch_mode else np
    s = log_ratio if torch_mode else np.asarray(log_ratio, dtype=float)
    a = advantage
    if torch_mode and not isinstance(a, Tensor):
        a = torch.as_tensor(a, dtype=s.dtype, device=s.device)
    lo, hi = math.log1p(-eps_low), math.log1p(eps_high)
    if clip_mode == "vanilla":
        keep = xp.where(a > 0, s <= hi, xp.where(a < 0, s >= lo, s == s))
    elif clip_mode == "bidirectional":
        keep = (s >= lo) & (s <= hi)
    elif clip_mode == "none":
        keep = s == s
    else:
        raise ValueError(f"clip_mode={clip_mode!r} is not one of vanilla, bidirectional, none")
    if dual_clip is not None:
        keep = keep & ~((a < 0) & (s > math.log(dual_clip)))
    if log_ratio_cap is not None:
        keep = keep & (xp.abs(s) <= log_ratio_cap)
    return keep


def grpo_token_weight(
    s: ArrayT,
    advantage: ArrayT | float = 1.0,
    eps_low: float = DEFAULTS["grpo"].eps_low,
    eps_high: float = DEFAULTS["grpo"].eps_high,
    clip_mode: str = "vanilla",
    dual_clip: float | None = None,
) -> ArrayT:
    """Eq. 3: ``|W_GRPO| = |A| e^{s_t}`` where the token is not clipped, else 0 (also DAPO with its eps).

    Unbounded in ``s_t`` for ``A < 0`` under vanilla clipping: that is the paper's "gradient domination".
    """
    keep = keep_indicator(s, advantage, eps_low, eps_high, clip_mode, dual_clip)
    if _is_torch(s, advantage):
        a = torch.as_tensor(advantage, dtype=s.dtype) if not isinstance(advantage, Tensor) else advantage
        return torch.where(keep, a.abs() * torch.exp(s), torch.zeros_like(s))
    s = np.asarray(s, dtype=float)
    with np.errstate(over="ignore"):
        return np.where(keep, np.abs(advantage) * np.exp(s), 0.0)


def gspo_sequence_weight(
    s_bar: ArrayT,
    advantage: ArrayT | float = 1.0,
    eps_low: float = DEFAULTS["gspo"].eps_low,
    eps_high: float = DEFAULTS["gspo"].eps_high,
    clip_mode: str = "vanilla",
) -> ArrayT:
    """GSPO: ``|A| e^{s_bar}`` for a sequence whose ratio ``e^{s_bar}`` is not clipped, else 0.

    Each token of the sequence receives this weight divided by ``|o|``.
    """
    return grpo_token_weight(s_bar, advantage, eps_low, eps_high, clip_mode)


def real_weight(
    s_bar: ArrayT, log_c: ArrayT | float, tau: float = DEFAULTS["real"].tau, positive: ArrayT | bool = True
) -> ArrayT:
    """Eq. 9: ``|W| = (1/tau) / (1 + C e^{s_bar/tau})`` for correct, ``(1/tau) / (1 + C e^{-s_bar/tau})`` for wrong.

    Takes ``log C`` (C >= 1 for REAL, C = 1 for BCE, any C > 0 without the anchor). Evaluated as
    ``(1/tau) sigmoid(-(+-s_bar/tau + log C))``: in ``(0, 1/tau)`` for *every* C > 0 (the bound comes from this
    form, not from the anchor), decreasing in ``s_bar`` for correct rollouts and increasing for wrong ones.
    """
    if _is_torch(s_bar, log_c, positive):
        s_bar = torch.as_tensor(s_bar)
        sign = torch.where(torch.as_tensor(positive, device=s_bar.device), 1.0, -1.0).to(s_bar.dtype)
        log_c = torch.as_tensor(log_c, dtype=s_bar.dtype, device=s_bar.device)
        return torch.exp(log_sigmoid(-(sign * s_bar / tau + log_c))) / tau
    sign = np.where(np.asarray(positive), 1.0, -1.0)
    z = -(sign * np.asarray(s_bar, dtype=float) / tau + np.asarray(log_c, dtype=float))
    return np.exp(log_sigmoid(z)) / tau


def real_weight_c(
    s_bar: ArrayT, c: float = 4.0, tau: float = DEFAULTS["real"].tau, positive: ArrayT | bool = True
) -> ArrayT:
    """Eq. 9 with ``C`` given directly (Fig. 1 uses ``C+ = C- = 4``)."""
    if c <= 0:
        raise ValueError(f"C must be > 0, got {c}")
    return real_weight(s_bar, math.log(c), tau, positive)


def real_log_c(
    s_bar: Tensor, rewards: Tensor, layout: GroupLayout, tau: float, variant: str = "real"
) -> Tensor:
    """``log C`` of every rollout (``C+`` for correct, ``C-`` for wrong), for ``variant`` real, no_anchor or bce."""
    if variant == "bce":
        return torch.zeros_like(s_bar)
    x = layout.to_grid(s_bar / tau, 0.0)
    pos = layout.to_grid(rewards, 0.0) > 0.5
    pos &= layout.valid
    neg = layout.valid & ~pos
    if variant == "real":
        c_pos = leave_one_out_logsumexp(-x, pos, anchor=0.0)
        c_neg = leave_one_out_logsumexp(x, neg, anchor=0.0)
    elif variant == "no_anchor":
        lse_pos = masked_logsumexp(-x, pos).unsqueeze(1)
        lse_neg = masked_logsumexp(x, neg).unsqueeze(1)
        c_pos = torch.logaddexp(leave_one_out_logsumexp(-x, pos, anchor=None), -lse_neg.expand_as(x))
        c_neg = torch.logaddexp(leave_one_out_logsumexp(x, neg, anchor=None), -lse_pos.expand_as(x))
    else:
        raise ValueError(f"variant={variant!r} is not one of real, no_anchor, bce")
    return layout.from_grid(torch.where(pos, c_pos, c_neg))


_REAL_VARIANT = {"real": "real", "real_bce": "bce", "real_no_anchor": "no_anchor"}


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
    """

    grad: Tensor
    token_weight: Tensor
    rollout_weight: Tensor
    keep: Tensor
    used: Tensor
    advantage: Tensor | None
    log_c: Tensor | None
    s_bar: Tensor


def aggregation_scale(batch: RolloutBatch, loss_agg: str) -> Tensor:
    """``d(aggregate)/d(token loss)``: ``mask / sum(mask)`` (token-mean) or ``mask / (|o| B)`` (seq-mean-token-mean)."""
    m = batch.mask.to(batch.s.dtype)
    if loss_agg == "token-mean":
        return m / m.sum()
    if loss_agg == "seq-mean-token-mean":
        return m / (batch.lengths.unsqueeze(1) * batch.n_rollouts)
    raise ValueError(f"loss_agg={loss_agg!r} is not one of token-mean, seq-mean-token-mean")


def kl_gradient(batch: RolloutBatch, kl_beta: float, kl_target: str, loss_agg: str) -> Tensor:
    """Gradient of ``beta * agg(k3)``, ``k3 = e^{q - p} - (q - p) - 1``: ``beta * scale * (1 - e^{q - p})``."""
    if kl_beta == 0:
        return torch.zeros_like(batch.s)
    target = batch.old_logp if kl_target == "old" else batch.ref_logp
    if target is None:
        raise ValueError("kl_target='ref' with kl_beta > 0 needs ref_logp")
    d = torch.where(batch.mask, target - batch.logp.detach(), torch.zeros_like(batch.s))
    return kl_beta * aggregation_scale(batch, loss_agg) * (1 - torch.exp(d))


def _clip_family(method: str, batch: RolloutBatch, hp: ClipHParams) -> GradientBreakdown:
    adv = group_advantages(batch.rewards, batch.layout, hp.adv_eps)
    a = adv.unsqueeze(1)
    if method == "gspo":
        log_ratio = batch.s_bar.unsqueeze(1).expand_as(batch.s)
    else:
        log_ratio = batch.s.detach()
    keep = keep_indicator(log_ratio, a, hp.eps_low, hp.eps_high, hp.clip_mode, hp.dual_clip, hp.log_ratio_cap)
    keep = keep & batch.mask
    coeff = torch.where(keep, a * torch.exp(log_ratio), torch.zeros_like(batch.s))  # A rho I
    grad = -coeff * aggregation_scale(batch, hp.loss_agg)
    grad = grad + kl_gradient(batch, hp.kl_beta, hp.kl_target, hp.loss_agg)
    token_weight = coeff.abs() / batch.lengths.unsqueeze(1)
    used = batch.layout.broadcast(batch.layout.group_sum(adv.abs()) > 0)
    return GradientBreakdown(
        grad=grad,
        token_weight=token_weight,
        rollout_weight=token_weight.sum(1),
        keep=keep,
        used=used,
        advantage=adv,
        log_c=None,
        s_bar=batch.s_bar.detach(),
    )


def _real_family(method: str, batch: RolloutBatch, hp: RealHParams) -> GradientBreakdown:
    s_bar = batch.s_bar.detach()
    log_c = real_log_c(s_bar, batch.rewards, batch.layout, hp.tau, _REAL_VARIANT[method])
    positive = batch.rewards > 0.5
    w = real_weight(s_bar, log_c, hp.tau, positive)
    used_groups = real_group_usage(batch.rewards, batch.layout, hp.group_filter)
    used = batch.layout.broadcast(used_groups)
    w = torch.where(used, w, torch.zeros_like(w))
    sign = torch.where(positive, -1.0, 1.0).to(w.dtype)  # dL/ds_bar is negative for correct rollouts
    norm = real_normaliser(used_groups, hp.normalize, batch.layout.sizes)
    per_token = (w / batch.lengths).unsqueeze(1) * batch.mask.to(w.dtype)
    grad = sign.unsqueeze(1) * per_token / norm
    grad = grad + kl_gradient(batch, hp.kl_beta, hp.kl_target, "token-mean")
    return GradientBreakdown(
        grad=grad,
        token_weight=per_token,
        rollout_weight=w,
        keep=batch.mask.clone(),
        used=used,
        advantage=None,
        log_c=log_c,
        s_bar=s_bar,
    )


def breakdown_from_batch(
    method: str, batch: RolloutBatch, hp: ClipHParams | RealHParams
) -> GradientBreakdown:
    """``token_gradient`` on an already prepared batch."""
    with torch.no_grad():
        if method in CLIP_METHODS:
            assert isinstance(hp, ClipHParams)
            return _clip_family(method, batch, hp)
        assert isinstance(hp, RealHParams)
        return _real_family(method, batch, hp)


def token_gradient(
    method: str,
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> GradientBreakdown:
    """Closed-form ``dL/dlogp`` of ``workbench.objectives.OBJECTIVES[method]`` on the same inputs, no autograd.

    Clip family: ``dL/dlogp_t = -A rho I_t * agg_t`` (GSPO: ``rho = e^{s_bar}``, one I per sequence), with
    ``agg_t = 1 / (|o| B)`` or ``1 / sum(mask)``. REAL family: ``dL/dlogp_t = -+ W_k / |o^k| / N`` for rollouts
    of used groups (``-`` correct, ``+`` wrong), N the normaliser (``real_normaliser``: prompts, rollouts of the
    used groups, used groups, or 1). Plus the KL term when ``kl_beta > 0``.
    """
    hp = resolve_hparams(check_method(method), hparams)
    batch = prepare_batch(
        logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp, binary_rewards=method not in CLIP_METHODS
    )
    return breakdown_from_batch(method, batch, hp)
