"""Closed-form gradient weights of every registered method (paper Eq. 3, Eq. 9/10, and their BCE / no-anchor
analogues), at two levels:

1. Paper-level, elementwise, on numpy arrays or torch tensors (the type in is the type out):
   ``grpo_token_weight`` (Eq. 3: ``|A| e^{s_t} * I_clip``), ``gspo_sequence_weight`` and ``real_weight``
   (Eq. 9: ``(1/tau) / (1 + C e^{+-s_bar/tau})``); they live in their family's module of ``workbench.methods``.
2. Batch-level, torch: ``token_gradient(method, logp, old_logp, mask, rewards, group_ids, **hp)`` returns
   ``dL/dlogp`` for every token of a batch, exactly what autograd gives through ``workbench.objectives``,
   computed without autograd by the method's spec (``closed_form``), plus the per-rollout quantities (advantage,
   C, W) behind it (``GradientBreakdown``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from workbench.batch import RolloutBatch, prepare_batch
from workbench.methods import SPECS, check_method, resolve_hparams
from workbench.methods.clip import grpo_token_weight, gspo_sequence_weight, keep_indicator
from workbench.methods.common import GradientBreakdown, aggregation_scale, kl_gradient
from workbench.methods.real import log_sigmoid, real_log_c, real_weight, real_weight_c

__all__ = [
    "GradientBreakdown",
    "aggregation_scale",
    "breakdown_from_batch",
    "grpo_token_weight",
    "gspo_sequence_weight",
    "keep_indicator",
    "kl_gradient",
    "log_sigmoid",
    "real_log_c",
    "real_weight",
    "real_weight_c",
    "token_gradient",
]


def breakdown_from_batch(method: str, batch: RolloutBatch, hp: Any) -> GradientBreakdown:
    """``token_gradient`` on an already prepared batch."""
    with torch.no_grad():
        return SPECS[check_method(method)].closed_form(batch, hp)


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
    used groups, used groups, or 1). Plus the KL term when ``kl_beta > 0``. Other methods: see their module.
    """
    spec = SPECS[check_method(method)]
    hp = resolve_hparams(method, hparams)
    batch = prepare_batch(
        logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp, binary_rewards=spec.binary_rewards
    )
    return breakdown_from_batch(method, batch, hp)
