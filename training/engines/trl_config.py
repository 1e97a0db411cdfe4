"""``WorkbenchGRPOConfig``: TRL's ``GRPOConfig`` whose ``loss_type`` names a workbench method (``loss_type="real"``).

Use it where TRL's own config goes, with ``WorkbenchGRPOTrainer`` (``training.engines.trl_trainer``) in place of
``GRPOTrainer``; the trainer reads the method and its hyper-parameters from the config::

    args = WorkbenchGRPOConfig(output_dir="out", loss_type="real", real_tau=0.5, num_generations=8, ...)
    trainer = WorkbenchGRPOTrainer(model, reward_funcs, args=args, train_dataset=dataset)

Fields, derived from the method registry ``workbench.methods.SPECS`` (nothing here repeats a default):

- ``loss_type``: any of ``workbench.methods.METHODS`` (default ``real``). TRL's own ``bnpo``, ``sapo``, ``luspo``
  and ``vespo`` are refused (use ``trl.GRPOConfig`` for them). The names TRL shares (``grpo``, ``dapo``,
  ``cispo``, ``dr_grpo``) mean the workbench's objective with the paper's defaults (e.g. GRPO's KL 0.001).
- TRL fields mapped onto a method's hyper-parameters (``TRL_FIELDS``): ``epsilon`` -> ``eps_low``,
  ``epsilon_high`` -> ``eps_high`` (CISPO: ``w_max``), ``beta`` -> ``kl_beta``, ``max_completion_length`` ->
  Dr. GRPO's ``max_tokens``. ``epsilon``, ``epsilon_high``, ``beta`` and ``importance_sampling_level`` default to
  None, the method's own value; after construction they hold the value the method uses (None where the method has
  no such setting), so TRL loads a reference model exactly when ``kl_beta > 0``.
- Settings TRL has no field for: ``real_<name>`` for the REAL family's (``real_tau``, ``real_group_filter``,
  ``real_normalize``), ``wb_<name>`` for the others (``wb_clip_mode``, ``wb_loss_agg``, ``wb_w_min``, ...);
  None is the method's default. ``real_label_threshold``: the rule that turns rewards into REAL's binary label.
- Every other field of ``GRPOConfig`` is in one of three lists: ``CHECKED`` (compared with the method, refused with
  the fix where they disagree), ``REFUSED`` (TRL loss features the objectives do not have: refused when set away
  from TRL's default) and ``HONOURED`` (generation, data, reference model, logging: they work as in TRL).
  ``check_fields`` is the one place the decisions are made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field, make_dataclass
from typing import Any

from trl import GRPOConfig

from workbench.methods import METHODS, SPECS, resolve_hparams

TRL_ONLY_LOSSES = ("bnpo", "sapo", "luspo", "vespo")
# workbench hyper-parameter -> the GRPOConfig field that sets it
TRL_FIELDS = {
    "eps_low": "epsilon",
    "eps_high": "epsilon_high",
    "w_max": "epsilon_high",
    "kl_beta": "beta",
    "max_tokens": "max_completion_length",
}
# hyper-parameters TRL fixes: its KL is always to the reference model
FIXED = {"kl_target": "ref"}
# The GRPOConfig fields a workbench objective cannot honour, with what each does in TRL: refused when set away
# from the value that leaves the loss unchanged.
REFUSED = {
    "delta": "INTELLECT-2's upper clamp of the ratio (the workbench's dual clip is wb_dual_clip)",
    "top_entropy_quantile": "entropy masking (Beyond 80/20); the objectives use every response token",
    "off_policy_mask_threshold": "DeepSeek-V3.2's off-policy sequence mask",
    "entropy_coef": "TRL's entropy bonus",
    "use_adaptive_entropy": "TRL's adaptive entropy bonus",
    "mask_truncated_completions": "zeroing truncated completions, which leaves rollouts without a token",
    "multi_objective_aggregation": "GDPO's per-function normalisation (the workbench reads the weighted sum)",
    "sapo_temperature_neg": "loss_type='sapo' only",
    "sapo_temperature_pos": "loss_type='sapo' only",
    "vespo_k_pos": "loss_type='vespo' only",
    "vespo_lambda_pos": "loss_type='vespo' only",
    "vespo_k_neg": "loss_type='vespo' only",
    "vespo_lambda_neg": "loss_type='vespo' only",
    "entropy_coef_min": "the adaptive entropy bonus only",
    "entropy_coef_max": "the adaptive entropy bonus only",
    "entropy_coef_delta": "the adaptive entropy bonus only",
    "entropy_target": "the adaptive entropy bonus only",
    "vllm_importance_sampling_mode": "read only with vllm_importance_sampling_correction=True",
    "vllm_importance_sampling_clip_max": "read only with vllm_importance_sampling_correction=True",
    "vllm_importance_sampling_clip_min": "read only with vllm_importance_sampling_correction=True",
    "vllm_importance_sampling_cap": "read only with vllm_importance_sampling_correction=True",
}
# GRPOConfig fields checked against the method (``check_fields``; the MoE router loss by the trainer)
CHECKED = (
    "loss_type",
    "epsilon",
    "epsilon_high",
    "beta",
    "max_completion_length",
    "importance_sampling_level",
    "scale_rewards",
    "use_bias_correction_kl",
    "use_vllm",
    "vllm_importance_sampling_correction",
    "num_generations",
    "router_aux_loss_coef",
)
# GRPOConfig fields that act outside the loss (model loading, generation, data, reference model, logging) and
# work as in TRL; ``reward_weights`` weights the reward functions' sum, as TRL's default aggregation does.
HONOURED = (
    "model_init_kwargs",
    "trust_remote_code",
    "disable_dropout",
    "cast_lm_head_to_fp32",
    "num_generations_eval",
    "ds3_gather_for_generation",
    "shuffle_dataset",
    "pad_to_multiple_of",
    "generation_batch_size",
    "steps_per_generation",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "generation_kwargs",
    "chat_template_kwargs",
    "repetition_penalty",
    "cache_implementation",
    "vllm_mode",
    "vllm_model_impl",
    "vllm_enable_sleep_mode",
    "vllm_structured_outputs_regex",
    "vllm_server_base_url",
    "vllm_server_host",
    "vllm_server_port",
    "vllm_server_timeout",
    "vllm_group_port",
    "vllm_gpu_memory_utilization",
    "vllm_max_model_length",
    "vllm_tensor_parallel_size",
    "num_iterations",
    "reward_weights",
    "sync_ref_model",
    "ref_model_mixup_alpha",
    "ref_model_sync_steps",
    "max_tool_calling_iterations",
    "log_completions",
    "log_multimodal",
    "num_completions_to_print",
    "log_unique_prompts",
    "log_completions_hub_repo",
    "use_transformers_continuous_batching",
    "transformers_continuous_batching_config",
    "use_transformers_paged",
)
_TRL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}


def config_field(method: str, name: str) -> str | None:
    """The config field that sets hyper-parameter ``name`` of ``method`` (None: fixed by TRL, ``FIXED``)."""
    if name in FIXED:
        return None
    if name in TRL_FIELDS:
        return TRL_FIELDS[name]
    return f"real_{name}" if SPECS[method].family == "real" else f"wb_{name}"


def _own_fields() -> dict[str, tuple[str, dict[str, Any]]]:
    """``{config field: (help, {method: hyper-parameter name})}`` for every setting TRL has no field for."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for method, spec in SPECS.items():
        for f in dataclasses.fields(spec.defaults):
            name = config_field(method, f.name)
            if name is None or name in _TRL_DEFAULTS:
                continue
            _, users = out.setdefault(name, (f.metadata.get("help", ""), {}))
            users[method] = f.name
    return out


