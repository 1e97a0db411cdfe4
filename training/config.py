"""``TrainConfig``: the single source of the trainer's settings, its command-line flags, its presets and the
config logged in ``run.json``.

Every field is one flag (``batch_prompts`` -> ``--batch-prompts``) whose help text comes from the field's
metadata. A preset is a named set of field values; flags override it. Objective hyper-parameters (``eps_low``,
``tau``, ...) default to ``None`` meaning "the paper's default for the method", resolved by
``workbench.methods.resolve_hparams``, so no default is copied here.

``validate()`` checks the whole config before any work starts and raises ``ConfigError`` with a message that
names the flag to change.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from training.datasets import PROMPT_SUFFIX
from training.grader_config import EXTRACTIONS, SETTING_HELP, GraderConfig, grader_config_from
from training.model import TinyModelSpec
from training.task import ArithmeticSpec
from workbench.methods import METHODS, SPECS, HParams, resolve_hparams


class ConfigError(ValueError):
    """A setting is invalid or contradicts another; the message says which flag to change."""


def flag(name: str) -> str:
    """The command-line flag of a config field."""
    return "--" + name.replace("_", "-")


def _f(default: Any, help: str, group: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **meta})


PRESET_NAMES = ("tiny", "paper-1.5b", "paper-7b")  # PRESETS below holds what each sets
# Settings a resumed run may change: they do not alter what the run computes up to the steps already done.
RESUME_MUTABLE = frozenset({
    "steps", "progress", "grader_workers", "grader_timeout", "save_every", "keep_checkpoints", "cache_dir",
    "report_to", "wandb_offline",
})  # fmt: skip


@dataclass
class TrainSettings:
    """Every setting of a training run but the objective's hyper-parameters, which ``TrainConfig`` adds from the
    method specs. Defaults are the ``tiny`` preset (CPU, embedded task and model)."""

    # -- run
    method: str = _f("grpo", "objective", "run", choices=METHODS, shown="required unless --resume")
    preset: str = _f(
        "tiny", "named set of defaults (listed below); flags override it", "run", choices=PRESET_NAMES
    )
    seed: int = _f(0, "seed of the run: prompt order, sampling, validation; same seed, same run", "run")
    steps: int = _f(100, "RL steps (each: sample, grade, update on every mini-batch)", "run")

    # -- policy model
    model: str | None = _f(
        None, "local causal-LM folder (with its tokenizer)", "model", shown="the embedded tiny model"
    )
    tiny_hidden: int = _f(128, "embedded model: hidden size", "model")
    tiny_layers: int = _f(4, "embedded model: decoder layers", "model")
    tiny_heads: int = _f(4, "embedded model: attention heads", "model")
    tiny_intermediate: int = _f(384, "embedded model: MLP width", "model")
    dtype: str = _f(
        "float32",
        "compute precision: bfloat16 runs forwards under bf16 autocast over float32 master weights (AdamW always "
        "steps float32 weights; the KL reference is kept in bf16)",
        "model",
        choices=("float32", "bfloat16"),
    )
    gradient_checkpointing: bool = _f(
        False, "recompute each decoder layer's activations in the backward pass (saves memory)", "model"
    )
    sampler_logprobs: bool = _f(
        True,
        "take the old log-probs and entropies from the sampling pass (transformers back end, float32, no "
        "dropout) instead of a second forward: equal to float rounding, one forward per mini-batch less",
        "model",
    )
    logit_chunk_tokens: int = _f(
        0,
        "compute log-probs and entropies over about N response tokens at a time, so a long response never "
        "holds its full float32 logits (0: all at once; same values either way)",
        "model",
    )
    device: str = _f("auto", "where the policy runs: auto (cuda if available), cpu or cuda", "model",
                     choices=("auto", "cpu", "cuda"))  # fmt: skip
    ref_model: str = _f(
        "init",
        "KL reference: 'init' (a frozen copy of the starting policy, loaded only when a KL term to the "
        "reference is on) or 'none'",
        "model",
        choices=("init", "none"),
    )

    # -- data
    task: str = _f("arith", "data: 'arith' (the embedded arithmetic task)", "data", choices=("arith",))
    train_data: str | None = _f(
        None,
        "training problems: a .json/.jsonl/.parquet file (DeepScaleR-style problem/answer, or verl-style "
        "prompt/reward_model.ground_truth) or a benchmark name",
        "data",
        shown="the embedded task's train split",
    )
    val_data: str | None = _f(
        None,
        "validation problems: benchmark names (aime, aime25, amc, math, minerva, olympiad_bench; comma-separated) "
        "or files; the first --val-prompts of them are used",
        "data",
        shown="the embedded task's val split",
    )
    problem_field: str | None = _f(
        None,
        "column holding the problem in --train-data/--val-data files and data sets (not the six benchmarks): a "
        "string or a chat list, dotted for nested columns",
        "data",
        shown="'problem', else a verl-style 'prompt'",
    )
    answer_field: str | None = _f(
        None,
        "column holding the gold answer (dotted for nested columns; a worked solution gives its last \\boxed{})",
        "data",
        shown="'answer', else 'reward_model.ground_truth'",
    )
    bad_rows: str = _f(
        "skip",
        "a data row without a usable problem or answer: 'skip' (counted, logged as a data event) or 'raise'",
        "data",
        choices=("skip", "raise"),
    )
    prompt_suffix: str = _f(
        PROMPT_SUFFIX,
        "appended to each --train-data/--val-data problem unless it already ends with it ('' for none)",
        "data",
    )
    max_prompt_tokens: int = _f(
        0,
        "drop --train-data/--val-data problems whose prompt is longer than N tokens (counted and logged; "
        "0: keep all)",
        "data",
    )
    chat_template: bool = _f(
        True,
        "wrap each prompt in the tokenizer's chat template when it has one (e.g. a --model folder)",
        "data",
    )
    task_seed: int = _f(1234, "seed of the embedded task's problems (shared by all runs)", "data")
    task_min_ops: int = _f(2, "embedded task: fewest operators per expression", "data")
    task_max_ops: int = _f(3, "embedded task: most operators per expression", "data")
    task_max_operand: int = _f(9, "embedded task: operands are 1..N", "data")
    n_train: int = _f(4096, "embedded task: RL training prompts", "data")
    n_val: int = _f(256, "embedded task: validation prompts", "data")
    n_test: int = _f(512, "embedded task: test prompts", "data")
    n_sft: int = _f(20000, "embedded task: worked solutions for the warm start", "data")
    prompt_template: str = _f("{prompt}\n", "text given to the model; {prompt} is the problem", "data")

    # -- warm start (embedded model only)
    warmstart: bool = _f(
        True, "supervised warm start of the embedded model (cached, shared by runs)", "warmstart"
    )
    warmstart_target: float = _f(
        0.35, "stop the warm start once the pass rate at the sampling temperature reaches this", "warmstart"
    )
    warmstart_max_steps: int = _f(4000, "warm start: most optimizer steps", "warmstart")
    warmstart_eval_every: int = _f(50, "warm start: measure the pass rate every N steps", "warmstart")
    warmstart_batch: int = _f(64, "warm start: examples per step", "warmstart")
    warmstart_lr: float = _f(2e-3, "warm start: AdamW learning rate", "warmstart")
    warmstart_seed: int = _f(0, "warm start: seed (model init and example order)", "warmstart")
    cache_dir: str = _f("cache", "where warm-start checkpoints are cached", "warmstart")

    # -- RL batch and sampling
    batch_prompts: int = _f(16, "prompts per step", "rl")
    group_size: int = _f(8, "rollouts per prompt (G)", "rl")
    minibatch_prompts: int = _f(4, "prompts per mini-batch update (must divide --batch-prompts)", "rl")
    epochs: int = _f(1, "passes over the step's mini-batches", "rl")
    rollout_lag: int = _f(
        0,
        "off-policy lag K: step k samples with the weights after step k-1-K (K=0: on-policy; K=1: one step "
        "off-policy, as asynchronous RL systems do) and takes that policy's log-probs as the old ones",
        "rl",
    )
    temperature: float = _f(0.6, "sampling temperature (log-probs are taken at this temperature)", "rl")
    max_new_tokens: int = _f(48, "longest response in tokens", "rl")
    micro_batch_rollouts: int = _f(
        0, "rollouts per forward/backward chunk inside a mini-batch (0: the whole mini-batch)", "rl"
    )

    # -- optimizer
    lr: float = _f(1e-4, "AdamW learning rate (constant after warm-up)", "optim")
    weight_decay: float = _f(0.01, "AdamW weight decay", "optim")
    adam_beta1: float = _f(0.9, "AdamW beta1", "optim")
    adam_beta2: float = _f(0.999, "AdamW beta2", "optim")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0: no clipping)", "optim")
    lr_warmup_steps: int = _f(0, "linear learning-rate warm-up over the first N RL steps", "optim")

    # -- validation
    val_every: int = _f(10, "validate every N steps (and at the last step); 0: never", "validation")
    val_prompts: int = _f(32, "validation prompts (the first N of the validation split)", "validation")
    val_k: int = _f(8, "samples per validation prompt; Pass@1 is their mean accuracy", "validation")
    val_temperature: float | None = _f(None, "validation temperature (default: --temperature)", "validation")

    # -- checkpoints and logs
    save_every: int = _f(10, "checkpoint every N steps (and at the last step)", "checkpoint")
    keep_checkpoints: int = _f(2, "checkpoints kept (older ones are deleted)", "checkpoint")
    log_tokens: bool = _f(True, "log every response token (the tokens table)", "checkpoint")
    save_final_model: bool = _f(
        True,
        "at the end, save the policy as a model folder <out>/final_model (bf16 weights for --dtype bfloat16) "
        "that --model and `python -m training eval` load",
        "checkpoint",
    )

    # -- system
    backend: str = _f("transformers", "rollout back end: transformers or vllm (optional extra)", "system",
                      choices=("transformers", "vllm"))  # fmt: skip
    vllm_gpu_memory_utilization: float = _f(
        0.35, "vllm: share of the GPU's memory the engine may take (weights + KV cache)", "system"
    )
    vllm_sleep: bool = _f(
        True, "vllm: free the engine's GPU memory (sleep mode) while the policy trains", "system"
    )
    threads: int = _f(1, "torch CPU threads (fixed for reproducibility; 0: all cores)", "system")
    grader_workers: int = _f(1, "math-verify worker processes", "system")
    grader_timeout: float = _f(5.0, "seconds per completion before its grader is killed (reward 0)", "system")
    grader_extraction: str | None = _f(None, "grader: " + SETTING_HELP["extraction"], "system",
                                       choices=EXTRACTIONS, shown="latex")  # fmt: skip
    grader_float_rounding: int | None = _f(
        None, "grader: " + SETTING_HELP["float_rounding"], "system", shown="6"
    )
    grader_set_relation: bool | None = _f(
        None, "grader: " + SETTING_HELP["set_relation"], "system", shown="no"
    )
    grader_strict: bool | None = _f(None, "grader: " + SETTING_HELP["strict"], "system", shown="yes")
    grader_normalize_gold: bool | None = _f(None, "grader: " + SETTING_HELP["normalize_gold"], "system",
                                            shown="yes")  # fmt: skip
    gold_audit: bool = _f(
        True,
        "audit the gold answers of --train-data/--val-data at start (cached): a gold that accepts a trivial answer "
        "is refused or, with --bad-rows skip, left out and counted (docs/data.md)",
        "system",
    )
    progress: bool = _f(True, "show a progress bar", "system")
    report_to: str = _f(
        "none",
        "send the step metrics (the run directory's metrics table, same names) and the config to trackers: a "
        "comma list of tensorboard (<out>/tensorboard), wandb (<out>/wandb), or none; pip install -e .[trackers]",
        "system",
    )
    wandb_offline: bool = _f(
        False,
        "wandb: write the W&B run offline under <out>/wandb (as WANDB_MODE=offline); wandb sync uploads it",
        "system",
    )

    # ------------------------------------------------------------------------------------------- derived
    def objective_overrides(self) -> dict[str, Any]:
        """The objective settings given (not None), plus those the method's spec takes from another setting
        when unset (``from_config``: Dr. GRPO's ``max_tokens`` is ``--max-new-tokens``)."""
        given = {k: getattr(self, k) for k in OBJECTIVE_FIELDS if getattr(self, k) is not None}
        spec = SPECS.get(self.method)
        if spec is not None:
            for f in fields(spec.defaults):
                source = f.metadata.get("from_config")
                if source and f.name not in given:
                    given[f.name] = getattr(self, source)
        return given

    def grader_config(self) -> GraderConfig:
        """The grader's settings: ``GraderConfig``'s defaults (the paper's) with the ``--grader-*`` flags given."""
        return grader_config_from(self, timeout=self.grader_timeout, prefix="grader_")

    def hparams(self) -> HParams:
        """The method's resolved objective hyper-parameters (its spec's defaults + overrides)."""
        return resolve_hparams(self.method, self.objective_overrides())

    def needs_reference(self) -> bool:
        hp = self.hparams()
        return hp.kl_beta > 0 and hp.kl_target == "ref"

    def tiny_spec(self) -> TinyModelSpec:
        return TinyModelSpec(self.tiny_hidden, self.tiny_layers, self.tiny_heads, self.tiny_intermediate)

    def task_spec(self) -> ArithmeticSpec:
        return ArithmeticSpec(
            seed=self.task_seed,
            min_ops=self.task_min_ops,
            max_ops=self.task_max_ops,
            max_operand=self.task_max_operand,
            n_val=self.n_val,
            n_test=self.n_test,
            n_train=self.n_train,
            n_sft=self.n_sft,
        )

    @property
    def n_minibatches(self) -> int:
        return self.batch_prompts // self.minibatch_prompts

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        return cls(**data)

    # ------------------------------------------------------------------------------------------- checks
    def validate(self) -> None:
        """Check every setting and every combination; raise ``ConfigError`` naming the flag to change."""
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}: choose --method from {', '.join(METHODS)}")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}: choose --preset from {', '.join(PRESETS)}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{flag(f.name)} {value!r} is not one of {', '.join(choices)}")
        positive = ("steps", "batch_prompts", "group_size", "minibatch_prompts", "epochs", "max_new_tokens",
                    "val_prompts", "val_k", "keep_checkpoints", "grader_workers", "warmstart_max_steps",
                    "warmstart_eval_every", "warmstart_batch", "tiny_hidden", "tiny_layers", "tiny_heads",
                    "tiny_intermediate")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("val_every", "save_every", "micro_batch_rollouts", "lr_warmup_steps", "threads",
                     "logit_chunk_tokens", "max_prompt_tokens", "rollout_lag"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "temperature", "grader_timeout", "warmstart_lr"):
            value = getattr(self, name)
            if not (value > 0 and value != float("inf")):
                raise ConfigError(f"{flag(name)} must be a finite number > 0, got {value}")
        if self.val_temperature is not None and not self.val_temperature > 0:
            raise ConfigError(f"--val-temperature must be > 0, got {self.val_temperature}")
        for name in ("weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{flag(name)} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.warmstart_target <= 1:
            raise ConfigError(f"--warmstart-target must be in (0, 1], got {self.warmstart_target}")
        if self.group_size < 2:
            raise ConfigError(
                f"--group-size {self.group_size}: every method compares rollouts within a prompt's group, "
                "so it needs at least 2"
            )
        if self.batch_prompts % self.minibatch_prompts:
            raise ConfigError(
                f"--minibatch-prompts {self.minibatch_prompts} does not divide --batch-prompts "
                f"{self.batch_prompts}: mini-batches keep each prompt's rollouts together, so choose a divisor "
                f"(e.g. {_divisor_hint(self.batch_prompts, self.minibatch_prompts)})"
            )
        if not 0 < self.vllm_gpu_memory_utilization < 1:
            raise ConfigError(
                f"--vllm-gpu-memory-utilization must be in (0, 1), got {self.vllm_gpu_memory_utilization}"
            )
        if self.val_prompts > self.n_val and self.val_data is None:
            raise ConfigError(
                f"--val-prompts {self.val_prompts} exceeds the validation split (--n-val {self.n_val})"
            )
        if "{prompt}" not in self.prompt_template:
            raise ConfigError("--prompt-template must contain {prompt}")
        from training.trackers import TrackerUnavailable, check_available, parse_report_to

        try:
            check_available(parse_report_to(self.report_to))
        except (ValueError, TrackerUnavailable) as e:
            raise ConfigError(str(e)) from None

        self._validate_objective()
        try:
            self.grader_config()
        except ValueError as e:
            raise ConfigError(f"--grader-* setting: {e}") from None
        self._validate_model()
        try:
            self.task_spec()
        except ValueError as e:
            raise ConfigError(f"embedded task: {e} (flags --task-min-ops, --task-max-ops, --task-max-operand, "
                              "--n-train, --n-val, --n-test, --n-sft)") from None  # fmt: skip
        self._validate_data()
        if self.batch_prompts > self.n_train and self.train_data is None:
            raise ConfigError(
                f"--batch-prompts {self.batch_prompts} exceeds the training prompts (--n-train {self.n_train})"
            )

    def _validate_data(self) -> None:
        from training.data_sources import parse_source

        preset = PRESETS[self.preset]
        if preset.needs_model and self.train_data is None:
            raise ConfigError(
                f"--preset {self.preset} trains on real problems: pass --train-data PATH or a Hub data set (the "
                "paper: agentica-org/DeepScaleR-Preview-Dataset:split=train for Tables 1-2, DAPO-Math-17k for "
                "Table 3; docs/data.md lists the ids and how to prepare each)"
            )
        for name in ("train_data", "val_data"):
            spec = getattr(self, name)
            if spec is None:
                continue
            items = [x.strip() for x in spec.split(",") if x.strip()]
            if not items or (name == "train_data" and len(items) != 1):
                raise ConfigError(
                    f"{flag(name)} {spec!r}: name one {'file' if name == 'train_data' else 'or more sets'}"
                )
            for item in items:
                try:
                    src = parse_source(item)
                except ValueError as e:
                    raise ConfigError(f"{flag(name)}: {e}") from None
                if src.is_file and not src.path.is_file():
                    raise ConfigError(f"{flag(name)} {item}: no such file {src.path}")

    def _validate_objective(self) -> None:
        names = set(SPECS[self.method].hparam_names())
        stray = [k for k in self.objective_overrides() if k not in names]
        if stray:
            owners = sorted({m for k in stray for m, s in SPECS.items() if k in s.hparam_names()})
            raise ConfigError(
                f"{', '.join(flag(k) for k in stray)} only applies to {', '.join(owners)}, not to --method "
                f"{self.method}: drop it"
            )
        try:
            hp = self.hparams()
        except ValueError as e:
            raise ConfigError(f"objective setting: {e}") from None
        if hp.kl_beta > 0 and hp.kl_target == "ref" and self.ref_model == "none":
            raise ConfigError(
                f"--method {self.method} has a KL penalty to the reference (kl_beta={hp.kl_beta:g}) but "
                "--ref-model none gives it no reference: drop --ref-model none, or pass --kl-beta 0 or "
                "--kl-target old"
            )

    def _validate_model(self) -> None:
        preset = PRESETS[self.preset]
        if preset.needs_model and self.model is None:
            raise ConfigError(
                f"--preset {self.preset} trains a real model: pass --model PATH (a local causal-LM folder "
                "with its tokenizer, e.g. DeepSeek-R1-Distill-Qwen-1.5B); the embedded model is --preset tiny"
            )
        if self.model is not None:
            from training.model import resolve_model

            try:
                path = resolve_model(self.model)  # a folder, or a Hub id through the Hugging Face cache
            except ValueError as e:
                raise ConfigError(str(e)) from None
            if not os.access(path / "config.json", os.R_OK):
                raise ConfigError(f"--model {self.model}: not a readable model folder (no config.json)")
            if self.warmstart and "warmstart" in self._explicit:
                raise ConfigError("--warmstart applies only to the embedded model: drop it or drop --model")
        else:
            if self.tiny_hidden % self.tiny_heads:
                raise ConfigError(
                    f"--tiny-hidden {self.tiny_hidden} must be a multiple of --tiny-heads {self.tiny_heads}"
                )
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu or auto")
        if self.backend == "vllm":
            from training.rollout import check_backend

            check_backend("vllm")  # not installed: BackendUnavailable with the one-line reason
        if self.backend == "vllm" and self.resolved_device() != "cuda":
            raise ConfigError("--backend vllm needs a CUDA GPU; use --backend transformers on CPU")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    # Names set explicitly (by a flag or a preset), filled by ``build_config``; not part of the logged config.
    _explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False, metadata={"cli": False})

    def to_log(self) -> dict[str, Any]:
        data = self.to_dict()
        data.pop("_explicit", None)
        return data


