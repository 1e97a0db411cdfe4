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
  ``C- = 1 + sum_{j != k} e^{-s_j/tau}`` for wrong ones), 0 in a group REAL leaves out, as every other weight.
  It disagrees with autograd: both sign slips are kept here only to show the erratum.

``rollout_arithmetic(s_bar, correct, k, method, hparams)`` spells out Eq. 9/10 for one rollout of a group (the
terms of its C, the sign of the exponent), for a REAL-family method, with C and W from the closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
            # the appendix's form, in the groups REAL keeps (a group of one label is left out: weight 0)
            "appendix_weight": np.where(
                real.used.numpy(), appendix_printed_weight(s.squeeze(1).numpy(), pos, tau), 0.0
            ),
            "used": real.used.numpy(),
        }
    )


# ----------------------------------------------------------------------------------------------- one rollout's Eq. 9/10

# The REAL-family methods whose C the arithmetic below spells out (``workbench.methods.real``'s variants).
C_FORMS = {"real": "real", "real_bce": "bce", "real_no_anchor": "no_anchor"}


@dataclass(frozen=True)
class RolloutArithmetic:
    """Eq. 9/10 for rollout ``k`` of one group, term by term (REAL family), for showing the arithmetic.

    ``sign`` is the sign of the exponent in ``e^{sign * s_bar_k / tau}``: +1 for a correct rollout (r = 1), -1 for
    a wrong one (r = 0). ``same`` holds the other rollouts of k's class as ``(rollout, s_bar, e^{-sign * s_bar /
    tau})``: the terms of C's sum. ``other`` (REAL w/o anchor only) holds the other class's rollouts as
    ``(rollout, s_bar, e^{sign * s_bar / tau})``, whose sum M enters C as ``1 / M``. ``anchor`` is the anchor's
    1 in C (REAL), 0 (w/o anchor), and BCE has ``C = 1`` with no terms. ``c`` and ``weight`` come from the
    method's closed form (``workbench.closed_forms.token_gradient``), not from these terms; ``c_from_terms``
    and ``weight_from_terms`` redo the sum shown on screen (in logs: a term beyond float range shows as infinite and
    enters with its limit), and agree with them to float precision.
    """

    method: str
    k: int
    s_bar: float
    positive: bool
    tau: float
    sign: int
    anchor: float
    same: list[tuple[int, float, float]]
    other: list[tuple[int, float, float]]
    used: bool
    c: float
    weight: float

    @property
    def exp_term(self) -> float:
        """``e^{sign * s_bar_k / tau}`` (``inf`` beyond float range)."""
        return _exp(self.sign * self.s_bar / self.tau)

    @property
    def log_c_from_terms(self) -> float:
        """``log C`` from the terms shown, summed in logs (a term may be too large for a float)."""
        if self.method == "real_bce":
            return 0.0
        same = [-self.sign * s / self.tau for _, s, _ in self.same]
        if self.method == "real_no_anchor":  # 1 / M, M the other class's mass: C = inf without that class
            if not self.other:
                return math.inf
            inv_m = -_logsumexp([self.sign * s / self.tau for _, s, _ in self.other])
            return _logsumexp([*same, inv_m])
        return _logsumexp([math.log(self.anchor), *same])  # the anchor's 1 is e^0

    @property
    def c_from_terms(self) -> float:
        return _exp(self.log_c_from_terms)

    @property
    def log_denominator(self) -> float:
        """``log(1 + C e^{sign * s_bar_k / tau})``."""
        return float(np.logaddexp(0.0, self.log_c_from_terms + self.sign * self.s_bar / self.tau))

    @property
    def denominator(self) -> float:
        """``1 + C e^{sign * s_bar_k / tau}`` (``inf`` beyond float range)."""
        return _exp(self.log_denominator)

    @property
    def weight_from_terms(self) -> float:
        return (1.0 / self.tau) * math.exp(-self.log_denominator) if self.used else 0.0


def _exp(x: float) -> float:
    """``e^x``, ``inf`` where that exceeds a float (``math.exp`` raises instead)."""
    return math.exp(x) if x < 709.0 else math.inf


def _logsumexp(xs: list[float]) -> float:
    return float(np.logaddexp.reduce(np.asarray(xs, dtype=float))) if xs else -math.inf


def rollout_arithmetic(
    s_bar: list[float] | np.ndarray,
    correct: list[bool] | np.ndarray,
    k: int,
    method: str = "real",
    hparams: dict[str, Any] | None = None,
) -> RolloutArithmetic:
    """Eq. 9/10 for rollout ``k`` (a position in ``s_bar``) of one group with logged ``s_bar`` and labels, under
    REAL-family ``method`` with ``hparams`` (tau, group_filter; the rest does not change ``W_k``).

    ``c`` and ``weight`` come from ``token_gradient(method, ...)`` on the group laid out as one token per rollout
    (``s_t = s_bar``), so they are the closed form the trainer logs; in a group the method leaves out
    (``group_filter="mixed"`` and one label only) ``used`` is False and the weight is 0.
    Raises ``ValueError`` for a method outside the REAL family, or ``k`` outside the group."""
    if method not in C_FORMS:
        raise ValueError(f"Eq. 9/10 are REAL-family weights; {method!r} is not one of {', '.join(C_FORMS)}")
    s = np.asarray(s_bar, dtype=float)
    pos = np.asarray(correct, dtype=bool)
    if s.size != pos.size or s.size == 0:
        raise ValueError(f"need one label per rollout, got {s.size} s_bar values and {pos.size} labels")
    if not 0 <= k < s.size:
        raise ValueError(f"rollout position {k} is outside the group of {s.size}")
    hp = {**(hparams or {}), "kl_beta": 0.0}
    tau = float(hp.get("tau", DEFAULTS[method].tau))
    grid = torch.tensor(s, dtype=torch.float64).unsqueeze(1)
    old = torch.full_like(grid, -20.0)
    bd = token_gradient(
        method, old + grid, old, torch.ones_like(grid, dtype=torch.bool), torch.tensor(pos, dtype=torch.float64),
        torch.zeros(s.size, dtype=torch.long), **hp,
    )  # fmt: skip
    assert bd.log_c is not None
    sign = 1 if pos[k] else -1
    idx = [i for i in range(s.size) if i != k]
    same = [(i, float(s[i]), _exp(-sign * s[i] / tau)) for i in idx if pos[i] == pos[k]]
    other = [(i, float(s[i]), _exp(sign * s[i] / tau)) for i in idx if pos[i] != pos[k]]
    form = C_FORMS[method]
    return RolloutArithmetic(
        method=method,
        k=k,
        s_bar=float(s[k]),
        positive=bool(pos[k]),
        tau=tau,
        sign=sign,
        anchor=1.0 if form == "real" else 0.0,
        same=same if form != "bce" else [],
        other=other if form == "no_anchor" else [],
        used=bool(bd.used[k]),
        c=float(torch.exp(bd.log_c[k])),
        weight=float(bd.rollout_weight[k]),
    )
