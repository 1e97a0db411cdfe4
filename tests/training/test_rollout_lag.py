"""``--rollout-lag K``: step k samples with the weights after step max(0, k-1-K), its old log-probs are that
policy's, and a run stopped and resumed logs exactly what an uninterrupted one logs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training.conftest import SMALL, assert_same_logs, cli_flags, logged_table
from training.lag import BehaviourPolicies, behaviour_step
from workbench.runlog import open_run


def test_behaviour_step_and_the_policies_kept():
    assert [behaviour_step(k, 0) for k in (1, 2, 5)] == [0, 1, 4]  # on-policy: the weights after step k-1
    assert [behaviour_step(k, 2) for k in (1, 2, 3, 4, 5)] == [0, 0, 0, 1, 2]
    model = torch.nn.Linear(2, 1)
    pol = BehaviourPolicies(2, model)
    with torch.no_grad():
        model.weight.fill_(0.0)
    pol.record(0, model)
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.fill_(float(step))  # "the weights after step"
        pol.record(step, model)
        assert sorted(pol.snapshots) == list(range(max(0, step - 2), step + 1))  # K + 1 kept
        assert float(pol.for_step(step + 1).weight[0, 0]) == behaviour_step(step + 1, 2)
    saved = pol.to_checkpoint(5)
    assert saved["steps"] == [3, 4]  # the newest (5) is the model itself
    again = BehaviourPolicies(2, model)
    again.restore(saved, 5, model)
    assert float(again.for_step(6).weight[0, 0]) == 3.0
    with pytest.raises(ValueError, match="lacks the weights after step"):
        again.restore({"lag": 2, "steps": [4], "states": {"4": saved["states"]["4"]}}, 5, model)
    with pytest.raises(ValueError, match="rollout lag 2, not 3"):
        BehaviourPolicies(3, model).restore(saved, 5, model)


def test_lagged_run_is_off_policy_from_the_first_minibatch_and_resumes_exactly(ws_cache, tmp_path):
    from training.cli import main

    settings = {
        **SMALL,
        "rollout_lag": 2,
        "lr": 1e-3,
        "save_every": 2,
        "val_every": 0,
        "cache_dir": str(ws_cache),
    }
    whole, split = tmp_path / "whole", tmp_path / "split"
    args = ["train", "--method", "real", *cli_flags(settings), "--no-progress"]
    assert main([*args, "--steps", "6", "--out", str(whole)]) == 0
    assert main([*args, "--steps", "3", "--out", str(split)]) == 0  # its last checkpoint: step 3
    assert main(["train", "--out", str(split), "--resume", "--steps", "6", "--no-progress"]) == 0

    a, b = open_run(whole), open_run(split)
    assert a.steps() == b.steps() == list(range(1, 7))
    assert_same_logs(whole, split)

    raw = logged_table(whole, "rollouts")
    assert (raw.groupby("step").behaviour_step.unique().map(list).to_dict()
            == {k: [behaviour_step(k, 2)] for k in range(1, 7)})  # fmt: skip
    assert (raw.rollout_lag == 2).all()
    tok = logged_table(whole, "tokens")
    first = tok[tok.minibatch == tok.groupby("step").minibatch.transform("min")]
    # steps 1-2 sample with the starting weights, which no update has reached yet only at step 1
    moved = first[first.step >= 2].groupby("step").s.apply(lambda s: np.abs(s).max())
    assert (moved > 0).all(), moved
    assert np.abs(first[first.step == 1].s).max() == 0  # step 1: the sampling weights are the current ones
    m = logged_table(whole, "metrics")
    assert (m.rollout_lag == 2).all()
    assert (m.sbar_tau_q99.iloc[1:] > 0).all() and m.sbar_tau_gt1.between(0, 1).all()
