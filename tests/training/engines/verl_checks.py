"""Checks against verl's own code; run inside .venv-verl by tests/engines/test_verl.py (not collected directly).

Every comparison feeds identical tensors to verl's functions (its policy losses, ``ppo_loss``, its data path
``DataProto -> TensorDict -> left_right_2_no_padding -> prepare_micro_batches``) and to ``workbench.objectives``,
and compares the loss and the gradient with respect to the same leaf log-probs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", message=".*megatron.*")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.utils.seqlen_balancing import get_seqlen_balanced_partitions  # noqa: E402
from verl.workers.config import FSDPActorConfig  # noqa: E402
from verl.workers.engine.utils import prepare_micro_batches  # noqa: E402
from verl.workers.utils.losses import ppo_loss  # noqa: E402
from verl.workers.utils.padding import left_right_2_no_padding  # noqa: E402

from training.engines import verl_real  # noqa: E402
from training.engines.records import read_update_shards  # noqa: E402
from workbench.groups import GroupLayout, group_advantages  # noqa: E402
from workbench.methods import resolve_hparams  # noqa: E402
from workbench.objectives import OBJECTIVES  # noqa: E402
from workbench.runlog import RunWriter, open_run  # noqa: E402
from workbench.step_tables import RolloutFacts, build_step  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DT = torch.float64


@dataclass
class Rollouts:
    """P prompts x n rollouts, left-padded prompts and right-padded responses, as verl's rollout produces them."""

    prompts: torch.Tensor
    responses: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    old_logp: torch.Tensor  # [B, R], 0 on padding
    logp: torch.Tensor  # [B, R] leaf, requires grad
    ref_logp: torch.Tensor
    rewards: torch.Tensor  # [B] binary
    uids: list[str]

    @property
    def group_ids(self) -> torch.Tensor:
        index: dict[str, int] = {}
        return torch.tensor([index.setdefault(u, len(index)) for u in self.uids])

    def data_proto(self) -> DataProto:
        b, r = self.responses.shape
        scores = torch.zeros(b, r, dtype=torch.float32)
        last = self.response_mask.sum(1) - 1
        scores[torch.arange(b), last] = self.rewards.float()
        input_ids = torch.cat([self.prompts, self.responses], 1)
        position_ids = (self.attention_mask.cumsum(1) - 1).clamp(min=0)
        tensors = {
            "prompts": self.prompts,
            "responses": self.responses,
            "input_ids": input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": position_ids,
            "response_mask": self.response_mask,
            "old_log_probs": self.old_logp.float(),
            "ref_log_prob": self.ref_logp.float(),
            "token_level_scores": scores,
            "row_id": torch.arange(b),
        }
        return DataProto.from_dict(tensors=tensors, non_tensors={"uid": np.array(self.uids, dtype=object)})

    def tensordict(self, **meta):
        td = left_right_2_no_padding(self.data_proto().to_tensordict())
        tu.assign_non_tensor(td, **meta)
        return td


def make_rollouts(
    seed: int, n_prompts: int = 4, n: int = 4, max_resp: int = 7, s_scale: float = 0.3
) -> Rollouts:
    g = torch.Generator().manual_seed(seed)
    b = n_prompts * n
    p_len = torch.randint(2, 5, (b,), generator=g)
    r_len = torch.randint(1, max_resp + 1, (b,), generator=g)
    p_max = 4
    prompts = torch.zeros(b, p_max, dtype=torch.long)
    responses = torch.zeros(b, max_resp, dtype=torch.long)
    att = torch.zeros(b, p_max + max_resp, dtype=torch.long)
    for i in range(b):
        prompts[i, p_max - p_len[i] :] = torch.randint(3, 50, (int(p_len[i]),), generator=g)
        responses[i, : r_len[i]] = torch.randint(3, 50, (int(r_len[i]),), generator=g)
        att[i, p_max - p_len[i] : p_max + r_len[i]] = 1
    resp_mask = (torch.arange(max_resp).unsqueeze(0) < r_len.unsqueeze(1)).long()
    old = -torch.rand(b, max_resp, generator=g, dtype=DT) * 3 * resp_mask
    logp = (old + s_scale * torch.randn(b, max_resp, generator=g, dtype=DT)) * resp_mask
    ref = (old + 0.1 * torch.randn(b, max_resp, generator=g, dtype=DT)) * resp_mask
    rewards = torch.randint(0, 2, (b,), generator=g).to(DT)
    rewards[0], rewards[1] = 1.0, 0.0  # at least one group mixes labels
    uids = [f"prompt-{i // n}" for i in range(b)]
    # float32 round trip: verl stores old/ref log-probs in float32
    return Rollouts(
        prompts,
        responses,
        att,
        resp_mask,
        old.float().to(DT),
        logp.clone().requires_grad_(True),
        ref.float().to(DT),
        rewards,
        uids,
    )


