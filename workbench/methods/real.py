"""REAL, REAL w/ BCE and REAL w/o anchor: their specs, objectives, closed forms and Fig. 1 curves.

All three share one gradient form. For a correct rollout k (``+``) or a wrong one (``-``),
``W_k = (1/tau) / (1 + C_k e^{+-s_bar_k/tau}) = (1/tau) * sigmoid(-(+-s_bar_k/tau + log C_k))`` with

- REAL (anchor):   ``C+_k = 1 + sum_{i in O+, i != k} e^{-s_bar_i/tau}``,  ``C-_k = 1 + sum_{j in O-, j != k} e^{s_bar_j/tau}``
- no anchor:       ``C+_k = sum_{i in O+, i != k} e^{-s_bar_i/tau} + 1 / sum_{j in O-} e^{s_bar_j/tau}`` (and symmetrically)
- BCE:             ``C = 1``

Each token of rollout k then carries ``W_k / |o^k|``. Every variant's ``W_k`` lies in ``(0, 1/tau)`` because
``C > 0``; the anchor's 1 decides when weights vanish, not whether they are bounded (``docs/derivation.md``
Sec. 3). Everything is evaluated in log space (``log C`` by a leave-one-out logsumexp), so ``|s_bar| / tau`` of
1e4 gives finite, exact weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from workbench.batch import RolloutBatch
from workbench.groups import (
    GroupLayout,
    leave_one_out_logsumexp,
    masked_logsumexp,
    real_group_usage,
    real_normaliser,
)
from workbench.methods.common import (
    GradientBreakdown,
    ObjectiveResult,
    finish,
    kl_gradient,
    kl_penalty,
)
from workbench.methods.hparams import RealHParams
from workbench.methods.spec import CurveScenario, MethodSpec

REAL_DEFAULTS = RealHParams()
# the authors' BCE: the mean over the kept groups' rollouts
REAL_BCE_DEFAULTS = RealHParams(normalize="rollouts")
REAL_NO_ANCHOR_DEFAULTS = RealHParams()


# ----------------------------------------------------------------------------------------------- elementwise forms


def log_sigmoid(x: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """``log sigmoid(x) = -log(1 + e^{-x})``, stable for any finite x."""
    if isinstance(x, Tensor):
        return torch.nn.functional.logsigmoid(x)
    return -np.logaddexp(0.0, -np.asarray(x, dtype=float))


def real_weight(
    s_bar: np.ndarray | Tensor,
    log_c: np.ndarray | Tensor | float,
    tau: float = REAL_DEFAULTS.tau,
    positive: np.ndarray | Tensor | bool = True,
) -> np.ndarray | Tensor:
    """Eq. 9: ``|W| = (1/tau) / (1 + C e^{s_bar/tau})`` for correct, ``(1/tau) / (1 + C e^{-s_bar/tau})`` for wrong.

    Takes ``log C`` (C >= 1 for REAL, C = 1 for BCE, any C > 0 without the anchor). Evaluated as
    ``(1/tau) sigmoid(-(+-s_bar/tau + log C))``: in ``(0, 1/tau)`` for *every* C > 0 (the bound comes from this
    form, not from the anchor), decreasing in ``s_bar`` for correct rollouts and increasing for wrong ones.
    """
    if any(isinstance(x, Tensor) for x in (s_bar, log_c, positive)):
        s_bar = torch.as_tensor(s_bar)
        sign = torch.where(torch.as_tensor(positive, device=s_bar.device), 1.0, -1.0).to(s_bar.dtype)
        log_c = torch.as_tensor(log_c, dtype=s_bar.dtype, device=s_bar.device)
        return torch.exp(log_sigmoid(-(sign * s_bar / tau + log_c))) / tau
    sign = np.where(np.asarray(positive), 1.0, -1.0)
    z = -(sign * np.asarray(s_bar, dtype=float) / tau + np.asarray(log_c, dtype=float))
    return np.exp(log_sigmoid(z)) / tau


def real_weight_c(
    s_bar: np.ndarray | Tensor,
    c: float = 4.0,
    tau: float = REAL_DEFAULTS.tau,
    positive: np.ndarray | Tensor | bool = True,
) -> np.ndarray | Tensor:
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


def curve_log_c(variant: str, positive: bool, sc: CurveScenario) -> float:
    """Fig. 1's ``log C``: REAL ``C+`` or ``C-`` as given; BCE ``C = 1``; no anchor ``C = (C_REAL - 1) + 1 / M``,
    the same-class mass without the anchor plus the inverse of the other class's mass ``M`` (``M = 1``: one
    other-class rollout at ``s_bar = 0``, where no-anchor coincides with REAL)."""
    c_real = sc.c_pos if positive else sc.c_neg
    if variant == "real":
        return math.log(c_real)
    if variant == "bce":
        return 0.0
    if variant == "no_anchor":
        return math.log((c_real - 1.0) + 1.0 / sc.other_class_mass)
    raise ValueError(f"variant={variant!r} is not one of real, no_anchor, bce")


def _curve(variant: str):
    def curve(s: np.ndarray, positive: bool, hp: RealHParams, sc: CurveScenario) -> np.ndarray:
        return np.asarray(real_weight(s, curve_log_c(variant, positive, sc), hp.tau, positive), dtype=float)

    curve.__doc__ = f"Fig. 1 (Eq. 9): ``(1/tau) / (1 + C e^(+-s_bar/tau))`` with the {variant} variant's C."
    return curve


# ----------------------------------------------------------------------------------------------- objectives


def _real_grid(batch: RolloutBatch, tau: float) -> tuple[Tensor, Tensor, Tensor]:
    """Logits ``s_bar / tau`` on the group grid, and the masks of correct and wrong cells."""
    layout = batch.layout
    x = layout.to_grid(batch.s_bar / tau, 0.0)
    pos = (layout.to_grid(batch.rewards, 0.0) > 0.5) & layout.valid
    return x, pos, layout.valid & ~pos


def _real_finish(group_loss: Tensor, batch: RolloutBatch, hp: RealHParams) -> ObjectiveResult:
    """Keep the groups ``hp.group_filter`` admits, sum, divide by the normaliser, add the KL penalty."""
    used = real_group_usage(batch.rewards, batch.layout, hp.group_filter)
    pg = torch.where(used, group_loss, torch.zeros_like(group_loss)).sum() / real_normaliser(
        used, hp.normalize, batch.layout.sizes
    )
    kl = kl_penalty(batch, hp.kl_beta, hp.kl_target, "token-mean")
    with torch.no_grad():
        pos = batch.rewards > 0.5
        n_pos, n_neg = pos.sum(), (~pos).sum()
        s_bar = batch.s_bar.detach()
        stats = {
            "groups_used": used.sum(),
            "groups_skipped": (~used).sum(),
            "s_bar_pos_mean": torch.where(pos, s_bar, 0).sum() / n_pos.clamp(min=1),
            "s_bar_neg_mean": torch.where(~pos, s_bar, 0).sum() / n_neg.clamp(min=1),
        }
    return finish(pg + kl, pg, kl, stats, batch, hp)


def real_objective(batch: RolloutBatch, hp: RealHParams) -> ObjectiveResult:
    """REAL (Eq. 8), per group: ``log(1 + sum_{O+} e^{-s_bar/tau}) + log(1 + sum_{O-} e^{s_bar/tau})``.

    Each term is a logsumexp over the group's logits and the zero anchor logit (``log(1 + ...) = LSE(0, ...)``),
    so it is exact for any ``|s_bar| / tau``; the kept groups' sum is divided by the normaliser."""
    x, pos, neg = _real_grid(batch, hp.tau)
    anchor = x.new_zeros(x.shape[0], 1)
    ninf = torch.full_like(x, -torch.inf)
    loss_pos = torch.logsumexp(torch.cat([anchor, torch.where(pos, -x, ninf)], 1), 1)
    loss_neg = torch.logsumexp(torch.cat([anchor, torch.where(neg, x, ninf)], 1), 1)
    return _real_finish(loss_pos + loss_neg, batch, hp)


