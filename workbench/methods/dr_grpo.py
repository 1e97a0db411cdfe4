"""Dr. GRPO ("Understanding R1-Zero-Like Training", Liu et al. 2025): GRPO without its two length and difficulty
biases.

Objective: GRPO's clipped surrogate per token (Eq. 1) with

- the advantage not divided by the group's std: ``A_i = r_i - mean_g r`` (no difficulty bias);
- a constant token normaliser: ``L = sum_{i,t} l_{i,t} / (B * L_max)`` instead of each rollout's own length
  (no length bias), ``L_max`` = ``max_tokens`` (TRL: ``max_completion_length``; the trainer passes its
  ``--max-new-tokens``), or, unset, the mini-batch's padded width (verl's ``seq-mean-token-sum-norm``).

Closed form: ``dL/dlogp_t = -A rho_t I_clip / (B L_max)``; the per-token weight ``|A| e^{s_t} I_clip`` is GRPO's
with the un-normalised advantage, and a rollout's tokens are no longer divided by its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from workbench.batch import RolloutBatch
from workbench.groups import GroupLayout
from workbench.methods.clip import clip_breakdown, clip_curve, clip_kinks, clip_stats, ppo_token_loss
from workbench.methods.common import GradientBreakdown, ObjectiveResult, finish, kl_penalty
from workbench.methods.hparams import (
    CLIP_MODE_HELP,
    CLIP_MODES,
    DUAL_CLIP_HELP,
    EPS_HIGH_HELP,
    EPS_LOW_HELP,
    KL_BETA_HELP,
    KL_TARGET_HELP,
    KL_TARGETS,
    LOG_RATIO_CAP_HELP,
    ClipHParams,
    check_kl,
    hp_field,
)
from workbench.methods.spec import MethodSpec


@dataclass(frozen=True)
class DrGrpoHParams:
    """Dr. GRPO: GRPO's clip, the centred (not standardised) advantage, a constant token normaliser."""

    eps_low: float = hp_field(0.2, EPS_LOW_HELP)
    eps_high: float = hp_field(0.2, EPS_HIGH_HELP)
    clip_mode: Literal["vanilla", "bidirectional", "none"] = hp_field("vanilla", CLIP_MODE_HELP, CLIP_MODES)
    dual_clip: float | None = hp_field(None, DUAL_CLIP_HELP)
    max_tokens: int | None = hp_field(
        None,
        "constant token normaliser L_max (the trainer: --max-new-tokens; unset: the padded width)",
        from_config="max_new_tokens",
    )
    kl_beta: float = hp_field(0.0, KL_BETA_HELP)
    kl_target: Literal["ref", "old"] = hp_field("ref", KL_TARGET_HELP, KL_TARGETS)
    log_ratio_cap: float | None = hp_field(20.0, LOG_RATIO_CAP_HELP)

    def __post_init__(self) -> None:
        ClipHParams(
            eps_low=self.eps_low, eps_high=self.eps_high, clip_mode=self.clip_mode, dual_clip=self.dual_clip,
            log_ratio_cap=self.log_ratio_cap,
        )  # fmt: skip  # the shared clip settings, checked as GRPO checks them
        if self.max_tokens is not None and not (isinstance(self.max_tokens, int) and self.max_tokens >= 1):
            raise ValueError(f"max_tokens must be an integer >= 1 or None, got {self.max_tokens!r}")
        check_kl(self.kl_beta, self.kl_target)


def centred_advantages(rewards: Tensor, layout: GroupLayout) -> Tensor:
    """``A_i = r_i - mean_g r``: the group baseline without the std division (a group of one gets 0)."""
    mean = layout.group_sum(rewards) / layout.sizes.to(rewards.dtype)
    return rewards - layout.broadcast(mean)


def _normaliser(batch: RolloutBatch, hp: DrGrpoHParams) -> float:
    """``B * L_max``: rollouts times ``max_tokens`` (or the batch's padded width ``T``)."""
    width = hp.max_tokens if hp.max_tokens is not None else batch.s.shape[1]
    return float(batch.n_rollouts * width)


def divides_by(hp: DrGrpoHParams) -> str:
    """``B * L_max``: a mean over rollouts when ``L_max`` is a constant; the padded width is the batch's own."""
    return "rollouts" if hp.max_tokens is not None else "window"


def dr_grpo_objective(batch: RolloutBatch, hp: DrGrpoHParams) -> ObjectiveResult:
    """``sum_{i,t} max(-A rho, -A clip(rho)) / (B L_max)`` + the KL penalty aggregated the same way."""
    adv = centred_advantages(batch.rewards, batch.layout)
    token_loss, ratio = ppo_token_loss(adv.unsqueeze(1), batch.s, hp)  # type: ignore[arg-type]
    norm = _normaliser(batch, hp)

    def constant_norm(values: Tensor, b: RolloutBatch) -> Tensor:  # sum over response tokens / (B L_max)
        return torch.where(b.mask, values, torch.zeros_like(values)).sum() / norm

    pg = constant_norm(token_loss, batch)
    kl = kl_penalty(batch, hp.kl_beta, hp.kl_target, constant_norm)
    return finish(pg + kl, pg, kl, clip_stats(batch, adv, ratio, hp), batch, hp)  # type: ignore[arg-type]


def dr_grpo_closed_form(batch: RolloutBatch, hp: DrGrpoHParams) -> GradientBreakdown:
    """``dL/dlogp_t = -A rho_t I_t / (B L_max)`` (+ KL), ``A = r - mean``."""
    adv = centred_advantages(batch.rewards, batch.layout)
    scale = batch.mask.to(batch.s.dtype) / _normaliser(batch, hp)
    return clip_breakdown(batch, batch.s.detach(), adv, hp, scale)  # type: ignore[arg-type]


DR_GRPO = MethodSpec(
    name="dr_grpo",
    family="clip",
    label="Dr. GRPO",
    color="#e377c2",
    defaults=DrGrpoHParams(),
    objective=dr_grpo_objective,
    closed_form=dr_grpo_closed_form,
    curve=clip_curve,  # type: ignore[arg-type]
    summary="|A| e^{s_t} I_clip with A = r - mean (no std) and one constant normaliser B * L_max",
    kinks=clip_kinks,  # type: ignore[arg-type]
    divides_by=divides_by,
)
SPECS = (DR_GRPO,)
