"""The workbench's objectives as verl's actor loss, with group ids and binary rewards, groups kept whole.

verl (0.9.x) hands a registered policy loss (``register_policy_loss``) only old/new log-probs, advantages and the
mask: no prompt ids, no rewards, so a loss over a prompt group (REAL) cannot be written as one. Its actor worker
group, however, calls one whole loss function per micro-batch, ``loss_fn(config, model_output, data, dp_group)``
(``verl.workers.utils.losses.ppo_loss`` by default), and the micro-batch ``data`` (a TensorDict) carries every
field of the rollouts: ``uid`` (the prompt's id, shared by its ``rollout.n`` responses), ``rm_scores`` (V1
trainer) or ``token_level_scores`` (legacy trainer), ``old_log_probs``, ``response_mask``, ``entropy``, plus the
mini-batch facts ``dp_size``, ``global_batch_size`` (rollouts in the global mini-batch) and ``batch_num_tokens``.
``workbench_actor_loss`` is such a function for any method of ``workbench.objectives``; the trainer in
``training.engines.verl_trainer`` installs it with ``actor_rollout_ref_wg.set_loss_fn``.

Normalisation (why the loss on a micro-batch is the objective times a scale). FSDP averages gradients over the D
data-parallel ranks and sums them over micro-batches; verl's own ``agg_loss`` therefore divides by global counts
and multiplies by D. The objective on a micro-batch divides by local counts, so the loss is ``scale * objective``:

- ``seq-mean-token-mean`` (GRPO, GSPO): ``scale = D * r / R`` (r rollouts here, R in the global mini-batch);
- ``token-mean`` (DAPO): ``scale = D * t / N`` (t response tokens here, N = ``batch_num_tokens``);
- REAL family, ``normalize=prompts`` (the authors'): ``scale = D * p / P`` with p groups here and
  ``P = R / rollout.n`` prompts in the global mini-batch; ``normalize=sum``: ``scale = D``;
  ``normalize=used`` and ``normalize=rollouts`` (real_bce's default) need global counts over the used groups
  and are refused.

The group terms are exact only if every group lies in one micro-batch: ``check_groups_whole`` raises otherwise,
naming the settings that guarantee it (see ``verl_config_problems`` and ``plan_group_order``).
Rows whose response mask is empty are verl's padding samples (``upsample_batch_to_divisible_size``): dropped.
"""

from __future__ import annotations

import dataclasses
import os
import uuid as uuid_lib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from tensordict import TensorDict
from torch import Tensor
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, kl_penalty, register_policy_loss
from verl.utils import tensordict_utils as tu
from verl.utils.metric import AggregationType, Metric
from verl.utils.seqlen_balancing import calculate_workload, get_seqlen_balanced_partitions
from verl.workers.utils.padding import no_padding_2_padding

from training.engines.records import update_records
from workbench.methods import METHODS, REAL_METHODS, SPECS, HParams, resolve_hparams
from workbench.objectives import get_objective
from workbench.runlog import atomic_write_table

REWARD_KEYS = ("rm_scores", "token_level_scores")
SHARD_DIR_KEY = "workbench_shard_dir"  # non-tensor key: where workers write their update records
ROLLOUT_KEY = "wb_rollout"  # per-row int: the rollout's index within the step (set by the trainer)
MINIBATCH_KEY = "wb_minibatch"  # per-row int: the mini-batch update that uses the row
LOG_TOKENS_KEY = "wb_log_tokens"  # per-row bool: write the row's token records (rollout records always)
GROUP_KEY = "wb_group"  # per-row int: the prompt group (set by the trainer; else derived from ``uid``)
REWARD_KEY = (
    "wb_reward"  # per-row float: the rollout's reward (set by the trainer; else summed from the scores)
)


class GroupSplitError(ValueError):
    """A prompt group is split across micro-batches or ranks, so a group loss cannot be computed exactly."""