OWN_FIELDS = _own_fields()


def _help(name: str) -> str:
    text, users = OWN_FIELDS[name]
    defaults = ", ".join(f"{m} {getattr(SPECS[m].defaults, hp)!r}" for m, hp in users.items())
    return f"{text}. None: the method's default ({defaults})"


def method_ratio_level(method: str) -> str:
    """TRL's ``importance_sampling_level`` that matches ``method``'s ratio (``token`` or ``sequence``)."""
    return SPECS[method].ratio


def method_reward_scaling(method: str) -> str:
    """TRL's ``scale_rewards`` that matches how ``method`` forms its advantage: ``group`` (divided by the group's
    std), ``none`` (Dr. GRPO's centred advantage; the REAL family reads rewards as labels and scales nothing)."""
    if SPECS[method].family == "real" or method == "dr_grpo":
        return "none"
    return "group"


def _post_init(self: Any) -> None:
    check_fields(self)
    GRPOConfig.__post_init__(self)
    spec = SPECS[self.loss_type]
    g = self.num_generations
    if self.per_device_train_batch_size % g:
        raise ValueError(
            f"per_device_train_batch_size={self.per_device_train_batch_size} must be a multiple of "
            f"num_generations={g}: each micro-batch must hold whole prompt groups for a workbench objective"
        )
    if spec.family == "real" and g < 2:
        raise ValueError("the REAL family compares rollouts of a prompt: num_generations must be >= 2")


