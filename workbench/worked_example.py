"""A worked example for teaching: one prompt group, GRPO's and REAL's weights side by side, and the erratum.

``group_weights(s_bar, correct, tau, eps_low, eps_high)`` treats each rollout as one token with log-ratio
``s_bar`` (so ``s_t = s_bar``) and returns, per rollout:

- ``advantage``, ``grpo_weight``: GRPO's group-normalised advantage and ``|A| e^{s} I_clip`` (Eq. 3), from
  ``workbench.closed_forms.token_gradient("grpo", ...)`` (KL off);
- ``c``, ``real_weight``: REAL's ``C+`` (correct) or ``C-`` (wrong) and ``W = (1/tau) / (1 + C e^{+-s_bar/tau})``
  (Eq. 9/10), from ``token_gradient("real", ...)``;
- ``real_autograd``: ``|dL/ds_bar|`` of ``workbench.objectives.real`` by torch autograd (normalise ``sum``, so the
  group's loss is Eq. 8 itself);
- ``appendix_weight``: the appendix's Eq. 22-24 *as printed* (``1 + C e^{-s_bar/tau}`` for correct rollouts,
  ``C- = 1 + sum_{j != k} e^{-s_j/tau}`` for wrong ones). It disagrees with autograd: both sign slips are kept
  here only to show the erratum.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from workbench.closed_forms import token_gradient
from workbench.methods import DEFAULTS
from workbench.objectives import OBJECTIVES


def appendix_printed_weight(s_bar: np.ndarray, correct: np.ndarray, tau: float) -> np.ndarray:
    """Appendix Eq. 23 with Eq. 24, exactly as printed (wrong): ``(1/tau) / (1 + C e^{-s_bar/tau})`` for both
    labels, ``C+ = 1 + sum_{other correct} e^{-s_i/tau}`` and ``C- = 1 + sum_{other wrong} e^{-s_j/tau}``."""
    s = np.asarray(s_bar, dtype=float)
    pos = np.asarray(correct, dtype=bool)
    out = np.empty_like(s)
    for k in range(s.size):
        same = (pos == pos[k]) & (np.arange(s.size) != k)
        log_c = np.logaddexp.reduce(np.concatenate([[0.0], -s[same] / tau]))
        out[k] = (1 / tau) / (1 + math.exp(log_c - s[k] / tau))
    return out


def group_weights(
    s_bar: list[float] | np.ndarray,
    correct: list[bool] | np.ndarray,
    tau: float = DEFAULTS["real"].tau,
    eps_low: float = DEFAULTS["grpo"].eps_low,
    eps_high: float = DEFAULTS["grpo"].eps_high,
) -> pd.DataFrame:
    """Per-rollout weights of one group under GRPO and REAL (see the module docstring)."""
    s = torch.tensor(np.asarray(s_bar, dtype=float), dtype=torch.float64).unsqueeze(1)
    pos = np.asarray(correct, dtype=bool)
    if s.shape[0] != pos.size or pos.size == 0:
        raise ValueError(f"need one label per rollout, got {s.shape[0]} s_bar values and {pos.size} labels")
    rewards = torch.tensor(pos, dtype=torch.float64)
    ids = torch.zeros(pos.size, dtype=torch.long)
    mask = torch.ones_like(s, dtype=torch.bool)
    old = torch.full_like(s, -20.0)
    logp = old + s
    grpo = token_gradient(
        "grpo", logp, old, mask, rewards, ids, eps_low=eps_low, eps_high=eps_high, kl_beta=0.0
    )
    real = token_gradient("real", logp, old, mask, rewards, ids, tau=tau, normalize="sum")
    leaf = logp.clone().requires_grad_(True)
    loss = OBJECTIVES["real"](leaf, old, mask, rewards, ids, tau=tau, normalize="sum").loss
    (g,) = torch.autograd.grad(loss, leaf)
    assert grpo.advantage is not None and real.log_c is not None
    return pd.DataFrame(
        {
            "rollout": np.arange(pos.size),
            "correct": pos,
            "s_bar": s.squeeze(1).numpy(),
            "advantage": grpo.advantage.numpy(),
            "grpo_weight": grpo.rollout_weight.numpy(),
            "c": torch.exp(real.log_c).numpy(),
            "real_weight": real.rollout_weight.numpy(),
            "real_autograd": g.squeeze(1).abs().numpy(),
            "appendix_weight": appendix_printed_weight(s.squeeze(1).numpy(), pos, tau),
            "used": real.used.numpy(),
        }
    )