def nested_log_probs(ro: Rollouts, td, leaf: torch.Tensor) -> torch.Tensor:
    """verl's model output: log-probs over each whole (prompt + response) sequence, as a jagged nested tensor,
    with the response's log-probs at the positions ``no_padding_2_padding`` reads (each token's predecessor)."""
    rows = td["row_id"].tolist()
    pieces, offsets = [], [0]
    for i in rows:
        p = int(ro.attention_mask[i, : ro.prompts.shape[1]].sum())
        r = int(ro.response_mask[i].sum())
        seq = torch.zeros(p + r, dtype=leaf.dtype)
        seq = torch.cat([seq[: p - 1], leaf[i, :r], seq[p - 1 + r :]])
        pieces.append(seq)
        offsets.append(offsets[-1] + p + r)
    return torch.nested.nested_tensor_from_jagged(torch.cat(pieces), offsets=torch.tensor(offsets))


def actor_config(**kw) -> FSDPActorConfig:
    base = dict(
        strategy="fsdp",
        rollout_n=4,
        ppo_mini_batch_size=4,
        ppo_micro_batch_size_per_gpu=4,
        clip_ratio=0.2,
        clip_ratio_c=3.0,
        loss_agg_mode="seq-mean-token-mean",
    )
    base.update(kw)
    return FSDPActorConfig(**base)


def grad_of(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, leaf)
    return g


# -------------------------------------------------------------------- clip family == verl's policy losses


CLIP_CASES = [
    # (method, our hparams, verl loss_mode, verl config)
    ("grpo", {"kl_beta": 0.0, "dual_clip": 3.0}, "vanilla", {"loss_agg_mode": "seq-mean-token-mean"}),
    (
        "dapo",
        {"dual_clip": 3.0},
        "vanilla",
        {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "loss_agg_mode": "token-mean"},
    ),
    (
        "gspo",
        {},
        "gspo",
        {"clip_ratio_low": 3e-4, "clip_ratio_high": 4e-4, "loss_agg_mode": "seq-mean-token-mean"},
    ),
    (
        "gspo",
        {"loss_agg": "token-mean"},
        "gspo",
        {"clip_ratio_low": 3e-4, "clip_ratio_high": 4e-4, "loss_agg_mode": "token-mean"},
    ),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("method", "ours", "mode", "verl_cfg"), CLIP_CASES)
def test_clip_family_equals_verl_policy_loss(seed, method, ours, mode, verl_cfg):
    """Loss and gradient of grpo/dapo/gspo == verl's vanilla / GSPO policy loss on identical tensors, with the
    advantages verl's GRPO estimator computes from the same rewards and uids."""
    ro = make_rollouts(seed, s_scale=0.6 if method != "gspo" else 3e-4)
    mask = ro.response_mask.bool()
    token_rewards = torch.zeros_like(ro.old_logp)
    token_rewards[torch.arange(len(ro.uids)), ro.response_mask.sum(1) - 1] = ro.rewards
    adv_verl, _ = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=token_rewards, response_mask=ro.response_mask.to(DT), index=np.array(ro.uids)
    )
    ours_adv = group_advantages(ro.rewards, GroupLayout.from_ids(ro.group_ids), 1e-6)
    torch.testing.assert_close(adv_verl[:, 0], ours_adv, rtol=1e-6, atol=1e-9)

    res = OBJECTIVES[method](ro.logp, ro.old_logp, mask, ro.rewards, ro.group_ids, **ours)
    cfg = actor_config(**verl_cfg)
    fn = core_algos.get_policy_loss_fn(mode)
    loss_v, _ = fn(ro.old_logp, ro.logp, adv_verl, mask, loss_agg_mode=cfg.loss_agg_mode, config=cfg)
    torch.testing.assert_close(res.loss, loss_v, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(grad_of(res.loss, ro.logp), grad_of(loss_v, ro.logp), rtol=1e-6, atol=1e-12)


# Methods added as one spec each (issue 14): CISPO against verl's ``cispo`` policy loss, Dr. GRPO against verl's
# vanilla loss with the un-normalised GRPO advantage and ``seq-mean-token-sum-norm`` aggregation.
SPEC_CASES = [
    # (method, our hparams, verl loss_mode, verl config, verl divides the advantage by the std)
    (
        "cispo",
        {},
        "cispo",
        {"clip_ratio_low": 1.0, "clip_ratio_high": 4.0, "loss_agg_mode": "token-mean"},
        True,
    ),
    (
        "cispo",
        {"w_min": 0.8, "w_max": 1.28},
        "cispo",
        {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "loss_agg_mode": "token-mean"},
        True,
    ),
    (
        "dr_grpo",
        {"dual_clip": 3.0},
        "vanilla",
        {"clip_ratio": 0.2, "loss_agg_mode": "seq-mean-token-sum-norm"},
        False,
    ),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("method", "ours", "mode", "verl_cfg", "std"), SPEC_CASES)
def test_added_methods_equal_verl_policy_loss(seed, method, ours, mode, verl_cfg, std):
    """CISPO and Dr. GRPO: loss and gradient == verl's own, with the advantages verl computes from the same
    rewards (Dr. GRPO: ``norm_adv_by_std_in_grpo=False``)."""
    ro = make_rollouts(seed, s_scale=0.6)
    mask = ro.response_mask.bool()
    token_rewards = torch.zeros_like(ro.old_logp)
    token_rewards[torch.arange(len(ro.uids)), ro.response_mask.sum(1) - 1] = ro.rewards
    adv_verl, _ = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=token_rewards,
        response_mask=ro.response_mask.to(DT),
        index=np.array(ro.uids),
        norm_adv_by_std_in_grpo=std,
    )
    res = OBJECTIVES[method](ro.logp, ro.old_logp, mask, ro.rewards, ro.group_ids, **ours)
    cfg = actor_config(**verl_cfg)
    fn = core_algos.get_policy_loss_fn(mode)
    loss_v, _ = fn(ro.old_logp, ro.logp, adv_verl, mask, loss_agg_mode=cfg.loss_agg_mode, config=cfg)
    torch.testing.assert_close(res.loss, loss_v, rtol=1e-7, atol=1e-10)
    ours_grad = grad_of(res.loss, ro.logp)
    assert ours_grad.abs().max() > 0
    torch.testing.assert_close(ours_grad, grad_of(loss_v, ro.logp), rtol=1e-6, atol=1e-12)


