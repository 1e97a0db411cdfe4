"""Differentiable objectives (losses to minimise) of every registered method (``workbench.methods.SPECS``).

Every objective takes one (mini-)batch of rollouts::

    OBJECTIVES[name](logp, old_logp, mask, rewards, group_ids, ref_logp=None, **hparams) -> ObjectiveResult

- ``logp``, ``old_logp``: ``[B, T]`` log-probs of the sampled tokens under the current and the old policy;
- ``mask``: ``[B, T]``, 1 on response tokens; ``rewards``: ``[B]`` (0/1 for the REAL family);
- ``group_ids``: ``[B]`` ints, the prompt each rollout answers (groups may have unequal sizes, any order);
- ``ref_logp``: ``[B, T]`` reference-policy log-probs, needed only for a KL penalty to the reference;
- ``hparams``: keyword overrides of the method's defaults (its spec's ``defaults``).

Each loss is written as its equation in its method's module (``workbench/methods/<family>.py``), without the
closed forms; autograd is the judge, and ``workbench.closed_forms.token_gradient`` must agree with it (tested on
random batches).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from workbench.batch import prepare_batch
from workbench.methods import SPECS, check_method, resolve_hparams
from workbench.methods.common import ObjectiveResult

__all__ = ["OBJECTIVES", "Objective", "ObjectiveResult", "get_objective", "objective"]


def objective(
    method: str,
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    ref_logp: Tensor | None = None,
    **hparams: Any,
) -> ObjectiveResult:
    """``method``'s loss on one batch: resolve the hyper-parameters, validate the batch (rewards must be 0/1 for
    the REAL family), and call the spec's objective."""
    spec = SPECS[check_method(method)]
    hp = resolve_hparams(method, hparams)
    batch = prepare_batch(
        logp, old_logp, mask, rewards, group_ids, ref_logp=ref_logp, binary_rewards=spec.binary_rewards
    )
    return spec.objective(batch, hp)


Objective = Callable[..., ObjectiveResult]


def _bind(method: str) -> Objective:
    def bound(*args: Any, **kwargs: Any) -> ObjectiveResult:
        return objective(method, *args, **kwargs)

    bound.__name__ = method
    bound.__qualname__ = method
    bound.__doc__ = f"{SPECS[method].label}: {SPECS[method].summary}. See ``objective``."
    return bound


OBJECTIVES: dict[str, Objective] = {name: _bind(name) for name in SPECS}


def get_objective(name: str) -> Objective:
    """``OBJECTIVES[name]`` with a ValueError listing the choices for an unknown name."""
    return OBJECTIVES[check_method(name)]