def _cli_type(hint: Any) -> Any:
    """A hyper-parameter's annotation as a config field's: ``Literal[...]`` -> ``str``, always optional (None: the
    method's default)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    base = next(t for t in options if t is not type(None))
    if typing.get_origin(base) is typing.Literal:
        base = str
    return base | None


def _objective_fields() -> list[tuple[str, Any, Any]]:
    """One optional config field per hyper-parameter of any registered method, in registry order, with the
    hyper-parameter's help and choices and the methods it applies to."""
    found: dict[str, tuple[Any, Any, list[str]]] = {}
    for spec in SPECS.values():
        hints = typing.get_type_hints(spec.hparams_class, include_extras=False)
        for f in fields(spec.defaults):
            if f.name not in found:
                found[f.name] = (hints[f.name], f.metadata, [])
            found[f.name][2].append(spec.name)
    out = []
    for name, (hint, meta, methods) in found.items():
        applies = "every method" if len(methods) == len(SPECS) else ", ".join(methods)
        extra = {"choices": meta["choices"]} if meta.get("choices") else {}
        out.append(
            (name, _cli_type(hint), _f(None, f"{applies}: {meta.get('help', '')}", "objective", **extra))
        )
    return out


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    _objective_fields(),
    bases=(TrainSettings,),
    namespace={
        "__doc__": "All settings of a training run: ``TrainSettings`` plus one optional field per objective "
        "hyper-parameter of the registered methods (``workbench.methods.SPECS``; None: the method's default).",
        "__module__": __name__,
    },
)
# The objective's settings, generated from the method specs: a new method's hyper-parameters become flags here.
OBJECTIVE_FIELDS: tuple[str, ...] = tuple(name for name, _, _ in _objective_fields())


