"""ms-swift's ``loss_type="real"`` against ``workbench.objectives.OBJECTIVES["real"]``; run inside .venv-swift by
tests/training/engines/test_swift.py.

The same log-probs, rewards and groups go to ms-swift's own code: its advantage (``swift.rl_core.advantage.
compute_advantages`` with ``scale_rewards="none"``, which ms-swift forces for REAL) and its GRPO trainer's loss
(``GRPOTrainer._compute_loss_and_metrics``, the method its ``compute_loss`` calls on every micro-batch). The
trainer is a stand-in holding only the attributes that method reads (a full trainer needs a model, a template and
a data set), and its forward ``_get_per_token_logps_and_entropies`` returns the given log-probs, so the loss and
its gradient with respect to those log-probs are ms-swift's. Each difference docs/engines.md states is checked as
an equality with the workbench's objective on inputs rewritten by exactly that rule.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from swift.rl_core.advantage import compute_advantages
from swift.rl_core.data import GRPOBatch
from swift.rlhf_trainers.grpo_trainer import GRPOTrainer

from workbench.objectives import OBJECTIVES

torch.set_default_dtype(torch.float64)
N = 4  # rollouts per group (ms-swift's num_generations)


def make(seed: int, groups: int = 6, width: int = 9, s_scale: float = 0.3) -> dict:
    """``groups`` groups of N rollouts in consecutive rows: log-probs, old and reference log-probs, ragged
    masks, 0/1 rewards (the first group all wrong, the second all correct, the others mixed)."""
    g = torch.Generator().manual_seed(seed)
    b = groups * N
    old = -torch.rand(b, width, generator=g) * 3
    logp = old + s_scale * torch.randn(b, width, generator=g)
    ref = old + 0.1 * torch.randn(b, width, generator=g)
    lengths = torch.randint(2, width + 1, (b,), generator=g)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    rewards = (torch.rand(b, generator=g) < 0.5).double()
    rewards[:N], rewards[N : 2 * N] = 0.0, 1.0
    for k in range(2, groups):  # every other group mixes labels
        rewards[k * N], rewards[k * N + 1] = 1.0, 0.0
    return {
        "logp": logp,
        "old": old,
        "ref": ref,
        "mask": mask,
        "rewards": rewards,
        "groups": torch.arange(b) // N,
    }


def swift_trainer(logp: torch.Tensor, *, tau: float = 0.5, beta: float = 0.0, overlong_filter: bool = False):
    """ms-swift's ``GRPOTrainer`` for ``loss_type="real"`` with only the attributes its loss reads; its forward
    returns ``logp``. The settings are ms-swift's defaults for REAL (``importance_sampling_level="token"``, no
    entropy masking, no rollout importance sampling, no off-policy mask, no teacher)."""
    trainer = object.__new__(GRPOTrainer)
    trainer.__dict__.update(
        model=SimpleNamespace(training=True),
        args=SimpleNamespace(top_entropy_quantile=1.0, log_entropy=False, delta=None),
        loss_type="real",
        real_tau=tau,
        num_generations=N,
        beta=beta,
        kl_in_reward=False,
        compute_entropy=False,
        overlong_filter=overlong_filter,
        importance_sampling_level="token",
        rollout_importance_sampling_mode=None,
        log_rollout_offpolicy_metrics=False,
        disable_rollout_importance_sampling=False,
        off_policy_sequence_mask_delta=None,
        _has_teacher=False,
        sdar_loss_coef=0.0,
        chord_sft_iterator=None,
        accelerator=SimpleNamespace(gather_for_metrics=lambda x: x.reshape(-1)),
    )
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (logp, None)
    return trainer


def swift_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """ms-swift's per-rollout advantage for REAL: ``r - mean_group(r)`` over consecutive blocks of N rows."""
    adv, _ = compute_advantages(
        rewards_per_func=rewards[:, None],
        reward_weights=torch.ones(1),
        num_generations=N,
        scale_rewards="none",
    )
    return adv


