"""Every method trains for a few real steps on the (scaled-down) tiny preset, and its logs are consistent with
the objective's equations: s_bar is the mean of s_t, s_t = 0 in a step's first mini-batch, REAL weights are
bounded by 1/tau and equal the closed form, token weights add up to rollout weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.training.conftest import small_config
from training.loop import Trainer
from training.seeding import prompt_indices
from training.task import Problem, make_splits
from workbench.closed_forms import real_weight
from workbench.methods import CLIP_METHODS, METHODS, REAL_METHODS, SPECS, CurveScenario, resolve_hparams
from workbench.runlog import METRICS_SCHEMA, ROLLOUTS_SCHEMA, TOKENS_SCHEMA, open_run

STEPS = 3


@pytest.fixture(scope="module")
def runs(ws_cache, grader, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method in METHODS:
        cfg = small_config(method, ws_cache, steps=STEPS)
        cfg.validate()
        Trainer(cfg, root / method, grader=grader, log=lambda _: None).run()
        out[method] = open_run(root / method)
    return out


def _frames(run):
    extra_rollout = ["epoch", "finished", "grade_status"]
    extra_token = ["minibatch", "keep"]
    ro = run.read("rollouts", columns=ROLLOUTS_SCHEMA.names + extra_rollout).to_pandas()
    tok = run.read("tokens", columns=TOKENS_SCHEMA.names + extra_token).to_pandas()
    return ro, tok


@pytest.mark.parametrize("method", METHODS)
def test_run_is_complete_and_metrics_are_sane(runs, method):
    run = runs[method]
    assert run.status()["state"] == "finished"
    assert run.steps() == list(range(1, STEPS + 1))
    m = run.metrics()
    assert list(m.columns) == METRICS_SCHEMA.names
    finite = m.drop(columns=["val_pass1"])
    assert np.isfinite(finite.to_numpy(dtype=float)).all()
    assert m.val_pass1.isna().tolist() == [True, False, False]  # every 2 steps and at the last
    assert m.reward_mean.between(0, 1).all() and m.entropy_mean.ge(0).all()
    assert (m.time_step >= m.time_sample + m.time_grade + m.time_update + m.time_log - 1e-6).all()
    assert (m.grader_timeouts == 0).all() and (m.grader_errors == 0).all()
    assert run.config["method"] == method and run.config["hparams"]
    from importlib.metadata import version

    assert run.env["packages"]["torch"] == version("torch") and run.env["seed"] == run.config["seed"] == 0
    assert run.env["torch_threads"] == 1 and run.env["warmstart"]["pass_rate"] > 0
    assert (run.dir / "checkpoints" / f"step_{STEPS:06d}" / "model.pt").is_file()


@pytest.mark.parametrize("method", METHODS)
def test_logs_match_the_objective(runs, method, grader):
    ro, tok = _frames(runs[method])
    cfg = small_config(method, "unused")
    n_rollouts = cfg.batch_prompts * cfg.group_size
    assert len(ro) == STEPS * n_rollouts and set(ro.minibatch) == set(range(cfg.n_minibatches))
    assert (ro.groupby("step").rollout.nunique() == n_rollouts).all()
    assert ro.used.any(), "no group mixed correct and wrong rollouts: the checks below would be vacuous"

    # s_bar is the mean of the logged s_t; lengths agree with the token rows.
    key = ["step", "minibatch", "rollout"]
    per = tok.groupby(key).agg(s_mean=("s", "mean"), n=("s", "size"), w=("weight", "sum"))
    joined = ro.set_index(key).join(per, how="inner")
    assert len(joined) == len(ro)
    np.testing.assert_allclose(joined.s_bar, joined.s_mean, atol=1e-6)
    assert (joined.length == joined.n).all()
    np.testing.assert_allclose(tok.ratio, np.exp(tok.s), rtol=1e-5)
    np.testing.assert_allclose(tok.s, tok.logp - tok.old_logp, atol=1e-5)

    # s_t = 0 in each step's first mini-batch (the policy that sampled is the one being scored); the policy
    # moves after it (non-vacuous).
    first = tok[tok.minibatch == 0]
    assert first.s.abs().max() <= 1e-6 and set(first.step) == set(range(1, STEPS + 1))
    later = tok[tok.minibatch > 0]
    assert later.s.abs().max() > 1e-6

    # Token weights add up to the rollout weight.
    np.testing.assert_allclose(joined.w, joined.weight, rtol=1e-4, atol=1e-7)
    assert (tok.weight >= 0).all() and (tok.entropy >= -1e-6).all()

    hp = runs[method].config["hparams"]
    if method in REAL_METHODS:
        tau = hp["tau"]
        assert joined.weight.max() <= 1 / tau + 1e-6
        used = joined[joined.used]
        expected = real_weight(
            used.s_bar.to_numpy(), used.log_c.to_numpy(), tau, used.reward.to_numpy() > 0.5
        )
        np.testing.assert_allclose(used.weight, expected, rtol=1e-4, atol=1e-7)
        assert (joined[~joined.used].weight == 0).all()
        assert joined.advantage.isna().all()
        if method == "real_bce":
            assert (used.log_c == 0).all()
        elif method == "real":
            assert (used.log_c >= 0).all()  # C >= 1: the anchor term
        assert np.isfinite(used.log_c).all()
        # the exact gradient pushes correct rollouts up (dL/dlogp < 0) and wrong ones down
        signs = tok.join(ro.set_index(key)[["reward"]], on=key)
        assert (signs[signs.reward > 0.5].grad <= 0).all() and (signs[signs.reward < 0.5].grad >= 0).all()
    else:
        assert method in CLIP_METHODS and joined.log_c.isna().all()
        # weight = the spec's per-token weight (GRPO: |A| e^{s_t} I_clip; GSPO on s_bar; CISPO |A| clip(e^{s_t}))
        # at the logged advantage, divided by |o|; a token whose gradient is clipped away carries weight 0
        spec, hpo = SPECS[method], resolve_hparams(method, hp)
        t = tok.join(ro.set_index(key)[["advantage", "length", "s_bar"]], on=key)
        log_ratio = (t.s_bar if spec.ratio == "sequence" else t.s).to_numpy()
        expected = np.zeros(len(t))
        for a in np.unique(t.advantage):
            sel = (t.advantage == a).to_numpy()
            if a != 0:
                w = spec.curve(log_ratio[sel], bool(a > 0), hpo, CurveScenario(advantage=abs(float(a))))
                expected[sel] = w / t.length.to_numpy()[sel]
        np.testing.assert_allclose(t.weight, expected, rtol=1e-4, atol=1e-7)
        assert (t.weight[~t.keep] == 0).all()
        # advantages are group-normalised: zero mean in every group
        means = ro[ro.minibatch >= 0].groupby(["step", "group"]).advantage.mean()
        np.testing.assert_allclose(means, 0, atol=1e-5)

    # Rewards are what the grader says about the logged response and answer.
    sample = ro.drop_duplicates(["response", "answer"]).head(40)
    assert grader.grade(sample.response.tolist(), sample.answer.tolist()).rewards == sample.reward.tolist()


def test_grpo_logs_its_kl_gradient_and_others_do_not(runs):
    cols = lambda m: runs[m].read("tokens", steps=[1], columns=None).column_names  # noqa: E731
    assert "grad_kl" not in cols("real")
    tbl = pd.read_parquet(runs["grpo"].dir / "tokens" / "step_000002.parquet")
    assert "grad_kl" in tbl.columns and tbl.grad_kl.abs().max() > 0


def test_a_hanging_gold_answer_costs_its_rewards_not_the_run(ws_cache, grader, tmp_path):
    """A power tower as a gold answer makes math-verify hang on every rollout of that prompt: those rollouts get
    reward 0 and are counted as timeouts in the step's metrics; the run finishes."""
    cfg = small_config("real", ws_cache, steps=1, grader_timeout=1.0, val_every=0)
    splits = make_splits(cfg.task_spec())
    victim = int(prompt_indices(cfg.seed, 1, cfg.batch_prompts, len(splits["train"]))[0])
    p = splits["train"][victim]
    splits["train"][victim] = Problem(p.id, p.prompt, "9^{9^{9^{9^{9}}}}", p.solution, p.source)
    Trainer(cfg, tmp_path / "r", grader=grader, splits=splits, log=lambda _: None).run()
    run = open_run(tmp_path / "r")
    m = run.metrics()
    assert m.grader_timeouts.tolist() == [cfg.group_size] and run.status()["state"] == "finished"
    ro = run.read("rollouts", columns=["group", "reward", "grade_status"]).to_pandas()
    assert (ro[ro.group == 0].grade_status == "timeout").all() and (ro[ro.group == 0].reward == 0).all()
    assert (ro[ro.group != 0].grade_status == "ok").all()
    events = [json.loads(line) for line in (run.dir / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "grader" and e["timeouts"] == cfg.group_size for e in events)


def test_micro_batches_give_the_same_update_and_epochs_log_every_pass(ws_cache, grader, tmp_path):
    """Two-pass micro-batching (gradient of the whole mini-batch's loss, back-propagated chunk by chunk) gives
    the update of a single pass; with two epochs every rollout is logged once per update."""
    logs = {}
    for name, extra in {"whole": {}, "micro": {"micro_batch_rollouts": 3}, "epochs": {"epochs": 2}}.items():
        cfg = small_config("grpo", ws_cache, steps=1, val_every=0, **extra)
        Trainer(cfg, tmp_path / name, grader=grader, log=lambda _: None).run()
        logs[name] = open_run(tmp_path / name)
    a, b = logs["whole"].metrics(), logs["micro"].metrics()
    for col in ("loss", "grad_norm", "approx_kl", "clip_frac_low", "clip_frac_high"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-4, atol=1e-7)
    wa = torch.load(logs["whole"].dir / "checkpoints/step_000001/model.pt", weights_only=True)
    wb = torch.load(logs["micro"].dir / "checkpoints/step_000001/model.pt", weights_only=True)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)
    ro = logs["epochs"].read("rollouts", columns=["rollout", "minibatch", "epoch"]).to_pandas()
    cfg = small_config("grpo", ws_cache)
    assert (ro.groupby("rollout").size() == 2).all()
    assert sorted(set(ro.minibatch)) == list(range(2 * cfg.n_minibatches)) and set(ro.epoch) == {0, 1}
    assert not math.isnan(logs["epochs"].metrics().loss.iloc[0])


