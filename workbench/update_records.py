"""What one objective call contributes to the run directory: its rollout rows and token rows.

Every writer of run directories (the built-in trainer, the verl and TRL hooks) calls a ``workbench.objectives``
function on a (mini- or micro-)batch and hands the ``ObjectiveResult`` here. ``update_records`` evaluates the
closed-form breakdown once (``workbench.closed_forms.breakdown_from_batch``) and flattens it through the response
mask, vectorised, into columns of ``ROLLOUTS_SCHEMA`` and ``TOKENS_SCHEMA`` (docs/run_format.md).

Conventions (the same for every writer):

- ``grad`` is ``scale * dL/dlogp`` without the KL term, ``grad_kl`` the KL term's share (only when a KL penalty is
  on); ``scale`` is the factor the writer multiplies the objective by (1 for the built-in trainer), so ``grad`` is
  the exact gradient of the loss the optimizer saw.
- ``log_c`` is null for the clip family and where it is infinite (REAL without anchor, a group lacking one label:
  ``C = inf``, weight 0).
- ``ratio`` is ``e^{min(s, 80)}`` so float32 cannot overflow; ``s`` keeps the exact value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from workbench.closed_forms import breakdown_from_batch
from workbench.objectives import ObjectiveResult

RATIO_LOG_CAP = 80.0  # e^80 ~ 5.5e34 still fits float32; the tokens table refuses inf


def _np(x: torch.Tensor) -> np.ndarray:
    """To numpy, keeping float32/float64 (half precision widens to float32)."""
    x = x.detach()
    return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).cpu().numpy()


def update_records(
    method: str,
    result: ObjectiveResult,
    *,
    rollout_index: Sequence[int] | np.ndarray,
    minibatch: int | Sequence[int],
    scale: float = 1.0,
    entropy: torch.Tensor | None = None,
    token_ids: torch.Tensor | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Rollout and token columns of one objective call.

    ``rollout_index[b]``: row b's index within the step (``rollouts.rollout``); ``minibatch``: the update's index
    (one value, or one per row). ``entropy`` and ``token_ids`` (``[B, T]``) are copied onto the token rows.

    Returns ``(rollouts, tokens)``: rollouts hold ``rollout, minibatch, s_bar, advantage, weight, log_c, used``;
    tokens hold ``rollout, pos, minibatch, old_logp, logp, s, ratio, weight, grad, keep`` (+ ``grad_kl``,
    ``entropy``, ``token_id`` when available).
    """
    batch, hp = result.batch, result.hparams
    bd = breakdown_from_batch(method, batch, hp)
    kl = bd.grad_kl
    n = batch.n_rollouts
    rollout = np.asarray(rollout_index, dtype=np.int64)
    if rollout.shape != (n,):
        raise ValueError(f"rollout_index has {rollout.shape} entries for {n} rollouts")
    mb = np.broadcast_to(np.asarray(minibatch, dtype=np.int64), (n,)).copy()
    nan = np.full(n, np.nan, dtype=np.float64)
    log_c = _np(bd.log_c) if bd.log_c is not None else nan.copy()
    log_c[~np.isfinite(log_c)] = np.nan
    rollouts = {
        "rollout": rollout,
        "minibatch": mb,
        "s_bar": _np(bd.s_bar),
        "advantage": _np(bd.advantage) if bd.advantage is not None else nan,
        "weight": _np(bd.rollout_weight),
        "log_c": log_c,
        "used": _np(bd.used).astype(bool),
    }
    mask = batch.mask
    rows, pos = torch.nonzero(mask, as_tuple=True)
    rows_np = _np(rows)
    s = batch.s.detach()[mask]
    tokens = {
        "rollout": rollout[rows_np],
        "pos": _np(pos).astype(np.int32),
        "minibatch": mb[rows_np],
        "old_logp": _np(batch.old_logp[mask]),
        "logp": _np(batch.logp[mask]),
        "s": _np(s),
        "ratio": _np(torch.exp(s.clamp(max=RATIO_LOG_CAP))),
        "weight": _np(bd.token_weight[mask]),
        "grad": _np(((bd.grad - kl) * scale)[mask]),
        "keep": _np(bd.keep[mask]).astype(bool),
    }
    if getattr(hp, "kl_beta", 0) > 0:
        tokens["grad_kl"] = _np((kl * scale)[mask])
    if entropy is not None:
        tokens["entropy"] = _np(entropy.to(mask.device)[mask])
    if token_ids is not None:
        tokens["token_id"] = _np(token_ids.to(mask.device)[mask])
    return rollouts, tokens
