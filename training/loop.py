"""The RL loop (paper Algorithm 1), logging every rollout and token in the run format.

Per step k (1-based):

1. take ``batch_prompts`` prompts (an epoch-wise permutation seeded by (seed, epoch));
2. draw ``group_size`` rollouts per prompt from the current ("old") policy at the sampling temperature, through
   the rollout back end, seeded by (seed, k);
3. grade them with math-verify in worker processes (binary rewards; a timeout or crash scores 0 and is counted),
   which start on the rollouts that end early while the others still decode (``training.grading_stream``) and
   work on while this process does step 4 (the rewards are awaited only when an update needs them);
4. split the prompts (shuffled, seeded by (seed, k, epoch)) into mini-batches that keep each prompt's rollouts
   together, and compute, per mini-batch and without gradient, the old log-probs and entropies (and the
   reference log-probs when a KL term to the reference is on) -- all at the sampling temperature. They come
   from the sampling pass itself when the back end computed them (``--sampler-logprobs``); else the first
   mini-batch's are taken from the first update's forward (same weights, same numbers: one forward saved),
   unless the model has dropout;
5. for each epoch and mini-batch: recompute log-probs with gradient, take the objective
   ``workbench.objectives.OBJECTIVES[method]`` (this package holds no objective math), back-propagate, clip the
   gradient norm, AdamW step. The closed-form breakdown of the same batch
   (``workbench.closed_forms.breakdown_from_batch``) is logged: s_bar, advantage or log C, token and rollout
   weights, and the exact dL/dlogp. After the step's updates the rollout back end's weights are synced;
6. validate every ``val_every`` steps (Pass@1 = mean accuracy of ``val_k`` samples per held-out prompt), write
   the step's three tables (metrics last), and checkpoint every ``save_every`` steps.

The first mini-batch of a step is computed with the very weights that sampled, so its ``s_t`` is 0; later
mini-batches see the policy move. Reproducibility: every random draw of step k comes from a generator seeded by
(seed, k, purpose), torch's CPU thread count is fixed, and checkpoints hold the model and optimizer state, so a
run killed and resumed from its last checkpoint logs the same values as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from training.checkpoint import CheckpointError, checkpoint_dir, load_latest, save_checkpoint
from training.config import TrainConfig
from training.grading_stream import StreamedGrading
from training.lag import LAGGED, BehaviourPolicies, behaviour_step
from training.model import (
    ScoringBatch,
    autocast,
    build_tiny_model,
    enable_gradient_checkpointing,
    load_local_model,
    make_scoring_batch,
    max_positions,
    resolve_model,
    response_logprobs,
    rope_depends_on_length,
    select_rows,
)
from training.rewards import Grader
from training.rollout import Generations, RolloutBackend, TransformersBackend, VLLMBackend, check_backend
from training.seeding import SAMPLE, SHUFFLE, VALIDATE, derive_seed, prompt_indices, rng
from training.task import Problem, encode_prompt, make_splits
from training.tokenizer import build_tokenizer, response_texts, token_texts
from training.trackers import Trackers, open_trackers, parse_report_to
from training.warmstart import load_or_train
from workbench.objectives import OBJECTIVES
from workbench.runlog import RunWriter, atomic_write_json, read_meta
from workbench.stats.mechanisms import regime_summary, run_tau
from workbench.step_tables import RolloutFacts, UpdateRecord, build_step
from workbench.update_records import update_records

MEAN_METRICS = ("loss", "grad_norm", "clip_frac_low", "clip_frac_high", "approx_kl")


class SetupError(ValueError):
    """The settings do not fit the loaded model or data; found during setup, before the run directory exists."""


@dataclass
class Policy:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # "embedded" or the --model folder
    path: str | None  # a folder holding the starting weights (for vLLM), if any
    warmstart: dict[str, Any] | None


def load_policy(cfg: TrainConfig, grader: Grader, device: torch.device, log: Callable[[str], None]) -> Policy:
    """The starting policy: a local model folder, or the embedded model warm-started on the embedded task's
    worked solutions (from the cache; the cache key covers everything in ``cfg`` that determines it).

    Weights are float32 whatever ``cfg.dtype``: they are the optimizer's master weights; ``cfg.dtype ==
    "bfloat16"`` makes the forward passes run under bf16 autocast (``training.model.autocast``)."""
    dtype = torch.float32
    if cfg.model is not None:
        model, tokenizer = load_local_model(cfg.model, dtype, device)
        return Policy(model, tokenizer, cfg.model, str(resolve_model(cfg.model)), None)
    if cfg.warmstart:
        model, tokenizer, info = load_or_train(cfg, make_splits(cfg.task_spec()), grader, log=log)
        return Policy(model.to(device=device, dtype=dtype), tokenizer, "embedded", info["path"], info)
    tokenizer = build_tokenizer()
    model = build_tiny_model(
        cfg.tiny_spec(), len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, cfg.warmstart_seed
    )
    return Policy(model.to(device=device, dtype=dtype), tokenizer, "embedded", None, None)


def environment(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Package versions, git commit, machine: what ``run.json`` records next to the config."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("torch", "transformers", "tokenizers", "math-verify", "numpy", "pyarrow", "pandas"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {
        "python": sys.version.split()[0],
        "packages": packages,
        "git_commit": commit or None,
        "git_dirty": dirty,
        "seed": cfg.seed,
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "argv": sys.argv,
    }


def stochastic_in_training(model: torch.nn.Module) -> bool:
    """Whether ``model``'s forward in training mode differs from its eval forward (active dropout)."""
    config = getattr(model, "config", None)
    rates = [getattr(config, k, 0.0) or 0.0 for k in ("attention_dropout", "hidden_dropout", "dropout")]
    rates += [m.p for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    return any(isinstance(r, int | float) and r > 0 for r in rates)


FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def adamw(params, **kw) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with its fused kernel where torch has one for these parameters (CPU and CUDA
    floating point): the same update rule in one pass over all tensors instead of a Python loop over them
    (6 ms less per update for the tiny model on one CPU thread)."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in FUSED_DTYPES for p in params)
    return torch.optim.AdamW(params, fused=fused or None, **kw)


# Switches of the speed paths; False restores the plain path (the tests compare both, value for value).
# Skip the backward pass of rows whose gradient is zero (``Trainer._update``); False: every row is
# back-propagated.
SKIP_ZERO_GRADIENT_ROWS = True
# Rollouts that end early go to the grader while the others decode (training.grading_stream); False: all after.
GRADE_WHILE_SAMPLING = True
# The forwards without autograd of an update's rows without gradient run on a second thread beside the forward
# of its rows with gradient (the second core; ~9 ms less per update on the tiny preset, docs/performance.md).
OVERLAP_FORWARDS = True


def pad_rows(values: list[Tensor], width: int, device: torch.device) -> Tensor:
    """Right-pad 1-D tensors (on the CPU) to ``[n, width]`` with zeros, on ``device`` (one copy there, not one
    per row)."""
    out = torch.zeros((len(values), width), dtype=torch.float32)
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out.to(device)


@dataclass
class StepData:
    problems: list[Problem]
    prompt_ids: list[list[int]]
    responses: list[Tensor]
    texts: list[str]
    rewards: Tensor  # [N]
    group: Tensor  # [N] long, prompt index within the step
    old_logp: list[Tensor]  # per rollout [len]
    entropy: list[Tensor]
    ref_logp: list[Tensor] | None
    old_from_sampler: bool = False


class Trainer:
    """One training run. ``Trainer(cfg, out).run()``; ``resume=True`` continues the run in ``out``.

    ``grader``: a shared ``Grader`` (else one is started and closed with the run). ``splits``: problems to use
    instead of the embedded task's (``train`` and ``val`` lists of ``Problem``; ``sft`` for a warm start).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        out: str | Path,
        *,
        resume: bool = False,
        grader: Grader | None = None,
        log: Callable[[str], None] | None = None,
        env_extra: dict[str, Any] | None = None,
        splits: dict[str, list[Problem]] | None = None,
    ):
        self.cfg = cfg
        self.out = Path(out)
        self.resume = resume
        self._own_grader = grader is None
        self._grading = futures.ThreadPoolExecutor(1, thread_name_prefix="grading")  # see step()
        self._beside = futures.ThreadPoolExecutor(1, thread_name_prefix="forward")  # see _update()
        self.grader = grader
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.env_extra = env_extra or {}
        # None: from cfg (data files or the embedded task); else "train", "val" (and "sft") lists of problems
        self.splits = splits
        self._encoded: dict[str, list[int]] = {}  # prompt text -> token ids
        self.hp = cfg.hparams()
        self.objective = OBJECTIVES[cfg.method]
        self.grader_config = cfg.grader_config()  # also when the grader is shared (passed in)

    def _screen_golds(self) -> None:
        """The gold audit (``training.gold_audit.screen_problems``, cached by content) on the data files: a gold
        that accepts a trivial answer is refused (``--bad-rows raise``) or left out and counted (``skip``); the
        summary goes into ``run.json``'s data record."""
        from training.gold_audit import screen_problems

        cfg = self.cfg
        for split, spec in (("train", cfg.train_data), ("val", cfg.val_data)):
            if spec is None or split not in self.data_info:
                continue
            kept, summary = screen_problems(
                self.splits[split], self.grader, bad_rows=cfg.bad_rows, config=self.grader_config, path=spec,
                cache_dir=cfg.cache_dir,
            )  # fmt: skip
            self.splits[split] = kept
            self.data_info[split]["gold_audit"] = summary
            if summary["skipped"]:
                self.log(
                    f"{split} data: the gold audit left out {summary['skipped']} problem(s) (--bad-rows skip)"
                )

    # ------------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)  # part of the config: sums depend on it
        self.device = torch.device(cfg.resolved_device())
        check_backend(cfg.backend)
        if self.grader is None:
            self.grader = Grader(
                workers=cfg.grader_workers, timeout=cfg.grader_timeout, config=cfg.grader_config()
            )
        if self.splits is None:
            self.splits, self.data_info = load_splits(cfg, self.log)
            if cfg.gold_audit:
                self._screen_golds()
        else:
            self.data_info = {}
        self.train_set = self.splits["train"]
        self.val_set = self.splits["val"][: cfg.val_prompts]
        if cfg.batch_prompts > len(self.train_set):
            raise SetupError(
                f"--batch-prompts {cfg.batch_prompts} exceeds the {len(self.train_set)} training problems"
            )
        self.policy = load_policy(cfg, self.grader, self.device, self.log)
        self.model = self.policy.model
        self.tokenizer = self.policy.tokenizer
        self.model.config.use_cache = True
        if cfg.gradient_checkpointing and not enable_gradient_checkpointing(self.model):
            self.log("warning: this model does not support gradient checkpointing; training without it")
        if cfg.max_prompt_tokens:
            self._drop_long_prompts()
        limit = max_positions(self.model)
        longest = max(len(self.encode(p)) for p in self.train_set + self.val_set)
        if limit is not None and longest + cfg.max_new_tokens > limit:
            raise SetupError(
                f"prompts of up to {longest} tokens plus --max-new-tokens {cfg.max_new_tokens} exceed the model's "
                f"{limit} positions: lower --max-new-tokens, or drop long prompts with --max-prompt-tokens"
            )
        self.ref = None
        if cfg.needs_reference():
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
            if cfg.dtype == "bfloat16":  # no optimizer state: bf16 storage halves its memory
                self.ref = self.ref.to(torch.bfloat16)
        # Without dropout the first update's forward (training mode) computes the old log-probs of its mini-batch.
        self._reuse_first = not stochastic_in_training(self.model)
        # With dropout a second forward draws another mask: its gradient would not be that of the logged loss,
        # so every row is back-propagated from its one forward (micro-batches excepted, as always).
        self._skip_zero_rows = SKIP_ZERO_GRADIENT_ROWS and not stochastic_in_training(self.model)
        # Rows without gradient are forwarded on a second thread beside the others (see _update), unless the
        # model's forward rewrites its own state (a rope that depends on the sequence length).
        self._overlap_forwards = OVERLAP_FORWARDS and not rope_depends_on_length(self.model.config)
        self._reached_params: list[bool] | None = None  # see _zero_grads_if_no_backward
        # the policy's parameters, listed once (each walk of the module tree costs ~0.3 ms, twice per update)
        self._params = list(self.model.parameters())
        self._trainable = [p for p in self._params if p.requires_grad]
        self.opt = adamw(
            self._params,
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
        )
        self.token_text = token_texts(self.tokenizer)
        self.start_step = 0
        passed_over = []
        extra = {LAGGED: {}} if cfg.rollout_lag else None
        if self.resume:  # the newest checkpoint that loads; a damaged newer one is named and passed over
            self.start_step, passed_over = load_latest(self.out, self.model, self.opt, extra=extra)
        # --rollout-lag: the behaviour policies (training.lag); the sampling weights are not the first update's
        self.behaviour: BehaviourPolicies | None = None
        if cfg.rollout_lag:
            self._reuse_first = False
            self.behaviour = BehaviourPolicies(cfg.rollout_lag, self.model)
            if self.start_step == 0:
                self.behaviour.record(0, self.model)
            else:
                try:
                    self.behaviour.restore(extra[LAGGED], self.start_step, self.model)
                except (ValueError, KeyError, TypeError) as e:
                    path = checkpoint_dir(self.out, self.start_step) / f"{LAGGED}.pt"
                    raise CheckpointError(path, f"cannot restore the behaviour policies ({e})") from None
        self.regime_tau = run_tau(cfg.method, _asdict(self.hp))
        self.backend = self._make_backend()
        if self.resume:
            self.writer = RunWriter.resume(self.out, last_step=self.start_step)
            for e in passed_over:
                self.log(f"warning: {e}; passed over")
                self.writer.event("bad_checkpoint", path=str(e.path), error=e.problem)
            self.log(f"resuming {self.out} from step {self.start_step}")
        else:
            env = {**environment(cfg, self.device), **self.env_extra}
            if self.data_info:
                env["data"] = self.data_info
            if self.policy.warmstart is not None:
                env["warmstart"] = {k: v for k, v in self.policy.warmstart.items() if k != "history"}
            config = {**cfg.to_log(), "hparams": _asdict(self.hp)}
            self.writer = RunWriter.create(
                self.out, name=self.out.name, method=cfg.method, config=config, env=env
            )
            if self.policy.warmstart is not None:
                self.writer.event("warmstart", **self.policy.warmstart)
            for split, info in self.data_info.items():
                if info["skipped"]:
                    self.writer.event("data_skipped", split=split, **info)
        self._open_trackers()

    def _open_trackers(self) -> None:
        """``--report-to``: the trackers that mirror the metrics table, sent the config of ``run.json`` once."""
        names = parse_report_to(self.cfg.report_to)
        if not names:
            return

        def warn(name: str, error: str) -> None:
            self.log(f"warning: the {name} tracker failed and is off for the rest of the run ({error})")
            self.writer.event("tracker_failed", tracker=name, error=error)

        self.trackers = open_trackers(
            names, self.out, run_name=self.out.name, resume_step=self.start_step,
            wandb_offline=self.cfg.wandb_offline, warn=warn,
        )  # fmt: skip
        self.trackers.log_config(read_meta(self.out)["config"])

    def _save_final_model(self) -> None:
        """``<out>/final_model``: the policy and its tokenizer as a ``save_pretrained`` folder (written under a
        temporary name, then renamed), in bf16 when the run computes in bf16."""
        import json
        import shutil

        final, tmp = self.out / "final_model", self.out / ".final_model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        state = self.model.state_dict()
        bf16 = self.cfg.dtype == "bfloat16"
        if bf16:
            state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
        self.model.save_pretrained(tmp, state_dict=state)
        if bf16:  # save_pretrained writes the training copy's dtype (float32): say what the weights are
            config_path = tmp / "config.json"
            config = json.loads(config_path.read_text())
            for key in ("dtype", "torch_dtype"):
                if key in config or key == "dtype":
                    config[key] = "bfloat16"
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self.writer.event("final_model", path=str(final))

    def _drop_long_prompts(self) -> None:
        """Drop problems whose encoded prompt exceeds ``--max-prompt-tokens``; counted in the data info."""
        cap = self.cfg.max_prompt_tokens
        for split in ("train", "val"):
            kept = [p for p in getattr(self, f"{split}_set") if len(self.encode(p)) <= cap]
            dropped = len(getattr(self, f"{split}_set")) - len(kept)
            if dropped:
                self.log(
                    f"{split}: dropped {dropped} problems with prompts over {cap} tokens (--max-prompt-tokens)"
                )
                self.data_info.setdefault(split, {})["dropped_long_prompts"] = dropped
            if not kept:
                raise SetupError(f"every {split} prompt is longer than --max-prompt-tokens {cap}")
            setattr(self, f"{split}_set", kept)
        if self.cfg.batch_prompts > len(self.train_set):
            raise SetupError(
                f"--batch-prompts {self.cfg.batch_prompts} exceeds the {len(self.train_set)} training problems "
                f"left under --max-prompt-tokens {cap}"
            )

    def _make_backend(self) -> RolloutBackend:
        tok = self.tokenizer
        if self.cfg.backend == "vllm":
            if self.policy.path is None:
                raise SetupError(
                    "--backend vllm needs weights in a folder: pass --model PATH or keep --warmstart"
                )
            longest = max(len(self.encode(p)) for p in self.train_set + self.val_set)
            backend = VLLMBackend(
                self.policy.path,
                eos_id=tok.eos_token_id,
                dtype=self.cfg.dtype,
                seed=self.cfg.seed,
                gpu_memory_utilization=self.cfg.vllm_gpu_memory_utilization,
                max_model_len=longest + self.cfg.max_new_tokens,
                sleep=self.cfg.vllm_sleep,
            )
            backend.sync_weights(self.model)
            return backend
        return TransformersBackend(
            self.model, tok.pad_token_id, tok.eos_token_id, dtype=self.cfg.dtype,
            logprobs=self.cfg.sampler_logprobs and not stochastic_in_training(self.model),
        )  # fmt: skip

    def encode(self, problem: Problem) -> list[int]:
        key = (problem.source, problem.id)
        ids = self._encoded.get(key)
        if ids is None:
            ids = encode_prompt(
                self.tokenizer, self.cfg.prompt_template, problem, chat=self.cfg.chat_template
            )
            self._encoded[key] = ids
        return ids

    def compute(self):
        """The forward passes' precision context (bf16 autocast for ``--dtype bfloat16``)."""
        return autocast(self.device, self.cfg.dtype)

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> Path:
        """Set up, train to ``cfg.steps``, and close; the run's status says finished, failed or stopped."""
        try:
            self.setup()
            self._train_loop()
            if self.cfg.save_final_model:
                self._save_final_model()
            self.writer.set_status("finished", last_step=self.cfg.steps)
        except KeyboardInterrupt:
            if hasattr(self, "writer"):
                self.writer.set_status("stopped", last_step=self._last_done, error="interrupted")
            raise
        except BaseException as e:
            if hasattr(self, "writer"):
                try:
                    self.writer.set_status(
                        "failed", last_step=self._last_done, error=f"{type(e).__name__}: {e}",
                        traceback=traceback.format_exc()[-4000:],
                    )  # fmt: skip
                except OSError as status_error:  # e.g. the disk is still full: say so, keep the first error
                    self.log(f"warning: could not record the failure in status.json ({status_error})")
            raise
        finally:
            self.close()
        return self.out

    _last_done = 0  # last step whose logs are complete
    trackers = Trackers()  # --report-to; none until setup opens them (an instance's own replaces this one)

    def close(self) -> None:
        self.trackers.close()
        self._grading.shutdown(wait=True)
        self._beside.shutdown(wait=True)
        if getattr(self, "backend", None) is not None:
            self.backend.close()
        if self._own_grader and self.grader is not None:
            self.grader.close()
            self.grader = None

    def _train_loop(self) -> None:
        cfg = self.cfg
        self._last_done = self.start_step
        if self.start_step == 0 and cfg.val_every:
            t = time.perf_counter()
            val = self.validate(0)
            self.writer.event("validation", step=0, seconds=time.perf_counter() - t, **val)
            self.log(f"validation before training: Pass@1 {val['val_pass1']:.3f} (k={cfg.val_k})")
        bar = tqdm(
            total=cfg.steps, initial=self.start_step, desc=cfg.method, unit="step", disable=not cfg.progress,
            dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip
        last_val = math.nan
        try:
            for step in range(self.start_step + 1, cfg.steps + 1):
                metrics = self.step(step)
                self._last_done = step
                if not math.isnan(metrics["val_pass1"]):
                    last_val = metrics["val_pass1"]
                bar.set_postfix(
                    reward=f"{metrics['reward_mean']:.3f}",
                    pass1=f"{last_val:.3f}" if not math.isnan(last_val) else "-",
                    s_step=f"{metrics['time_step']:.2f}",
                )
                bar.update(1)
        finally:
            bar.close()

    # ------------------------------------------------------------------------------------------------ a step
    def step(self, step: int) -> dict[str, Any]:
        """Run step ``step`` end to end and write its logs; returns its metrics."""
        cfg = self.cfg
        self._step = step
        t_start = time.perf_counter()
        times: dict[str, float] = {}

        # 1-3: prompts, rollouts, rewards
        idx = prompt_indices(cfg.seed, step, cfg.batch_prompts, len(self.train_set))
        problems = [self.train_set[i] for i in idx]
        prompt_ids = [self.encode(p) for p in problems]
        sampler = self.model
        if self.behaviour is not None:  # --rollout-lag: sample with the weights after step b(k)
            sampler = self.behaviour.for_step(step)
            self.backend.sync_weights(sampler)
        # The grader works in its own processes: rollouts that end early are graded while the others decode
        # (training.grading_stream), the rest while this process computes what does not need the rewards (the
        # reference log-probs, the first update's forward where it cannot wait). time_grade is decoding the
        # rest plus the wait for the rewards.
        answers = [problems[i // cfg.group_size].gold for i in range(len(prompt_ids) * cfg.group_size)]
        grading = StreamedGrading(
            lambda texts, golds: self._grading.submit(
                self.grader.grade, texts, golds, timeout=cfg.grader_timeout, config=self.grader_config
            ),
            lambda responses: response_texts(self.tokenizer, responses),
            answers,
        )
        t = time.perf_counter()
        try:
            gens = self.backend.generate(
                prompt_ids,
                cfg.group_size,
                temperature=cfg.temperature,
                max_new_tokens=cfg.max_new_tokens,
                seed=derive_seed(cfg.seed, SAMPLE, step),
                on_finished=grading.add if GRADE_WHILE_SAMPLING else None,
            )
            times["time_sample"] = time.perf_counter() - t
            t = time.perf_counter()
            texts = grading.close(gens.responses)
        except BaseException:
            futures.wait(grading.futures)  # never leave the grader busy behind an error
            raise
        t_decode = time.perf_counter() - t
        times["time_grade"] = 0.0  # set below (the key keeps its place among the metrics)
        n = len(texts)
        group = torch.arange(n) // cfg.group_size

        # 4: mini-batches and old log-probs
        layouts = [self._minibatches(step, e) for e in range(cfg.epochs)]
        t = time.perf_counter()
        data = StepData(problems, prompt_ids, gens.responses, texts, torch.empty(0), group, [], [], None)
        try:
            self._old_logprobs(data, layouts[0], sampler, gens)
        except BaseException:
            futures.wait(grading.futures)  # never leave the grader busy behind an error
            raise
        times["time_logp"] = time.perf_counter() - t
        graded: dict[str, Any] = {"wait": 0.0}

        def await_rewards(rows: np.ndarray | None = None) -> Tensor:
            """The rewards of ``rows`` (default: all), waiting for the grader only as long as they need: each
            update asks for its own rows' (the first one before its forward), the step for all after its
            updates (time_grade is decoding plus these waits). Only then does ``data.rewards`` hold them, and
            a grading error may surface only there, after some updates have stepped the weights (the run stops;
            checkpoints are written only after complete steps)."""
            if "report" not in graded:
                t_wait = time.perf_counter()
                if rows is not None:
                    part = grading.rewards_of([int(r) for r in rows])
                    graded["wait"] += time.perf_counter() - t_wait
                    times["time_grade"] = t_decode + graded["wait"]
                    return torch.tensor(part, dtype=torch.float32)
                report = graded["report"] = grading.result()
                graded["wait"] += time.perf_counter() - t_wait
                times["time_grade"] = t_decode + graded["wait"]
                if report.timeouts or report.errors:
                    bad = [i for i, s in enumerate(report.status) if s != "ok"]
                    self.writer.event(
                        "grader", step=step, timeouts=report.timeouts, errors=report.errors,
                        rollouts=bad[:20], details=[report.details[i] for i in bad[:5]],
                    )  # fmt: skip
                data.rewards = torch.tensor(report.rewards, dtype=torch.float32)
            return data.rewards if rows is None else data.rewards[torch.as_tensor(rows)]

        # 5: updates
        t = time.perf_counter()
        lr = cfg.lr * (min(1.0, step / cfg.lr_warmup_steps) if cfg.lr_warmup_steps else 1.0)
        for g in self.opt.param_groups:
            g["lr"] = lr
        records: list[UpdateRecord] = []
        update_metrics: list[dict[str, float]] = []
        try:
            for epoch, layout in enumerate(layouts):
                for k, rows in enumerate(layout):
                    rec, m = self._update(data, rows, epoch * len(layout) + k, epoch, await_rewards)
                    records.append(rec)
                    update_metrics.append(m)
            await_rewards()
        except BaseException:
            futures.wait(grading.futures)  # never leave the grader busy behind an error
            raise
        report = graded["report"]
        self.backend.sync_weights(self.model)
        if self.behaviour is not None:
            self.behaviour.record(step, self.model)
        times["time_update"] = time.perf_counter() - t - graded["wait"]

        # 6: validation
        val: dict[str, float] = {"val_pass1": math.nan, "val_pass_at_k": math.nan}
        t = time.perf_counter()
        if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
            val = self.validate(step)
        times["time_val"] = time.perf_counter() - t

        # metrics
        lengths = torch.tensor([len(x) for x in gens.responses], dtype=torch.float32)
        ent_sum = sum(float(e.sum()) for e in data.entropy)
        metrics: dict[str, Any] = {  # reward_mean, the solved ratios and response_len_mean: build_step
            "entropy_mean": ent_sum / float(lengths.sum()),
            "val_pass1": val["val_pass1"],
            "val_pass_at_k": val["val_pass_at_k"],
            "truncated_ratio": float((~gens.finished).float().mean()),
            "tokens_per_s": float(lengths.sum()) / max(times["time_sample"], 1e-9),
            "grader_timeouts": report.timeouts,
            "grader_errors": report.errors,
            "grader_cache_hits": report.cache_hits,
            "lr": lr,
            "updates": len(update_metrics),
            "skipped_updates": sum(int(m["skipped"]) for m in update_metrics),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **times,
        }
        for key in sorted({k for m in update_metrics for k in m}):
            vals = [u[key] for u in update_metrics if key in u and math.isfinite(u[key])]
            name = key if key in MEAN_METRICS else f"obj_{key}"
            metrics[name] = float(np.mean(vals)) if vals else 0.0
        for key in MEAN_METRICS:
            metrics.setdefault(key, 0.0)  # e.g. clip fractions of the REAL family, which clips nothing
        norms = [m["grad_norm"] for m in update_metrics if math.isfinite(m["grad_norm"])]
        metrics["grad_norm_max"] = max(norms, default=0.0)
        # the regime: how far the updated policy was from the sampling one (every update of the step)
        metrics["rollout_lag"] = cfg.rollout_lag
        metrics.update(
            regime_summary(
                np.concatenate([r.tokens["s"] for r in records]),
                np.concatenate([r.rollouts["s_bar"] for r in records]),
                self.regime_tau,
            )
        )

        # logs: tokens and rollouts, then metrics (complete step)
        t = time.perf_counter()
        metrics.update(time_log=0.0, time_step=0.0)  # placeholders: the tables are checked before writing
        # rollout_lag is the run's lag as set; a rollout's own lag, step - 1 - behaviour_step, is smaller early on
        lag = {"behaviour_step": behaviour_step(step, cfg.rollout_lag), "rollout_lag": cfg.rollout_lag}
        tables = build_step(
            step, self._facts(data, gens.finished, report.status), records, metrics,
            token_text=self.token_text, log_tokens=cfg.log_tokens, rollout_extra=lag,
        )  # fmt: skip
        metrics = tables.metrics

        def late() -> dict[str, float]:  # called by the writer just before the metrics file
            now = time.perf_counter()
            metrics.update(time_log=now - t, time_step=now - t_start)
            return {"time_log": metrics["time_log"], "time_step": metrics["time_step"]}

        row = self.writer.write_step(step, *tables, late_metrics=late)
        self._last_done = step  # complete now, even if its checkpoint below fails
        self.trackers.log_metrics(step, row)  # --report-to: the row just written, as written

        # checkpoint, after the step's logs (a checkpoint never points past a logged step); its time is an event
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
            t = time.perf_counter()
            extra = {LAGGED: self.behaviour.to_checkpoint(step)} if self.behaviour is not None else None
            save_checkpoint(self.out, step, self.model, self.opt, keep=cfg.keep_checkpoints, extra=extra)
            self.writer.set_status("running", last_step=step, last_checkpoint=step)
            self.writer.event("checkpoint", step=step, seconds=time.perf_counter() - t)
        return metrics

    def _minibatches(self, step: int, epoch: int) -> list[np.ndarray]:
        """Rollout indices of each mini-batch: shuffled prompts, each prompt's G rollouts kept together."""
        cfg = self.cfg
        order = rng(cfg.seed, SHUFFLE, step, epoch).permutation(cfg.batch_prompts)
        g = cfg.group_size
        out = []
        for k in range(cfg.n_minibatches):
            prompts = order[k * cfg.minibatch_prompts : (k + 1) * cfg.minibatch_prompts]
            out.append((prompts[:, None] * g + np.arange(g)[None, :]).reshape(-1))
        return out

    def _scoring_batch(self, data: StepData, rows: np.ndarray) -> ScoringBatch:
        g = self.cfg.group_size
        return make_scoring_batch(
            [data.prompt_ids[r // g] for r in rows], [data.responses[r] for r in rows],
            self.tokenizer.pad_token_id, self.device,
        )  # fmt: skip

    def _chunks(self, n: int) -> list[slice]:
        size = self.cfg.micro_batch_rollouts or n
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def _old_logprobs(
        self, data: StepData, layout: list[np.ndarray], sampler: torch.nn.Module, gens: Generations
    ) -> None:
        """Old log-probs and entropies under ``sampler``, the policy that sampled, and the reference log-probs
        (a KL term; this is their one place), computed in the first epoch's mini-batch layout and chunks, so
        that on-policy the first update recomputes exactly these numbers (s_t = 0).

        The first mini-batch's old log-probs are left to the first update when ``reuse_first_forward`` holds:
        its forward runs with the very weights that sampled, so its log-probs (detached) are the old ones, and
        this pass would compute the same numbers again (one forward in ``n_minibatches`` saved). When the back
        end computed them (``--sampler-logprobs``: the sampler's logits, the scorer's formulas; equal to the
        scorer's to float rounding), every mini-batch's come from the sampling pass itself (the first update
        then replaces those of the rows it forwards with its own), and only the reference log-probs need a
        forward here."""
        n = len(data.responses)
        data.old_logp = [None] * n  # type: ignore[list-item]
        data.entropy = [None] * n  # type: ignore[list-item]
        data.ref_logp = [None] * n if self.ref is not None else None  # type: ignore[list-item]
        from_sampler = gens.logp is not None and gens.entropy is not None
        if from_sampler:
            data.old_logp, data.entropy = list(gens.logp), list(gens.entropy)  # type: ignore[arg-type]
            data.old_from_sampler = True
            if self.ref is None:
                return
        for k, rows in enumerate(layout):
            sb = self._scoring_batch(data, rows)
            left_to_update = from_sampler or (k == 0 and self._reuse_first)
            for sl in self._chunks(len(rows)):
                part = select_rows(sb, np.arange(len(rows))[sl])  # the rows an update's chunk forwards
                if not left_to_update:
                    with torch.no_grad(), self.compute():
                        lp, en = response_logprobs(
                            sampler, part, self.cfg.temperature, with_entropy=True,
                            chunk_tokens=self.cfg.logit_chunk_tokens,
                        )  # fmt: skip
                    self._store_old(data, rows[sl], lp, en)
                self._store_ref(data, rows[sl], part)

    def _store_old(self, data: StepData, rows: np.ndarray, lp: Tensor, en: Tensor) -> None:
        """Keep rows ``rows``' old log-probs ``lp`` and entropies ``en`` (``[len(rows), T]``, detached)."""
        lp, en = lp.float().cpu(), en.float().cpu()  # one copy off the device, not one per row
        for j, r in enumerate(rows):
            length = len(data.responses[r])
            data.old_logp[r] = lp[j, :length]
            data.entropy[r] = en[j, :length]

    def _store_ref(self, data: StepData, rows: np.ndarray, sb: ScoringBatch) -> None:
        """Rows ``rows``' reference log-probs on the scoring batch ``sb`` (nothing without a reference model)."""
        if self.ref is None:
            return
        with torch.no_grad(), self.compute():
            rl = response_logprobs(
                self.ref, sb, self.cfg.temperature, chunk_tokens=self.cfg.logit_chunk_tokens
            )[0]
        rl = rl.float().cpu()  # one copy off the device, not one per row
        for j, r in enumerate(rows):
            data.ref_logp[r] = rl[j, : len(data.responses[r])]  # type: ignore[index]

    def _update(
        self, data: StepData, rows: np.ndarray, update: int, epoch: int, await_rewards: Callable[..., Tensor]
    ) -> tuple[UpdateRecord, dict]:
        """One optimizer step on the mini-batch ``rows``; returns its log record and metrics. The rewards of
        ``rows`` are read when they are needed (``await_rewards``: the grader may still be at work).

        Rows whose ``dL/dlogp`` is zero carry no gradient into the weights (under every group-relative objective
        without a KL term, the rollouts of a group that all got the same reward; REAL's unused groups), so they
        skip the backward pass (``SKIP_ZERO_GRADIENT_ROWS``; not with dropout, where a second forward would draw
        another mask and its gradient would not be the logged loss's). Two passes:

        1. the rows predicted to carry gradient (``_rows_with_gradient``) run forward with autograd, the others
           without (in chunks of ``--micro-batch-rollouts``), and the objective is computed on all rows, the
           second kind as a leaf tensor. In the step's first update the second kind runs no forward at all when
           the sampler gave the old log-probs: at the sampling weights those are their log-probs. No prediction
           with micro-batches (memory stays at one chunk), nor in a first update without the sampler's
           log-probs (its forward gives the old log-probs, and runs while the grader works): all rows go the
           second way;
        2. the leaf's rows whose gradient is not zero run forward again with autograd and are back-propagated
           with their slice of ``dL/dlogp``.

        The weights' gradient is that of one forward over all rows, to float rounding (a row's log-probs come
        from a forward of another batch shape, or from the sampler); the objective and the logs see one set of
        log-probs. In the first update those are also the old log-probs, so ``s_t`` is exactly 0 there."""
        cfg = self.cfg
        sb = self._scoring_batch(data, rows)
        width, n = sb.response_width, len(rows)
        first = (
            self._reuse_first and update == 0
        )  # the sampling weights: this forward gives the old log-probs
        groups = data.group[rows].to(self.device)
        hp = _asdict(self.hp)
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        chunk = cfg.logit_chunk_tokens

        def inputs() -> tuple[Tensor, Tensor, Tensor | None]:
            old = pad_rows([data.old_logp[r] for r in rows], width, self.device)
            ent = pad_rows([data.entropy[r] for r in rows], width, torch.device("cpu"))
            ref = pad_rows([data.ref_logp[r] for r in rows], width, self.device) if data.ref_logp else None
            return old, ent, ref

        def forward(idx: np.ndarray, *, grad: bool, store: bool) -> Tensor:
            part = select_rows(sb, idx) if len(idx) < n else sb
            with torch.set_grad_enabled(grad), self.compute():
                lp, en = response_logprobs(
                    self.model, part, cfg.temperature, with_entropy=store, chunk_tokens=chunk
                )
            if store:
                self._store_old(data, rows[idx], lp.detach(), en)
            return torch.nn.functional.pad(lp, (0, width - lp.shape[1]))

        one_pass = len(self._chunks(n)) == 1
        skip = self._skip_zero_rows
        # The first update's rows without gradient need no forward at all when the sampler gave the old
        # log-probs: at the sampling weights their log-probs are those (s_t = 0 exactly, as for the rows it
        # forwards, whose old log-probs it replaces with its own).
        from_sampler = first and data.old_from_sampler and skip and one_pass
        # What the prediction reads is read once: the rewards, and the padded old/entropy/reference rows (those
        # change only where a first update's forward stores its own log-probs, so they are read again then).
        rewards: Tensor | None = None
        before: tuple[Tensor, Tensor, Tensor | None] | None = None
        if not skip:
            ahead = np.full(n, one_pass)
        elif (update == 0 and not from_sampler) or not one_pass:
            ahead = np.zeros(n, dtype=bool)
        else:
            rewards = await_rewards(rows).to(self.device)
            before = inputs()
            ahead = self._rows_with_gradient(before[0], sb.response_mask, rewards, groups, before[2], hp)
        i_ahead, i_rest = np.flatnonzero(ahead), np.flatnonzero(~ahead)

        def forward_rest() -> Tensor:
            return torch.cat(
                [forward(i_rest[sl], grad=False, store=first) for sl in self._chunks(len(i_rest))]
            )

        # The forwards without autograd need nothing from the ones with it: on a second thread they run beside
        # them (not when they store the old log-probs, which the step's other code reads).
        beside = None
        if len(i_rest) and not from_sampler and len(i_ahead) and not first and self._overlap_forwards:
            beside = self._beside.submit(forward_rest)
        try:
            parts = [forward(i_ahead, grad=True, store=first)] if len(i_ahead) else []
        except BaseException:
            if beside is not None:
                futures.wait([beside])  # never leave a forward running on the model behind an error
            raise
        leaf = None
        if len(i_rest) and from_sampler:  # rows the forward did not store: their old log-probs as before it
            assert before is not None
            leaf = before[0][torch.as_tensor(i_rest, device=self.device)]
        elif beside is not None:
            leaf = beside.result()
        elif len(i_rest):
            leaf = forward_rest()
        if leaf is not None:
            parts.append(leaf.requires_grad_(True))
        logp = torch.cat(parts)
        order = np.concatenate([i_ahead, i_rest])
        if (order != np.arange(n)).any():
            logp = logp[torch.as_tensor(np.argsort(order), device=logp.device)]
        old, ent, ref = before if before is not None and not first else inputs()
        if rewards is None:
            rewards = await_rewards(rows).to(self.device)
        result = self.objective(logp, old, sb.response_mask, rewards, groups, ref_logp=ref, **hp)
        result.loss.backward()
        if leaf is not None and leaf.grad is not None:
            need = (leaf.grad != 0).any(1) if skip else torch.ones(len(i_rest), dtype=torch.bool)
            g_need, i_need = leaf.grad[need.to(leaf.device)], i_rest[need.cpu().numpy()]
            for sl in self._chunks(len(i_need)) if len(i_need) else []:
                part = select_rows(sb, i_need[sl])
                with self.compute():
                    lp, _ = response_logprobs(self.model, part, cfg.temperature, chunk_tokens=chunk)
                lp.backward(g_need[sl, : lp.shape[1]])
        self._zero_grads_if_no_backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self._params, max_norm))
        skipped = not math.isfinite(grad_norm)
        if skipped:  # never let a NaN/inf gradient reach the weights
            self.opt.zero_grad(set_to_none=True)
            self.writer.event("skipped_update", step=self._step, update=update, grad_norm=str(grad_norm))
        else:
            self.opt.step()
        rollouts, tokens = update_records(
            cfg.method, result, rollout_index=rows, minibatch=update, entropy=ent, token_ids=sb.response_ids
        )
        record = UpdateRecord(rollouts, tokens, epoch)
        metrics = {
            **result.metrics,
            "grad_norm": grad_norm if not skipped else math.nan,
            "skipped": float(skipped),
        }
        return record, metrics

    def _zero_grads_if_no_backward(self) -> None:
        """After an update in which no row was back-propagated, give zero gradients to the parameters a
        backward pass reaches, so that AdamW takes its step (momentum, weight decay) as it did when every row
        was back-propagated; parameters no backward reaches keep ``None`` (AdamW passes over them, as before).
        Which parameters a backward reaches is recorded at the first update that had one (before any: every
        trainable parameter)."""
        params = self._trainable
        reached = [p.grad is not None for p in params]
        if any(reached):
            if self._reached_params is None:
                self._reached_params = reached
            return
        for p, r in zip(params, self._reached_params or [True] * len(params), strict=True):
            if r:
                p.grad = torch.zeros_like(p)

    def _rows_with_gradient(
        self, old: Tensor, mask: Tensor, rewards: Tensor, groups: Tensor, ref: Tensor | None, hp: dict
    ) -> np.ndarray:
        """The rows whose ``dL/dlogp`` is not zero at ``logp = old_logp`` (every ratio 1): a prediction of the
        rows that carry gradient, exact for every registered objective without KL (tested: their zero rows are zero whatever the
        log-probs); ``_update`` back-propagates any other row whose gradient turns out not to be zero."""
        probe = old.detach().clone().requires_grad_(True)
        loss = self.objective(probe, old, mask, rewards, groups, ref_logp=ref, **hp).loss
        if not loss.requires_grad:
            return np.zeros(len(old), dtype=bool)
        (grad,) = torch.autograd.grad(loss, probe, allow_unused=True)
        if grad is None:
            return np.zeros(len(old), dtype=bool)
        return (grad != 0).any(1).cpu().numpy()

    def _facts(self, data: StepData, finished: Tensor, status: list[str]) -> RolloutFacts:
        g = self.cfg.group_size
        problems = [data.problems[i // g] for i in range(len(data.texts))]
        return RolloutFacts(
            reward=data.rewards.numpy(),
            group=data.group.tolist(),
            length=[len(r) for r in data.responses],
            prompt=[p.prompt for p in problems],
            response=data.texts,
            answer=[p.answer for p in problems],
            prompt_id=[p.id for p in problems],
            finished=finished.numpy(),
            grade_status=status,
        )

    # ------------------------------------------------------------------------------------------------ validation
    def validate(self, step: int) -> dict[str, float]:
        """Pass@1 (mean accuracy of ``val_k`` samples per validation prompt) and Pass@k of the current policy."""
        cfg = self.cfg
        prompts = [self.encode(p) for p in self.val_set]
        gens = self.backend.generate(
            prompts,
            cfg.val_k,
            temperature=cfg.val_temperature or cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            seed=derive_seed(cfg.seed, VALIDATE, step),
        )
        texts = response_texts(self.tokenizer, gens.responses)
        answers = [self.val_set[i // cfg.val_k].gold for i in range(len(texts))]
        report = self.grader.grade(texts, answers, timeout=cfg.grader_timeout, config=self.grader_config)
        r = torch.tensor(report.rewards).view(-1, cfg.val_k)
        return {
            "val_pass1": float(r.mean()),
            "val_pass_at_k": float((r.max(1).values > 0.5).float().mean()),
            "val_timeouts": report.timeouts,
        }


def load_splits(
    cfg: TrainConfig, log: Callable[[str], None]
) -> tuple[dict[str, list[Problem]], dict[str, dict[str, Any]]]:
    """The ``train`` and ``val`` problems of ``cfg``: ``--train-data`` / ``--val-data`` files (bad rows skipped
    and reported, or raising, per ``--bad-rows``), the embedded task's splits for whichever is not given; and
    what was read from each file (path, fingerprint, problems, skipped rows) for ``run.json``."""
    from training.data_sources import read_split

    splits: dict[str, list[Problem]] = {}
    info: dict[str, dict[str, Any]] = {}
    if cfg.train_data is None or cfg.val_data is None:
        splits = make_splits(cfg.task_spec())
    for split, spec in (("train", cfg.train_data), ("val", cfg.val_data)):
        if spec is None:
            continue
        splits[split], info[split] = read_split(
            spec, on_error=cfg.bad_rows, prompt_suffix=cfg.prompt_suffix, problem_field=cfg.problem_field,
            answer_field=cfg.answer_field, log=log,
        )  # fmt: skip
    return splits, info


def _asdict(hp) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(hp)


def update_logged_config(out: Path, changes: dict[str, Any]) -> None:
    """Record settings changed on resume (e.g. more --steps) in ``run.json``'s config."""
    meta = read_meta(out)
    meta["config"].update(changes)
    atomic_write_json(Path(out) / "run.json", meta)


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, grader: Grader | None = None) -> Path:
    """Validate ``cfg`` and run it into ``out`` (see ``Trainer``)."""
    cfg.validate()
    return Trainer(cfg, out, resume=resume, grader=grader).run()
