"""Rows whose ``dL/dlogp`` is zero skip the backward pass (``training.loop.SKIP_ZERO_GRADIENT_ROWS``): each
optimizer step sees the gradient of the plain one-pass update to float rounding, the rows back-propagated are
exactly those with a non-zero logged gradient, and a mini-batch with none still takes its AdamW step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import training.loop
from tests.training.conftest import assert_same_logs, small_config
from training.loop import Trainer
from training.model import make_scoring_batch, response_logprobs, select_rows
from workbench.methods import DEFAULTS
from workbench.objectives import OBJECTIVES
from workbench.runlog import TOKENS_SCHEMA, open_run


def _run(out, ws_cache, grader, method: str, skip: bool, monkeypatch, **kw):
    """One step; returns (run, the gradients at each optimizer step, rows forwarded with autograd per call).
    ``kw["nograd_rows"]``, a list, if given, receives the rows of each policy forward without autograd."""
    monkeypatch.setattr(training.loop, "SKIP_ZERO_GRADIENT_ROWS", skip)
    grad_rows: list[int] = []
    nograd_rows: list[int] = kw.pop("nograd_rows", [])
    real_logprobs = (
        training.model.response_logprobs
    )  # not the name in training.loop: a wrapper of a run before

    def counting(model, batch, *a, **k):
        if torch.is_grad_enabled():
            grad_rows.append(int(batch.input_ids.shape[0]))
        elif model.training:  # the policy (the reference model is in eval mode)
            nograd_rows.append(int(batch.input_ids.shape[0]))
        return real_logprobs(model, batch, *a, **k)

    monkeypatch.setattr(training.loop, "response_logprobs", counting)
    cfg = small_config(method, ws_cache, steps=1, save_every=0, val_every=0, **kw)
    grads: list[list[torch.Tensor]] = []
    moves: list[float] = []

    class Recording(Trainer):
        def setup(self) -> None:
            super().setup()
            step = self.opt.step

            def recording_step(*a, **k):
                grads.append([p.grad.detach().clone() for p in self.model.parameters()])
                before = [p.detach().clone() for p in self.model.parameters()]
                out = step(*a, **k)
                moves.append(
                    max(
                        float((p.detach() - b).abs().max())
                        for p, b in zip(self.model.parameters(), before, strict=True)
                    )
                )
                return out

            self.opt.step = recording_step

    Recording(cfg, out, grader=grader, log=lambda _: None).run()
    return open_run(out), grads, grad_rows, moves


# 4 updates of 2 groups: some mixed, some not, the first update included (seed 1)
MIXED = {"batch_prompts": 8, "minibatch_prompts": 2, "seed": 1}


@pytest.mark.parametrize(("method", "kl"), [("grpo", 0.0), ("real", 0.0), ("grpo", 0.01)])
def test_skipping_zero_gradient_rows_keeps_every_gradient(
    method, kl, ws_cache, grader, tmp_path, monkeypatch
):
    nograd_rows: list[int] = []
    fast, g_fast, rows_fast, _ = _run(
        tmp_path / "fast",
        ws_cache,
        grader,
        method,
        True,
        monkeypatch,
        kl_beta=kl,
        nograd_rows=nograd_rows,
        **MIXED,
    )
    plain, g_plain, rows_plain, _ = _run(
        tmp_path / "plain", ws_cache, grader, method, False, monkeypatch, kl_beta=kl, **MIXED
    )
    assert len(g_fast) == len(g_plain) > 1
    for update, (a, b) in enumerate(zip(g_fast, g_plain, strict=True)):
        scale = max(float(x.abs().max()) for x in b) or 1.0
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-5 * scale, msg=f"update {update}")
    tokens, plain_tokens = (r.read("tokens", columns=[*TOKENS_SCHEMA.names, "minibatch"]).to_pandas()
                            for r in (fast, plain))  # fmt: skip
    mixed = fast.rollouts().groupby(["minibatch", "group"]).reward.nunique() > 1
    assert mixed.any() and not mixed.all(), "the fixed seed no longer mixes groups with and without gradient"
    assert sum(rows_plain) == len(fast.rollouts())  # one row per rollout and update, all back-propagated
    if kl == 0:  # exactly the rows with a non-zero logged gradient were back-propagated
        carrying = tokens[tokens.grad != 0].groupby(["minibatch", "rollout"]).size()
        assert sum(rows_fast) == len(carrying) < sum(rows_plain)
        # the others ran one forward without autograd, for their logs, except in the first update: there the
        # sampler's log-probs are theirs (the weights that sampled), and they ran no forward at all
        first = fast.rollouts().minibatch == 0
        first_carrying = len(carrying[carrying.index.get_level_values("minibatch") == 0])
        assert 0 < first_carrying < first.sum()
        assert sum(nograd_rows) == len(fast.rollouts()) - len(carrying) - (first.sum() - first_carrying)
    else:  # the KL term (not in the logged grad) reaches rows the prediction at logp = old leaves out (at step
        # 1 old = ref): a second pass back-propagates them, and the gradients above still agree
        assert len(rows_fast) > len(g_fast)
    assert (tokens.s[tokens.minibatch == 0] == 0).all()  # the first update's old log-probs are its own
    for col in ("logp", "ratio", "weight", "grad"):
        np.testing.assert_allclose(tokens[col], plain_tokens[col], rtol=1e-4, atol=2e-5, err_msg=col)


def test_a_mini_batch_without_gradient_still_takes_its_adamw_step(ws_cache, grader, tmp_path, monkeypatch):
    """One group per mini-batch (4 rollouts): a group whose rollouts all got the same reward has no gradient;
    its update still moves the weights by AdamW's momentum, as the one-pass update does."""
    fast, g_fast, _, moves = _run(tmp_path / "fast", ws_cache, grader, "grpo", True, monkeypatch, kl_beta=0.0)
    rollouts = fast.rollouts()
    flat = rollouts.groupby("minibatch").reward.nunique() == 1
    assert flat.any(), "the fixed seed no longer gives a group with one reward"
    for update in flat[flat].index:
        assert all(float(g.abs().max()) == 0 for g in g_fast[update])
        if update > 0:  # AdamW's momentum from the earlier updates moves the weights
            assert moves[update] > 0
    assert len(g_fast) == len(flat)


