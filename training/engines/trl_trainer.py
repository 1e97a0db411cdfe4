"""TRL's ``GRPOTrainer`` training with any objective of ``workbench.objectives`` and writing the run directory.

Use: ``WorkbenchGRPOTrainer(model, reward_funcs, args=WorkbenchGRPOConfig(loss_type="real", ...), ...)``; the
config (``training.engines.trl_config``) names the method, maps TRL's fields onto its hyper-parameters and refuses
those it cannot honour. Example: ``scripts/trl_real_example.py``.

What TRL (1.16) does to a generation batch, and what this subclass changes:

- ``_generate_and_score_completions`` returns per-rollout tensors (ids, masks, advantages, old/ref log-probs) but
  no group ids and no raw rewards; ``_prepare_inputs`` then shuffles the rows (``shuffle_sequence_dict``) and cuts
  them into ``steps_per_generation`` micro-batches (``split_tensor_dict``), which splits prompt groups.
- Here the override adds ``wb_group_ids``, ``wb_rewards`` (the weighted sum of the reward functions, before any
  normalisation) and ``wb_rollout`` (a rollout id) to that dict and packs every per-rollout entry group by group
  (``[B, ...] -> [B/G, G, ...]``), so TRL's own shuffle permutes and its split cuts whole groups; ``_prepare_inputs``
  unpacks the micro-batch it returns. Each micro-batch then holds ``per_device_train_batch_size / G`` whole groups
  (``per_device_train_batch_size`` must be a multiple of ``num_generations``; checked).
- ``_compute_loss`` computes the per-token log-probs with TRL's own ``_get_per_token_logps_and_entropies`` and
  returns ``scale * OBJECTIVES[method](logp, old_logp, mask, rewards, group_ids, ref_logp).loss``. ``scale`` makes
  the accumulated, data-parallel-averaged gradient the gradient of the objective on the whole optimizer window:
  ``1 / gradient_accumulation_steps`` for ``seq-mean-token-mean`` and REAL's ``normalize=prompts`` (every
  micro-batch holds as many rollouts and groups), ``processes * t / N`` for ``token-mean`` (t tokens here, N in the
  window, estimated from TRL's ``num_items_in_batch`` as TRL's own ``dapo`` loss does), ``processes`` for REAL's
  ``normalize=sum``; ``normalize=used`` and ``normalize=rollouts`` (real_bce's default) are refused by the
  config: they divide by a count of the whole window.
- Each optimizer step is written to the run directory (``workbench.runlog.RunWriter``): the rollouts its
  micro-batches used, their update records (``training.engines.records.update_records``) and step metrics.
  ``run_report_to`` sends those metrics rows and the run's config to trackers (``training.trackers``, as
  ``python -m training train --report-to``); TRL's own ``args.report_to`` keeps sending TRL's logs, independently.

The GRPO advantage TRL computes (``std + 1e-4``) is not used: the objectives compute theirs (``std + adv_eps``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import GRPOTrainer

from training.engines.records import update_records
from training.engines.trl_config import WorkbenchGRPOConfig
from training.tokenizer import token_texts
from training.trackers import Trackers, check_available, open_trackers, parse_report_to
from workbench.methods import SPECS
from workbench.objectives import get_objective
from workbench.runlog import RunWriter, read_meta
from workbench.step_tables import RolloutFacts, UpdateRecord, build_step

PACK_KEY = "wb_packed_group_size"


def pack_groups(batch: dict[str, Any], n_rows: int, group_size: int) -> dict[str, Any]:
    """``[B, ...] -> [B/G, G, ...]`` for every per-rollout tensor, ``B`` lists -> ``B/G`` tuples; rest unchanged."""
    if n_rows % group_size:
        raise ValueError(f"{n_rows} rollouts do not form whole groups of {group_size}")
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n_rows:
            out[key] = value.reshape(n_rows // group_size, group_size, *value.shape[1:])
        elif isinstance(value, list) and len(value) == n_rows:
            out[key] = [tuple(value[i : i + group_size]) for i in range(0, n_rows, group_size)]
        else:
            out[key] = value
    out[PACK_KEY] = torch.tensor(group_size)
    return out


def unpack_groups(batch: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``pack_groups`` on any subset of groups (what TRL's split hands to one micro-batch)."""
    if PACK_KEY not in batch:
        return batch
    g = int(batch[PACK_KEY])
    first = batch["prompt_ids"]
    n_groups = first.shape[0]
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == PACK_KEY:
            continue
        if isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[:2] == (n_groups, g):
            out[key] = value.reshape(n_groups * g, *value.shape[2:])
        elif isinstance(value, list) and len(value) == n_groups and all(isinstance(v, tuple) for v in value):
            out[key] = [x for group in value for x in group]
        else:
            out[key] = value
    return out