def real_no_anchor_objective(batch: RolloutBatch, hp: RealHParams) -> ObjectiveResult:
    """REAL without anchor (Eq. 2 on S+ and S-): ``log(1 + sum_{O-} e^{s_bar/tau} sum_{O+} e^{-s_bar/tau})``
    ``= softplus(LSE_{O-}(s_bar/tau) + LSE_{O+}(-s_bar/tau))``; a group lacking one label has loss 0."""
    x, pos, neg = _real_grid(batch, hp.tau)
    both = pos.any(1) & neg.any(1)
    z = masked_logsumexp(x, neg) + masked_logsumexp(-x, pos)
    z = torch.where(both, z, torch.zeros_like(z))
    group_loss = torch.where(both, torch.logaddexp(torch.zeros_like(z), z), torch.zeros_like(z))
    return _real_finish(group_loss, batch, hp)


def real_bce_objective(batch: RolloutBatch, hp: RealHParams) -> ObjectiveResult:
    """REAL with BCE (Eq. 11): ``-sum_{O+} log sigmoid(s_bar/tau) - sum_{O-} log(1 - sigmoid(s_bar/tau))`` per
    group, i.e. ``BCE_with_logits(s_bar/tau, r)`` summed over the group's rollouts. With ``normalize='rollouts'``
    (the authors' code) this is ``BCE_with_logits(s_bar/tau, r, reduction='mean')`` over the rollouts of the
    mixed groups; ``prompts`` divides by the prompts of the mini-batch instead (Eq. 11 averaged over prompts)."""
    per_rollout = torch.nn.functional.binary_cross_entropy_with_logits(
        batch.s_bar / hp.tau, batch.rewards, reduction="none"
    )
    return _real_finish(batch.layout.group_sum(per_rollout), batch, hp)