def swift_loss(
    d: dict,
    rows: torch.Tensor | None = None,
    *,
    rewards: torch.Tensor | None = None,
    truncated: torch.Tensor | None = None,
    **settings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ms-swift's REAL loss on ``rows`` of ``d`` (its micro-batch; the advantage computed over all rows, as
    ms-swift computes it on the gathered batch), and its gradient with respect to all of ``d["logp"]``."""
    rewards = d["rewards"] if rewards is None else rewards
    rows = torch.arange(len(rewards)) if rows is None else rows
    leaf = d["logp"].clone().requires_grad_(True)
    mask = d["mask"][rows]
    adv = (
        swift_advantages(rewards)[rows, None].expand_as(mask).clone()
    )  # per-token, as ms-swift's batch holds
    batch = GRPOBatch(
        completion_mask=mask,
        truncated_mask=torch.zeros(len(rows), dtype=torch.bool) if truncated is None else truncated[rows],
        seq_lengths=mask.sum(-1),
        old_per_token_logps=d["old"][rows],
        ref_per_token_logps=d["ref"][rows],
        advantages=adv,
    )
    trainer = swift_trainer(leaf[rows], **settings)
    loss, _ = trainer._compute_loss_and_metrics(None, {}, batch)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def workbench_loss(
    d: dict,
    rows: torch.Tensor | None = None,
    *,
    rewards: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
    logp: torch.Tensor | None = None,
    **hparams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``OBJECTIVES["real"]`` on ``rows`` of ``d`` and its gradient with respect to all of ``d["logp"]``."""
    rewards = d["rewards"] if rewards is None else rewards
    groups = d["groups"] if groups is None else groups
    rows = torch.arange(len(rewards)) if rows is None else rows
    leaf = (d["logp"] if logp is None else logp).clone().requires_grad_(True)
    res = OBJECTIVES["real"](
        leaf[rows],
        d["old"][rows],
        d["mask"][rows],
        rewards[rows],
        groups[rows],
        ref_logp=d["ref"][rows],
        **hparams,
    )
    (grad,) = torch.autograd.grad(res.loss, leaf)
    return res.loss.detach(), grad