def test_verl_vanilla_always_dual_clips_and_ours_does_not_by_default():
    """verl's vanilla loss applies clip_ratio_c (default 3) to A<0 tokens; GRPO's default here has no dual clip."""
    ro = make_rollouts(3, s_scale=2.0)
    mask = ro.response_mask.bool()
    adv = group_advantages(ro.rewards, GroupLayout.from_ids(ro.group_ids), 1e-6).unsqueeze(1) * mask
    assert bool(((ro.logp.detach() - ro.old_logp > np.log(3.0)) & (adv < 0)).any())
    cfg = actor_config()
    loss_v, _ = core_algos.get_policy_loss_fn("vanilla")(ro.old_logp, ro.logp, adv, mask, config=cfg)
    default = OBJECTIVES["grpo"](ro.logp, ro.old_logp, mask, ro.rewards, ro.group_ids, kl_beta=0.0)
    dual = OBJECTIVES["grpo"](
        ro.logp, ro.old_logp, mask, ro.rewards, ro.group_ids, kl_beta=0.0, dual_clip=3.0
    )
    cfg_mean = actor_config(loss_agg_mode="seq-mean-token-mean")
    loss_v, _ = core_algos.get_policy_loss_fn("vanilla")(
        ro.old_logp, ro.logp, adv, mask, loss_agg_mode="seq-mean-token-mean", config=cfg_mean
    )
    torch.testing.assert_close(dual.loss, loss_v, rtol=1e-7, atol=1e-10)
    assert abs(float(default.loss.detach() - loss_v.detach())) > 1e-3


def test_grpo_with_kl_equals_verl_ppo_loss():
    """The whole GRPO objective (beta = 0.001 k3 KL to the reference) == verl's actor ``ppo_loss`` with
    use_kl_loss, kl_loss_type=low_var_kl (k3), on verl's own micro-batch TensorDict."""
    ro = make_rollouts(5, s_scale=0.5)
    mask = ro.response_mask.bool()
    adv = (
        group_advantages(ro.rewards, GroupLayout.from_ids(ro.group_ids), 1e-6).unsqueeze(1) * ro.response_mask
    )
    td = ro.tensordict(dp_size=1, global_batch_size=None, batch_num_tokens=None)
    td["advantages"] = adv.float()
    cfg = actor_config(use_kl_loss=True, kl_loss_coef=0.001, kl_loss_type="low_var_kl")
    out = {"log_probs": nested_log_probs(ro, td, ro.logp)}
    loss_v, _ = ppo_loss(cfg, out, td)
    res = OBJECTIVES["grpo"](
        ro.logp, ro.old_logp, mask, ro.rewards, ro.group_ids, ref_logp=ro.ref_logp, dual_clip=3.0
    )
    # verl's advantages travel in float32: compare at float32 precision
    torch.testing.assert_close(res.loss, loss_v.to(DT), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad_of(res.loss, ro.logp), grad_of(loss_v, ro.logp), rtol=1e-4, atol=1e-8)


# ------------------------------------------------------------------------------- the plugin's actor loss


