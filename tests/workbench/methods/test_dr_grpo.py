"""Dr. GRPO (workbench/methods/dr_grpo.py): the centred advantage (no std), the constant normaliser B * L_max,
and the loss as its equation, written here again in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import random_batch
from workbench.closed_forms import token_gradient
from workbench.objectives import OBJECTIVES


def _numpy_loss(b, eps: float, max_tokens: int | None) -> float:
    ids, r = b.group_ids.numpy(), b.rewards.numpy()
    adv = np.array([r[i] - r[ids == ids[i]].mean() for i in range(len(r))])
    m = b.mask.numpy()
    rho = np.exp(np.where(m, b.logp.detach().numpy() - b.old_logp.numpy(), 0.0))
    a = adv[:, None]
    token = np.maximum(-a * rho, -a * np.clip(rho, 1 - eps, 1 + eps))
    width = max_tokens if max_tokens is not None else m.shape[1]
    return float(np.where(m, token, 0.0).sum() / (len(r) * width))


@pytest.mark.parametrize("max_tokens", [None, 64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_is_the_equation(seed, max_tokens):
    b = random_batch(seed, s_scale=0.4)
    res = OBJECTIVES["dr_grpo"](*b.args(), max_tokens=max_tokens)
    assert float(res.loss.detach()) == pytest.approx(_numpy_loss(b, 0.2, max_tokens), rel=1e-10)


def test_no_std_scaling_rewards_scale_the_gradient_and_grpo_does_not():
    """Doubling every reward doubles Dr. GRPO's gradient; GRPO's std division cancels it."""
    b = random_batch(4)
    args = (b.logp.detach(), b.old_logp, b.mask)
    dr1 = token_gradient("dr_grpo", *args, b.rewards, b.group_ids).grad
    dr2 = token_gradient("dr_grpo", *args, 2 * b.rewards, b.group_ids).grad
    torch.testing.assert_close(dr2, 2 * dr1)
    g1 = token_gradient("grpo", *args, b.rewards, b.group_ids, kl_beta=0.0).grad
    g2 = token_gradient("grpo", *args, 2 * b.rewards, b.group_ids, kl_beta=0.0).grad
    torch.testing.assert_close(g2, g1, rtol=1e-5, atol=0)  # equal up to adv_eps


def test_a_token_gradient_does_not_depend_on_its_rollouts_length():
    """With a constant normaliser, every token with the same A and ratio gets the same gradient, whatever the
    length of its rollout (GRPO divides by |o|)."""
    b = random_batch(6, s_scale=0.0)  # rho = 1 everywhere: the gradient is -A / (B L)
    cf = token_gradient("dr_grpo", b.logp.detach(), b.old_logp, b.mask, b.rewards, b.group_ids, max_tokens=32)
    expected = -cf.advantage.unsqueeze(1) / (len(b.rewards) * 32)
    torch.testing.assert_close(cf.grad[b.mask], expected.expand_as(cf.grad)[b.mask])
    lengths = b.mask.sum(1)
    assert len(set(lengths.tolist())) > 1, "the batch must hold rollouts of different lengths"


def test_bad_max_tokens_is_refused():
    b = random_batch(0)
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 1"):
        OBJECTIVES["dr_grpo"](*b.args(), max_tokens=0)
