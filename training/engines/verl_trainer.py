"""verl's V1 synchronous trainer with the workbench's objective on the actor and the workbench's run directory.

Registered as ``trainer.v1.trainer_mode=workbench`` (verl's ``register_trainer``) when this module is imported:
the launch script sets ``VERL_USE_EXTERNAL_MODULES=training.engines.verl_trainer`` so that every verl process
(driver, task runner, workers) imports it on ``import verl``. Against ``PPOTrainerSync`` it changes four things:

1. ``_setup``: installs ``verl_real.workbench_actor_loss`` for ``workbench.method`` on the actor worker group
   (``set_loss_fn``), checks the configuration with ``verl_config_problems`` (refuses to start otherwise), and
   opens the run directory (``RunWriter.create`` or, after a checkpoint resume, ``RunWriter.resume``);
2. ``_balance_batch``: verl balances tokens over data-parallel ranks row by row, which splits prompt groups;
   here whole groups are balanced (``verl_real.plan_group_order``), each rank getting equally many;
3. ``_update_actor``: sets verl's ``force_group_size = rollout.n`` so micro-batches (fixed or dynamic size) never
   cut a group, and tags each row with its rollout index, mini-batch index and whether to log its tokens;
4. ``_compute_metrics``: after verl's metrics, writes the step (metrics, rollouts, tokens) to the run directory
   from the rollouts in TransferQueue and the update records the workers wrote (``verl_real.write_update_shard``).

Configuration (``workbench`` section of the config, see scripts/verl/real_1p5b.yaml): ``method`` (default: the
actor's ``policy_loss.loss_mode``), ``hparams`` (overrides of the paper's defaults), ``run_dir``, ``tokens_every``
(log tokens every k steps; 0 never), ``token_groups`` (prompt groups whose tokens are logged) and ``report_to``
(``training.trackers``: the run directory's metrics rows to tensorboard/wandb under ``run_dir``, as ``python -m
training train --report-to``; verl's own ``trainer.logger`` sends verl's metrics independently).

This module needs verl's full GPU stack (TransferQueue, Ray, vLLM): it is not importable in the CPU test
environment; its pure parts live in ``verl_real`` and ``records`` and are tested there.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import sys
import time
import zlib
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.seqlen_balancing import log_seqlen_unbalance
from verl.utils.transferqueue_utils import tq

from training.engines import verl_real
from training.engines.records import read_update_shards
from training.tokenizer import token_texts
from training.trackers import open_trackers, parse_report_to
from workbench.methods import METHODS
from workbench.runlog import RunWriter, read_meta
from workbench.step_tables import RolloutFacts, build_step

VAL_KEY = re.compile(r"^val-core/.+/(acc|reward|score)/mean@\d+$")


def _select(cfg: Any, key: str, default: Any) -> Any:
    return OmegaConf.select(cfg, key, default=default)


def _prompt_id(extra: Any, fallback: int) -> int:
    """The data set's id of a prompt: ``extra_info.index`` as an int, or a CRC32 of it when it is a string."""
    index = extra.get("index") if isinstance(extra, dict) else None
    if index is None:
        return fallback
    try:
        return int(index)
    except (TypeError, ValueError):
        return zlib.crc32(str(index).encode())


def _padded(x: torch.Tensor) -> torch.Tensor:
    """A TransferQueue field as a right-padded tensor (nested jagged tensors are padded with 0)."""
    return torch.nested.to_padded_tensor(x, 0.0) if x.is_nested else x


