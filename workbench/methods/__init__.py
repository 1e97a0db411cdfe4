"""The methods the workbench knows, one ``MethodSpec`` each (``SPECS``), and the views the rest of it reads.

Each method lives in one module of this package: its hyper-parameter defaults, its objective, the closed form of
its gradient and its Fig. 1 curve (``clip.py``: GRPO, DAPO, GSPO; ``real.py``: the REAL family; ``cispo.py``;
``dr_grpo.py``). Adding a method is one new module and one entry in ``_MODULES`` below; the trainer's flags, the
app's widgets, the figures and the studies read the registry.

Paper defaults (Sec. 5.1): GRPO eps = 0.2 with a KL penalty beta = 0.001 to the reference model; DAPO clip-higher
eps_low = 0.2, eps_high = 0.28 and token-mean aggregation; GSPO a sequence-level ratio with eps_low = 3e-4,
eps_high = 4e-4; REAL tau = 0.5. REAL, DAPO and GSPO use no KL penalty. Where the paper leaves a convention open,
the authors' public code decides: REAL and REAL w/o anchor divide the summed group losses by the prompts of the
mini-batch; REAL w/ BCE takes the mean BCE over the rollouts of the groups it keeps (``normalize``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from workbench.methods import cispo, clip, dr_grpo, real
from workbench.methods.hparams import (
    CLIP_MODES,
    GROUP_FILTERS,
    KL_TARGETS,
    LOSS_AGGS,
    NORMALIZATIONS,
    ClipHParams,
    RealHParams,
)
from workbench.methods.spec import CurveScenario, MethodSpec

# The registry: every module listed here contributes its SPECS, in this order (menus and legends follow it).
_MODULES = (clip, real, cispo, dr_grpo)

SPECS: dict[str, MethodSpec] = {s.name: s for module in _MODULES for s in module.SPECS}

HParams = Any  # an instance of one of the specs' hyper-parameter dataclasses
# Views of SPECS, for the many places that need one field of every method.
METHODS: tuple[str, ...] = tuple(SPECS)
CLIP_METHODS: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.family == "clip")
REAL_METHODS: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.family == "real")
LABELS: dict[str, str] = {n: s.label for n, s in SPECS.items()}
COLORS: dict[str, str] = {n: s.color for n, s in SPECS.items()}
DEFAULTS: dict[str, HParams] = {n: s.defaults for n, s in SPECS.items()}

__all__ = [
    "CLIP_METHODS",
    "CLIP_MODES",
    "COLORS",
    "DEFAULTS",
    "GROUP_FILTERS",
    "KL_TARGETS",
    "LABELS",
    "LOSS_AGGS",
    "METHODS",
    "NORMALIZATIONS",
    "REAL_METHODS",
    "SPECS",
    "ClipHParams",
    "CurveScenario",
    "HParams",
    "MethodSpec",
    "RealHParams",
    "check_method",
    "resolve_hparams",
]


def check_method(method: str) -> str:
    if method not in SPECS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def resolve_hparams(method: str, overrides: dict[str, Any] | None = None) -> HParams:
    """The paper's defaults for ``method`` with ``overrides`` applied; unknown names or bad values raise ValueError."""
    base = SPECS[check_method(method)].defaults
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown hyper-parameter(s) {', '.join(unknown)} for {method}; valid: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(base, **overrides)