@pytest.mark.parametrize("fields", ["verl", "trainer"])
@pytest.mark.parametrize("method", ["real", "real_bce", "real_no_anchor", "grpo", "dapo", "gspo"])
def test_plugin_loss_equals_objective_on_one_micro_batch(method, fields):
    """``workbench_actor_loss`` on verl's micro-batch == ``workbench.objectives[method]`` on the same rollouts,
    with groups and rewards from verl's ``uid`` and scores, or from the per-row fields the trainer stores."""
    ro = make_rollouts(11, s_scale=0.4)
    b = len(ro.uids)
    td = ro.tensordict(dp_size=1, global_batch_size=b, batch_num_tokens=int(ro.response_mask.sum()))
    if fields == "trainer":
        td[verl_real.GROUP_KEY] = ro.group_ids.flip(0)  # any labelling of the same groups
        td[verl_real.REWARD_KEY] = ro.rewards.float()
        del td["uid"]
        del td["token_level_scores"]
    # real_bce's default (normalize='rollouts') needs a count over the whole mini-batch: refused under verl
    hp = {"normalize": "prompts"} if method == "real_bce" else {}
    spec = verl_real.LossSpec(method=method, group_size=4, overrides=hp)
    loss, metrics = verl_real.workbench_actor_loss(
        None, {"log_probs": nested_log_probs(ro, td, ro.logp)}, td, spec=spec
    )
    mask = ro.response_mask.bool()
    res = OBJECTIVES[method](ro.logp, ro.old_logp, mask, ro.rewards, ro.group_ids, ref_logp=ro.ref_logp, **hp)
    torch.testing.assert_close(loss, res.loss, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad_of(loss, ro.logp), grad_of(res.loss, ro.logp), rtol=1e-9, atol=1e-12)
    assert "actor/pg_loss" in metrics


def _data_parallel_gradient(ro, method, dp, micro_groups, dynamic):
    """Run the plugin loss the way verl's FSDP actor does: plan the order, chunk over ranks, split each rank's
    mini-batch with verl's prepare_micro_batches(force_group_size=n), backward per micro-batch (sum), then average
    the ranks' gradients. Returns (gradient wrt the leaf log-probs, the micro-batches' group lists)."""
    n = 4
    b = len(ro.uids)
    seqlens = ro.attention_mask.sum(1).tolist()
    order, _ = verl_real.plan_group_order(ro.uids, seqlens, dp)
    spec = verl_real.LossSpec(method=method, group_size=n)
    total = torch.zeros_like(ro.logp)
    seen_groups = []
    td_all = ro.tensordict()
    td_all = tu.index_select_tensor_dict(td_all, torch.tensor(order))
    per_rank = b // dp
    n_tokens = int(ro.response_mask.sum())
    for r in range(dp):
        td = tu.index_select_tensor_dict(td_all, torch.arange(r * per_rank, (r + 1) * per_rank))
        tu.assign_non_tensor(
            td,
            dp_size=dp,
            global_batch_size=b,
            batch_num_tokens=n_tokens,
            force_group_size=n,
            use_dynamic_bsz=dynamic,
            micro_batch_size_per_gpu=micro_groups,
            max_token_len_per_gpu=2 * n * int(ro.attention_mask.sum(1).max()),
        )
        micro_batches, _ = prepare_micro_batches(td)
        rank_grad = torch.zeros_like(ro.logp)
        for mb in micro_batches:
            leaf = ro.logp.detach().clone().requires_grad_(True)
            loss, _ = verl_real.workbench_actor_loss(
                None, {"log_probs": nested_log_probs(ro, mb, leaf)}, mb, spec=spec
            )
            rank_grad += grad_of(loss, leaf)
            seen_groups.append(sorted(set(tu.get(mb, "uid"))))
        total += rank_grad / dp
    return total, seen_groups


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("method", ["real", "real_no_anchor", "grpo", "dapo", "gspo"])
def test_groups_whole_across_ranks_and_micro_batches(method, dynamic):
    """Two DP ranks, several micro-batches each: the averaged accumulated gradient equals the objective's gradient
    on the whole mini-batch (the groups were never split, the normalisation is global)."""
    ro = make_rollouts(21, n_prompts=8, s_scale=0.4)
    grad, groups = _data_parallel_gradient(ro, method, dp=2, micro_groups=2, dynamic=dynamic)
    assert len(groups) >= 2 * 2 if not dynamic else len(groups) >= 2
    mask = ro.response_mask.bool()
    res = OBJECTIVES[method](ro.logp, ro.old_logp, mask, ro.rewards, ro.group_ids, ref_logp=ro.ref_logp)
    torch.testing.assert_close(grad, grad_of(res.loss, ro.logp), rtol=1e-9, atol=1e-12)