@register_trainer("workbench")
class WorkbenchTrainer(PPOTrainerSync):
    """``PPOTrainerSync`` with a workbench objective, group-whole batches and the workbench's run directory."""

    def _setup(self) -> None:
        super()._setup()
        cfg = self.config
        n = int(cfg.actor_rollout_ref.rollout.n)
        method = _select(cfg, "workbench.method", None) or cfg.actor_rollout_ref.actor.policy_loss.loss_mode
        if method not in METHODS:
            raise ValueError(f"workbench.method={method!r} is not one of {', '.join(METHODS)}")
        overrides = OmegaConf.to_container(_select(cfg, "workbench.hparams", {}) or {}, resolve=True)
        self.wb_spec = verl_real.LossSpec(method=method, group_size=n, overrides=overrides)
        problems = verl_real.verl_config_problems(cfg, self._dp_size())
        if problems:
            raise ValueError("this configuration would split prompt groups:\n- " + "\n- ".join(problems))
        actor = cfg.actor_rollout_ref.actor
        loss_cfg = SimpleNamespace(
            loss_agg_mode=actor.loss_agg_mode,
            loss_scale_factor=actor.get("loss_scale_factor"),
            entropy_coeff=float(actor.entropy_coeff),
            use_kl_loss=bool(actor.use_kl_loss),
            kl_loss_type=actor.kl_loss_type,
            kl_loss_coef=float(actor.kl_loss_coef),
        )
        self.actor_rollout_wg.set_loss_fn(
            partial(verl_real.workbench_actor_loss, config=loss_cfg, spec=self.wb_spec)
        )
        self._open_run()

    # ------------------------------------------------------------------------------------------ batches

    def _dp_size(self) -> int:
        wg = self.actor_rollout_wg
        if "actor" not in wg._dispatch_info:
            wg._dispatch_info["actor"] = wg._query_dispatch_info("actor")
        return max(wg._dispatch_info["actor"]) + 1

    def _balance_batch(
        self, batch: Any, metrics: dict, logging_prefix: str = "global_seqlen", keep_minibatch=False
    ):
        dp = self._dp_size()
        multiple = self._get_required_batch_multiple(dp)
        if len(batch) % multiple:
            raise verl_real.GroupSplitError(
                f"{len(batch)} rollouts are not a multiple of {multiple} (data-parallel size x mini-batch): verl "
                "would pad with filler rows that split groups; make data.train_batch_size a multiple of "
                "ppo_mini_batch_size and of the data-parallel size"
            )
        uids = [key.split("_", 1)[0] for key in batch.keys]
        seqlens = [int(tag["seq_len"]) for tag in batch.tags]
        order, partitions = verl_real.plan_group_order(uids, seqlens, dp)
        batch.reorder(order)
        metrics.update(
            log_seqlen_unbalance(seqlen_list=seqlens, partitions=partitions, prefix=logging_prefix)
        )
        return batch

    def _update_actor(self, batch: Any, metrics: dict) -> Any:
        n = self.wb_spec.group_size
        dp = self._dp_size()
        rows = len(batch)
        mini_rows = int(self.config.actor_rollout_ref.actor.ppo_mini_batch_size) * n
        minibatch = verl_real.minibatch_of_position(rows, dp, mini_rows)
        log_tokens = np.zeros(rows, dtype=bool)
        every = int(_select(self.config, "workbench.tokens_every", 10) or 0)
        if every > 0 and self.global_steps % every == 0:
            log_tokens[: int(_select(self.config, "workbench.token_groups", 16)) * n] = True
        # group ids and rewards as per-row tensors, so the actor sees them whatever fields it fetches
        data = tq.kv_batch_get(
            keys=batch.keys,
            partition_id=batch.partition_id,
            select_fields=["uid", "rm_scores", "response_mask"],
        )
        mask = _padded(data["response_mask"]).bool()
        rewards = (_padded(data["rm_scores"]).float() * mask).sum(-1)
        index: dict[str, int] = {}
        groups = [index.setdefault(str(u), len(index)) for u in data["uid"].tolist()]
        fields = TensorDict(
            {
                verl_real.ROLLOUT_KEY: torch.arange(rows),
                verl_real.MINIBATCH_KEY: torch.as_tensor(minibatch),
                verl_real.LOG_TOKENS_KEY: torch.as_tensor(log_tokens),
                verl_real.GROUP_KEY: torch.as_tensor(groups),
                verl_real.REWARD_KEY: rewards,
            },
            batch_size=rows,
        )
        batch = tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        shard_dir = self.wb_dir / ".verl_shards" / f"step_{self.global_steps:06d}"
        shutil.rmtree(shard_dir, ignore_errors=True)
        batch.extra_info.update({"force_group_size": n, verl_real.SHARD_DIR_KEY: str(shard_dir)})
        try:
            return super()._update_actor(batch, metrics)
        finally:
            batch.extra_info.pop("force_group_size", None)
            batch.extra_info.pop(verl_real.SHARD_DIR_KEY, None)

    # --------------------------------------------------------------------------------------- run dir

    def _open_run(self) -> None:
        cfg = self.config
        default_dir = Path("runs") / str(cfg.trainer.experiment_name)
        self.wb_dir = Path(_select(cfg, "workbench.run_dir", None) or default_dir)
        config = {
            "method": self.wb_spec.method,
            "seed": int(_select(cfg, "actor_rollout_ref.actor.data_loader_seed", 0) or 0),
            "hparams": dataclasses.asdict(self.wb_spec.hparams),
            "group_size": self.wb_spec.group_size,
            "engine": "verl",
            "verl": OmegaConf.to_container(cfg, resolve=True),
        }
        if self.global_steps > 0 and (self.wb_dir / "run.json").exists():
            self.wb_writer = RunWriter.resume(self.wb_dir, last_step=self.global_steps)
        else:
            import verl

            env = {"engine": "verl", "verl": verl.__version__, "torch": torch.__version__}
            self.wb_writer = RunWriter.create(
                self.wb_dir, name=self.wb_dir.name, method=self.wb_spec.method, config=config, env=env
            )
        writer = self.wb_writer

        def warn(name: str, error: str) -> None:
            print(
                f"warning: the {name} tracker failed and is off for the rest of the run ({error})",
                file=sys.stderr,
            )
            writer.event("tracker_failed", tracker=name, error=error)

        self.wb_trackers = open_trackers(
            parse_report_to(_select(cfg, "workbench.report_to", None)), self.wb_dir, run_name=self.wb_dir.name,
            resume_step=self.global_steps, warn=warn,
        )  # fmt: skip
        self.wb_trackers.log_config(read_meta(self.wb_dir)["config"])

    def fit(self, agent_loop_manager: Any) -> None:
        try:
            super().fit(agent_loop_manager)
        except BaseException as e:
            self.wb_writer.set_status("failed", last_step=max(self.global_steps - 1, 0), error=repr(e))
            raise
        finally:
            self.wb_trackers.close()
        self.wb_writer.set_status("finished", last_step=max(self.global_steps - 1, 0))

    def _compute_metrics(self, batch: Any, metrics: dict, timing_raw: dict, global_steps: int, epoch: int):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        start = time.perf_counter()
        shard_dir = self.wb_dir / ".verl_shards" / f"step_{global_steps:06d}"
        wanted = [
            "prompts",
            "responses",
            "response_mask",
            "rm_scores",
            "uid",
            "entropy",
            "reward_model",
            "extra_info",
        ]
        present = [f for f in wanted if f in set(batch.fields or wanted)]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=present)
        uids = [str(u) for u in data["uid"].tolist()]
        mask = _padded(data["response_mask"]).bool()
        rewards = (_padded(data["rm_scores"]).float() * mask).sum(-1)
        lengths = mask.sum(-1)
        response_ids = [t.tolist() for t in data["responses"].unbind()]  # nested: exact lengths
        prompt_ids = [t.tolist() for t in data["prompts"].unbind()]
        reward_model = data["reward_model"].tolist() if "reward_model" in present else [{}] * len(uids)
        extra = data["extra_info"].tolist() if "extra_info" in present else [{}] * len(uids)
        tok = self.tokenizer
        facts = RolloutFacts(
            reward=rewards.tolist(),
            group=uids,
            length=lengths.tolist(),
            prompt=tok.batch_decode(prompt_ids, skip_special_tokens=True),
            response=tok.batch_decode(
                [r[: int(n)] for r, n in zip(response_ids, lengths.tolist(), strict=True)],
                skip_special_tokens=True,
            ),
            answer=[str((rm or {}).get("ground_truth", "")) for rm in reward_model],
            prompt_id=[_prompt_id(x, -1) for x in extra],
        )
        updates = read_update_shards(shard_dir) if shard_dir.is_dir() else []
        entropy_mean = metrics.get("actor/entropy", math.nan)
        if "entropy" in present:
            ent = _padded(data["entropy"])
            entropy_mean = float((ent.float() * mask).sum() / mask.sum().clamp(min=1))
        met = self._run_metrics(metrics, timing_raw, int(lengths.sum()), entropy_mean)
        tables = build_step(
            global_steps,
            facts,
            updates,
            met,
            every_update=False,
            token_text=lambda ids: token_texts(tok, ids),
        )
        tables.metrics["time_log"] = time.perf_counter() - start
        row = self.wb_writer.write_step(global_steps, *tables)
        self.wb_trackers.log_metrics(global_steps, row)
        self.wb_writer.set_status("running", last_step=global_steps)
        shutil.rmtree(shard_dir, ignore_errors=True)

    def _run_metrics(self, metrics: dict, timing: dict, response_tokens: int, entropy_mean: float) -> dict:
        """verl's step metrics mapped to METRICS_SCHEMA, plus every numeric verl metric as ``verl/<name>``."""
        vals = [float(v) for k, v in metrics.items() if VAL_KEY.match(k)]
        t_gen = float(timing.get("gen", 0.0))
        out = {
            "entropy_mean": entropy_mean,
            "val_pass1": float(np.mean(vals)) if vals else math.nan,
            "loss": float(metrics.get("actor/pg_loss", metrics.get("actor/loss", math.nan))),
            "grad_norm": float(metrics.get("actor/grad_norm", math.nan)),
            "clip_frac_low": float(metrics.get("actor/wb_clip_frac_low", 0.0)),
            "clip_frac_high": float(metrics.get("actor/wb_clip_frac_high", 0.0)),
            "approx_kl": float(metrics.get("actor/wb_approx_kl", 0.0)),
            "time_sample": t_gen,
            "time_grade": float(timing.get("reward", 0.0)),
            "time_update": float(timing.get("update_actor", 0.0)),
            "time_step": float(timing.get("step", 0.0)),
            "tokens_per_s": response_tokens / t_gen if t_gen > 0 else 0.0,
        }
        for k, v in metrics.items():
            if isinstance(v, int | float | np.floating | np.integer) and math.isfinite(float(v)):
                out[f"verl/{k}"] = float(v)
        return out