def _divisor_hint(n: int, near: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - near), d))


@dataclass(frozen=True)
class Preset:
    description: str
    values: dict[str, Any]
    needs_model: bool = False


_PAPER = {
    "batch_prompts": 128,
    "minibatch_prompts": 32,
    "group_size": 8,
    "temperature": 0.6,
    "max_new_tokens": 8192,
    "dtype": "bfloat16",
    "device": "cuda",
    "threads": 0,
    "grader_workers": 8,
    "val_every": 50,
    "val_k": 8,
    "save_every": 50,
    "keep_checkpoints": 1,
    "micro_batch_rollouts": 1,  # one rollout per forward/backward chunk
    "logit_chunk_tokens": 2048,  # and its float32 logits 2,048 positions at a time (1.2 GB at a 152K vocabulary)
    "gradient_checkpointing": True,
    "prompt_template": "{prompt}",  # the chat template wraps it; the data's suffix carries the instruction
    "backend": "vllm",  # 1,024 rollouts of up to 8K tokens per step: the transformers sampler is far too slow
    "val_data": "aime",  # Fig. 4: Pass@1 on AIME 2024 over 8 samples
    "val_prompts": 30,
    "warmstart": False,
}

PRESETS: dict[str, Preset] = {  # keys: PRESET_NAMES
    "tiny": Preset(
        "CPU: the embedded arithmetic task and tiny model, warm-started; 100 steps in minutes on 2 cores",
        {
            "steps": 100,
            "batch_prompts": 16,
            "minibatch_prompts": 4,
            "group_size": 8,
            "temperature": 0.6,
            "max_new_tokens": 48,
            "lr": 1e-4,
            "val_every": 10,
            "val_prompts": 32,
            "val_k": 8,
            "threads": 1,
        },
    ),
    "paper-1.5b": Preset(
        "GPU: the paper's 1.5B setting (needs --model PATH and --train-data PATH); KL 0.001 to the reference for "
        "GRPO only; one 80 GB GPU (H100/A100 80GB) for the trainer with the vllm back end",
        {**_PAPER, "steps": 1400, "lr": 2e-6},
        needs_model=True,
    ),
    "paper-7b": Preset(
        "GPU: the paper's 7B setting (needs --model PATH and --train-data PATH); KL 0.001 to the reference for "
        "GRPO only; float32 weights, gradients and AdamW state alone are ~122 GB: too large for one GPU with this "
        "trainer, scale out (verl)",
        {**_PAPER, "steps": 1000, "lr": 1e-6},
        needs_model=True,
    ),
}