def test_a_split_group_is_refused():
    """verl's default micro-batching (no force_group_size) cuts groups of 4 into micro-batches of 3: refused."""
    ro = make_rollouts(4, n_prompts=3)
    td = ro.tensordict(dp_size=1, global_batch_size=12, use_dynamic_bsz=False, micro_batch_size_per_gpu=3)
    micro_batches, _ = prepare_micro_batches(td)
    spec = verl_real.LossSpec(method="real", group_size=4)
    mb = micro_batches[0]
    with pytest.raises(verl_real.GroupSplitError, match=r"rollout\.n=4"):
        verl_real.workbench_actor_loss(None, {"log_probs": nested_log_probs(ro, mb, ro.logp)}, mb, spec=spec)


def test_verl_default_balancing_splits_groups_and_the_plan_does_not():
    """verl's balance_batch partitions rows, not groups; plan_group_order keeps every group on one rank."""
    split_seen = False
    for seed in range(10):
        ro = make_rollouts(seed, n_prompts=8, max_resp=30)
        seqlens = ro.attention_mask.sum(1).tolist()
        default = get_seqlen_balanced_partitions(seqlens, k_partitions=4, equal_size=True)
        owner = {i: r for r, part in enumerate(default) for i in part}
        split_seen |= any(len({owner[i] for i in range(g * 4, g * 4 + 4)}) > 1 for g in range(8))
        order, parts = verl_real.plan_group_order(ro.uids, seqlens, 4)
        assert sorted(order) == list(range(len(ro.uids)))
        for part in parts:
            uids = [ro.uids[i] for i in part]
            verl_real.check_groups_whole(uids, 4)
            assert all(uids[k] == uids[k - k % 4] for k in range(len(uids)))  # contiguous groups
    assert split_seen


def test_minibatch_positions():
    mb = verl_real.minibatch_of_position(n_rows=32, dp_size=2, mini_batch_rows=8)
    assert mb.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3] * 2


def test_real_names_registered_with_a_clear_error():
    fn = core_algos.get_policy_loss_fn("real")
    with pytest.raises(RuntimeError, match="workbench trainer"):
        fn(None, None, None, None)


def test_loss_mode_alone_cannot_select_real_in_verl():
    """Why a REAL launch needs ``trainer.v1.trainer_mode=workbench`` beside ``loss_mode=real`` (README, "Scaling
    out"): verl's actor loss hands a registered policy loss only log-probs, advantages, the mask and the config,
    never the micro-batch's ``uid`` or rewards, although the micro-batch holds them; and verl refuses to register
    another trainer under its default ``sync``, which loading the workbench's module leaves as verl's own."""
    from verl.trainer.ppo.v1 import get_trainer_cls, register_trainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from training.engines import verl_trainer

    seen: dict = {}

    @core_algos.register_policy_loss("wb_probe")
    def probe(**kwargs):
        seen.update(kwargs)
        return kwargs["log_prob"].sum() * 0, {}

    ro = make_rollouts(3)
    td = ro.tensordict(dp_size=1, global_batch_size=None, batch_num_tokens=None)
    td["advantages"] = torch.zeros_like(ro.old_logp).float()
    assert "uid" in td.keys() and "token_level_scores" in td.keys()
    cfg = actor_config(policy_loss={"loss_mode": "wb_probe"})
    try:
        ppo_loss(cfg, {"log_probs": nested_log_probs(ro, td, ro.logp)}, td)
    finally:
        core_algos.POLICY_LOSS_REGISTRY.pop("wb_probe")
    assert set(seen) == {
        "old_log_prob", "log_prob", "advantages", "response_mask", "loss_agg_mode", "config", "rollout_is_weights"
    }  # fmt: skip
    assert all(v is None or isinstance(v, torch.Tensor | str) for k, v in seen.items() if k != "config")
    assert get_trainer_cls("sync") is PPOTrainerSync
    assert get_trainer_cls("workbench") is verl_trainer.WorkbenchTrainer
    with pytest.raises(ValueError, match="already registered"):
        register_trainer("sync")(verl_trainer.WorkbenchTrainer)


def test_loss_spec_refuses_what_cannot_be_exact():
    with pytest.raises(ValueError, match="normalize='used'"):
        verl_real.LossSpec("real", 8, {"normalize": "used"})
    with pytest.raises(ValueError, match="normalize='rollouts'"):
        verl_real.LossSpec("real_bce", 8)  # its default: the authors' mean over the mixed groups' rollouts
    verl_real.LossSpec("real_bce", 8, {"normalize": "prompts"})
    with pytest.raises(ValueError, match="max_tokens=None"):
        verl_real.LossSpec("dr_grpo", 8)  # the padded width of each micro-batch is not one constant
    verl_real.LossSpec("dr_grpo", 8, {"max_tokens": 64})
    verl_real.LossSpec("cispo", 8)
    with pytest.raises(ValueError, match="use_kl_loss"):
        verl_real.LossSpec("real", 8, {"kl_beta": 0.01})
    with pytest.raises(ValueError, match="unknown method"):
        verl_real.LossSpec("ppo", 8)


# ---------------------------------------------------------------------------- launch config and run dir


