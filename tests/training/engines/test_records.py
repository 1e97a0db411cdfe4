"""The engine-neutral run-dir pieces: update records carry the exact gradient, steps assemble and open."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.engines.records import assemble_step, update_records
from workbench.objectives import OBJECTIVES
from workbench.runlog import RunWriter, open_run
from workbench.step_tables import rollout_info, rollout_metrics


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


def test_rollout_info_and_metrics():
    info = rollout_info(
        [1, 1, 0, 0, 0, 0, 1, 1], ["a", "a", "b", "b", "c", "c", "d", "d"], [3, 4, 5, 6, 1, 1, 2, 2]
    )
    assert info["group"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert info["group_correct"].tolist() == [2, 2, 0, 0, 0, 0, 2, 2]
    m = rollout_metrics(info)
    assert m == {
        "reward_mean": 0.5,
        "solved_all_ratio": 0.5,
        "solved_none_ratio": 0.5,
        "response_len_mean": 3.0,
    }


def test_assemble_keeps_first_update_and_writes_an_openable_step(tmp_path):
    logp, old, mask, rewards, ids, _ = _batch(2)
    res = OBJECTIVES["real"](logp, old, mask, rewards, ids)
    first = update_records("real", res, scale=1.0, rollout_index=range(12), minibatch=0)
    second = update_records("real", res, scale=2.0, rollout_index=range(12), minibatch=1)
    info = rollout_info(rewards.tolist(), ids.tolist(), mask.sum(1).tolist())
    text = {"prompt": ["q"] * 12, "response": ["r"] * 12, "answer": ["1"] * 12, "prompt_id": list(range(12))}
    met, roll, tok = assemble_step(
        5, info, text, [first, second], {"loss": 1.0, "grad_norm": 2.0, "entropy_mean": 0.3}
    )
    assert roll["minibatch"].tolist() == [0] * 12
    np.testing.assert_allclose(tok["grad"], np.sort(first[1]["grad"])[np.argsort(np.argsort(tok["grad"]))])
    writer = RunWriter.create(
        tmp_path / "r",
        name="r",
        method="real",
        config={"method": "real", "seed": 0, "hparams": {}, "group_size": 4},
        env={},
    )
    writer.write_step(5, met, roll, tok)
    run = open_run(tmp_path / "r")
    assert run.steps() == [5]
    assert len(run.tokens()) == int(mask.sum()) and np.isnan(run.metrics()["val_pass1"]).all()
    with pytest.raises(ValueError, match="rollout 12"):
        bad = ({**first[0], "rollout": np.arange(1, 13)}, first[1])
        assemble_step(5, info, text, [bad], {"loss": 1.0, "grad_norm": 2.0, "entropy_mean": 0.3})


def test_core_side_imports_no_engine():
    import subprocess
    import sys

    code = "import training.engines, training.engines.records, sys; print('verl' in sys.modules, 'trl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
