"""GRPO, DAPO and GSPO (the PPO-clip family): their specs, objectives, closed forms and Fig. 1 curves.

Objective (Eq. 1), per token: ``max(-A rho, -A clip(rho, 1 - eps_low, 1 + eps_high))`` with the group-normalised
advantage ``A`` and the ratio ``rho = e^{s_t}`` (GSPO: one ratio per rollout, ``e^{s_bar}``), aggregated by
``loss_agg``, plus an optional k3 KL penalty. Closed form (Eq. 3): ``dL/dlogp_t = -A rho I_clip * agg_t``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from workbench.batch import RolloutBatch
from workbench.groups import group_advantages
from workbench.methods.common import (
    GradientBreakdown,
    ObjectiveResult,
    aggregate,
    aggregation_scale,
    finish,
    kl_gradient,
    kl_penalty,
)
from workbench.methods.hparams import ClipHParams
from workbench.methods.spec import CurveScenario, MethodSpec

GRPO_DEFAULTS = ClipHParams()
DAPO_DEFAULTS = ClipHParams(eps_low=0.2, eps_high=0.28, loss_agg="token-mean", kl_beta=0.0)
GSPO_DEFAULTS = ClipHParams(eps_low=3e-4, eps_high=4e-4, kl_beta=0.0, log_ratio_cap=10.0)


def _is_torch(*xs: object) -> bool:
    return any(isinstance(x, Tensor) for x in xs)


# ----------------------------------------------------------------------------------------------- elementwise forms


def keep_indicator(
    log_ratio: np.ndarray | Tensor,
    advantage: np.ndarray | Tensor | float,
    eps_low: float = GRPO_DEFAULTS.eps_low,
    eps_high: float = GRPO_DEFAULTS.eps_high,
    clip_mode: str = "vanilla",
    dual_clip: float | None = None,
    log_ratio_cap: float | None = None,
) -> np.ndarray | Tensor:
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
    s: np.ndarray | Tensor,
    advantage: np.ndarray | Tensor | float = 1.0,
    eps_low: float = GRPO_DEFAULTS.eps_low,
    eps_high: float = GRPO_DEFAULTS.eps_high,
    clip_mode: str = "vanilla",
    dual_clip: float | None = None,
) -> np.ndarray | Tensor:
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
    s_bar: np.ndarray | Tensor,
    advantage: np.ndarray | Tensor | float = 1.0,
    eps_low: float = GSPO_DEFAULTS.eps_low,
    eps_high: float = GSPO_DEFAULTS.eps_high,
    clip_mode: str = "vanilla",
) -> np.ndarray | Tensor:
    """GSPO: ``|A| e^{s_bar}`` for a sequence whose ratio ``e^{s_bar}`` is not clipped, else 0.

    Each token of the sequence receives this weight divided by ``|o|``.
    """
    return grpo_token_weight(s_bar, advantage, eps_low, eps_high, clip_mode)


def clip_curve(s: np.ndarray, positive: bool, hp: ClipHParams, sc: CurveScenario) -> np.ndarray:
    """Fig. 1: ``|A| e^{s} I_clip(s)`` with ``A = +-|A|`` (the dual clip and the log-ratio cap left out)."""
    a = sc.advantage if positive else -sc.advantage
    return np.asarray(grpo_token_weight(s, a, hp.eps_low, hp.eps_high, hp.clip_mode), dtype=float)


def divides_by_loss_agg(hp: ClipHParams) -> str:
    """``token-mean`` divides by the mini-batch's response tokens, ``seq-mean-token-mean`` by its rollouts."""
    return "tokens" if hp.loss_agg == "token-mean" else "rollouts"


def clip_kinks(hp: ClipHParams) -> tuple[float, ...]:
    """The clip boundaries ``log(1 - eps_low)`` and ``log(1 + eps_high)``, where the surrogate has a kink."""
    return () if hp.clip_mode == "none" else (math.log1p(-hp.eps_low), math.log1p(hp.eps_high))


