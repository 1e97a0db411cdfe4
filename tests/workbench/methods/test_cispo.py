"""CISPO (workbench/methods/cispo.py): the loss as its equation, written here again in numpy; the gradient that
no token loses; the bounded weight; its own settings through autograd = closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import random_batch
from workbench.closed_forms import token_gradient
from workbench.objectives import OBJECTIVES


def _numpy_loss(b, w_min: float, w_max: float) -> float:
    """token-mean of ``-clip(e^s, w_min, w_max) A logp`` with ``A = (r - mean) / (std + 1e-6)`` per group."""
    ids, r = b.group_ids.numpy(), b.rewards.numpy()
    adv = np.zeros_like(r)
    for g in np.unique(ids):
        sel = ids == g
        if sel.sum() > 1:
            adv[sel] = (r[sel] - r[sel].mean()) / (r[sel].std(ddof=1) + 1e-6)
    m = b.mask.numpy()
    logp, old = b.logp.detach().numpy(), b.old_logp.numpy()
    w = np.clip(np.exp(np.where(m, logp - old, 0.0)), w_min, w_max)
    loss = np.where(m, -w * adv[:, None] * np.where(m, logp, 0.0), 0.0)
    return float(loss.sum() / m.sum())


@pytest.mark.parametrize(("w_min", "w_max"), [(0.0, 5.0), (0.8, 1.2), (0.5, 1.05)])
@pytest.mark.parametrize("seed", [0, 1])
def test_value_is_the_equation(seed, w_min, w_max):
    b = random_batch(seed, s_scale=0.5)
    res = OBJECTIVES["cispo"](*b.args(), w_min=w_min, w_max=w_max)
    assert float(res.loss.detach()) == pytest.approx(_numpy_loss(b, w_min, w_max), rel=1e-10)


@pytest.mark.parametrize(("w_min", "w_max"), [(0.8, 1.2), (0.0, 1.01)])
def test_autograd_equals_closed_form_with_tight_bounds(w_min, w_max):
    b = random_batch(3, s_scale=0.6)
    res = OBJECTIVES["cispo"](*b.args(), w_min=w_min, w_max=w_max)
    (g,) = torch.autograd.grad(res.loss, b.logp)
    cf = token_gradient("cispo", b.logp.detach(), b.old_logp, b.mask, b.rewards, b.group_ids, w_min=w_min,
                        w_max=w_max)  # fmt: skip
    torch.testing.assert_close(g, cf.grad, rtol=1e-9, atol=1e-12)
    assert res.metrics["clip_frac"] > 0, "the bounds must clip some weights for this test to mean anything"


def test_no_token_loses_its_gradient_where_grpo_drops_it():
    """Ratios far outside GRPO's clip range: GRPO zeroes those tokens, CISPO keeps them at |A| w_max."""
    b = random_batch(5, s_scale=2.0)
    grpo = token_gradient("grpo", b.logp.detach(), b.old_logp, b.mask, b.rewards, b.group_ids, kl_beta=0.0)
    cispo = token_gradient("cispo", b.logp.detach(), b.old_logp, b.mask, b.rewards, b.group_ids)
    active = b.mask & (cispo.advantage.unsqueeze(1) != 0)
    assert (~grpo.keep & active).any(), "GRPO must clip some active token here"
    assert (cispo.grad[active] != 0).all()
    assert cispo.keep[b.mask].all()
    ratio = torch.exp(torch.where(b.mask, b.logp.detach() - b.old_logp, 0.0))
    bound = cispo.advantage.abs().unsqueeze(1) * 5.0  # |A| w_max
    assert (cispo.token_weight * b.mask.sum(1, keepdim=True) <= bound + 1e-12).all()
    assert ((ratio > 5.0) & active).any(), "some ratio must exceed w_max for the bound to be tested"


def test_bad_bounds_are_refused():
    b = random_batch(0)
    with pytest.raises(ValueError, match="w_max must be > w_min"):
        OBJECTIVES["cispo"](*b.args(), w_min=2.0, w_max=1.5)
    with pytest.raises(ValueError, match=r"unknown hyper-parameter.*eps_high"):
        OBJECTIVES["cispo"](*b.args(), eps_high=0.2)