@dataclass(frozen=True)
class LossSpec:
    """What the actor loss computes: ``method`` of ``workbench.objectives`` with ``overrides`` of its defaults,
    on groups of ``group_size`` rollouts (verl's ``actor_rollout_ref.rollout.n``)."""

    method: str
    group_size: int
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (isinstance(self.group_size, int) and self.group_size >= 1):
            raise ValueError(f"group_size (rollout.n) must be an int >= 1, got {self.group_size!r}")
        hp = self.hparams
        spec = SPECS[self.method]
        if spec.divides_by(hp) == "window":
            settings = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(hp).items())
            raise ValueError(
                f"{self.method} ({settings}) divides by a count over the whole mini-batch (e.g. the rollouts of "
                "its mixed groups: real_bce's default normalize='rollouts', the authors' mean; or Dr. GRPO's "
                "padded width without max_tokens), which a micro-batch loss cannot make under verl; use "
                "normalize='prompts' or 'sum' for the REAL family, max_tokens=<response length> for Dr. GRPO"
            )
        if spec.family == "real" and hp.kl_beta > 0:
            raise ValueError(
                "the REAL family's own KL term is a micro-batch token-mean; under verl set kl_beta=0 and use "
                "actor_rollout_ref.actor.use_kl_loss=True with kl_loss_coef (verl normalises it globally)"
            )
        if self.method in REAL_METHODS and self.group_size < 2:
            raise ValueError("the REAL family compares rollouts of a prompt: rollout.n must be >= 2")

    @property
    def hparams(self) -> HParams:
        return resolve_hparams(self.method, dict(self.overrides))


@dataclass
class MicroBatch:
    """The non-padding rows of one verl micro-batch, padded to ``[B, T]`` response tensors."""

    logp: Tensor
    old_logp: Tensor
    mask: Tensor
    rewards: Tensor
    group_ids: Tensor
    uids: list[str]
    rows: Tensor  # indices of these rows in the verl micro-batch
    ref_logp: Tensor | None = None
    entropy: Tensor | None = None
    token_ids: Tensor | None = None
    rollout_index: Tensor | None = None
    minibatch: Tensor | None = None
    log_tokens: Tensor | None = None


def _as_list(value: Any) -> list[Any]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    return list(value)


def check_groups_whole(uids: Sequence[Any], group_size: int) -> None:
    """Raise ``GroupSplitError`` unless every uid appears exactly ``group_size`` times."""
    counts = Counter(uids)
    bad = {u: c for u, c in counts.items() if c != group_size}
    if bad:
        sample = ", ".join(f"{u}: {c}" for u, c in list(bad.items())[:4])
        raise GroupSplitError(
            f"{len(bad)} prompt group(s) of this micro-batch do not hold all rollout.n={group_size} rollouts "
            f"({sample}); a group loss needs whole groups. Run with the workbench trainer "
            "(trainer.v1.trainer_mode=workbench: group-whole balancing, force_group_size=rollout.n), "
            "actor_rollout_ref.actor.shuffle=False and ppo_mini_batch_size divisible by the data-parallel size"
        )


def micro_batch_from_verl(data: TensorDict, log_prob: Tensor, group_size: int) -> MicroBatch:
    """Collect what an objective needs from verl's micro-batch ``data`` and the padded ``log_prob [b, T]``.

    Groups: the per-row ``wb_group`` the trainer stores, else verl's ``uid``. Rewards: ``wb_reward``, else the sum
    over response tokens of ``rm_scores`` (V1 trainer) or ``token_level_scores`` (legacy trainer)."""
    keys = set(data.keys())
    reward_key = next((k for k in (REWARD_KEY, *REWARD_KEYS) if k in keys), None)
    if reward_key is None:
        raise KeyError(f"the micro-batch holds none of {(REWARD_KEY, *REWARD_KEYS)}: no rewards for the loss")
    if GROUP_KEY not in keys and "uid" not in keys:
        raise KeyError(
            f"the micro-batch holds neither {GROUP_KEY!r} nor 'uid': a group objective needs group ids"
        )
    optional = [k for k in ("ref_log_prob", "entropy", "responses") if k in keys]
    token_keys = ["response_mask", "old_log_probs", *optional]
    if reward_key != REWARD_KEY:
        token_keys.append(reward_key)
    padded = data.select(*token_keys).to_padded_tensor()
    mask = padded["response_mask"].bool()
    width = log_prob.shape[1]
    if mask.shape[1] != width:
        raise ValueError(f"response_mask has width {mask.shape[1]}, log_probs {width}")
    rows = torch.nonzero(mask.any(1)).flatten()  # rows without response tokens are verl's padding samples
    if GROUP_KEY in keys:
        uids = [str(int(u)) for u in data[GROUP_KEY][rows].tolist()]
    else:
        uids_all = [str(u) for u in _as_list(tu.get(data, "uid"))]
        uids = [uids_all[i] for i in rows.tolist()]
    check_groups_whole(uids, group_size)
    index: dict[str, int] = {}
    group_ids = torch.tensor([index.setdefault(u, len(index)) for u in uids], dtype=torch.long)
    if reward_key == REWARD_KEY:
        rewards = data[REWARD_KEY][rows].to(log_prob.dtype)
    else:
        scores = padded[reward_key].to(log_prob.dtype)
        rewards = (scores * mask.to(scores.dtype)).sum(-1)[rows]

    def pick(name: str) -> Tensor | None:
        return padded[name][rows] if name in padded.keys() else None

    def per_row(name: str) -> Tensor | None:
        return data[name][rows].long() if name in keys else None

    return MicroBatch(
        logp=log_prob[rows],
        old_logp=padded["old_log_probs"][rows].to(log_prob.dtype),
        mask=mask[rows],
        rewards=rewards,
        group_ids=group_ids,
        uids=uids,
        rows=rows,
        ref_logp=pick("ref_log_prob"),
        entropy=pick("entropy"),
        token_ids=pick("responses"),
        rollout_index=per_row(ROLLOUT_KEY),
        minibatch=per_row(MINIBATCH_KEY),
        log_tokens=per_row(LOG_TOKENS_KEY),
    )


