"""The six methods as specs (``SPECS``: name, family, label, colour, the paper's defaults), in one place.

Objectives (``workbench.objectives``), closed forms (``workbench.closed_forms``), the trainer's flags and the app's
sliders all resolve hyper-parameters here, so a default changes in one line.

Paper defaults (Sec. 5.1): GRPO eps = 0.2 with a KL penalty beta = 0.001 to the reference model; DAPO clip-higher
eps_low = 0.2, eps_high = 0.28 and token-mean aggregation; GSPO a sequence-level ratio with eps_low = 3e-4,
eps_high = 4e-4; REAL tau = 0.5. REAL, DAPO and GSPO use no KL penalty. Where the paper leaves a convention open,
the authors' public code decides: REAL and REAL w/o anchor divide the summed group losses by the prompts of the
mini-batch; REAL w/ BCE takes the mean BCE over the rollouts of the groups it keeps (``normalize``, below).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Literal

CLIP_MODES = ("vanilla", "bidirectional", "none")
LOSS_AGGS = ("token-mean", "seq-mean-token-mean")
KL_TARGETS = ("ref", "old")
GROUP_FILTERS = ("mixed", "all")
NORMALIZATIONS = ("prompts", "rollouts", "used", "sum")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")


def _check_nonneg(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not value >= 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class ClipHParams:
    """PPO-clip family (GRPO, DAPO, GSPO).

    - ``eps_low``, ``eps_high``: the ratio is clipped to ``[1 - eps_low, 1 + eps_high]``.
    - ``clip_mode``: ``vanilla`` (PPO: zero the gradient of A>0 tokens with ratio > 1+eps_high and of A<0
      tokens with ratio < 1-eps_low), ``bidirectional`` (zero every token whose ratio leaves the interval, the
      paper's Fig. 2 ablation) or ``none``.
    - ``dual_clip``: if set (verl's ``clip_ratio_c``, e.g. 3.0), A<0 tokens with ratio > dual_clip get no gradient.
    - ``loss_agg``: ``seq-mean-token-mean`` (mean over a rollout's tokens, then over rollouts; GRPO, GSPO) or
      ``token-mean`` (mean over all tokens of the mini-batch; DAPO).
    - ``kl_beta``, ``kl_target``: k3 KL penalty ``e^{q-p} - (q-p) - 1`` to the reference (``ref``) or old
      (``old``) policy, aggregated like the policy loss.
    - ``adv_eps``: ``A = (r - mean) / (std + adv_eps)`` within a group (unbiased std; a group of one gets A = 0).
    - ``log_ratio_cap``: the log-ratio is clamped to ``[-cap, cap]`` before ``exp`` (verl uses 20 for tokens and
      10 for GSPO's sequence ratio); tokens beyond it get no gradient. ``None`` disables the clamp.
    """

    eps_low: float = 0.2
    eps_high: float = 0.2
    clip_mode: Literal["vanilla", "bidirectional", "none"] = "vanilla"
    dual_clip: float | None = None
    loss_agg: Literal["token-mean", "seq-mean-token-mean"] = "seq-mean-token-mean"
    kl_beta: float = 0.001
    kl_target: Literal["ref", "old"] = "ref"
    adv_eps: float = 1e-6
    log_ratio_cap: float | None = 20.0

    def __post_init__(self) -> None:
        _check_nonneg("eps_low", self.eps_low)
        _check_nonneg("eps_high", self.eps_high)
        if self.eps_low >= 1:
            raise ValueError(f"eps_low must be < 1 (the lower clip bound is 1 - eps_low), got {self.eps_low}")
        _check_choice("clip_mode", self.clip_mode, CLIP_MODES)
        if self.dual_clip is not None and not (self.dual_clip > 1):
            raise ValueError(f"dual_clip must be > 1 or None, got {self.dual_clip!r}")
        _check_choice("loss_agg", self.loss_agg, LOSS_AGGS)
        _check_nonneg("kl_beta", self.kl_beta)
        _check_choice("kl_target", self.kl_target, KL_TARGETS)
        _check_nonneg("adv_eps", self.adv_eps)
        if self.log_ratio_cap is not None and not (self.log_ratio_cap > 0):
            raise ValueError(f"log_ratio_cap must be > 0 or None, got {self.log_ratio_cap!r}")


@dataclass(frozen=True)
class RealHParams:
    """REAL family (REAL, REAL w/ BCE, REAL w/o anchor).

    - ``tau``: temperature of the logits ``s_bar / tau``; weights are bounded by ``1 / tau``.
    - ``group_filter``: ``mixed`` (the authors' code: only groups holding a correct and a wrong rollout
      contribute) or ``all`` (every group; with the anchor a single-label group still has a loss).
    - ``normalize``: what the summed losses of the kept groups are divided by:
      ``prompts``: the number of prompts in the mini-batch, dropped groups counted (the authors' code for REAL
      and REAL w/o anchor; for REAL w/ BCE it is the paper's Eq. 11, a sum over each group's rollouts, per
      prompt); ``rollouts``: the number of rollouts in the kept groups (for REAL w/ BCE the authors' code, a
      BCE with ``reduction='mean'`` over the rollouts of the mixed groups; the default of ``real_bce``);
      ``used``: the number of kept groups; ``sum``: nothing. Each divisor is at least 1, so a mini-batch
      without a kept group has loss 0. ``prompts`` and ``rollouts`` differ by the factor
      ``rollouts in kept groups / prompts``, which changes from mini-batch to mini-batch.
    - ``kl_beta``, ``kl_target``: optional k3 KL penalty (Table 4), token-mean over the mini-batch.
    """

    tau: float = 0.5
    group_filter: Literal["mixed", "all"] = "mixed"
    normalize: Literal["prompts", "rollouts", "used", "sum"] = "prompts"
    kl_beta: float = 0.0
    kl_target: Literal["ref", "old"] = "ref"

    def __post_init__(self) -> None:
        if not isinstance(self.tau, int | float) or not (0 < self.tau < float("inf")):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau!r}")
        _check_choice("group_filter", self.group_filter, GROUP_FILTERS)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_nonneg("kl_beta", self.kl_beta)
        _check_choice("kl_target", self.kl_target, KL_TARGETS)


HParams = ClipHParams | RealHParams


@dataclass(frozen=True)
class MethodSpec:
    """One method: its name (the objective's key in ``workbench.objectives.OBJECTIVES`` and the closed form's in
    ``workbench.closed_forms.token_gradient``), family (``clip``: GRPO-style token ratios and advantages;
    ``real``: REAL-style rollout logits ``s_bar / tau``), human label, plot colour and the paper's defaults.
    Every default of a method lives here and nowhere else."""

    name: str
    family: Literal["clip", "real"]
    label: str
    color: str
    defaults: HParams


SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        MethodSpec("grpo", "clip", "GRPO", "#d62728", ClipHParams()),
        MethodSpec(
            "dapo",
            "clip",
            "DAPO",
            "#ff7f0e",
            ClipHParams(eps_low=0.2, eps_high=0.28, loss_agg="token-mean", kl_beta=0.0),
        ),
        MethodSpec(
            "gspo",
            "clip",
            "GSPO",
            "#2ca02c",
            ClipHParams(eps_low=3e-4, eps_high=4e-4, kl_beta=0.0, log_ratio_cap=10.0),
        ),
        MethodSpec("real", "real", "REAL", "#1f77b4", RealHParams()),
        # the authors' BCE: mean over the kept groups' rollouts
        MethodSpec("real_bce", "real", "REAL w/ BCE", "#9467bd", RealHParams(normalize="rollouts")),
        MethodSpec("real_no_anchor", "real", "REAL w/o anchor", "#17becf", RealHParams()),
    )
}
# Views of SPECS, for the many places that need one field of every method.
METHODS: tuple[str, ...] = tuple(SPECS)
CLIP_METHODS: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.family == "clip")
REAL_METHODS: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.family == "real")
LABELS: dict[str, str] = {n: s.label for n, s in SPECS.items()}
COLORS: dict[str, str] = {n: s.color for n, s in SPECS.items()}
DEFAULTS: dict[str, HParams] = {n: s.defaults for n, s in SPECS.items()}


def check_method(method: str) -> str:
    if method not in DEFAULTS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def resolve_hparams(method: str, overrides: dict[str, Any] | None = None) -> HParams:
    """The paper's defaults for ``method`` with ``overrides`` applied; unknown names or bad values raise ValueError."""
    base = DEFAULTS[check_method(method)]
    overrides = dict(overrides or {})
    names = {f.name for f in fields(base)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown hyper-parameter(s) {', '.join(unknown)} for {method}; valid: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(base, **overrides)