def test_select_rows_drops_columns_that_are_padding_in_every_selected_row():
    prompts = [[3, 4, 5, 6, 7], [8, 9]]
    responses = [[10, 11, 12, 13], [14]]
    batch = make_scoring_batch(prompts, responses, 0, torch.device("cpu"))
    part = select_rows(batch, [1])
    assert part.input_ids.tolist() == [[8, 9, 14]] and part.response_width == 1
    assert part.response_mask.tolist() == [[True]]
    model = training.model.build_tiny_model(training.model.TinyModelSpec(32, 2, 2, 64, 64), 20, 0, 1, seed=0)
    with torch.no_grad():
        whole = response_logprobs(model, batch, 0.7)[0]
        alone = response_logprobs(model, part, 0.7)[0]
    torch.testing.assert_close(alone[0, :1], whole[1, :1], rtol=0, atol=1e-6)


def test_with_dropout_every_row_is_back_propagated_from_its_one_forward(
    ws_cache, grader, tmp_path, monkeypatch
):
    """A second forward under dropout would draw another mask (its gradient not the logged loss's): a model
    that is stochastic in training keeps the one-pass update."""
    monkeypatch.setattr(training.loop, "stochastic_in_training", lambda model: True)
    run, _, grad_rows, _ = _run(
        tmp_path / "run", ws_cache, grader, "grpo", True, monkeypatch, kl_beta=0.0, **MIXED
    )
    assert grad_rows == [8, 8, 8, 8]  # each update: its 8 rows, with autograd, once
    assert len(run.rollouts()) == 32


