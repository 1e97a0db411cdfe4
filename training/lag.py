"""Behaviour policies for ``--rollout-lag K``: the rollouts of step k are sampled by the policy that is K
updates-of-a-step older than the on-policy one, as asynchronous RL systems do ("one-step off-policy" is K = 1).

On-policy (K = 0), step k samples with the weights after step k-1. With lag K it samples with the weights after
step ``b(k) = max(0, k - 1 - K)`` (step 0: the starting weights), and its old log-probs are that behaviour
policy's, so ``s_t = log pi_theta(o_t) - log pi_b(k)(o_t)`` is non-zero from the first mini-batch on.

Memory: the weights after steps ``k-K .. k-1`` are kept as CPU copies (K+1 copies of the parameters and
buffers, the newest equal to the live model's) plus one behaviour model on the training device that they are
loaded into before sampling: K+2 copies of the weights beside the optimizer's state (the tiny model: 3.5 MB
each). A checkpoint after step k saves the K older copies (``lagged.pt``), so a resumed run samples from exactly
the weights an uninterrupted one would.
"""

from __future__ import annotations

import copy

import torch

LAGGED = "lagged"  # checkpoint extra: the behaviour policies older than the checkpoint's step


def behaviour_step(step: int, lag: int) -> int:
    """b(k) = max(0, k - 1 - K): the step after which the weights that sample step ``step`` were taken."""
    return max(0, step - 1 - lag)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class BehaviourPolicies:
    """The weights after each of the last K steps and a model to sample from with the lagged ones."""

    def __init__(self, lag: int, model: torch.nn.Module):
        if lag < 1:
            raise ValueError(f"a rollout lag must be >= 1, got {lag}")
        self.lag = lag
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def record(self, step: int, model: torch.nn.Module) -> None:
        """Keep the weights after ``step`` and drop those no later step samples from (older than step+1-K)."""
        self.snapshots[step] = _cpu_state(model)
        for old in [s for s in self.snapshots if s < behaviour_step(step + 1, self.lag)]:
            del self.snapshots[old]

    def for_step(self, step: int) -> torch.nn.Module:
        """The behaviour model of ``step``, loaded with the weights after step b(step)."""
        b = behaviour_step(step, self.lag)
        if b not in self.snapshots:
            raise KeyError(f"no weights kept for step {b} (kept: {sorted(self.snapshots)})")
        self.model.load_state_dict(self.snapshots[b])
        return self.model

    def to_checkpoint(self, step: int) -> dict:
        """What a checkpoint after ``step`` keeps: the snapshots older than ``step`` (the newest is the model)."""
        return {"lag": self.lag, "steps": sorted(s for s in self.snapshots if s < step),
                "states": {str(s): w for s, w in self.snapshots.items() if s < step}}  # fmt: skip

    def restore(self, saved: dict, step: int, model: torch.nn.Module) -> None:
        """Rebuild the snapshots after loading the checkpoint of ``step`` into ``model``; ``saved`` is what
        ``to_checkpoint(step)`` wrote. Raises ``ValueError`` when a snapshot a later step needs is missing."""
        if saved.get("lag") != self.lag:
            raise ValueError(
                f"the checkpoint kept policies for rollout lag {saved.get('lag')}, not {self.lag}"
            )
        self.snapshots = {int(s): w for s, w in saved["states"].items()}
        self.record(step, model)
        need = range(behaviour_step(step + 1, self.lag), step + 1)
        missing = [s for s in need if s not in self.snapshots]
        if missing:
            raise ValueError(f"the checkpoint lacks the weights after step(s) {missing}")
