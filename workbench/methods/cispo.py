"""CISPO (MiniMax-M1, 2025): clip the importance-sampling weight, not the update, and keep every token's gradient.

Objective, per token: ``-sg[clip(rho_t, w_min, w_max)] * A * log pi(o_t)`` with ``rho_t = e^{s_t}``, the
group-normalised advantage ``A`` and ``sg`` the stop-gradient, aggregated by ``loss_agg`` (token mean, as MiniMax-M1,
verl's ``cispo`` and TRL's ``loss_type="cispo"``), plus an optional k3 KL penalty. Closed form:
``dL/dlogp_t = -A clip(rho_t, w_min, w_max) * agg_t``. Unlike PPO's clip no token loses its gradient: a token
whose ratio left the range keeps a weight of ``|A| w_max`` (or ``|A| w_min``), so a low-probability correct
token still learns, and a high-ratio wrong token's weight is bounded by ``|A| w_max`` rather than growing as
``e^{s_t}``.

Engines: TRL clamps at ``epsilon_high`` directly (``w_max = epsilon_high``, no lower bound); verl clamps to
``[1 - clip_ratio_low, 1 + clip_ratio_high]`` (``w_min = 1 - clip_ratio_low``, ``w_max = 1 + clip_ratio_high``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from workbench.batch import RolloutBatch
from workbench.groups import group_advantages
from workbench.methods.clip import divides_by_loss_agg
from workbench.methods.common import (
    GradientBreakdown,
    ObjectiveResult,
    aggregate,
    aggregation_scale,
    finish,
    kl_gradient,
    kl_penalty,
)
from workbench.methods.hparams import (
    ADV_EPS_HELP,
    KL_BETA_HELP,
    KL_TARGET_HELP,
    KL_TARGETS,
    LOSS_AGG_HELP,
    LOSS_AGGS,
    check_choice,
    check_kl,
    check_nonneg,
    hp_field,
)
from workbench.methods.spec import CurveScenario, MethodSpec


@dataclass(frozen=True)
class CispoHParams:
    """CISPO: the importance-sampling weight ``rho_t`` is clipped to ``[w_min, w_max]`` and detached."""

    w_max: float = hp_field(5.0, "upper bound on the detached IS weight (TRL's epsilon_high; ScaleRL uses 5)")
    w_min: float = hp_field(0.0, "lower bound on the detached IS weight (0: none, as MiniMax-M1)")
    loss_agg: Literal["token-mean", "seq-mean-token-mean"] = hp_field("token-mean", LOSS_AGG_HELP, LOSS_AGGS)
    kl_beta: float = hp_field(0.0, KL_BETA_HELP)
    kl_target: Literal["ref", "old"] = hp_field("ref", KL_TARGET_HELP, KL_TARGETS)
    adv_eps: float = hp_field(1e-6, ADV_EPS_HELP)

    def __post_init__(self) -> None:
        check_nonneg("w_min", self.w_min)
        check_nonneg("w_max", self.w_max)
        if not self.w_max > self.w_min:
            raise ValueError(f"w_max must be > w_min, got w_max={self.w_max}, w_min={self.w_min}")
        check_choice("loss_agg", self.loss_agg, LOSS_AGGS)
        check_kl(self.kl_beta, self.kl_target)
        check_nonneg("adv_eps", self.adv_eps)


def clipped_weight(s: Tensor, hp: CispoHParams) -> Tensor:
    """``clip(e^s, w_min, w_max)`` computed as ``e^{clip(s, log w_min, log w_max)}``, so no ratio overflows."""
    lo = math.log(hp.w_min) if hp.w_min > 0 else -math.inf
    return torch.exp(torch.clamp(s, min=lo, max=math.log(hp.w_max)))


def cispo_objective(batch: RolloutBatch, hp: CispoHParams) -> ObjectiveResult:
    """``agg(-sg[clip(rho_t, w_min, w_max)] A log pi(o_t)) + KL``."""
    adv = group_advantages(batch.rewards, batch.layout, hp.adv_eps)
    s = batch.s.detach()
    w = clipped_weight(s, hp)
    token_loss = -w * adv.unsqueeze(1) * batch.logp
    pg = aggregate(token_loss, batch, hp.loss_agg)
    kl = kl_penalty(batch, hp.kl_beta, hp.kl_target, hp.loss_agg)
    with torch.no_grad():
        n_tok = batch.lengths.sum()
        high = batch.mask & (s > math.log(hp.w_max))
        low = batch.mask & (s < math.log(hp.w_min)) if hp.w_min > 0 else torch.zeros_like(batch.mask)
        used = batch.layout.group_sum(adv.abs()) > 0
        rho = torch.exp(s.clamp(max=20.0))
        stats = {
            "clip_frac_low": low.sum() / n_tok,  # weights clipped, gradients kept
            "clip_frac_high": high.sum() / n_tok,
            "clip_frac": (low | high).sum() / n_tok,
            "ratio_mean": torch.where(batch.mask, rho, torch.zeros_like(rho)).sum() / n_tok,
            "adv_abs_mean": adv.abs().mean(),
            "groups_used": used.sum(),
            "groups_skipped": (~used).sum(),
        }
    return finish(pg + kl, pg, kl, stats, batch, hp)


def cispo_closed_form(batch: RolloutBatch, hp: CispoHParams) -> GradientBreakdown:
    """``dL/dlogp_t = -A clip(rho_t, w_min, w_max) * agg_t`` (+ KL); token weight ``|A| clip(rho_t) / |o|``;
    every response token keeps its gradient (``keep`` all true)."""
    adv = group_advantages(batch.rewards, batch.layout, hp.adv_eps)
    scale = aggregation_scale(batch, hp.loss_agg)
    coeff = torch.where(
        batch.mask, adv.unsqueeze(1) * clipped_weight(batch.s.detach(), hp), torch.zeros_like(batch.s)
    )
    grad_kl = kl_gradient(batch, hp.kl_beta, hp.kl_target, scale)
    token_weight = coeff.abs() / batch.lengths.unsqueeze(1)
    return GradientBreakdown(
        grad=-coeff * scale + grad_kl,
        token_weight=token_weight,
        rollout_weight=token_weight.sum(1),
        keep=batch.mask.clone(),
        used=batch.layout.broadcast(batch.layout.group_sum(adv.abs()) > 0),
        advantage=adv,
        log_c=None,
        s_bar=batch.s_bar.detach(),
        grad_kl=grad_kl,
    )


def cispo_curve(s: np.ndarray, positive: bool, hp: CispoHParams, sc: CurveScenario) -> np.ndarray:
    """Fig. 1: ``|A| clip(e^s, w_min, w_max)``, the same for correct and wrong rollouts."""
    lo = math.log(hp.w_min) if hp.w_min > 0 else -np.inf
    return sc.advantage * np.exp(np.clip(np.asarray(s, dtype=float), lo, math.log(hp.w_max)))


CISPO = MethodSpec(
    name="cispo",
    family="clip",
    label="CISPO",
    color="#8c564b",
    defaults=CispoHParams(),
    objective=cispo_objective,
    closed_form=cispo_closed_form,
    curve=cispo_curve,
    summary="|A| sg[clip(e^{s_t}, w_min, w_max)]: the weight is clipped, no token loses its gradient",
    divides_by=divides_by_loss_agg,  # type: ignore[arg-type]
)
SPECS = (CISPO,)