# ----------------------------------------------------------------------------------------------- objective


def ppo_token_loss(a: Tensor, log_ratio: Tensor, hp: ClipHParams) -> tuple[Tensor, Tensor]:
    """``(token_loss, rho)``: the clipped surrogate ``max(-A rho, -A clip(rho, 1-eps_low, 1+eps_high))``
    (``vanilla``), the unclipped term inside the interval and the clipped one outside (``bidirectional``), or
    ``-A rho`` (``none``); with the dual clip ``min(., -A c)`` for ``A < 0``. ``a`` is ``[B, 1]``."""
    if hp.log_ratio_cap is not None:
        log_ratio = torch.clamp(log_ratio, -hp.log_ratio_cap, hp.log_ratio_cap)
    ratio = torch.exp(log_ratio)
    lo, hi = 1 - hp.eps_low, 1 + hp.eps_high
    unclipped = -a * ratio
    clipped = -a * torch.clamp(ratio, lo, hi)
    if hp.clip_mode == "vanilla":
        token_loss = torch.maximum(unclipped, clipped)
    elif hp.clip_mode == "bidirectional":
        token_loss = torch.where((ratio >= lo) & (ratio <= hi), unclipped, clipped)
    else:
        token_loss = unclipped
    if hp.dual_clip is not None:
        token_loss = torch.where(a < 0, torch.minimum(token_loss, -a * hp.dual_clip), token_loss)
    return token_loss, ratio


def clip_stats(batch: RolloutBatch, adv: Tensor, ratio: Tensor, hp: ClipHParams) -> dict[str, Tensor]:
    """Clip fractions (of response tokens with ``A != 0`` whose ratio is clipped), the mean ratio, ``mean |A|``
    and the groups with and without a non-zero advantage."""
    with torch.no_grad():
        a = adv.unsqueeze(1)
        r = ratio.detach()
        lo, hi = 1 - hp.eps_low, 1 + hp.eps_high
        active = batch.mask & (a != 0)
        low_side = (a < 0) if hp.clip_mode == "vanilla" else torch.ones_like(active)
        high_side = (a > 0) if hp.clip_mode == "vanilla" else torch.ones_like(active)
        clip_on = hp.clip_mode != "none"
        low = active & low_side & (r < lo) & clip_on
        high = active & high_side & (r > hi) & clip_on
        n_tok = batch.lengths.sum()
        used = batch.layout.group_sum(adv.abs()) > 0
        return {
            "clip_frac_low": low.sum() / n_tok,
            "clip_frac_high": high.sum() / n_tok,
            "clip_frac": (low | high).sum() / n_tok,
            "ratio_mean": torch.where(batch.mask, r, torch.zeros_like(r)).sum() / n_tok,
            "adv_abs_mean": adv.abs().mean(),
            "groups_used": used.sum(),
            "groups_skipped": (~used).sum(),
        }


def _clip_objective(batch: RolloutBatch, log_ratio: Tensor, hp: ClipHParams) -> ObjectiveResult:
    adv = group_advantages(batch.rewards, batch.layout, hp.adv_eps)
    token_loss, ratio = ppo_token_loss(adv.unsqueeze(1), log_ratio, hp)
    pg = aggregate(token_loss, batch, hp.loss_agg)
    kl = kl_penalty(batch, hp.kl_beta, hp.kl_target, hp.loss_agg)
    return finish(pg + kl, pg, kl, clip_stats(batch, adv, ratio, hp), batch, hp)


def token_ratio_objective(batch: RolloutBatch, hp: ClipHParams) -> ObjectiveResult:
    """GRPO / DAPO (Eq. 1): token ratio ``rho_t = e^{s_t}``."""
    return _clip_objective(batch, batch.s, hp)