def loss_scale(
    spec: LossSpec,
    mb: MicroBatch,
    *,
    dp_size: int,
    global_batch_size: int | None,
    batch_num_tokens: int | None,
) -> float:
    """The factor turning the objective on this micro-batch into its share of the global mini-batch loss."""
    divisor = SPECS[spec.method].divides_by(spec.hparams)
    if divisor == "nothing":
        return float(dp_size)
    if divisor == "tokens":
        if batch_num_tokens is None:
            raise ValueError("batch_num_tokens is needed for token-mean aggregation")
        return dp_size * float(mb.mask.sum()) / float(batch_num_tokens)
    if global_batch_size is None:
        raise ValueError(f"global_batch_size is needed to normalise by the {divisor} of the mini-batch")
    if divisor == "prompts":
        prompts = global_batch_size / spec.group_size
        return dp_size * int(mb.group_ids.unique().numel()) / prompts
    if divisor == "rollouts":
        return dp_size * mb.logp.shape[0] / float(global_batch_size)
    raise ValueError(
        f"{spec.method} divides by a count over the whole mini-batch ({divisor}): no micro-batch scale"
    )


def _metric_value(data: TensorDict, key: str) -> Any:
    return tu.get_non_tensor_data(data=data, key=key, default=None)


def workbench_actor_loss(
    config: Any, model_output: Mapping[str, Tensor], data: TensorDict, dp_group: Any = None, *, spec: LossSpec
) -> tuple[Tensor, dict[str, Any]]:
    """verl actor loss (the signature of ``verl.workers.utils.losses.ppo_loss``) computing ``spec.method``.

    ``loss = scale * OBJECTIVES[method](logp, old_logp, mask, rewards, uid-groups, ref_logp, **overrides).loss``
    (see the module docstring for ``scale``), minus ``entropy_coeff`` times verl's entropy aggregate and plus
    verl's KL loss when ``use_kl_loss``, exactly as ``ppo_loss`` adds them. When the trainer set the non-tensor
    key ``workbench_shard_dir``, the micro-batch's update records are written there for the run directory.
    """
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    mb = micro_batch_from_verl(data, log_prob, spec.group_size)
    dp_size = int(_metric_value(data, "dp_size") or 1)
    global_batch_size = _metric_value(data, "global_batch_size")
    batch_num_tokens = _metric_value(data, "batch_num_tokens")
    scale = loss_scale(
        spec, mb, dp_size=dp_size, global_batch_size=global_batch_size, batch_num_tokens=batch_num_tokens
    )
    result = get_objective(spec.method)(
        mb.logp, mb.old_logp, mb.mask, mb.rewards, mb.group_ids, ref_logp=mb.ref_logp, **dict(spec.overrides)
    )
    loss = result.loss * scale
    global_norm = dp_size > 1 or global_batch_size is not None or batch_num_tokens is not None
    agg = AggregationType.SUM if global_norm else AggregationType.MEAN
    metrics: dict[str, Any] = {
        f"actor/wb_{k}": Metric(value=v, aggregation=AggregationType.MEAN)
        for k, v in result.metrics.items()
        if k not in ("loss", "pg_loss", "kl_loss")
    }
    metrics["actor/pg_loss"] = Metric(value=loss.detach(), aggregation=agg)

    extra = _verl_regularisers(
        config, model_output, data, log_prob, dp_size, global_batch_size, batch_num_tokens
    )
    for name, (term, value) in extra.items():
        loss = loss + term
        metrics[name] = Metric(value=value, aggregation=agg)

    shard_dir = _metric_value(data, SHARD_DIR_KEY)
    if shard_dir:
        write_update_shard(shard_dir, spec.method, result, scale, mb)
    return loss, metrics


