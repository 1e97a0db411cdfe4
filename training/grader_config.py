"""The grader's choices in one place: how a response's answer is found, how it is compared with the gold answer.

``GraderConfig()`` is the paper's grader as the project has always run it (math-verify 0.9.0):

- ``extraction="latex"``: the response is read with math-verify's LaTeX extraction only (a ``\\boxed{}`` answer
  first, then other LaTeX such as ``$...$``); an answer written in plain text scores 0. ``"boxed"`` reads only
  the response's last ``\\boxed{}`` (nothing boxed: 0); ``"latex+expr"`` adds math-verify's plain-expression
  extraction (``the answer is 18`` counts), which is math-verify's own default.
- ``float_rounding=6``: decimal places both sides are rounded to before comparing floats (``verify``'s default).
- ``set_relation=False``: an interval gold does not accept the equivalent relation (``(-\\infty, 3)`` vs
  ``x < 3``); ``True`` is ``verify(..., allow_set_relation_comp=True)``.
- ``strict=True``: variables must match by name (``x + 1`` is not ``y + 1``); ``False`` matches them by position.
- ``timeout=5.0``: seconds a worker may spend on one completion before it is killed and the completion scores 0.
- ``normalize_gold=True``: gold answers go through ``training.gold.normalize_gold`` (trailing punctuation, prose
  after a formula, LaTeX thousands separators) before math-verify parses them; ``False`` parses the gold text as
  it stands (the grader before the gold audit: see docs/data.md for the answers this changes).

The gold answer is always wrapped in ``$...$`` and parsed with LaTeX and plain-expression extraction. A config
is frozen, validated on construction (one-line ``ValueError``), and round-trips through ``to_dict`` /
``from_dict`` so that a run can record it in ``run.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

EXTRACTIONS = ("boxed", "latex", "latex+expr")


@dataclass(frozen=True)
class GraderConfig:
    """Every choice the grader makes (see the module docstring for what each field changes)."""

    extraction: str = "latex"
    float_rounding: int = 6
    set_relation: bool = False
    strict: bool = True
    timeout: float = 5.0
    normalize_gold: bool = True

    def __post_init__(self) -> None:
        if self.extraction not in EXTRACTIONS:
            raise ValueError(
                f"grader extraction must be one of {', '.join(EXTRACTIONS)}, got {self.extraction!r}"
            )
        if isinstance(self.float_rounding, bool) or not isinstance(self.float_rounding, int):
            raise ValueError(f"grader float_rounding must be an int, got {self.float_rounding!r}")
        if not 0 <= self.float_rounding <= 15:
            raise ValueError(
                f"grader float_rounding must be in 0..15 decimal places, got {self.float_rounding}"
            )
        for name in ("set_relation", "strict", "normalize_gold"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"grader {name} must be true or false, got {getattr(self, name)!r}")
        t = self.timeout
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or not t > 0:
            raise ValueError(f"grader timeout must be a number of seconds > 0, got {t!r}")
        object.__setattr__(self, "timeout", float(t))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, every field (for ``run.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GraderConfig:
        """The config a ``to_dict`` wrote; missing fields take their defaults (a run recorded before a field
        existed), unknown fields are refused."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(f"a grader config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown grader setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def verdict_key(self) -> tuple:
        """The fields that decide a verdict (the timeout only decides whether one is reached): what the worker
        receives with each task and what the grader's cache keys on."""
        return (self.extraction, self.float_rounding, self.set_relation, self.strict, self.normalize_gold)

    def describe(self) -> str:
        """One line, e.g. for a log: the fields that differ from the paper's defaults, or 'paper defaults'."""
        base = GraderConfig()
        diff = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        ]
        return ", ".join(diff) if diff else "paper defaults"


PAPER = GraderConfig()


# What each setting changes, in one line: the help of the trainer's --grader-* flags and of check-data/eval's.
SETTING_HELP: dict[str, str] = {
    "extraction": "how a response's answer is found: boxed (its last \\boxed{}), latex (math-verify's LaTeX "
    "extraction), latex+expr (also plain expressions)",
    "float_rounding": "decimal places both sides are rounded to before floats are compared",
    "set_relation": "an interval gold also accepts the equivalent relation ((-inf, 3) and x < 3)",
    "strict": "variables must match by name (no: by position)",
    "normalize_gold": "normalise gold answers first (trailing punctuation, prose after the formula, thousands "
    "separators; docs/data.md)",
}


def add_grader_arguments(parser: Any, prefix: str = "") -> None:
    """``--[prefix]extraction``, ``--[prefix]float-rounding``, ``--[prefix]set-relation``, ``--[prefix]strict``,
    ``--[prefix]normalize-gold`` (default: the paper's grader, ``GraderConfig()``)."""
    import argparse

    base = GraderConfig()
    group = parser.add_argument_group("grader settings (default: the paper's grader)")
    for f in fields(GraderConfig):
        if f.name == "timeout":
            continue
        opt = "--" + (prefix + f.name).replace("_", "-")
        kwargs: dict[str, Any] = {"dest": prefix + f.name, "default": None,
                                  "help": f"{SETTING_HELP[f.name]} (default: {getattr(base, f.name)})"}  # fmt: skip
        if isinstance(getattr(base, f.name), bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "extraction":
            kwargs["choices"] = EXTRACTIONS
        else:
            kwargs["type"] = type(getattr(base, f.name))
        group.add_argument(opt, **kwargs)


def grader_config_from(values: Any, timeout: float | None = None, prefix: str = "") -> GraderConfig:
    """The ``GraderConfig`` of parsed arguments or a config object: each ``[prefix]<field>`` that is set
    (not None) overrides the default; ``timeout`` sets the timeout."""
    given = {}
    for f in fields(GraderConfig):
        value = getattr(values, prefix + f.name, None)
        if f.name != "timeout" and value is not None:
            given[f.name] = value
    if timeout is not None:
        given["timeout"] = timeout
    return GraderConfig(**given)
