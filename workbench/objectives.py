"""Differentiable objectives (losses to minimise) of GRPO, DAPO, GSPO and the REAL family.

Every objective takes one (mini-)batch of rollouts::

    OBJECTIVES[name](logp, old_logp, mask, rewards, group_ids, ref_logp=None, **hparams) -> ObjectiveResult

- ``logp``, ``old_logp``: ``[B, T]`` log-probs of the sampled tokens under the current and the old policy;
- ``mask``: ``[B, T]``, 1 on response tokens; ``rewards``: ``[B]`` (0/1 for the REAL family);
- ``group_ids``: ``[B]`` ints, the prompt each rollout answers (groups may have unequal sizes, any order);
- ``ref_logp``: ``[B, T]`` reference-policy log-probs, needed only for a KL penalty to the reference;
- ``hparams``: keyword overrides of the paper's defaults in ``workbench.methods.DEFAULTS``.

The gradient of each loss with respect to ``logp`` equals ``workbench.closed_forms.token_gradient`` (tested on
random batches). This module does not use the closed forms: each loss is written as its equation, and autograd
is the judge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from workbench.batch import RolloutBatch, prepare_batch
from workbench.groups import group_advantages, masked_logsumexp, real_group_usage, real_normaliser
from workbench.methods import ClipHParams, RealHParams, resolve_hparams


@dataclass
class ObjectiveResult:
    """``loss``: scalar tensor to minimise. ``metrics``: floats (clip fractions, KL, groups used, ...).

    ``batch`` and ``hparams`` are what the loss was computed from, for logging the closed-form weights
    (``workbench.closed_forms.breakdown_from_batch``) without redoing the validation.
    """

    loss: Tensor
    metrics: dict[str, float]
    batch: RolloutBatch
    hparams: ClipHParams | RealHParams


def _aggregate(token_loss: Tensor, batch: RolloutBatch, loss_agg: str) -> Tensor:
    """``token-mean``: ``sum(l * m) / sum(m)``; ``seq-mean-token-mean``: ``mean_k( sum_t l m / |o^k| )``."""
    masked = torch.where(batch.mask, token_loss, torch.zeros_like(token_loss))
    if loss_agg == "token-mean":
        return masked.sum() / batch.lengths.sum()
    return (masked.sum(1) / batch.lengths).mean()


def _kl_penalty(batch: RolloutBatch, kl_beta: float, kl_target: str, loss_agg: str) -> Tensor:
    """``beta * agg(k3)``, ``k3 = e^{q - p} - (q - p) - 1`` with ``q`` the reference or old log-prob (Schulman's k3)."""
    if kl_beta == 0:
        return batch.logp.new_zeros(())
    target = batch.old_logp if kl_target == "old" else batch.ref_logp
    if target is None:
        raise ValueError(
            "kl_beta > 0 with kl_target='ref' needs ref_logp; pass ref_logp, kl_target='old' or kl_beta=0"
        )
    d = torch.where(batch.mask, target - batch.logp, torch.zeros_like(batch.logp))
    return kl_beta * _aggregate(torch.exp(d) - d - 1, batch, loss_agg)


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


def _finish(
    loss: Tensor, pg: Tensor, kl: Tensor, stats: dict[str, Tensor], batch: RolloutBatch, hp: Any
) -> ObjectiveResult:
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


# ----------------------------------------------------------------------------------------------- clip family


def _ppo_clip_loss(batch: RolloutBatch, log_ratio: Tensor, hp: ClipHParams) -> ObjectiveResult:
    """PPO-clip surrogate ``max(-A rho, -A clip(rho, 1-eps_low, 1+eps_high))`` per token (Eq. 1), aggregated."""
    adv = group_advantages(batch.rewards, batch.layout, hp.adv_eps)
    a = adv.unsqueeze(1)
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
    pg = _aggregate(token_loss, batch, hp.loss_agg)
    kl = _kl_penalty(batch, hp.kl_beta, hp.kl_target, hp.loss_agg)

    with torch.no_grad():
        r = ratio.detach()
        active = batch.mask & (a != 0)
        low_side = (a < 0) if hp.clip_mode == "vanilla" else torch.ones_like(active)
        high_side = (a > 0) if hp.clip_mode == "vanilla" else torch.ones_like(active)
        clip_on = hp.clip_mode != "none"
        low = active & low_side & (r < lo) & clip_on
        high = active & high_side & (r > hi) & clip_on
        n_tok = batch.lengths.sum()
        used = batch.layout.group_sum(adv.abs()) > 0
        stats = {
            "clip_frac_low": low.sum() / n_tok,
            "clip_frac_high": high.sum() / n_tok,
            "clip_frac": (low | high).sum() / n_tok,
            "ratio_mean": torch.where(batch.mask, r, torch.zeros_like(r)).sum() / n_tok,
            "adv_abs_mean": adv.abs().mean(),
            "groups_used": used.sum(),
            "groups_skipped": (~used).sum(),
        }
    return _finish(pg + kl, pg, kl, stats, batch, hp)


def grpo(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> ObjectiveResult:
    """GRPO (Eq. 1): group-normalised advantage, token ratio ``rho_t = e^{s_t}``, PPO clip (eps 0.2),
    per-rollout token mean then mean over rollouts, k3 KL to the reference with beta = 0.001."""
    hp = resolve_hparams("grpo", hparams)
    batch = prepare_batch(logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp)
    return _ppo_clip_loss(batch, batch.s, hp)


def dapo(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> ObjectiveResult:
    """DAPO's objective: GRPO's surrogate with clip-higher (eps_low 0.2, eps_high 0.28), token-mean over the
    whole mini-batch, no KL. (DAPO's dynamic sampling and overlong shaping act on the data, not the loss.)"""
    hp = resolve_hparams("dapo", hparams)
    batch = prepare_batch(logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp)
    return _ppo_clip_loss(batch, batch.s, hp)


def gspo(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> ObjectiveResult:
    """GSPO: one ratio per rollout ``e^{s_bar}`` (mean token log-ratio), clipped to ``[1-3e-4, 1+4e-4]``.

    Token form ``s_{i,t} = sg[s_bar_i] + log pi(o_t) - sg[log pi(o_t)]``: its value is ``s_bar_i`` and its
    gradient reaches every token, so seq-mean-token-mean gives ``-A e^{s_bar} / |o|`` per token."""
    hp = resolve_hparams("gspo", hparams)
    batch = prepare_batch(logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp)
    seq = batch.s_bar.detach().unsqueeze(1) + batch.logp - batch.logp.detach()
    return _ppo_clip_loss(batch, seq, hp)


# ----------------------------------------------------------------------------------------------- REAL family


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
    kl = _kl_penalty(batch, hp.kl_beta, hp.kl_target, "token-mean")
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
    return _finish(pg + kl, pg, kl, stats, batch, hp)


def real(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> ObjectiveResult:
    """REAL (Eq. 8), per group: ``log(1 + sum_{O+} e^{-s_bar/tau}) + log(1 + sum_{O-} e^{s_bar/tau})``.

    Each term is a logsumexp over the group's logits and the zero anchor logit (``log(1 + ...) = LSE(0, ...)``),
    so it is exact for any ``|s_bar| / tau``. tau = 0.5; groups mixing labels only; the sum over them divided by
    the prompts of the mini-batch (the authors' code)."""
    hp = resolve_hparams("real", hparams)
    batch = prepare_batch(logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp, binary_rewards=True)
    assert isinstance(hp, RealHParams)
    x, pos, neg = _real_grid(batch, hp.tau)
    anchor = x.new_zeros(x.shape[0], 1)
    ninf = torch.full_like(x, -torch.inf)
    loss_pos = torch.logsumexp(torch.cat([anchor, torch.where(pos, -x, ninf)], 1), 1)
    loss_neg = torch.logsumexp(torch.cat([anchor, torch.where(neg, x, ninf)], 1), 1)
    return _real_finish(loss_pos + loss_neg, batch, hp)


def real_no_anchor(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> ObjectiveResult:
    """REAL without anchor (Eq. 2 on S+ and S-): ``log(1 + sum_{O-} e^{s_bar/tau} sum_{O+} e^{-s_bar/tau})``
    ``= softplus(LSE_{O-}(s_bar/tau) + LSE_{O+}(-s_bar/tau))``; a group lacking one label has loss 0."""
    hp = resolve_hparams("real_no_anchor", hparams)
    batch = prepare_batch(logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp, binary_rewards=True)
    assert isinstance(hp, RealHParams)
    x, pos, neg = _real_grid(batch, hp.tau)
    both = pos.any(1) & neg.any(1)
    z = masked_logsumexp(x, neg) + masked_logsumexp(-x, pos)
    z = torch.where(both, z, torch.zeros_like(z))
    group_loss = torch.where(both, torch.logaddexp(torch.zeros_like(z), z), torch.zeros_like(z))
    return _real_finish(group_loss, batch, hp)


def real_bce(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> ObjectiveResult:
    """REAL with BCE (Eq. 11): ``-sum_{O+} log sigmoid(s_bar/tau) - sum_{O-} log(1 - sigmoid(s_bar/tau))``
    per group, i.e. ``BCE_with_logits(s_bar/tau, r)`` summed over the group's rollouts.

    Normalisation (``normalize``): by default (``rollouts``, the authors' code) the kept groups' sums are divided
    by the number of their rollouts, which is ``BCE_with_logits(s_bar/tau, r, reduction='mean')`` over the
    rollouts of the mixed groups; ``prompts`` divides by the prompts of the mini-batch instead (Eq. 11 per
    group, averaged over prompts, as REAL itself is). No kept group: loss 0."""
    hp = resolve_hparams("real_bce", hparams)
    batch = prepare_batch(logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp, binary_rewards=True)
    assert isinstance(hp, RealHParams)
    per_rollout = torch.nn.functional.binary_cross_entropy_with_logits(
        batch.s_bar / hp.tau, batch.rewards, reduction="none"
    )
    return _real_finish(batch.layout.group_sum(per_rollout), batch, hp)


Objective = Callable[..., ObjectiveResult]

OBJECTIVES: dict[str, Objective] = {
    "grpo": grpo,
    "dapo": dapo,
    "gspo": gspo,
    "real": real,
    "real_bce": real_bce,
    "real_no_anchor": real_no_anchor,
}


def get_objective(name: str) -> Objective:
    """``OBJECTIVES[name]`` with a ValueError listing the choices for an unknown name."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