def sequence_ratio_objective(batch: RolloutBatch, hp: ClipHParams) -> ObjectiveResult:
    """GSPO: one ratio per rollout ``e^{s_bar}``. Token form ``s_{i,t} = sg[s_bar_i] + log pi(o_t) - sg[log pi(o_t)]``:
    its value is ``s_bar_i`` and its gradient reaches every token, so seq-mean-token-mean gives
    ``-A e^{s_bar} / |o|`` per token."""
    seq = batch.s_bar.detach().unsqueeze(1) + batch.logp - batch.logp.detach()
    return _clip_objective(batch, seq, hp)


# ----------------------------------------------------------------------------------------------- closed form


def clip_breakdown(
    batch: RolloutBatch, log_ratio: Tensor, adv: Tensor, hp: ClipHParams, scale: Tensor
) -> GradientBreakdown:
    """``dL/dlogp_t = -A rho I_t * scale_t`` (+ the KL term), ``scale = d(agg)/d(token loss)``; the paper's token
    weight is ``|A| rho I / |o|``. ``log_ratio`` is ``[B, T]`` (GSPO: ``s_bar`` on every token)."""
    a = adv.unsqueeze(1)
    keep = keep_indicator(log_ratio, a, hp.eps_low, hp.eps_high, hp.clip_mode, hp.dual_clip, hp.log_ratio_cap)
    keep = keep & batch.mask
    coeff = torch.where(keep, a * torch.exp(log_ratio), torch.zeros_like(batch.s))  # A rho I
    grad_kl = kl_gradient(batch, hp.kl_beta, hp.kl_target, scale)
    token_weight = coeff.abs() / batch.lengths.unsqueeze(1)
    return GradientBreakdown(
        grad=-coeff * scale + grad_kl,
        token_weight=token_weight,
        rollout_weight=token_weight.sum(1),
        keep=keep,
        used=batch.layout.broadcast(batch.layout.group_sum(adv.abs()) > 0),
        advantage=adv,
        log_c=None,
        s_bar=batch.s_bar.detach(),
        grad_kl=grad_kl,
    )


def token_ratio_closed_form(batch: RolloutBatch, hp: ClipHParams) -> GradientBreakdown:
    adv = group_advantages(batch.rewards, batch.layout, hp.adv_eps)
    return clip_breakdown(batch, batch.s.detach(), adv, hp, aggregation_scale(batch, hp.loss_agg))


def sequence_ratio_closed_form(batch: RolloutBatch, hp: ClipHParams) -> GradientBreakdown:
    adv = group_advantages(batch.rewards, batch.layout, hp.adv_eps)
    log_ratio = batch.s_bar.detach().unsqueeze(1).expand_as(batch.s)
    return clip_breakdown(batch, log_ratio, adv, hp, aggregation_scale(batch, hp.loss_agg))


# ----------------------------------------------------------------------------------------------- specs

_COMMON = {"family": "clip", "curve": clip_curve, "kinks": clip_kinks, "divides_by": divides_by_loss_agg}

GRPO = MethodSpec(
    name="grpo",
    label="GRPO",
    color="#d62728",
    defaults=GRPO_DEFAULTS,
    objective=token_ratio_objective,
    closed_form=token_ratio_closed_form,
    summary="|A| e^{s_t} I_clip, per-rollout token mean, KL to the reference (Eq. 1, 3)",
    **_COMMON,
)
DAPO = MethodSpec(
    name="dapo",
    label="DAPO",
    color="#ff7f0e",
    defaults=DAPO_DEFAULTS,
    objective=token_ratio_objective,
    closed_form=token_ratio_closed_form,
    summary="GRPO's weight with a higher upper clip bound (clip-higher), token mean over the mini-batch, no KL",
    **_COMMON,
)
GSPO = MethodSpec(
    name="gspo",
    label="GSPO",
    color="#2ca02c",
    defaults=GSPO_DEFAULTS,
    objective=sequence_ratio_objective,
    closed_form=sequence_ratio_closed_form,
    summary="|A| e^{s_bar} I_clip: one ratio per rollout, in a narrow clip range",
    ratio="sequence",
    **_COMMON,
)
SPECS = (GRPO, DAPO, GSPO)