def check_fields(cfg: Any) -> None:
    """Resolve the method's hyper-parameters from ``cfg`` and write back the TRL fields they map to; raise
    ValueError naming the first field a workbench objective cannot honour, with the fix."""
    method = cfg.loss_type
    if method in TRL_ONLY_LOSSES:
        raise ValueError(
            f"loss_type={method!r} is TRL's own loss, not a workbench objective: use trl.GRPOConfig and "
            f"trl.GRPOTrainer for it, or one of {', '.join(METHODS)}"
        )
    if method not in SPECS:
        raise ValueError(f"loss_type={method!r} is unknown; choose one of {', '.join(METHODS)}")
    spec = SPECS[method]
    names = spec.hparam_names()
    for name, (_, users) in OWN_FIELDS.items():
        if getattr(cfg, name) is not None and method not in users:
            used_by = ", ".join(users)
            raise ValueError(f"{name} is a setting of {used_by}, not of loss_type={method!r}; remove it")
    for name, why in REFUSED.items():
        value = getattr(cfg, name)
        if value != _TRL_DEFAULTS[name]:
            raise ValueError(
                f"{name}={value!r} ({why}) is not part of the workbench objectives; leave it at "
                f"{_TRL_DEFAULTS[name]!r}"
            )
    overrides: dict[str, Any] = {}
    for name in names:
        key = config_field(method, name)
        if key is None or key == "max_completion_length":
            continue
        if key in OWN_FIELDS and getattr(cfg, key) is not None:
            overrides[name] = getattr(cfg, key)
    if spec.family == "real" and (cfg.epsilon is not None or cfg.epsilon_high is not None):
        raise ValueError(
            f"epsilon/epsilon_high clip a ratio; {method} has no clip (its weights are bounded by 1/real_tau): "
            "remove them"
        )
    if "eps_low" in names:
        if cfg.epsilon is not None:
            overrides["eps_low"] = cfg.epsilon
        # TRL: epsilon_high None means epsilon_high = epsilon
        high = cfg.epsilon_high if cfg.epsilon_high is not None else cfg.epsilon
        if high is not None:
            overrides["eps_high"] = high
    if "w_max" in names:
        if cfg.epsilon is not None:
            raise ValueError(
                "epsilon has no meaning for cispo: it clips the importance weight at epsilon_high (w_max) only; "
                "set wb_w_min for a lower bound"
            )
        if cfg.epsilon_high is not None:
            overrides["w_max"] = cfg.epsilon_high
    if cfg.beta is not None:
        overrides["kl_beta"] = cfg.beta
    if "max_tokens" in names:
        overrides["max_tokens"] = cfg.max_completion_length
    hp = resolve_hparams(method, overrides)
    if spec.family == "real" and hp.kl_beta > 0:
        raise ValueError(
            f"beta={hp.kl_beta}: the REAL family's KL term is a micro-batch token-mean and cannot be made the "
            "objective of the whole optimizer window here; set beta=0"
        )
    if hp.kl_beta > 0 and cfg.use_bias_correction_kl:
        raise ValueError(
            "use_bias_correction_kl=True multiplies TRL's KL term by the ratio; the workbench's KL is the plain k3 "
            "estimator (the paper's Eq. 1): set use_bias_correction_kl=False"
        )
    if spec.divides_by(hp) == "window":
        settings = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(hp).items())
        raise ValueError(
            f"{method} ({settings}) divides by a count over the whole optimizer window (real_bce's default "
            "normalize='rollouts', the authors' mean over the mixed groups' rollouts, or 'used'); pass "
            "real_normalize='prompts' (for real_bce: the paper's Eq. 11 per group over the prompts) or 'sum'"
        )
    level = method_ratio_level(method)
    if cfg.importance_sampling_level is not None and cfg.importance_sampling_level != level:
        fix = "loss_type='gspo'" if cfg.importance_sampling_level == "sequence" else "leave it unset"
        raise ValueError(
            f"importance_sampling_level={cfg.importance_sampling_level!r}: {method}'s ratio is {level}-level; "
            f"for a sequence-level clip use {fix}"
        )
    scaling = method_reward_scaling(method)
    given = {True: "group", False: "none"}.get(cfg.scale_rewards, cfg.scale_rewards)
    if given is not None and given != scaling:
        raise ValueError(
            f"scale_rewards={cfg.scale_rewards!r}: {method} forms its own advantage (scale_rewards={scaling!r}); "
            "the group std is divided by grpo, dapo, gspo, cispo, not by dr_grpo or the REAL family; no workbench "
            "method scales by the batch std. Leave scale_rewards unset or pick the loss_type"
        )
    if cfg.use_vllm and cfg.vllm_importance_sampling_correction:
        raise ValueError(
            "vllm_importance_sampling_correction=True weights TRL's own per-token loss by the vLLM/trainer ratio; "
            "the workbench objectives take the trainer's old log-probs (the paper's s_t): set "
            "vllm_importance_sampling_correction=False"
        )
    if cfg.real_label_threshold is not None and spec.family != "real":
        raise ValueError(f"real_label_threshold turns rewards into REAL's labels; {method} uses the rewards")
    cfg.importance_sampling_level = level
    cfg.scale_rewards = scaling
    cfg.beta = float(hp.kl_beta)
    cfg.epsilon = float(hp.eps_low) if "eps_low" in names else None
    cfg.epsilon_high = (
        float(hp.eps_high) if "eps_high" in names else float(hp.w_max) if "w_max" in names else None
    )
    for name in names:
        key = config_field(method, name)
        if key in OWN_FIELDS:
            setattr(cfg, key, getattr(hp, name))