def test_launch_config_is_group_safe_and_uses_verl_keys():
    """Every key of scripts/verl/real_1p5b.yaml exists in verl's generated default config, and the merged config
    passes verl_config_problems on one 8-GPU node."""
    import verl

    default = OmegaConf.load(Path(verl.__file__).parent / "trainer/config/_generated_ppo_trainer.yaml")
    ours = OmegaConf.load(REPO / "scripts/verl/real_1p5b.yaml")
    ours_plain = OmegaConf.to_container(ours, resolve=False)
    ours_plain.pop("defaults", None)
    ours_plain.pop("hydra", None)
    workbench = ours_plain.pop("workbench")

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    default_plain = OmegaConf.to_container(default, resolve=False)

    # verl reads this optional mapping (not in its generated defaults) and passes it to the reward function as
    # keyword arguments (verl.trainer.ppo.reward.get_custom_reward_fn); checked end to end below.
    free_form = "reward.custom_reward_function.reward_kwargs."

    def present(key):
        if key.startswith(free_form):
            return True
        node = default_plain
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    missing = [k for k in leaves(ours_plain) if not present(k)]
    assert not missing, f"keys not in verl's config: {missing}"
    merged = OmegaConf.merge(default, ours_plain)
    assert verl_real.verl_config_problems(merged, dp_size=8) == []
    assert merged.trainer.v1.trainer_mode == "workbench"
    assert merged.actor_rollout_ref.actor.policy_loss.loss_mode == "real"
    spec = verl_real.LossSpec(
        workbench["method"], int(merged.actor_rollout_ref.rollout.n), workbench["hparams"]
    )
    assert resolve_hparams("real", {}) == spec.hparams  # the paper's REAL: tau 0.5, mixed groups, / prompts
    from verl.trainer.ppo.reward import get_custom_reward_fn

    merged.reward.custom_reward_function.path = str(REPO / "training/engines/verl_reward.py")
    reward_fn = get_custom_reward_fn(merged)  # verl's loader: the workbench grader, through reward_kwargs
    assert reward_fn("math", "the answer is $7$", "7") == 1.0  # verl's own math_reward would give 0 (unboxed)
    bad = OmegaConf.merge(
        merged, {"actor_rollout_ref": {"actor": {"shuffle": True, "ppo_mini_batch_size": 12}}}
    )
    problems = verl_real.verl_config_problems(bad, dp_size=8)
    assert any("shuffle" in p for p in problems) and any("ppo_mini_batch_size=12" in p for p in problems)


def test_launch_config_composes_with_hydra_and_passes_verl_validation(monkeypatch):
    """The launch's hydra composition (our yaml on verl's ppo_trainer, the script's overrides) passes verl's own
    validate_config and the group-safety check for one node of 8 GPUs."""
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    for var in ("REAL_REPO", "REAL_TRAIN_FILE", "REAL_VAL_FILE"):
        monkeypatch.setenv(var, str(REPO))
    overrides = [
        "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=training.engines.verl_trainer",
        f"+ray_kwargs.ray_init.runtime_env.env_vars.PYTHONPATH={REPO}",
    ]
    with initialize_config_dir(config_dir=str(REPO / "scripts/verl"), version_base=None):
        cfg = compose("real_1p5b", overrides=overrides)
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    dp = int(cfg.trainer.n_gpus_per_node) * int(cfg.trainer.nnodes)
    assert dp == 8 and verl_real.verl_config_problems(cfg, dp_size=dp) == []
    assert not need_reference_policy(cfg) and not need_critic(cfg)  # REAL: no KL, no critic
    assert cfg.trainer.v1.trainer_mode == "workbench" and cfg.workbench.method == "real"
    assert Path(cfg.reward.custom_reward_function.path).is_file()


def test_trainer_registers_and_balances_whole_groups():
    """The V1 trainer subclass imports against verl's real trainer module and registers as trainer_mode=workbench;
    its batch balancing on a real TransferQueue KVBatchMeta gives each of 4 ranks whole, contiguous groups.
    (No GPU workers here: the worker group is a stand-in holding only verl's dispatch table.)"""
    from types import SimpleNamespace

    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1 import get_trainer_cls

    from training.engines import verl_trainer

    cls = get_trainer_cls("workbench")
    assert cls is verl_trainer.WorkbenchTrainer
    trainer = object.__new__(cls)
    trainer.config = OmegaConf.create(
        {
            "actor_rollout_ref": {"rollout": {"n": 4}, "actor": {"ppo_mini_batch_size": 4}},
            "trainer": {"critic_warmup": 0},
        }
    )
    trainer.global_steps, trainer.use_critic = 1, False
    trainer.actor_rollout_wg = SimpleNamespace(_dispatch_info={"actor": [0, 1, 2, 3]})
    g = torch.Generator().manual_seed(0)
    rows = [(f"u{k}", s) for k in range(16) for s in range(4)]
    perm = torch.randperm(len(rows), generator=g).tolist()
    keys = [f"{rows[i][0]}_{rows[i][1]}_0" for i in perm]
    tags = [{"seq_len": int(x)} for x in torch.randint(10, 500, (len(keys),), generator=g)]
    metrics: dict = {}
    batch = trainer._balance_batch(KVBatchMeta(keys=keys, tags=tags, partition_id="train"), metrics)
    uids = [k.split("_", 1)[0] for k in batch.keys]
    assert sorted(batch.keys) == sorted(keys) and metrics
    for r in range(4):
        part = uids[r * 16 : (r + 1) * 16]
        verl_real.check_groups_whole(part, 4)
        assert all(part[k] == part[k - k % 4] for k in range(16))
    with pytest.raises(verl_real.GroupSplitError, match="not a multiple"):
        trainer._balance_batch(KVBatchMeta(keys=keys[:60], tags=tags[:60], partition_id="train"), {})