def test_after_an_update_without_backward_only_parameters_a_backward_reaches_get_zero_gradients():
    """AdamW steps a parameter with a gradient (zeros included) and passes over one without: an update in which no
    row was back-propagated gives zeros exactly to the parameters a backward pass reached before."""
    from types import SimpleNamespace

    model = training.model.build_tiny_model(training.model.TinyModelSpec(32, 1, 2, 64, 64), 20, 0, 1, seed=0)
    model.unused = torch.nn.Linear(3, 3)  # never in the forward: no backward reaches it
    trainable = [p for p in model.parameters() if p.requires_grad]
    host = SimpleNamespace(model=model, _trainable=trainable, _reached_params=None)
    ids = torch.tensor([[3, 4, 5]])
    model(input_ids=ids).logits.sum().backward()  # an update with a backward: what it reaches is recorded
    Trainer._zero_grads_if_no_backward(host)
    assert host._reached_params is not None and not all(host._reached_params)
    model.zero_grad(set_to_none=True)  # the next update back-propagates no row
    Trainer._zero_grads_if_no_backward(host)
    assert model.unused.weight.grad is None and model.unused.bias.grad is None
    used = [p for n, p in model.named_parameters() if not n.startswith("unused")]
    assert all(p.grad is not None and not p.grad.any() for p in used)


@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_the_prediction_at_old_covers_every_row_with_gradient_for_every_method(method):
    """``_rows_with_gradient`` (the objective's gradient at ``logp = old_logp``) names, for every registered
    objective without a KL term, exactly the rows of groups with mixed rewards; at log-probs moved away from
    old, no other row has a gradient (so the second pass is only a safety net)."""
    from types import SimpleNamespace

    from tests.conftest import random_batch

    b = random_batch(3, sizes=(4, 3, 5, 2, 4), dtype=torch.float32)
    rewards = b.rewards.clone()
    groups = b.group_ids
    for gid, value in ((100, 1.0), (114, 0.0)):  # one group all correct, one all wrong
        rewards[groups == gid] = value
    mask = b.mask
    old = torch.where(mask, b.old_logp, torch.zeros(()))
    moved = torch.where(mask, b.logp.detach(), torch.zeros(()))
    kl = {"kl_beta": 0.0} if hasattr(DEFAULTS[method], "kl_beta") else {}
    host = SimpleNamespace(objective=OBJECTIVES[method])
    predicted = Trainer._rows_with_gradient(host, old, mask, rewards, groups, None, kl)
    mixed = np.array([len(set(rewards[groups == g].tolist())) > 1 for g in groups.tolist()])
    assert (predicted == mixed).all(), method
    probe = moved.clone().requires_grad_(True)
    OBJECTIVES[method](probe, old, mask, rewards, groups, **kl).loss.backward()
    carrying = (probe.grad != 0).any(1).numpy()
    assert not (carrying & ~predicted).any(), f"{method}: a row outside the prediction has gradient"


def test_forwards_on_a_second_thread_log_the_same_bits(ws_cache, grader, tmp_path, monkeypatch):
    """The rows without gradient of updates 2.. are forwarded on a second thread beside the rows with gradient
    (``OVERLAP_FORWARDS``): every logged value is bit-identical to forwarding them after the others."""
    submitted: list[int] = []

    class Counting(Trainer):
        def setup(self) -> None:
            super().setup()
            submit = self._beside.submit

            def counting(fn, *a, **k):
                submitted.append(1)
                return submit(fn, *a, **k)

            self._beside.submit = counting

    for overlap in (True, False):
        monkeypatch.setattr(training.loop, "OVERLAP_FORWARDS", overlap)
        cfg = small_config("grpo", ws_cache, steps=2, save_every=0, val_every=0, kl_beta=0.0, **MIXED)
        Counting(cfg, tmp_path / str(overlap), grader=grader, log=lambda _: None).run()
        if overlap:
            assert len(submitted) > 0
            with_overlap = len(submitted)
    assert len(submitted) == with_overlap  # none with the switch off
    assert_same_logs(tmp_path / "True", tmp_path / "False")


def test_a_rope_that_depends_on_the_sequence_length_keeps_forwards_apart():
    from types import SimpleNamespace

    from training.model import rope_depends_on_length

    assert rope_depends_on_length(SimpleNamespace(rope_parameters={"rope_type": "dynamic", "factor": 2.0}))
    assert rope_depends_on_length(SimpleNamespace(rope_scaling={"type": "longrope"}))
    assert not rope_depends_on_length(SimpleNamespace(rope_parameters={"rope_type": "default"}))
    assert not rope_depends_on_length(SimpleNamespace())
    per_layer_type = {
        "full_attention": {"rope_type": "default"},
        "sliding_attention": {"rope_type": "dynamic"},
    }
    assert rope_depends_on_length(SimpleNamespace(rope_parameters=per_layer_type))