def _prompt_id(row: dict[str, Any]) -> int:
    for key in ("prompt_id", "index", "id"):
        if key in row and row[key] is not None:
            try:
                return int(row[key])
            except (TypeError, ValueError):
                return zlib.crc32(str(row[key]).encode())
    return -1


class _StepEnd(TrainerCallback):
    def __init__(self, trainer: WorkbenchGRPOTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._wb_write_step(state.global_step)


class WorkbenchGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose loss is the workbench objective ``args.loss_type`` on whole prompt groups.

    ``args`` must be a ``WorkbenchGRPOConfig`` (``training.engines.trl_config``): it names the method and holds
    its hyper-parameters, and refuses the ``GRPOConfig`` settings an objective cannot honour. Extra arguments:
    ``run_dir`` (the run directory to write; None writes none), ``run_name`` and ``run_report_to`` (trackers
    mirroring the run directory's metrics, e.g. ``"tensorboard,wandb"``; writes under ``run_dir``). The REAL family
    reads one binary label per rollout: several reward functions need ``real_label_threshold`` (refused here
    otherwise).
    """

    def __init__(
        self,
        *args: Any,
        run_dir: str | Path | None = None,
        run_name: str | None = None,
        run_report_to: str | None = None,
        **kwargs: Any,
    ):
        self.wb_report_to = parse_report_to(run_report_to)  # ValueError: one line naming the bad tracker
        if self.wb_report_to and run_dir is None:
            raise ValueError(f"run_report_to={run_report_to!r} mirrors the run directory: pass run_dir too")
        check_available(self.wb_report_to)  # TrackerUnavailable: one line naming the extra to install
        for old in ("method", "hparams"):
            if old in kwargs:
                raise TypeError(
                    f"{old}= is not an argument: name the method and its settings in the config, "
                    "args=WorkbenchGRPOConfig(loss_type='real', real_tau=0.5, ...)"
                )
        train_args = kwargs.get("args") if "args" in kwargs else (args[2] if len(args) > 2 else None)
        if not isinstance(train_args, WorkbenchGRPOConfig):
            raise TypeError(
                f"args must be a WorkbenchGRPOConfig (training.engines.trl_config), got "
                f"{type(train_args).__name__}: a plain GRPOConfig names TRL's own losses (use trl.GRPOTrainer)"
            )
        method = train_args.loss_type
        self.wb_method = method
        self.wb_hparams = train_args.workbench_hparams()
        self.wb_overrides = dataclasses.asdict(self.wb_hparams)
        self.wb_threshold = train_args.real_label_threshold
        reward_funcs = kwargs.get("reward_funcs", args[1] if len(args) > 1 else None)
        n_funcs = len(reward_funcs) if isinstance(reward_funcs, list | tuple) else 1
        if SPECS[method].family == "real" and n_funcs > 1 and self.wb_threshold is None:
            raise ValueError(
                f"{method} needs one binary label per rollout and got {n_funcs} reward functions: pass "
                "real_label_threshold=t in the config (label = 1 where the weighted sum of the reward functions "
                "is >= t), or combine them into one function returning 0 or 1"
            )
        super().__init__(*args, **kwargs)
        if self.aux_loss_enabled:
            raise ValueError(
                "this Mixture-of-Experts model adds TRL's router auxiliary loss, which the workbench objectives "
                "leave out: set router_aux_loss_coef=0.0"
            )
        self.wb_dir = Path(run_dir) if run_dir is not None else None
        self.wb_name = run_name or (self.wb_dir.name if self.wb_dir else "trl")
        self.wb_writer: RunWriter | None = None
        self.wb_trackers = Trackers()
        self._wb_gen: dict[int, dict[str, Any]] = {}
        self._wb_window: list[dict[str, Any]] = []
        self._wb_next_id = 0
        self._wb_grad_norm = math.nan
        self._wb_times = {"sample": 0.0, "update": 0.0, "tokens": 0}
        self._wb_step_start = time.perf_counter()
        if self.wb_dir is not None:
            self.add_callback(_StepEnd(self))

    # ------------------------------------------------------------------------ carry groups and rewards

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._wb_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        start = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self._wb_times["sample"] += time.perf_counter() - start
        mode = "train" if self.model.training else "eval"
        g = self.num_generations if mode == "train" else self.num_generations_eval
        b = len(inputs)
        if b % g:
            raise ValueError(f"{b} local rollouts do not form whole groups of {g}")
        weights = self.reward_weights.to(self._wb_rewards_per_func.device)
        all_rewards = (self._wb_rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        if self.wb_threshold is not None:
            all_rewards = (all_rewards >= self.wb_threshold).to(all_rewards.dtype)
        p = self.accelerator.process_index
        rewards = all_rewards[p * b : (p + 1) * b].to(torch.float32).cpu()
        prompts = [str(x.get("prompt")) for x in inputs]
        for k in range(0, b, g):
            if len(set(prompts[k : k + g])) != 1:
                raise ValueError(
                    f"rows {k}..{k + g - 1} of this process's generation batch are not one prompt's group; "
                    "TRL's sampler repeats each prompt num_generations times in a row"
                )
        ids = self._wb_next_id + p * b + torch.arange(b)  # unique over processes and generations
        group_ids = ids // g  # _wb_next_id and p * b are multiples of g
        self._wb_next_id += b * self.accelerator.num_processes
        device = out["prompt_ids"].device
        out["wb_group_ids"] = group_ids.to(device)
        out["wb_rewards"] = rewards.to(device)
        out["wb_rollout"] = ids.to(device)
        if mode == "train" and self.wb_dir is not None:
            completions = self.processing_class.batch_decode(
                [
                    c[m.bool()].tolist()
                    for c, m in zip(out["completion_ids"], out["completion_mask"], strict=True)
                ],
                skip_special_tokens=True,
            )
            lengths = out["completion_mask"].sum(1).tolist()
            self._wb_times["tokens"] += int(sum(lengths))
            for i in range(b):
                self._wb_gen[int(ids[i])] = {
                    "prompt": prompts[i],
                    "response": completions[i],
                    "answer": str(inputs[i].get("answer", inputs[i].get("solution", ""))),
                    "prompt_id": _prompt_id(inputs[i]),
                    "reward": float(rewards[i]),
                    "group": int(group_ids[i]),
                    "length": int(lengths[i]),
                }
        return pack_groups(out, b, g)

    def _prepare_inputs(self, generation_batch: Any) -> dict[str, Any]:
        return unpack_groups(super()._prepare_inputs(generation_batch))

    # ------------------------------------------------------------------------------------------- loss

    def wb_scale(self, inputs: dict[str, Any], mask: torch.Tensor) -> float:
        """The factor turning the objective on this micro-batch into its share of the optimizer-window loss."""
        if not self.model.training:
            return 1.0
        hp = self.wb_hparams
        accum = self.current_gradient_accumulation_steps
        procs = self.accelerator.num_processes
        divisor = SPECS[self.wb_method].divides_by(hp)
        if divisor == "nothing":
            return float(procs)
        if divisor == "tokens":
            window = float(inputs["num_items_in_batch"]) * accum / self.args.steps_per_generation
            return procs * float(mask.sum()) / max(window, 1.0)
        return 1.0 / accum

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        start = time.perf_counter()
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True
        )
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        result = get_objective(self.wb_method)(
            logps,
            old,
            mask,
            inputs["wb_rewards"].to(logps.dtype),
            inputs["wb_group_ids"],
            ref_logp=inputs.get("ref_per_token_logps"),
            **self.wb_overrides,
        )
        scale = self.wb_scale(inputs, mask)
        loss = result.loss * scale
        mode = "train" if self.model.training else "eval"
        for key in ("pg_loss", "kl_loss", "approx_kl", "clip_frac_low", "clip_frac_high", "groups_used"):
            if key in result.metrics:
                self._metrics[mode][f"wb/{key}"].append(result.metrics[key])
        if mode == "train" and self.wb_dir is not None:
            rollouts, tokens = update_records(
                self.wb_method,
                result,
                scale=scale,
                rollout_index=inputs["wb_rollout"].tolist(),
                minibatch=0,
                entropy=entropies,
                token_ids=completion_ids,
            )
            m = mask.bool()
            self._wb_window.append(
                {
                    "rollouts": rollouts,
                    "tokens": tokens,
                    "loss": float(loss.detach()),
                    "entropy_sum": float(entropies.detach()[m].sum()),
                    "tokens_n": int(m.sum()),
                    "clip_frac_low": result.metrics.get("clip_frac_low", 0.0),
                    "clip_frac_high": result.metrics.get("clip_frac_high", 0.0),
                    "approx_kl": result.metrics["approx_kl"],
                }
            )
        self._wb_times["update"] += time.perf_counter() - start
        return loss

    # ---------------------------------------------------------------------------------------- run dir

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        value = super()._get_grad_norm(model, grad_norm=grad_norm)
        self._wb_grad_norm = float(value) if value is not None else math.nan
        return value

    def _wb_open(self, step: int) -> RunWriter:
        assert self.wb_dir is not None
        if (self.wb_dir / "run.json").exists() and step > 1:
            return RunWriter.resume(self.wb_dir, last_step=step - 1)
        import transformers
        import trl

        config = {
            "method": self.wb_method,
            "seed": int(self.args.seed),
            "hparams": dataclasses.asdict(self.wb_hparams),
            "group_size": int(self.num_generations),
            "engine": "trl",
            "trl": {k: v for k, v in self.args.to_dict().items() if isinstance(v, int | float | str | bool)},
        }
        env = {"engine": "trl", "trl": trl.__version__, "transformers": transformers.__version__}
        env["torch"] = torch.__version__
        return RunWriter.create(self.wb_dir, name=self.wb_name, method=self.wb_method, config=config, env=env)

    def _wb_write_step(self, step: int) -> None:
        """Write optimizer step ``step``: the rollouts its micro-batches used, their records and the metrics."""
        window = gather_object([self._wb_window])
        gen = gather_object([self._wb_gen])
        times = dict(self._wb_times)
        self._wb_window = []
        self._wb_times = {"sample": 0.0, "update": 0.0, "tokens": 0}
        if not self.accelerator.is_main_process:
            self._wb_gen = {}
            return
        start = time.perf_counter()
        parts = [w for per_process in window for w in per_process]
        known: dict[int, dict[str, Any]] = {}
        for per_process in gen:
            known.update(per_process)
        order: list[int] = []
        for part in parts:
            for rid in part["rollouts"]["rollout"].tolist():
                if rid not in order:
                    order.append(rid)
        index = {rid: i for i, rid in enumerate(order)}
        rows = [known[r] for r in order]
        keys = (
            "reward",
            "group",
            "length",
            "prompt",
            "response",
            "answer",
            "prompt_id",
        )  # as _wb_gen holds them
        facts = RolloutFacts(**{k: [r[k] for r in rows] for k in keys})
        updates = []
        for part in parts:
            r_cols = dict(part["rollouts"])
            t_cols = dict(part["tokens"])
            r_cols["rollout"] = np.array([index[x] for x in r_cols["rollout"].tolist()], dtype=np.int64)
            t_cols["rollout"] = np.array([index[x] for x in t_cols["rollout"].tolist()], dtype=np.int64)
            updates.append(UpdateRecord(r_cols, t_cols))
        n_tok = sum(p["tokens_n"] for p in parts)
        procs = max(len(window), 1)
        now = time.perf_counter()
        metrics = {
            "loss": sum(p["loss"] for p in parts) / procs,
            "grad_norm": self._wb_grad_norm,
            "entropy_mean": sum(p["entropy_sum"] for p in parts) / max(n_tok, 1),
            "clip_frac_low": _mean([p["clip_frac_low"] for p in parts]),
            "clip_frac_high": _mean([p["clip_frac_high"] for p in parts]),
            "approx_kl": _mean([p["approx_kl"] for p in parts]),
            "time_sample": times["sample"],
            "time_update": times["update"],
            "time_step": now - self._wb_step_start,
            "tokens_per_s": times["tokens"] / times["sample"] if times["sample"] > 0 else 0.0,
        }
        self._wb_step_start = now
        tables = build_step(
            step, facts, updates, metrics, every_update=False,
            token_text=lambda ids: token_texts(self.processing_class, ids),
        )  # fmt: skip
        tables.metrics["time_log"] = time.perf_counter() - start
        if self.wb_writer is None:
            self.wb_writer = self._wb_open(step)
            self._wb_open_trackers(step - 1)
        row = self.wb_writer.write_step(step, *tables)
        self.wb_trackers.log_metrics(step, row)
        self.wb_writer.set_status("running", last_step=step)
        used = set(order)
        self._wb_gen = {k: v for k, v in self._wb_gen.items() if k not in used or self.num_iterations > 1}

    def _wb_open_trackers(self, last_step: int) -> None:
        if not self.wb_report_to:
            return
        assert self.wb_dir is not None and self.wb_writer is not None
        writer = self.wb_writer

        def warn(name: str, error: str) -> None:
            print(
                f"warning: the {name} tracker failed and is off for the rest of the run ({error})",
                file=sys.stderr,
            )
            writer.event("tracker_failed", tracker=name, error=error)

        self.wb_trackers = open_trackers(
            self.wb_report_to, self.wb_dir, run_name=self.wb_name, resume_step=last_step, warn=warn
        )
        self.wb_trackers.log_config(read_meta(self.wb_dir)["config"])

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            out = super().train(*args, **kwargs)
        except BaseException as e:
            if self.wb_writer is not None:
                self.wb_writer.set_status("failed", last_step=int(self.state.global_step) - 1, error=repr(e))
            raise
        finally:
            self.wb_trackers.close()
        if self.wb_writer is not None:
            self.wb_writer.set_status("finished", last_step=int(self.state.global_step))
        return out


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0
