"""Hyper-parameter dataclasses of the method families, each field with its help text (and choices).

A field's metadata (``hp_field``) is what the trainer's flags, the app's widgets and the docs show, so a
hyper-parameter is described once, here, and its default once, in its method's spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CLIP_MODES = ("vanilla", "bidirectional", "none")
LOSS_AGGS = ("token-mean", "seq-mean-token-mean")
KL_TARGETS = ("ref", "old")
GROUP_FILTERS = ("mixed", "all")
NORMALIZATIONS = ("prompts", "rollouts", "used", "sum")


def hp_field(
    default: Any, help: str, choices: tuple[str, ...] | None = None, from_config: str | None = None
) -> Any:
    """A dataclass field carrying its help text, its choices (for a string setting) and, in ``from_config``, the
    trainer setting that fills it when the user leaves it unset (e.g. ``max_new_tokens``)."""
    return field(default=default, metadata={"help": help, "choices": choices, "from_config": from_config})


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")


def check_nonneg(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not value >= 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_kl(kl_beta: float, kl_target: str) -> None:
    check_nonneg("kl_beta", kl_beta)
    check_choice("kl_target", kl_target, KL_TARGETS)


EPS_LOW_HELP = "ratio lower bound 1 - eps_low"
EPS_HIGH_HELP = "ratio upper bound 1 + eps_high"
CLIP_MODE_HELP = "which clipped tokens lose their gradient"
DUAL_CLIP_HELP = "dual-clip constant c > 1: A < 0 tokens with ratio > c get none"
LOG_RATIO_CAP_HELP = "clamp |log-ratio| to this before exp ('none': off)"
LOSS_AGG_HELP = "how token losses are averaged"
KL_BETA_HELP = "weight beta of the k3 KL penalty e^{q-p} - (q-p) - 1 (0: no penalty)"
KL_TARGET_HELP = "KL to the reference ('ref') or the old ('old') policy"
ADV_EPS_HELP = "A = (r - mean) / (std + adv_eps) within a group (unbiased std; a group of one gets A = 0)"


@dataclass(frozen=True)
class ClipHParams:
    """PPO-clip family (GRPO, DAPO, GSPO): ``max(-A rho, -A clip(rho, 1 - eps_low, 1 + eps_high))`` per token.

    ``clip_mode``: ``vanilla`` (PPO: zero the gradient of A>0 tokens with ratio > 1+eps_high and of A<0 tokens
    with ratio < 1-eps_low), ``bidirectional`` (zero every token whose ratio leaves the interval, the paper's
    Fig. 2 ablation) or ``none``. ``loss_agg``: ``seq-mean-token-mean`` (mean over a rollout's tokens, then over
    rollouts; GRPO, GSPO) or ``token-mean`` (mean over all tokens of the mini-batch; DAPO). ``log_ratio_cap``:
    verl clamps the log-ratio at 20 for tokens and 10 for GSPO's sequence ratio; beyond it a token has no
    gradient.
    """

    eps_low: float = hp_field(0.2, EPS_LOW_HELP)
    eps_high: float = hp_field(0.2, EPS_HIGH_HELP)
    clip_mode: Literal["vanilla", "bidirectional", "none"] = hp_field("vanilla", CLIP_MODE_HELP, CLIP_MODES)
    dual_clip: float | None = hp_field(None, DUAL_CLIP_HELP)
    loss_agg: Literal["token-mean", "seq-mean-token-mean"] = hp_field(
        "seq-mean-token-mean", LOSS_AGG_HELP, LOSS_AGGS
    )
    kl_beta: float = hp_field(0.001, KL_BETA_HELP)
    kl_target: Literal["ref", "old"] = hp_field("ref", KL_TARGET_HELP, KL_TARGETS)
    adv_eps: float = hp_field(1e-6, ADV_EPS_HELP)
    log_ratio_cap: float | None = hp_field(20.0, LOG_RATIO_CAP_HELP)

    def __post_init__(self) -> None:
        check_nonneg("eps_low", self.eps_low)
        check_nonneg("eps_high", self.eps_high)
        if self.eps_low >= 1:
            raise ValueError(f"eps_low must be < 1 (the lower clip bound is 1 - eps_low), got {self.eps_low}")
        check_choice("clip_mode", self.clip_mode, CLIP_MODES)
        if self.dual_clip is not None and not (self.dual_clip > 1):
            raise ValueError(f"dual_clip must be > 1 or None, got {self.dual_clip!r}")
        check_choice("loss_agg", self.loss_agg, LOSS_AGGS)
        check_kl(self.kl_beta, self.kl_target)
        check_nonneg("adv_eps", self.adv_eps)
        if self.log_ratio_cap is not None and not (self.log_ratio_cap > 0):
            raise ValueError(f"log_ratio_cap must be > 0 or None, got {self.log_ratio_cap!r}")


@dataclass(frozen=True)
class RealHParams:
    """REAL family (REAL, REAL w/ BCE, REAL w/o anchor): logits ``s_bar / tau``, weights bounded by ``1/tau``.

    ``normalize``: what the summed losses of the kept groups are divided by: ``prompts`` (the prompts of the
    mini-batch, dropped groups counted: the authors' code for REAL and REAL w/o anchor; for REAL w/ BCE the
    paper's Eq. 11 per prompt), ``rollouts`` (the rollouts of the kept groups: for REAL w/ BCE the authors'
    ``BCE(reduction='mean')`` over the mixed groups' rollouts), ``used`` (the kept groups) or ``sum`` (nothing).
    Each divisor is at least 1, so a mini-batch without a kept group has loss 0.
    """

    tau: float = hp_field(0.5, "temperature tau of the logits s_bar / tau (weights bounded by 1/tau)")
    group_filter: Literal["mixed", "all"] = hp_field(
        "mixed", "groups in the loss: only those mixing labels, or all", GROUP_FILTERS
    )
    normalize: Literal["prompts", "rollouts", "used", "sum"] = hp_field(
        "prompts", "what the summed group losses are divided by", NORMALIZATIONS
    )
    kl_beta: float = hp_field(0.0, KL_BETA_HELP)
    kl_target: Literal["ref", "old"] = hp_field("ref", KL_TARGET_HELP, KL_TARGETS)

    def __post_init__(self) -> None:
        if not isinstance(self.tau, int | float) or not (0 < self.tau < float("inf")):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau!r}")
        check_choice("group_filter", self.group_filter, GROUP_FILTERS)
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_kl(self.kl_beta, self.kl_target)