def test_reward_with_the_workbench_grader():
    """``grader={}``: the workbench's math-verify grader with the paper's settings (LaTeX extraction: an unboxed
    ``$7$`` counts), where verl's own scorer reads only a boxed answer; the settings reach it
    (``extraction='boxed'`` reads only a boxed answer too)."""
    from training.engines import verl_reward

    assert verl_reward.compute_score("math", "so \\boxed{0.5}", "\\frac{1}{2}", grader={}) == 1.0
    assert verl_reward.compute_score("math", "the answer is $7$", "7", grader={}) == 1.0
    assert verl_reward.compute_score("math", "the answer is $7$", "7") == 0.0  # verl's own scorer
    assert verl_reward.compute_score("math", "the answer is $7$", "7", grader={"extraction": "boxed"}) == 0.0


def test_binary_reward():
    from training.engines.verl_reward import compute_score

    assert compute_score("aime", "so \\boxed{204}.", "204") == 1.0
    assert compute_score("aime", "so \\boxed{205}.", "204") == 0.0
    assert compute_score("aime", "no box", "204") == 0.0


def test_worker_shards_make_a_run_that_opens(tmp_path):
    """Workers write update shards from the plugin loss; the driver side joins them into a run directory."""
    ro = make_rollouts(8, n_prompts=4)
    b = len(ro.uids)
    shard_dir = tmp_path / "shards"
    td = ro.tensordict(dp_size=1, global_batch_size=b, batch_num_tokens=int(ro.response_mask.sum()))
    tu.assign_non_tensor(td, **{verl_real.SHARD_DIR_KEY: str(shard_dir)})
    td[verl_real.ROLLOUT_KEY] = torch.arange(b)
    td[verl_real.MINIBATCH_KEY] = torch.zeros(b, dtype=torch.long)
    spec = verl_real.LossSpec(method="real", group_size=4)
    loss, _ = verl_real.workbench_actor_loss(
        None, {"log_probs": nested_log_probs(ro, td, ro.logp)}, td, spec=spec
    )
    loss.backward()
    updates = read_update_shards(shard_dir)
    assert len(updates) == 1
    facts = RolloutFacts(
        reward=ro.rewards.tolist(), group=ro.uids, length=ro.response_mask.sum(1).tolist(),
        prompt=["p"] * b, response=["r"] * b, answer=["1"] * b, prompt_id=list(range(b)),
    )  # fmt: skip
    scalars = {"loss": float(loss), "grad_norm": 1.0, "entropy_mean": 0.5}
    met, roll, tok = build_step(1, facts, updates, scalars, every_update=False)
    run_dir = tmp_path / "run"
    writer = RunWriter.create(
        run_dir,
        name="verl-check",
        method="real",
        config={"method": "real", "seed": 0, "hparams": {}, "group_size": 4},
        env={},
    )
    writer.write_step(1, met, roll, tok)
    run = open_run(run_dir)
    tokens = run.tokens()
    assert len(tokens) == int(ro.response_mask.sum())
    grad = torch.zeros_like(ro.logp)
    rows, pos = torch.as_tensor(tokens["rollout"].to_numpy()), torch.as_tensor(tokens["pos"].to_numpy())
    grad[rows, pos] = torch.as_tensor(tokens["grad"].to_numpy().copy(), dtype=DT)
    torch.testing.assert_close(grad, ro.logp.grad, rtol=1e-5, atol=1e-7)  # float32 in the file
    assert set(run.rollouts()["used"]) <= {True, False}