# ----------------------------------------------------------------------------------------------- closed form


def _closed_form(variant: str):
    def closed_form(batch: RolloutBatch, hp: RealHParams) -> GradientBreakdown:
        s_bar = batch.s_bar.detach()
        log_c = real_log_c(s_bar, batch.rewards, batch.layout, hp.tau, variant)
        positive = batch.rewards > 0.5
        w = real_weight(s_bar, log_c, hp.tau, positive)
        used_groups = real_group_usage(batch.rewards, batch.layout, hp.group_filter)
        used = batch.layout.broadcast(used_groups)
        w = torch.where(used, w, torch.zeros_like(w))
        sign = torch.where(positive, -1.0, 1.0).to(w.dtype)  # dL/ds_bar is negative for correct rollouts
        norm = real_normaliser(used_groups, hp.normalize, batch.layout.sizes)
        per_token = (w / batch.lengths).unsqueeze(1) * batch.mask.to(w.dtype)
        m = batch.mask.to(batch.s.dtype)
        grad_kl = kl_gradient(batch, hp.kl_beta, hp.kl_target, m / m.sum())
        return GradientBreakdown(
            grad=sign.unsqueeze(1) * per_token / norm + grad_kl,
            token_weight=per_token,
            rollout_weight=w,
            keep=batch.mask.clone(),
            used=used,
            advantage=None,
            log_c=log_c,
            s_bar=s_bar,
            grad_kl=grad_kl,
        )

    closed_form.__doc__ = (
        f"``dL/dlogp_t = -+ W_k / |o^k| / N`` ({variant} variant's C) for rollouts of used groups (``-`` correct, "
        "``+`` wrong), N the normaliser, plus the KL term (token mean)."
    )
    return closed_form


def divides_by_normalize(hp: RealHParams) -> str:
    """``prompts``: the groups of the batch; ``sum``: nothing; ``used``/``rollouts``: counts over the kept groups
    of the whole mini-batch (``window``)."""
    return {"prompts": "prompts", "sum": "nothing"}.get(hp.normalize, "window")


# ----------------------------------------------------------------------------------------------- specs

REAL = MethodSpec(
    name="real",
    family="real",
    label="REAL",
    color="#1f77b4",
    defaults=REAL_DEFAULTS,
    objective=real_objective,
    closed_form=_closed_form("real"),
    curve=_curve("real"),
    summary="(1/tau) / (1 + C e^{+-s_bar/tau}), C >= 1 from the zero anchor logit (Eq. 8, 9)",
    ratio="sequence",
    divides_by=divides_by_normalize,
)
REAL_BCE = MethodSpec(
    name="real_bce",
    family="real",
    label="REAL w/ BCE",
    color="#9467bd",
    defaults=REAL_BCE_DEFAULTS,
    objective=real_bce_objective,
    closed_form=_closed_form("bce"),
    curve=_curve("bce"),
    summary="(1/tau) sigmoid(-+s_bar/tau): each rollout its own binary classifier (Eq. 11), C = 1",
    ratio="sequence",
    divides_by=divides_by_normalize,
)
REAL_NO_ANCHOR = MethodSpec(
    name="real_no_anchor",
    family="real",
    label="REAL w/o anchor",
    color="#17becf",
    defaults=REAL_NO_ANCHOR_DEFAULTS,
    objective=real_no_anchor_objective,
    closed_form=_closed_form("no_anchor"),
    curve=_curve("no_anchor"),
    summary="REAL's form without the zero logit: C = same-class mass + 1 / other-class mass (Eq. 2)",
    ratio="sequence",
    divides_by=divides_by_normalize,
)
SPECS = (REAL, REAL_BCE, REAL_NO_ANCHOR)
