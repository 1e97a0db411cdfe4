"""Training dynamics, seed bands, variants and the token-rollout join on hand-made runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from workbench.runlog import RunFormatError, RunWriter
from workbench.stats import (
    POSITIVE,
    MissingVariantsError,
    collect,
    describe_runs,
    final_metric,
    group_runs,
    seed_band,
    select_variants,
    spec,
    token_intervals,
    training_dynamics,
    variant_of,
)

from .conftest import metric_row


def test_dynamics_drop_nulls_explicitly(make_run):
    metrics = {
        1: {"entropy_mean": 0.9, "reward_mean": 0.1, "solved_all_ratio": 0.0},
        2: {"entropy_mean": 0.8, "reward_mean": 0.3, "solved_all_ratio": 0.25, "val_pass1": 0.2},
        3: {"entropy_mean": 0.7, "reward_mean": 0.5, "solved_all_ratio": 0.5},
        4: {"entropy_mean": 0.6, "reward_mean": 0.6, "solved_all_ratio": 0.5, "val_pass1": 0.4},
        5: {"entropy_mean": 0.5, "reward_mean": 0.7, "solved_all_ratio": 0.75},
    }
    run = make_run("dyn", "real", metrics=metrics)
    df = training_dynamics(run)
    val = df[df["metric"] == "val_pass1"]
    assert val["step"].tolist() == [2, 4] and val["value"].tolist() == [0.2, 0.4]
    assert df[df["metric"] == "entropy_mean"]["value"].tolist() == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert np.isfinite(df["value"]).all()
    last = final_metric(run).iloc[0]
    assert (last["step"], last["value"]) == (4, 0.4)
    assert math.isnan(final_metric(make_run("noval", "real", metrics={1: {}})).iloc[0]["value"])


def test_seed_band_by_hand(make_run):
    runs = [
        make_run(f"s{seed}", "grpo", seed=seed, metrics={1: {"reward_mean": r1}, 2: {"reward_mean": r2}})
        for seed, r1, r2 in ((0, 0.1, 0.4), (1, 0.3, 0.5), (2, 0.5, 0.9))
    ]
    df = collect(training_dynamics, runs, metrics=["reward_mean"])
    assert set(df.columns) >= {"run", "variant", "label", "method", "seed", "step", "metric", "value"}
    mm = seed_band(df, band="minmax").set_index("step")
    assert mm.loc[1, "mean"] == pytest.approx(0.3) and (mm.loc[1, "lo"], mm.loc[1, "hi"]) == (0.1, 0.5)
    assert mm.loc[2, "n_seeds"] == 3
    sd = seed_band(df, band="sd").set_index("step")
    assert sd.loc[2, "hi"] - sd.loc[2, "mean"] == pytest.approx(np.std([0.4, 0.5, 0.9], ddof=1))
    # a NaN value is dropped, not averaged
    df.loc[(df["seed"] == 2) & (df["step"] == 2), "value"] = np.nan
    part = seed_band(df).set_index("step")
    assert part.loc[2, "n_seeds"] == 2 and part.loc[2, "mean"] == pytest.approx(0.45)


@pytest.mark.parametrize(
    ("method", "hparams", "key", "label"),
    [
        ("real", {}, "real", "REAL"),
        ("real", {"tau": 0.1}, "real[tau=0.1]", "REAL τ=0.1"),
        ("real", {"kl_beta": 0.001}, "real[kl_beta=0.001]", "REAL KL→ref β=0.001"),
        (
            "real",
            {"kl_beta": 0.001, "kl_target": "old"},
            "real[kl_beta=0.001,kl_target=old]",
            "REAL KL→old β=0.001",
        ),
        ("real", {"kl_target": "old"}, "real", "REAL"),  # no KL: the target changes nothing
        ("grpo", {"clip_mode": "bidirectional"}, "grpo[clip_mode=bidirectional]", "GRPO bidirectional clip"),
        ("grpo", {"kl_beta": 0.0}, "grpo[kl_beta=0]", "GRPO no KL"),
        ("real_no_anchor", {}, "real_no_anchor", "REAL w/o anchor"),
    ],
)
def test_variant_of(make_run, method, hparams, key, label):
    v = variant_of(make_run("v", method, hparams=hparams, metrics={1: {}}))
    assert (v.key, v.label) == (key, label)


def test_specs_match_and_missing_variants_are_named(make_run):
    runs = [
        make_run("real0", "real", seed=0, metrics={1: {}}),
        make_run("real1", "real", seed=1, metrics={1: {}}),
        make_run("klold", "real", hparams={"kl_beta": 0.01, "kl_target": "old"}, metrics={1: {}}),
    ]
    specs = [spec("REAL", "real"), spec("KL old", "real", kl_beta=POSITIVE, kl_target="old")]
    sel = select_variants("test", runs, specs)
    assert [s.seeds for s in sel] == [(0, 1), (0,)]
    assert sel[1].variant.label == "REAL KL→old β=0.01"
    with pytest.raises(MissingVariantsError) as e:
        select_variants(
            "figure x", runs, [spec("GRPO", "grpo"), spec("REAL τ=0.1", "real", tau=0.1), specs[0]]
        )
    msg = str(e.value)
    assert "figure x" in msg and "GRPO (method grpo" in msg and "tau=0.1" in msg
    assert "REAL: real0, real1" in msg  # what the runs do hold


def test_duplicate_seed_is_refused(make_run):
    runs = [make_run("a", "real", seed=3, metrics={1: {}}), make_run("b", "real", seed=3, metrics={1: {}})]
    with pytest.raises(ValueError, match="seed"):
        group_runs(runs)


def test_missing_config_keys_name_the_field(tmp_path):
    RunWriter.create(
        tmp_path / "bad", name="bad", method="real", config={"method": "real", "seed": 0}, env={}
    )
    with pytest.raises(RunFormatError, match=r"config\.hparams"):
        variant_of(tmp_path / "bad")
    RunWriter.create(
        tmp_path / "bad2", name="bad2", method="real", config={"hparams": {"tau": -1}, "seed": 0}, env={}
    )
    with pytest.raises(RunFormatError, match="tau"):
        variant_of(tmp_path / "bad2")


def test_describe_runs(make_run):
    run = make_run("d", "dapo", seed=5, metrics={1: {}, 2: {}})
    row = describe_runs([run]).iloc[0]
    assert (row["method"], row["seed"], row["steps"], row["last_step"], row["state"]) == (
        "dapo",
        5,
        2,
        2,
        "finished",
    )


def test_join_survives_shuffled_rollouts_and_names_orphans(tmp_path):
    """Rollouts stored out of order still join; a token of an unknown rollout is an error naming the step."""
    w = RunWriter.create(tmp_path / "r", name="r", method="grpo", config={"seed": 0, "hparams": {}}, env={})

    def tables(order, token_rollouts):
        n = len(order)
        rol = {
            "step": [1] * n, "minibatch": [min(r, 1) for r in order], "rollout": order, "group": [0] * n,
            "prompt_id": [0] * n, "prompt": ["p"] * n, "response": ["r"] * n, "answer": ["a"] * n,
            "reward": [float(r < 2) for r in order], "length": [1] * n, "s_bar": [0.0] * n,
            "advantage": [1.0 if r < 2 else -1.0 for r in order], "weight": [1.0] * n,
            "log_c": [math.nan] * n, "used": [True] * n, "group_size": [n] * n, "group_correct": [2] * n,
        }  # fmt: skip
        m = len(token_rollouts)
        s = [math.log(1.5) if r == 2 else 0.0 for r in token_rollouts]
        tok = {
            "step": [1] * m, "rollout": token_rollouts, "pos": list(range(m)), "token_id": [0] * m, "token": ["t"] * m,
            "old_logp": [-1.0] * m, "logp": [-1.0] * m, "s": s, "ratio": list(np.exp(s)), "entropy": [1.0] * m,
            "weight": [1.0] * m, "grad": [0.0] * m,
        }  # fmt: skip
        return rol, tok

    # rollout 2 (minibatch 1, A < 0, ratio 1.5) is stored first
    w.write_step(1, metric_row(), *tables([2, 0, 1], [0, 2, 2, 1]))
    df = token_intervals(tmp_path / "r")
    got = df.set_index(["sign", "interval"])["tokens"]
    assert got[("A<0", ">1+eps")] == 2 and got[("A>0", "[1,1+eps]")] == 1 and df["tokens"].sum() == 3

    w2 = RunWriter.create(tmp_path / "o", name="o", method="grpo", config={"seed": 0, "hparams": {}}, env={})
    w2.write_step(1, metric_row(), *tables([0, 1], [0, 1, 5]))
    with pytest.raises(RunFormatError, match="step 1: tokens of rollout 5"):
        token_intervals(tmp_path / "o")


def test_collect_refuses_two_runs_of_one_name(tmp_path, make_run):
    a = make_run("same", "real", metrics={1: {}})
    other = tmp_path / "elsewhere"
    other.mkdir()
    meta = json.loads((a / "run.json").read_text())
    RunWriter.create(other / "same", name="same", method="real", config=meta["config"], env={})
    with pytest.raises(ValueError, match="named 'same'"):
        collect(training_dynamics, [a, other / "same"])
    assert isinstance(collect(training_dynamics, [a]), pd.DataFrame)


def test_shared_read_is_refreshed_when_the_run_grows(make_run, tmp_path):
    """The cached joined table is keyed by the step files: a new step is seen, cached arrays are read-only."""
    from workbench.stats.load import clear_cache, read_tokens_joined

    from .conftest import rollout_rows, token_rows

    clear_cache()
    rows = [{"reward": 1.0, "advantage": 1.0, "tokens": [(math.log(1.5), 1.0)] * 2}]
    run = make_run("grow", "grpo", {1: rows})
    first = token_intervals(run)
    assert token_intervals(run).equals(first)
    tok, _, _ = read_tokens_joined(run, ["s"], ["sign"], "all")
    with pytest.raises(ValueError):
        tok["s"][0] = 0.0
    w = RunWriter(run)
    rol, toks = rollout_rows([dict(r) for r in rows]), token_rows(rows)
    rol["step"], toks["step"] = [2], [2, 2]
    rol["minibatch"] = [0]  # the new step's only mini-batch is its first
    w.write_step(2, metric_row(), rol, toks)
    assert sorted(token_intervals(run, minibatches="all")["step"].unique()) == [1, 2]


def test_a_run_without_steps_gives_empty_frames(make_run):
    from workbench.stats import c_by_composition, clip_discards, gradient_allocation, real_weights

    run = make_run("empty", "grpo")
    for stat in (token_intervals, clip_discards, gradient_allocation, real_weights, training_dynamics):
        df = stat(run)
        assert df.empty and "run" in df.columns, stat.__name__
    assert c_by_composition(real_weights(run)).empty
    assert math.isnan(final_metric(run).iloc[0]["value"])
