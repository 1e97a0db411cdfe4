"""The off-policy study's runs: off-policy levels x variants x seeds, as the pipeline's planned runs.

A level is a ``--rollout-lag K`` (``training.lag``): step k samples with the weights after step k-1-K. Every
run of a level gets the same trainer settings (``STUDY_SETTINGS`` plus the flags after ``--``), so a seed gives
every variant the same warm start, prompts and first rollouts (paired comparisons, ``workbench.stats.paired``).

A variant is a method with optional objective overrides, written ``real`` or ``real:tau=0.1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.config import OBJECTIVE_FIELDS, ConfigError
from training.pipeline.plan import (
    PIPELINE_SETTINGS,
    PlanError,
    PlannedRun,
    PlannedVariant,
    planned_config,
    settings_flags,
)
from workbench.methods import METHODS
from workbench.stats.variants import variant_from

STUDY = "offpolicy"
# The paper's six objectives plus REAL at tau = 0.1, the setting the paper says "collapses early".
DEFAULT_VARIANTS: tuple[str, ...] = (
    "grpo",
    "dapo",
    "gspo",
    "real",
    "real_bce",
    "real_no_anchor",
    "real:tau=0.1",
)
DEFAULT_LAGS: tuple[int, ...] = (0, 4, 8)
# Settings of every run, on top of the tiny preset (lr 1e-4 kept: at 3e-4 on-policy GRPO's validation Pass@1
# fell from 0.42 to 0.10 in 10 steps, so a lag effect would drown in the learning rate's). At lr 1e-4, lag 8
# puts |s_bar|/tau above 1 for 10-30% of REAL's rollouts after step ~12; lag 0 for none (docs/studies.md).
STUDY_SETTINGS: dict[str, Any] = {"steps": 40, "val_every": 10}
STUDY_OWN = PIPELINE_SETTINGS | {"rollout_lag"}


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``real:tau=0.1,normalize=group`` -> ``("real", {"tau": 0.1, "normalize": "group"})``."""
    method, _, rest = text.partition(":")
    if method not in METHODS:
        raise PlanError(f"variant {text!r}: unknown method {method!r} (one of {', '.join(METHODS)})")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in OBJECTIVE_FIELDS:
            raise PlanError(
                f"variant {text!r}: {item!r} is not NAME=VALUE with NAME one of {', '.join(OBJECTIVE_FIELDS)}"
            )
        overrides[key] = _value(value)
    return method, overrides


def _value(text: str) -> Any:
    if text == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class StudyPlan:
    study: str
    lags: tuple[int, ...]
    seeds: tuple[int, ...]
    variants: tuple[PlannedVariant, ...]
    runs: tuple[PlannedRun, ...]
    level_of: Mapping[str, int]  # run name -> its lag
    runs_root: Path
    settings: Mapping[str, Any]

    @property
    def steps(self) -> int:
        return self.runs[0].steps


def make_study_plan(
    *,
    lags: Sequence[int] = DEFAULT_LAGS,
    seeds: Sequence[int],
    variants: Sequence[str] = DEFAULT_VARIANTS,
    runs_root: Path,
    preset: str = "tiny",
    settings: Mapping[str, Any] | None = None,
    steps: int | None = None,
) -> StudyPlan:
    """Every run of the study, level-major then seed then variant; ``settings`` (trainer flags) override
    ``STUDY_SETTINGS``. Run folders: ``<runs_root>/lag<K>__<variant slug>__s<seed>``."""
    if not seeds:
        raise PlanError("no seeds: pass --seeds N with N >= 1")
    if not lags or any(k < 0 for k in lags) or len(set(lags)) != len(lags):
        raise PlanError(f"--lags must be distinct integers >= 0, got {list(lags)}")
    user = dict(settings or {})
    clash = sorted(set(user) & STUDY_OWN)
    if clash:
        raise PlanError(f"{', '.join(clash)}: set by the study (use --lags, --variants, --seeds, --steps)")
    planned = []
    for text in dict.fromkeys(variants):
        method, overrides = parse_variant(text)
        try:
            variant = variant_from(method, overrides)
        except ValueError as e:
            raise PlanError(f"variant {text!r}: {e}") from None
        planned.append(PlannedVariant(method, tuple(sorted(overrides.items())), variant, ()))
    if len({p.variant for p in planned}) != len(planned):
        raise PlanError("two variants resolve to the same objective: drop one")
    base = {**STUDY_SETTINGS, **user, **({"steps": steps} if steps is not None else {})}
    runs, level_of = [], {}
    for lag in lags:
        for seed in seeds:
            for pv in planned:
                explicit = {**base, "rollout_lag": lag}
                try:
                    cfg, flags_set = planned_config(preset, pv.method, seed, dict(pv.overrides), explicit)
                except ConfigError as e:  # pragma: no cover - planned_config turns these into PlanError
                    raise PlanError(str(e)) from None
                if variant_from(cfg.method, asdict(cfg.hparams())) != pv.variant:
                    raise PlanError(f"the config of {pv.slug} does not resolve to {pv.variant.key}")
                out = runs_root / f"lag{lag}__{pv.slug}__s{seed}"
                run = PlannedRun(pv, seed, out, cfg, ("--preset", preset, *settings_flags(flags_set)))
                runs.append(run)
                level_of[run.name] = lag
    return StudyPlan(STUDY, tuple(lags), tuple(seeds), tuple(planned), tuple(runs), level_of, runs_root, base)
