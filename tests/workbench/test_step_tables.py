"""The one step builder (``workbench.step_tables``): group facts, the two row layouts, unused rollouts, token
texts, extra columns, and the schema check before anything is written."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.objectives import OBJECTIVES
from workbench.runlog import RunFormatError, RunWriter, open_run
from workbench.step_tables import RolloutFacts, UpdateRecord, build_step, rollout_info, rollout_metrics
from workbench.update_records import update_records


def _batch(seed: int, t: int = 6):
    g = torch.Generator().manual_seed(seed)
    ids = torch.repeat_interleave(torch.arange(3), 4)
    lengths = torch.randint(1, t + 1, (12,), generator=g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    old = -torch.rand(12, t, generator=g, dtype=torch.float64) * 3
    logp = old + 0.3 * torch.randn(12, t, generator=g, dtype=torch.float64)
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0], dtype=torch.float64)
    return logp, old, mask, rewards, ids


def _facts(rewards, ids, mask) -> RolloutFacts:
    n = len(rewards)
    return RolloutFacts(
        reward=rewards.tolist(),
        group=[f"uid-{i}" for i in ids.tolist()],
        length=mask.sum(1).tolist(),
        prompt=[f"q{i}" for i in ids.tolist()],
        response=[f"r{k}" for k in range(n)],
        answer=["1"] * n,
    )


def _record(method, logp, old, mask, rewards, ids, rows, minibatch, epoch=0, scale=1.0):
    r = torch.as_tensor(rows)
    res = OBJECTIVES[method](logp[r], old[r], mask[r], rewards[r], ids[r], kl_beta=0.0)
    token_ids = torch.arange(mask[r].numel()).view(mask[r].shape) % 7
    cols = update_records(
        method, res, rollout_index=rows, minibatch=minibatch, scale=scale, token_ids=token_ids
    )
    return UpdateRecord(*cols, epoch=epoch)


SCALARS = {"loss": 1.0, "grad_norm": 2.0, "entropy_mean": 0.3}


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


def test_every_update_logs_each_pass_with_its_epoch_and_first_update_keeps_one():
    logp, old, mask, rewards, ids = _batch(0)
    halves = [np.arange(6, 12), np.arange(6)]  # two mini-batches, the second half first
    updates = [
        _record("real", logp, old, mask, rewards, ids, rows, k + 2 * epoch, epoch)
        for epoch in range(2)
        for k, rows in enumerate(halves)
    ]
    every = build_step(3, _facts(rewards, ids, mask), updates, SCALARS)
    rol, tok = every.rollouts.to_pydict(), every.tokens.to_pydict()
    assert len(rol["rollout"]) == 24 and len(tok["rollout"]) == 2 * int(mask.sum())
    assert rol["rollout"][:6] == list(range(6, 12))  # update order kept
    assert rol["epoch"] == [0] * 12 + [1] * 12 and rol["minibatch"] == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6
    # the facts follow each row's rollout; groups numbered by first appearance of their key
    assert rol["group"][:6] == [1, 1, 2, 2, 2, 2] and rol["reward"][:6] == rewards[6:].tolist()
    assert rol["response"][0] == "r6" and rol["prompt_id"] == [-1] * 24 and set(rol["step"]) == {3}

    first = build_step(3, _facts(rewards, ids, mask), updates, SCALARS, every_update=False)
    rol1, tok1 = first.rollouts.to_pydict(), first.tokens.to_pydict()
    assert rol1["rollout"] == list(range(12)) and rol1["epoch"] == [0] * 12
    assert rol1["minibatch"] == [1] * 6 + [0] * 6
    assert len(tok1["rollout"]) == int(mask.sum())
    keys = list(zip(tok1["rollout"], tok1["pos"], strict=True))
    assert keys == sorted(keys)
    # metrics: the reward metrics computed here, the writer's scalars kept, unmeasured ones defaulted
    m = first.metrics
    assert m["reward_mean"] == pytest.approx(5 / 12) and m["solved_none_ratio"] == pytest.approx(1 / 3)
    assert m["loss"] == 1.0 and math.isnan(m["val_pass1"]) and m["time_grade"] == 0.0


def test_unused_rollouts_get_a_row_and_token_texts_come_from_the_ids():
    logp, old, mask, rewards, ids = _batch(1)
    only = [_record("grpo", logp, old, mask, rewards, ids, np.arange(4), 0)]
    vocab = np.asarray([f"<{i}>" for i in range(7)], dtype=object)
    for every in (True, False):
        t = build_step(1, _facts(rewards, ids, mask), only, SCALARS, every_update=every, token_text=vocab)
        rol = t.rollouts.to_pandas().sort_values("rollout")
        assert rol["rollout"].tolist() == list(range(12))
        assert rol["used"].tolist() == [True] * 4 + [False] * 8
        assert (rol["weight"].iloc[4:] == 0).all() and rol["advantage"].iloc[4:].isna().all()
        tok = t.tokens.to_pydict()
        assert tok["token"] == [f"<{i}>" for i in tok["token_id"]]
    # an unknown id (-1) keeps an empty text; every other token is still looked up
    part = UpdateRecord(
        only[0].rollouts,
        {
            **only[0].tokens,
            "token_id": np.where(
                np.arange(len(only[0].tokens["rollout"])) == 0, -1, only[0].tokens["token_id"]
            ),
        },
    )
    tok = build_step(1, _facts(rewards, ids, mask), [part], SCALARS, token_text=vocab).tokens.to_pydict()
    assert tok["token"][0] == "" and tok["token"][1:] == [f"<{i}>" for i in tok["token_id"][1:]]
    called = []
    t = build_step(
        1, _facts(rewards, ids, mask), only, SCALARS, token_text=lambda x: called.append(1) or ["x"] * len(x)
    )
    assert called == [1] and set(t.tokens.column("token").to_pylist()) == {"x"}


def test_extra_columns_bad_indices_and_schema_errors_fail_before_writing(tmp_path):
    logp, old, mask, rewards, ids = _batch(2)
    rec = _record("real", logp, old, mask, rewards, ids, np.arange(12), 0)
    facts = _facts(rewards, ids, mask)
    t = build_step(2, facts, [rec], SCALARS, rollout_extra={"lag": 4, "own": np.arange(12) * 10})
    assert set(t.rollouts.column("lag").to_pylist()) == {4}
    assert t.rollouts.column("own").to_pylist() == [10 * k for k in range(12)]
    bad = UpdateRecord({**rec.rollouts, "rollout": np.arange(1, 13)}, rec.tokens)
    with pytest.raises(ValueError, match="rollout 12"):
        build_step(2, facts, [bad], SCALARS)
    with pytest.raises(RunFormatError, match="loss"):
        build_step(2, facts, [rec], {**SCALARS, "loss": math.inf})
    nan_weight = UpdateRecord({**rec.rollouts, "weight": np.full(12, np.nan)}, rec.tokens)
    with pytest.raises(RunFormatError, match="weight"):
        build_step(2, facts, [nan_weight], SCALARS)
    # a step built here is what the writer writes and the reader opens
    writer = RunWriter.create(
        tmp_path / "r", name="r", method="real", config={"method": "real", "seed": 0, "hparams": {}}, env={}
    )
    writer.write_step(2, *t)
    run = open_run(tmp_path / "r")
    assert run.steps() == [2] and len(run.tokens()) == int(mask.sum())
    assert run.read("rollouts", columns=["lag"]).column("lag").to_pylist() == [4] * 12
