"""``MethodSpec``: everything the workbench knows about one method, in one record.

A method is one spec (in the spirit of verl's ``register_policy_loss``): its name, family, label and colour,
its hyper-parameter dataclass instance holding the defaults, the objective (autograd is the judge), the closed
form of its gradient (an independent check of the objective), and the Fig. 1 curve of its per-token weight.
``workbench.methods.SPECS`` registers them; the trainer's flags, the app's widgets, the figures and the studies
read them from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from workbench.batch import RolloutBatch
    from workbench.methods.common import GradientBreakdown, ObjectiveResult


@dataclass(frozen=True)
class CurveScenario:
    """Fig. 1's inputs shared by every method. ``advantage``: ``|A|`` (``+|A|`` for a correct rollout, ``-|A|``
    for a wrong one); ``c_pos``/``c_neg``: REAL's ``C+``/``C-`` (``>= 1``, the anchor adds 1);
    ``other_class_mass``: ``M`` of REAL without anchor, the other class's ``sum e^{-+s/tau}``."""

    advantage: float = 1.0
    c_pos: float = 4.0
    c_neg: float = 4.0
    other_class_mass: float = 1.0

    def __post_init__(self) -> None:
        if not self.advantage > 0:
            raise ValueError(f"advantage is |A| and must be > 0, got {self.advantage}")
        if not (self.c_pos >= 1 and self.c_neg >= 1):
            raise ValueError(f"REAL's C+ and C- are >= 1 (the anchor adds 1), got {self.c_pos}, {self.c_neg}")
        if not self.other_class_mass > 0:
            raise ValueError(f"other_class_mass must be > 0, got {self.other_class_mass}")


def no_kinks(hp: Any) -> tuple[float, ...]:
    return ()


# What a method's loss on a batch is divided by (``MethodSpec.divides_by``); engines that split a mini-batch into
# micro-batches scale each micro-batch's loss by its share of that count.
DIVISORS = ("rollouts", "tokens", "prompts", "nothing", "window")


@dataclass(frozen=True)
class MethodSpec:
    """One method.

    - ``family``: ``clip`` (a per-token advantage ``A`` and ratio, GRPO-style) or ``real`` (per-rollout logits
      ``s_bar / tau`` and binary labels, REAL-style). The family decides which logged columns mean something
      (``advantage`` or ``log_c``) and how Fig. 1's autograd check builds its batch.
    - ``defaults``: an instance of the method's hyper-parameter dataclass; every default of the method lives here.
    - ``objective(batch, hp) -> ObjectiveResult``: the loss to minimise on a prepared ``RolloutBatch``.
    - ``closed_form(batch, hp) -> GradientBreakdown``: ``dL/dlogp`` without autograd.
    - ``curve(s, positive, hp, scenario) -> |W|``: the per-token weight at log-ratio ``s`` (``s_t`` for a
      token-level ratio, ``s_bar`` for a sequence-level one), as Fig. 1 draws it.
    - ``ratio``: ``token`` or ``sequence``: which log-ratio the curve's x axis is.
    - ``kinks(hp)``: log-ratios where the loss is not differentiable (clip boundaries); autograd checks skip them.
    - ``summary``: one line for menus and the Learn page: the weight in symbols.
    - ``divides_by(hp)``: what the loss on a batch is divided by: ``rollouts`` (a mean over rollouts),
      ``tokens`` (a mean over response tokens), ``prompts`` (the groups of the batch), ``nothing`` (a sum), or
      ``window`` (a count only the whole mini-batch knows, e.g. its mixed groups' rollouts): engines that split
      mini-batches into micro-batches scale by the first four and refuse the last.
    """

    name: str
    family: Literal["clip", "real"]
    label: str
    color: str
    defaults: Any
    objective: Callable[[RolloutBatch, Any], ObjectiveResult]
    closed_form: Callable[[RolloutBatch, Any], GradientBreakdown]
    curve: Callable[[np.ndarray, bool, Any, CurveScenario], np.ndarray]
    summary: str
    divides_by: Callable[[Any], str]
    ratio: Literal["token", "sequence"] = "token"
    kinks: Callable[[Any], tuple[float, ...]] = no_kinks

    @property
    def binary_rewards(self) -> bool:
        """The REAL family reads rewards as class labels, so they must be 0 or 1."""
        return self.family == "real"

    @property
    def hparams_class(self) -> type:
        return type(self.defaults)

    def hparam_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.defaults))