assert tuple(PRESETS) == PRESET_NAMES


def build_config(preset: str, overrides: dict[str, Any]) -> TrainConfig:
    """Dataclass defaults, then the preset's values, then ``overrides`` (the flags given)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose --preset from {', '.join(PRESETS)}")
    names = {f.name for f in fields(TrainConfig)} - {"_explicit"}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    values = {**PRESETS[preset].values, **overrides, "preset": preset}
    cfg = TrainConfig(**values)
    cfg._explicit = frozenset(overrides)
    return cfg


# Settings a resumed run may not take from today's defaults: a run.json without one of them is an error. Any other
# setting missing from an older run.json gets its documented default (the field's), written into run.json on
# resume with a ``config_default`` event.
RESUME_REQUIRED = frozenset(
    {"method", "preset", "seed", "steps", "lr", "train_data", "val_data", "model", "batch_prompts", "group_size",
     "minibatch_prompts", "epochs", "temperature", "rollout_lag"}
)  # fmt: skip  # and every objective setting of the run's method (``required_on_resume``)


def required_on_resume(saved: dict[str, Any]) -> frozenset[str]:
    """``RESUME_REQUIRED`` plus the objective settings of the logged method (another method's are not needed)."""
    spec = SPECS.get(saved.get("method"))  # type: ignore[arg-type]
    return RESUME_REQUIRED | frozenset(spec.hparam_names() if spec is not None else OBJECTIVE_FIELDS)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON fits a field's annotation (int is not float-valued, bool is not int)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for t in options:
        if t is type(None) and value is None:
            return True
        if t is bool and isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t is str and isinstance(value, str):
            return True
    return False


def check_logged_config(saved: dict[str, Any]) -> dict[str, Any]:
    """Check the config of a ``run.json`` before resuming it; returns the defaults filled in for settings it lacks.

    Raises ``ConfigError`` naming the key when a ``RESUME_REQUIRED`` setting is missing (a resumed run must never
    train with another method, objective, learning rate or data than it started with) or when a value has the
    wrong type (``group_size: 8.0``, ``temperature: null``). Unknown keys are left to ``TrainConfig.from_dict``.
    A missing setting gets its documented default, or its value in ``BEFORE_THEY_EXISTED``."""
    hints = typing.get_type_hints(TrainConfig)
    known = {f.name: f for f in fields(TrainConfig) if f.metadata.get("cli") is not False}
    missing = sorted(k for k in known if k not in saved)
    needed = required_on_resume(saved)
    required = [k for k in missing if k in needed]
    if required:
        raise ConfigError(
            f"run.json's config lacks {', '.join(repr(k) for k in required)}: the run cannot be continued with "
            "the settings it started with (restore the key in run.json, or start a new run)"
        )
    for key, value in saved.items():
        if key in known and not _type_ok(value, hints[key]):
            raise ConfigError(
                f"run.json's config has {key}: {value!r}, which is not a valid {known[key].type} (fix the key in "
                "run.json, or start a new run)"
            )
    return {k: BEFORE_THEY_EXISTED.get(k, known[k].default) for k in missing}


# Settings whose default is not what a run logged before they existed did: a run.json without them resumes with the
# behaviour it started with (the old log-probs came from a second scoring forward before --sampler-logprobs).
BEFORE_THEY_EXISTED: dict[str, Any] = {"sampler_logprobs": False}


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two logged configs: name -> (a's, b's)."""
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}
