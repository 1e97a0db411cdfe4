"""workbench.group_replay: a logged group replayed under every method equals what the run logged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.group_replay import logged_group, replay, replay_all, run_hparams
from workbench.methods import METHODS
from workbench.runlog import open_run
from workbench.synthetic_run import write_synthetic_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("replay")
    return {
        m: write_synthetic_run(base / m, method=m, steps=2, prompts=4, group_size=5, mean_len=10, seed=7)
        for m in ("grpo", "real", "real_no_anchor")
    }


@pytest.mark.parametrize("method", ["grpo", "real", "real_no_anchor"])
def test_replay_of_the_runs_own_method_gives_the_logged_weights(runs: dict[str, Path], method: str) -> None:
    run = open_run(runs[method])
    ro, tok = run.rollouts([2]), run.tokens([2])
    for g in ro["group"].unique():
        grp = ro[ro["group"] == g]
        rep = replay(method, logged_group(grp, tok), run_hparams(method, run.config))
        merged = tok[tok["rollout"].isin(grp["rollout"])].merge(
            rep.tokens, on=["rollout", "pos"], suffixes=("", "_re")
        )
        assert len(merged) == int(grp["length"].sum())
        np.testing.assert_allclose(merged["weight_re"], merged["weight"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(rep.rollouts["weight"], grp["weight"], rtol=1e-5, atol=1e-7)


def test_every_method_replays_and_differs(runs: dict[str, Path]) -> None:
    run = open_run(runs["real"])
    ro, tok = run.rollouts([2]), run.tokens([2])
    mixed = ro.groupby("group")["reward"].agg(lambda r: 0 < r.sum() < len(r))
    g = int(mixed[mixed].index[0])
    done, skipped = replay_all(logged_group(ro[ro["group"] == g], tok), list(METHODS))
    assert set(done) == set(METHODS) and not skipped
    w = {m: done[m].rollouts["weight"].to_numpy() for m in METHODS}
    assert not np.allclose(w["grpo"], w["real"])
    assert (w["real"] <= 2.0 + 1e-9).all()


def test_real_family_refuses_non_binary_rewards(runs: dict[str, Path]) -> None:
    run = open_run(runs["grpo"])
    ro, tok = run.rollouts([1]), run.tokens([1])
    grp = ro[ro["group"] == 0].copy()
    grp["reward"] = np.linspace(0, 1, len(grp))
    done, skipped = replay_all(logged_group(grp, tok), ["grpo", "real"])
    assert "grpo" in done and "binary" in skipped["real"]


def test_missing_tokens_are_named(runs: dict[str, Path]) -> None:
    run = open_run(runs["grpo"])
    ro, tok = run.rollouts([1]), run.tokens([1])
    grp = ro[ro["group"] == 0]
    with pytest.raises(ValueError, match="no logged tokens"):
        logged_group(grp, tok[tok["rollout"] != grp["rollout"].iloc[0]])