def test_a_local_model_folder_trains_through_the_same_loop(ws_cache, grader, tmp_path):
    """``--model PATH`` loads any local causal-LM folder with its tokenizer (here the cached warm start, which is
    a ``save_pretrained`` folder); the paper presets validate with it."""
    from training.warmstart import load_or_train

    base = small_config("gspo", ws_cache)
    _, _, info = load_or_train(base, make_splits(base.task_spec()), grader, log=lambda _: None)
    cfg = small_config("gspo", ws_cache, model=info["path"], warmstart=False, steps=1, val_every=0)
    cfg.validate()
    Trainer(cfg, tmp_path / "r", grader=grader, log=lambda _: None).run()
    run = open_run(tmp_path / "r")
    assert run.steps() == [1] and run.config["model"] == info["path"] and "warmstart" not in run.env
    tok = run.read("tokens", columns=["token", "token_id"]).to_pandas()
    assert len(tok) and (tok.token.str.len() > 0).all()
    from training.config import build_config

    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "1+1=?", "answer": "2"}\n')
    paper = build_config(
        "paper-1.5b",
        {
            "method": "real",
            "model": info["path"],
            "device": "cpu",
            "backend": "transformers",
            "train_data": str(data),
        },
    )
    paper.validate()
    assert paper.batch_prompts == 128 and paper.hparams().kl_beta == 0