def close(a: tuple, b: tuple) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a[1], b[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tau", [0.5, 0.1, 2.0])
def test_same_loss_and_gradient_on_whole_groups_with_binary_rewards(seed, tau):
    """One micro-batch of whole, consecutive groups, 0/1 rewards: ms-swift's loss and gradient are the
    workbench's REAL (zero anchor, mixed groups only, divided by the micro-batch's prompts)."""
    d = make(seed, s_scale=0.3 if tau >= 0.5 else 2.0)
    ours = workbench_loss(d, tau=tau)
    assert ours[0] > 0 and ours[1].abs().sum() > 0
    close(swift_loss(d, tau=tau), ours)


def test_all_groups_unmixed_gives_zero_loss_and_gradient():
    d = make(0)
    d["rewards"] = (d["groups"] % 2).double()
    loss, grad = swift_loss(d)
    assert loss == 0 and not grad.any()
    close((loss, grad), workbench_loss(d))


def test_normalisation_per_micro_batch_and_accumulation_equals_prompts_of_the_window():
    """ms-swift divides each micro-batch's kept groups' sum by that micro-batch's groups; the Trainer divides by
    the accumulation steps. With equally many groups per micro-batch that is the workbench's
    ``normalize="prompts"`` over the window; the micro-batch loss is exactly ``normalize="sum"`` / its groups."""
    d = make(1, groups=6)
    micro = [torch.arange(k * 2 * N, (k + 1) * 2 * N) for k in range(3)]  # 3 micro-batches of 2 groups
    parts = [swift_loss(d, rows) for rows in micro]
    for rows, part in zip(micro, parts, strict=True):
        summed = workbench_loss(d, rows, normalize="sum")
        close(part, (summed[0] / 2, summed[1] / 2))
    window = (sum(p[0] for p in parts) / 3, sum(p[1] for p in parts) / 3)
    close(window, workbench_loss(d))
    # unequal micro-batches (1 group, then 5): the accumulated mean weights the lone group 5x as much
    uneven = [torch.arange(N), torch.arange(N, 6 * N)]
    d["rewards"][:N] = torch.tensor([1.0, 0.0, 0.0, 1.0])  # the lone group is mixed
    parts = [swift_loss(d, rows) for rows in uneven]
    acc = sum(p[0] for p in parts) / 2
    first, rest = (workbench_loss(d, rows, normalize="sum")[0] for rows in uneven)
    torch.testing.assert_close(acc, (first / 1 + rest / 5) / 2, rtol=1e-10, atol=0)
    assert not torch.isclose(acc, workbench_loss(d)[0])


def test_labels_are_the_sign_of_the_advantage():
    """Graded rewards: ms-swift labels a rollout correct when its reward is above its group's mean (its
    advantage with ``scale_rewards="none"`` is > 0), wrong at or below it; the workbench refuses such rewards,
    and on those labels gives ms-swift's loss and gradient."""
    d = make(2)
    g = torch.Generator().manual_seed(5)
    graded = torch.rand(len(d["rewards"]), generator=g).round(decimals=1)
    graded[N : 2 * N] = 0.7  # a group of equal rewards: no label above the mean, dropped
    labels = (graded > graded.view(-1, N).mean(1).repeat_interleave(N)).double()
    assert labels.sum() > 0 and (labels != (graded >= 0.5).double()).any()
    with pytest.raises(ValueError, match="binary rewards"):
        workbench_loss(d, rewards=graded)
    theirs = swift_loss(d, rewards=graded)
    close(theirs, workbench_loss(d, rewards=labels))
    assert not torch.isclose(theirs[0], workbench_loss(d, rewards=(graded >= 0.5).double())[0])


def test_groups_are_consecutive_blocks_of_num_generations_rows():
    """ms-swift groups rows by position (``view(-1, num_generations)``), not by prompt: rows arriving out of
    group order are grouped by position, the workbench's result with group ids ``position // N``; the workbench
    with the true ids gives a different loss. A micro-batch that is not a multiple of N fails on the reshape."""
    d = make(3)
    perm = torch.randperm(len(d["rewards"]), generator=torch.Generator().manual_seed(1))
    shuffled = {k: v[perm] for k, v in d.items()}
    by_position = torch.arange(len(perm)) // N
    theirs = swift_loss(shuffled)
    close(theirs, workbench_loss(shuffled, groups=by_position))
    assert not torch.isclose(theirs[0], workbench_loss(shuffled)[0])
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        swift_loss(d, torch.arange(N + 1))


def test_kl_term_is_the_token_mean_k3_of_the_micro_batch():
    """``beta > 0``: ms-swift adds ``beta`` times the k3 KL to the reference as a token mean over the micro-batch
    (log-ratios clamped at +-20, k3 at 10: no effect here), the workbench's ``kl_beta`` with ``kl_target="ref"``."""
    d = make(4)
    theirs = swift_loss(d, beta=0.04)
    close(theirs, workbench_loss(d, kl_beta=0.04))
    assert not torch.isclose(theirs[0], swift_loss(d)[0])


def test_overlong_filter_keeps_a_truncated_rollout_as_wrong_with_zero_score():
    """``overlong_filter``: a truncated rollout's completion mask is zeroed, so it stays in its group with
    ``s_bar = 0`` and advantage read as 0, a wrong rollout, whatever its reward, and gets no gradient."""
    d = make(5)
    truncated = torch.zeros(len(d["rewards"]), dtype=torch.bool)
    row = 2 * N  # correct rollout of a mixed group
    assert d["rewards"][row] == 1
    truncated[row] = True
    loss, grad = swift_loss(d, truncated=truncated, overlong_filter=True)
    assert not grad[row].any()
    rewards = d["rewards"].clone()
    rewards[row] = 0.0
    logp = d["logp"].clone()
    logp[row] = d["old"][row]  # s_bar = 0
    ours_loss, ours_grad = workbench_loss(d, rewards=rewards, logp=logp)
    ours_grad[row] = 0.0  # the workbench would still train that row; ms-swift does not
    close((loss, grad), (ours_loss, ours_grad))
    assert not torch.isclose(loss, swift_loss(d)[0])