def workbench_hparams(cfg: Any) -> Any:
    """The method's hyper-parameter dataclass as the config resolved it."""
    method = cfg.loss_type
    values: dict[str, Any] = {}
    for name in SPECS[method].hparam_names():
        key = config_field(method, name)
        if key is None:
            values[name] = FIXED[name]
        elif key == "epsilon":
            values[name] = cfg.epsilon
        elif key == "epsilon_high":
            values[name] = cfg.epsilon_high
        elif key == "beta":
            values[name] = cfg.beta
        elif key == "max_completion_length":
            values[name] = cfg.max_completion_length
        else:
            values[name] = getattr(cfg, key)
    return resolve_hparams(method, values)


def _fields() -> list[tuple[str, Any, Any]]:
    methods = ", ".join(METHODS)
    out: list[tuple[str, Any, Any]] = [
        (
            "loss_type",
            str,
            field(
                default="real",
                metadata={
                    "help": f"the workbench method whose objective is the loss: one of {methods} "
                    "(TRL's bnpo, sapo, luspo, vespo: use trl.GRPOConfig)"
                },
            ),
        ),
        (
            "epsilon",
            float | None,
            field(
                default=None, metadata={"help": "ratio lower bound 1 - epsilon (eps_low); None: the method's"}
            ),
        ),
        (
            "epsilon_high",
            float | None,
            field(
                default=None,
                metadata={
                    "help": "ratio upper bound 1 + epsilon_high (eps_high; cispo: the IS-weight cap w_max); "
                    "None: epsilon if set, else the method's"
                },
            ),
        ),
        (
            "beta",
            float | None,
            field(
                default=None, metadata={"help": "k3 KL weight to the reference (kl_beta); None: the method's"}
            ),
        ),
        (
            "importance_sampling_level",
            str | None,
            field(default=None, metadata={"help": "must match the method's ratio (gspo and REAL: sequence)"}),
        ),
        (
            "scale_rewards",
            str | None,
            field(
                default=None,
                metadata={"help": "must match the method's advantage (group; dr_grpo and REAL: none)"},
            ),
        ),
        (
            "use_bias_correction_kl",
            bool,
            field(
                default=False,
                metadata={"help": "must be False with beta > 0: the workbench's KL is plain k3"},
            ),
        ),
        (
            "real_label_threshold",
            float | None,
            field(
                default=None,
                metadata={
                    "help": "REAL family: label = 1 where the weighted sum of the reward functions is >= this, "
                    "else 0 (None: that sum must itself be 0 or 1; required with several reward functions)"
                },
            ),
        ),
    ]
    for name, (_, users) in OWN_FIELDS.items():
        method, hp = next(iter(users.items()))
        default = getattr(SPECS[method].defaults, hp)
        kind = str if isinstance(default, str) else int if name.endswith("max_tokens") else float
        out.append((name, kind | None, field(default=None, metadata={"help": _help(name)})))
    return out


WorkbenchGRPOConfig = make_dataclass(
    "WorkbenchGRPOConfig",
    _fields(),
    bases=(GRPOConfig,),
    namespace={
        "__post_init__": _post_init,
        "workbench_hparams": workbench_hparams,
        "__doc__": "TRL's GRPOConfig with a workbench method as loss_type; see training.engines.trl_config.",
        "__module__": __name__,
    },
)
