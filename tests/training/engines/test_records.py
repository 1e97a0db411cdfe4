"""The engine-neutral run-dir pieces: update records carry the exact gradient (steps: tests/workbench/test_step_tables.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.engines.records import update_records
from workbench.objectives import OBJECTIVES


def _batch(seed: int, sizes=(4, 4, 4), t: int = 6):
    g = torch.Generator().manual_seed(seed)
    b = sum(sizes)
    ids = torch.cat([torch.full((n,), 10 + i) for i, n in enumerate(sizes)])
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    logp = (old + 0.3 * torch.randn(b, t, generator=g, dtype=torch.float64)).requires_grad_(True)
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0], dtype=torch.float64)[:b]
    ref = old + 0.1 * torch.randn(b, t, generator=g, dtype=torch.float64)
    return logp, old, mask, rewards, ids, ref


@pytest.mark.parametrize("method", ["real", "real_no_anchor", "real_bce", "grpo", "dapo", "gspo"])
def test_token_grad_is_scaled_autograd_without_kl(method):
    logp, old, mask, rewards, ids, ref = _batch(0)
    res = OBJECTIVES[method](logp, old, mask, rewards, ids, ref_logp=ref, kl_beta=0.0)
    (grad,) = torch.autograd.grad(res.loss, logp)
    rollouts, tokens = update_records(method, res, scale=0.25, rollout_index=range(100, 112), minibatch=3)
    got = np.zeros(tuple(mask.shape))
    got[tokens["rollout"] - 100, tokens["pos"]] = tokens["grad"]
    np.testing.assert_allclose(got, 0.25 * grad.numpy() * mask.numpy(), rtol=1e-9, atol=1e-15)
    assert rollouts["minibatch"].tolist() == [3] * 12
    assert len(tokens["rollout"]) == int(mask.sum())
    if method.startswith("real"):
        assert np.isnan(rollouts["advantage"]).all()
        # log C is finite, except the no-anchor variant's all-wrong group (C = inf), stored as null
        assert np.isfinite(rollouts["log_c"]).sum() == (8 if method == "real_no_anchor" else 12)
    else:
        assert np.isfinite(rollouts["advantage"]).all() and np.isnan(rollouts["log_c"]).all()


def test_kl_is_left_out_of_token_grad():
    logp, old, mask, rewards, ids, ref = _batch(1)
    with_kl = OBJECTIVES["grpo"](logp, old, mask, rewards, ids, ref_logp=ref, kl_beta=0.5)
    no_kl = OBJECTIVES["grpo"](logp, old, mask, rewards, ids, ref_logp=ref, kl_beta=0.0)
    _, t1 = update_records("grpo", with_kl, scale=1.0, rollout_index=range(12), minibatch=0)
    _, t2 = update_records("grpo", no_kl, scale=1.0, rollout_index=range(12), minibatch=0)
    np.testing.assert_allclose(t1["grad"], t2["grad"], rtol=1e-12)


def test_core_side_imports_no_engine():
    import subprocess
    import sys

    code = "import training.engines, training.engines.records, sys; print('verl' in sys.modules, 'trl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