def test_documented_differences_gspo_clamp_and_singleton_advantage():
    """verl's GSPO clamps the sequence log-ratio at +10 only; its GRPO advantage of a group of one is r."""
    mask = torch.ones(2, 3, dtype=torch.bool)
    old = torch.zeros(2, 3, dtype=DT)
    logp = torch.tensor([[-11.0, -11.0, -11.0], [-0.1, 0.0, 0.1]], dtype=DT, requires_grad=True)
    rewards, ids = torch.tensor([1.0, 0.0], dtype=DT), torch.tensor([0, 0])
    adv = group_advantages(rewards, GroupLayout.from_ids(ids), 1e-6).unsqueeze(1).expand(2, 3)
    cfg = actor_config(clip_ratio_low=3e-4, clip_ratio_high=4e-4, loss_agg_mode="seq-mean-token-mean")
    loss_v, _ = core_algos.get_policy_loss_fn("gspo")(
        old, logp, adv, mask, loss_agg_mode=cfg.loss_agg_mode, config=cfg
    )
    res = OBJECTIVES["gspo"](logp, old, mask, rewards, ids)
    g_v, g_w = grad_of(loss_v, logp), grad_of(res.loss, logp)
    assert float(g_w[0].abs().sum()) == 0.0  # workbench: clamped at -10, no gradient
    assert 0 < float(g_v[0].abs().max()) < np.exp(-10)  # verl: e^{s_bar} A / |o|, tiny
    torch.testing.assert_close(g_v[1], g_w[1])
    scores = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]], dtype=DT)
    adv_v, _ = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=scores, response_mask=torch.ones_like(scores), index=np.array(["a", "b", "b"])
    )
    ours = group_advantages(scores.sum(1), GroupLayout.from_ids(torch.tensor([0, 1, 1])), 1e-6)
    assert float(adv_v[0, 0]) == pytest.approx(1.0, rel=1e-5) and float(ours[0]) == 0.0


def test_open_run_opens_the_trackers_named_by_workbench_report_to(tmp_path):
    """``workbench.report_to`` is checked when the run directory opens; ``none`` opens no tracker, and a tracker
    that is installed here gets the config of run.json."""
    from training.engines import verl_trainer
    from training.trackers import TRACKERS

    def opened(report_to: str, run_dir: Path) -> verl_trainer.WorkbenchTrainer:
        trainer = object.__new__(verl_trainer.WorkbenchTrainer)
        trainer.config = OmegaConf.create(
            {
                "trainer": {"experiment_name": "x"},
                "workbench": {"run_dir": str(run_dir), "report_to": report_to},
            }
        )
        trainer.wb_spec = verl_real.LossSpec(method="real", group_size=4, overrides={})
        trainer.global_steps = 0
        trainer._open_run()
        return trainer

    assert opened("none", tmp_path / "a").wb_trackers.names == []
    assert open_run(tmp_path / "a").method == "real"
    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'"):
        opened("tensorbord", tmp_path / "b")
    import importlib.util

    installed = [t for t in TRACKERS if importlib.util.find_spec(t) is not None]
    if "tensorboard" in installed:
        trainer = opened("tensorboard", tmp_path / "c")
        assert trainer.wb_trackers.names == ["tensorboard"]
        trainer.wb_trackers.close()
        assert list((tmp_path / "c" / "tensorboard").glob("events.out.tfevents.*"))


# ------------------------------------------------------------------ verl's own actor workers, 2 ranks on CPU


def test_verl_workers_two_ranks_give_the_single_process_gradient(tmp_path):
    """verl's ``ActorRolloutRefWorker`` (FSDP2 over gloo, 2 ranks, 2 micro-batches each, the workbench's REAL
    loss installed with ``set_loss_fn``): the gradient just before the optimizer step equals the gradient of
    ``workbench.objectives["real"]`` on all 32 rollouts in one process; each rank's micro-batches hold whole
    groups and the ranks hold disjoint halves. verl runs on CPU only with the CPU platform the worker installs
    (see verl_dp_worker.py: verl 0.9.1 has none)."""
    import importlib.util
    import json
    import os
    import socket
    import subprocess
    import sys

    spec = importlib.util.spec_from_file_location(
        "verl_dp_worker", Path(__file__).with_name("verl_dp_worker.py")
    )
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    tiny = worker.build_tiny(tmp_path / "tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "VERL_ENGINE_DEVICE": "cuda"}
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(port),
           "tests/training/engines/verl_dp_worker.py", str(tmp_path / "out"), str(tiny)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["world_size"] == 2
    ranks = run["micro_batch_groups"]
    assert [len(r) for r in ranks] == [2, 2]  # two micro-batches per rank
    held = [{u for mb in r for u in mb} for r in ranks]
    assert held[0].isdisjoint(held[1]) and len(held[0] | held[1]) == worker.PROMPTS
    grads = torch.load(tmp_path / "out" / "grads.pt")
    ref = worker.reference_gradient(tiny)
    assert set(grads) == set(ref)
    for name, g in grads.items():
        scale = float(ref[name].abs().max())
        assert scale > 0, name
        torch.testing.assert_close(g, ref[name], rtol=0, atol=1e-5 * scale)
        assert not torch.allclose(2 * g, ref[name], rtol=0, atol=1e-5 * scale)  # a sum over ranks would fail