def _verl_regularisers(
    config: Any,
    model_output: Mapping[str, Tensor],
    data: TensorDict,
    log_prob: Tensor,
    dp_size: int,
    global_batch_size: int | None,
    batch_num_tokens: int | None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """verl's entropy bonus and KL loss, with verl's own ``agg_loss`` / ``kl_penalty`` (as in ``ppo_loss``)."""
    if config is None:
        return {}
    out: dict[str, tuple[Tensor, Tensor]] = {}
    info = {
        "dp_size": dp_size,
        "batch_num_tokens": batch_num_tokens,
        "global_batch_size": global_batch_size,
        "loss_scale_factor": getattr(config, "loss_scale_factor", None),
    }
    mask = data.select("response_mask").to_padded_tensor()["response_mask"].bool()
    coeff = float(getattr(config, "entropy_coeff", 0.0) or 0.0)
    entropy = model_output.get("entropy") if hasattr(model_output, "get") else None
    if coeff != 0.0 and entropy is not None:
        ent = agg_loss(
            loss_mat=no_padding_2_padding(entropy, data),
            loss_mask=mask,
            loss_agg_mode=config.loss_agg_mode,
            **info,
        )
        out["actor/entropy_loss"] = (-coeff * ent, ent.detach())
    if getattr(config, "use_kl_loss", False):
        ref = data.select("ref_log_prob").to_padded_tensor()["ref_log_prob"]
        kld = kl_penalty(logprob=log_prob, ref_logprob=ref, kl_penalty=config.kl_loss_type)
        kl = agg_loss(loss_mat=kld, loss_mask=mask, loss_agg_mode=config.loss_agg_mode, **info)
        out["kl_loss"] = (kl * config.kl_loss_coef, kl.detach())
    return out


def write_update_shard(shard_dir: str, method: str, result: Any, scale: float, mb: MicroBatch) -> None:
    """Write this micro-batch's rollout and token records as two Parquet files under ``shard_dir``."""
    n = mb.logp.shape[0]
    rollout_index = mb.rollout_index if mb.rollout_index is not None else torch.full((n,), -1)
    minibatch = mb.minibatch if mb.minibatch is not None else torch.zeros(n, dtype=torch.long)
    rollouts, tokens = update_records(
        method,
        result,
        scale=scale,
        rollout_index=rollout_index.tolist(),
        minibatch=minibatch.tolist(),
        entropy=mb.entropy,
        token_ids=mb.token_ids,
    )
    if mb.log_tokens is not None:
        keep = np.isin(tokens["rollout"], rollout_index[mb.log_tokens.bool()].numpy())
        tokens = {k: v[keep] for k, v in tokens.items()}
    name = f"{os.getpid()}_{uuid_lib.uuid4().hex}.parquet"
    for table, cols in (("rollouts", rollouts), ("tokens", tokens)):
        atomic_write_table(Path(shard_dir) / table / name, _table(cols))


def _table(cols: Mapping[str, np.ndarray]) -> pa.Table:
    return pa.table({k: pa.array(np.asarray(v)) for k, v in cols.items()})


# --------------------------------------------------------------------------------------- batch planning


def plan_group_order(
    uids: Sequence[Any], seqlens: Sequence[int], dp_size: int
) -> tuple[list[int], list[list[int]]]:
    """A reordering of the step's rollouts that keeps every prompt group whole and contiguous.

    Groups (rollouts sharing a uid, in any order) are split over the ``dp_size`` ranks with equally many groups per
    rank, balancing verl's workload estimate ``calculate_workload`` with verl's Karmarkar-Karp partitioner
    (``get_seqlen_balanced_partitions(equal_size=True)``); within a rank, groups keep their first-appearance order.
    Returns ``(order, partitions)``: ``order`` lists row indices rank by rank (verl then chunks it contiguously
    over the ranks), ``partitions[r]`` the rows of rank r. Raises ValueError when the groups do not divide evenly.
    """
    groups: dict[Any, list[int]] = {}
    for i, u in enumerate(uids):
        groups.setdefault(u, []).append(i)
    members = list(groups.values())
    sizes = {len(m) for m in members}
    if len(sizes) > 1:
        raise GroupSplitError(f"groups of unequal sizes {sorted(sizes)} cannot be spread evenly over ranks")
    if len(members) % dp_size:
        raise GroupSplitError(
            f"{len(members)} prompt groups cannot be split evenly over {dp_size} data-parallel ranks; "
            "make data.train_batch_size divisible by the data-parallel size"
        )
    lens = torch.as_tensor(list(seqlens), dtype=torch.int64)
    work = [int(calculate_workload(lens[m]).sum()) for m in members]
    parts = get_seqlen_balanced_partitions(work, k_partitions=dp_size, equal_size=True)
    partitions = [[i for g in sorted(p) for i in members[g]] for p in parts]
    return [i for p in partitions for i in p], partitions


def minibatch_of_position(n_rows: int, dp_size: int, mini_batch_rows: int) -> np.ndarray:
    """Mini-batch index of each position of the (reordered) step batch, with verl's layout and shuffle off.

    verl gives rank r the rows ``[r n/D, (r+1) n/D)`` and splits them into mini-batches of
    ``mini_batch_rows / D`` consecutive rows (``mini_batch_rows = ppo_mini_batch_size * rollout.n``)."""
    if n_rows % dp_size or mini_batch_rows % dp_size:
        raise ValueError(
            f"{n_rows} rows / {mini_batch_rows} mini-batch rows do not split over {dp_size} ranks"
        )
    per_rank, per_gpu = n_rows // dp_size, mini_batch_rows // dp_size
    return (np.arange(n_rows) % per_rank) // per_gpu


def verl_config_problems(cfg: Any, dp_size: int) -> list[str]:
    """Settings under which a group loss would see split groups; empty when the configuration is safe.

    ``cfg`` is verl's trainer config (``actor_rollout_ref``, ``data``). With the workbench trainer, a micro-batch
    holds ``ppo_micro_batch_size_per_gpu`` whole groups (verl's ``force_group_size = rollout.n``), or, with
    ``use_dynamic_bsz``, whole groups up to ``ppo_max_token_len_per_gpu`` tokens.
    """
    actor = cfg["actor_rollout_ref"]["actor"]
    n = int(cfg["actor_rollout_ref"]["rollout"]["n"])
    problems = []
    if actor.get("shuffle", False):
        problems.append("actor_rollout_ref.actor.shuffle must be False (a row shuffle splits groups)")
    mini = int(actor["ppo_mini_batch_size"])
    if mini % dp_size:
        problems.append(
            f"actor_rollout_ref.actor.ppo_mini_batch_size={mini} must be divisible by dp={dp_size}"
        )
    train = int(cfg["data"]["train_batch_size"])
    if train % mini:
        problems.append(f"data.train_batch_size={train} must be divisible by ppo_mini_batch_size={mini}")
    if train % dp_size:
        problems.append(f"data.train_batch_size={train} must be divisible by dp={dp_size}")
    if not actor.get("use_dynamic_bsz", False) and mini % dp_size == 0:
        micro = actor.get("ppo_micro_batch_size_per_gpu")
        per_gpu_groups = mini // dp_size
        if micro is None or per_gpu_groups % int(micro):
            problems.append(
                f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro} counts whole groups of "
                f"{n} rollouts here and must divide the {per_gpu_groups} groups each rank gets per mini-batch"
            )
    if (
        actor.get("policy_loss", {}).get("loss_mode", "vanilla") in REAL_METHODS
        and int(actor.get("ppo_epochs", 1)) < 1
    ):
        problems.append("actor_rollout_ref.actor.ppo_epochs must be >= 1")
    return problems


# ------------------------------------------------------------------------ policy-loss names in verl's registry


def _needs_trainer(name: str):
    def loss(*args: Any, **kwargs: Any):
        raise RuntimeError(
            f"policy loss {name!r} is a group objective: verl's policy-loss interface carries no uid or rewards. "
            "Run it with the workbench trainer (trainer.v1.trainer_mode=workbench, see README, 'Scaling out'), "
            "which installs training.engines.verl_real.workbench_actor_loss on the actor"
        )

    loss.__name__ = f"workbench_{name}_needs_trainer"
    return loss


def register_names() -> None:
    """Make ``actor.policy_loss.loss_mode`` accept ``real``, ``real_bce`` and ``real_no_anchor``.

    The registered functions only raise a clear error: the trainer replaces the whole actor loss."""
    for name in REAL_METHODS:
        try:
            get_policy_loss_fn(name)
        except ValueError:
            register_policy_loss(name)(_needs_trainer(name))


register_names()
