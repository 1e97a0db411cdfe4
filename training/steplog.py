"""Turn one RL step into the three tables of the run format (``workbench.runlog``), vectorised.

The loop hands over, per mini-batch update, the padded ``[n, T]`` arrays the objective saw and the closed-form
breakdown of its gradient (``workbench.closed_forms.breakdown_from_batch``); this module flattens them with the
response mask (no Python loop over tokens) and joins the per-rollout facts (prompt, response, reward, group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from workbench.closed_forms import GradientBreakdown, kl_gradient
from workbench.methods import HParams
from workbench.objectives import ObjectiveResult

RATIO_LOG_CAP = (
    80.0  # the logged ratio is e^min(s, 80) so float32 cannot overflow; ``s`` holds the exact value
)


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


def _finite_or_nan(x: np.ndarray) -> np.ndarray:
    """log C is +-inf where it is undefined (a no-anchor group lacking a label: such rollouts get no weight);
    the log holds null there."""
    return np.where(np.isfinite(x), x, np.nan).astype(np.float32)


@dataclass
class UpdateRecord:
    """What one mini-batch update saw and gave, for ``n`` rollouts padded to ``T`` tokens."""

    update: int  # index of the update within the step (epoch * n_minibatches + minibatch)
    epoch: int
    rows: np.ndarray  # [n] rollout indices within the step
    mask: np.ndarray  # [n, T] bool
    token_ids: np.ndarray  # [n, T]
    old_logp: np.ndarray
    logp: np.ndarray
    s: np.ndarray
    entropy: np.ndarray
    weight: np.ndarray  # closed-form per-token weight (see GradientBreakdown.token_weight)
    grad: np.ndarray  # exact dL/dlogp without the KL term
    grad_kl: np.ndarray | None  # the KL term's share of dL/dlogp, when a KL penalty is on
    keep: np.ndarray  # clip indicator
    s_bar: np.ndarray  # [n]
    rollout_weight: np.ndarray  # [n]
    advantage: np.ndarray  # [n], NaN for the REAL family
    log_c: np.ndarray  # [n], NaN for the clip family and where undefined
    used: np.ndarray  # [n] bool

    @classmethod
    def from_result(
        cls,
        update: int,
        epoch: int,
        rows: np.ndarray,
        token_ids: Tensor,
        entropy: Tensor,
        result: ObjectiveResult,
        breakdown: GradientBreakdown,
        hparams: HParams,
    ) -> UpdateRecord:
        b = result.batch
        kl = kl_gradient(b, hparams.kl_beta, hparams.kl_target, getattr(hparams, "loss_agg", "token-mean"))
        has_kl = hparams.kl_beta > 0
        n = len(rows)
        nan = np.full(n, np.nan, dtype=np.float32)
        return cls(
            update=update,
            epoch=epoch,
            rows=rows,
            mask=b.mask.cpu().numpy(),
            token_ids=token_ids.cpu().numpy(),
            old_logp=_np(b.old_logp),
            logp=_np(b.logp),
            s=_np(b.s),
            entropy=_np(entropy),
            weight=_np(breakdown.token_weight),
            grad=_np(breakdown.grad - kl),
            grad_kl=_np(kl) if has_kl else None,
            keep=breakdown.keep.cpu().numpy(),
            s_bar=_np(breakdown.s_bar),
            rollout_weight=_np(breakdown.rollout_weight),
            advantage=_np(breakdown.advantage) if breakdown.advantage is not None else nan,
            log_c=_finite_or_nan(_np(breakdown.log_c)) if breakdown.log_c is not None else nan,
            used=breakdown.used.cpu().numpy(),
        )


@dataclass
class RolloutFacts:
    """Per-rollout facts of a step (index = rollout within the step)."""

    group: np.ndarray  # [N] prompt group within the step
    prompt_id: np.ndarray  # [N]
    prompt: np.ndarray  # [N] object (str)
    response: np.ndarray  # [N] object (str)
    answer: np.ndarray  # [N] object (str)
    reward: np.ndarray  # [N] float
    length: np.ndarray  # [N] int
    finished: np.ndarray  # [N] bool: ended with EOS
    grade_status: np.ndarray  # [N] object: ok | timeout | error
    group_size: np.ndarray  # [N]
    group_correct: np.ndarray  # [N]


def rollout_columns(step: int, records: list[UpdateRecord], facts: RolloutFacts) -> dict[str, np.ndarray]:
    """ROLLOUTS_SCHEMA columns (plus ``epoch``, ``finished``, ``grade_status``): one row per rollout and update."""
    rows = np.concatenate([r.rows for r in records])
    cols = {
        "step": np.full(len(rows), step, dtype=np.int64),
        "minibatch": np.concatenate([np.full(len(r.rows), r.update, dtype=np.int32) for r in records]),
        "epoch": np.concatenate([np.full(len(r.rows), r.epoch, dtype=np.int32) for r in records]),
        "rollout": rows.astype(np.int32),
        "group": facts.group[rows],
        "prompt_id": facts.prompt_id[rows],
        "prompt": facts.prompt[rows],
        "response": facts.response[rows],
        "answer": facts.answer[rows],
        "reward": facts.reward[rows],
        "length": facts.length[rows],
        "s_bar": np.concatenate([r.s_bar for r in records]),
        "advantage": np.concatenate([r.advantage for r in records]),
        "weight": np.concatenate([r.rollout_weight for r in records]),
        "log_c": np.concatenate([r.log_c for r in records]),
        "used": np.concatenate([r.used for r in records]),
        "group_size": facts.group_size[rows],
        "group_correct": facts.group_correct[rows],
        "finished": facts.finished[rows],
        "grade_status": facts.grade_status[rows],
    }
    return cols


def token_columns(step: int, records: list[UpdateRecord], token_text: np.ndarray) -> dict[str, np.ndarray]:
    """TOKENS_SCHEMA columns (plus ``minibatch``, ``keep`` and, with a KL term, ``grad_kl``): one row per
    response token and update, flattened through the response mask."""
    parts: dict[str, list[np.ndarray]] = {}

    def add(name: str, values: np.ndarray) -> None:
        parts.setdefault(name, []).append(values)

    for r in records:
        n, t = r.mask.shape
        m = r.mask.ravel()
        k = int(m.sum())
        add("rollout", np.repeat(r.rows.astype(np.int32), t)[m])
        add("pos", np.tile(np.arange(t, dtype=np.int32), n)[m])
        add("minibatch", np.full(k, r.update, dtype=np.int32))
        ids = r.token_ids.ravel()[m]
        add("token_id", ids.astype(np.int32))
        add("token", token_text[ids])
        for name in ("old_logp", "logp", "s", "entropy", "weight", "grad"):
            add(name, getattr(r, name).ravel()[m])
        add("ratio", np.exp(np.minimum(r.s.ravel()[m], RATIO_LOG_CAP)))
        add("keep", r.keep.ravel()[m])
        if r.grad_kl is not None:
            add("grad_kl", r.grad_kl.ravel()[m])
    cols = {name: np.concatenate(v) for name, v in parts.items()}
    cols["step"] = np.full(len(cols["rollout"]), step, dtype=np.int64)
    return cols
