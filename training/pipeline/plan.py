"""The runs the paper's figures need, derived from the figures' own variant specs.

Single source: every ``VariantSpec`` of every figure in ``workbench.figures.registry.RUN_FIGURES`` (or of the
figures named) becomes one trainer variant: the spec's method and overrides are the trainer's objective flags.
A spec that accepts a range (``kl_beta=POSITIVE``: "any KL weight > 0", Table 4's KL rows) is trained at the value
in ``OPEN_VALUES``. Specs that give the same variant share its runs (REAL serves Fig. 4, Fig. 5, Table 4, ...).

Each planned config is checked against the figures the way the figures will check the run:
``workbench.stats.variants.variant_from(method, resolved hparams)`` must match every spec it serves, and each
spec must match exactly one planned variant (else ``select_variants`` would refuse the runs later).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.config import OBJECTIVE_FIELDS, ConfigError, TrainConfig, build_config, flag
from workbench.methods import DEFAULTS
from workbench.stats.variants import AnyPositive, Variant, VariantSpec, variant_from

# The value trained where a spec accepts "any value > 0". The paper gives one KL weight, GRPO's beta = 0.001
# (Sec. 5.1; Table 4 names none for REAL's KL rows), so REAL's KL runs use GRPO's default from workbench.methods.
OPEN_VALUES: dict[str, Any] = {"kl_beta": DEFAULTS["grpo"].kl_beta}

# Settings the pipeline sets itself; they may not come through the trainer flags after ``--``.
PIPELINE_SETTINGS = frozenset({"method", "seed", "preset", "steps", "progress", *OBJECTIVE_FIELDS})


class PlanError(ValueError):
    """The figures' specs cannot be turned into runs, or the settings do not make a valid config."""


@dataclass(frozen=True)
class Need:
    """One spec of one figure: ``figure`` is its CLI name (``fig2``), ``label`` the spec's label."""

    figure: str
    label: str
    spec: VariantSpec


@dataclass(frozen=True)
class PlannedVariant:
    """A variant to train: the method and concrete objective overrides (trainer flags), and who needs it."""

    method: str
    overrides: tuple[tuple[str, Any], ...]
    variant: Variant
    needs: tuple[Need, ...]

    @property
    def slug(self) -> str:
        """Folder-name part: ``grpo``, ``real__tau=0.1``, ``real__kl_beta=0.001__kl_target=old``."""
        return "__".join([self.method, *(f"{k}={_text(v)}" for k, v in self.overrides)])

    @property
    def label(self) -> str:
        return self.variant.label

    def used_by(self) -> str:
        """``fig2 (GRPO), fig4 (GRPO), ...``"""
        return ", ".join(f"{n.figure} ({n.label})" for n in self.needs)


@dataclass(frozen=True)
class PlannedRun:
    """One run: a variant at one seed, its run directory, its config and the flags that make it."""

    variant: PlannedVariant
    seed: int
    out: Path
    config: TrainConfig
    flags: tuple[str, ...]  # trainer flags of a new run, without ``--out``

    @property
    def name(self) -> str:
        return self.out.name

    @property
    def steps(self) -> int:
        return self.config.steps

    def train_args(self) -> list[str]:
        """Arguments of ``python -m training`` that start this run."""
        return ["train", *self.flags, "--out", str(self.out)]

    def resume_args(self, steps: int | None = None) -> list[str]:
        """Arguments that continue this run (``--steps`` when the logged run asks for another count)."""
        extra = ["--steps", str(steps)] if steps is not None else []
        return ["train", "--out", str(self.out), "--resume", *extra, "--no-progress"]


@dataclass(frozen=True)
class Plan:
    preset: str
    seeds: tuple[int, ...]
    steps: int
    runs_root: Path
    figures: tuple[str, ...]
    variants: tuple[PlannedVariant, ...]
    runs: tuple[PlannedRun, ...]
    train_settings: Mapping[str, Any]  # from the trainer flags after ``--``

    @property
    def total_steps(self) -> int:
        return sum(r.steps for r in self.runs)


def _text(value: Any) -> str:
    """A value as a flag argument (``0.001``, ``none``, ``bidirectional``)."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def settings_flags(settings: Mapping[str, Any]) -> list[str]:
    """Trainer flags that set ``settings`` (booleans as ``--x`` / ``--no-x``)."""
    out: list[str] = []
    for k, v in settings.items():
        if isinstance(v, bool):
            out.append(flag(k) if v else "--no-" + k.replace("_", "-"))
        else:
            out += [flag(k), _text(v)]
    return out


def shell_command(args: Sequence[str], module: str = "training") -> str:
    """The command line a user would type: ``python -m training train ...``."""
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in args)])


def python_command(args: Sequence[str], module: str = "training") -> list[str]:
    """The same command for ``subprocess`` (this interpreter)."""
    return [sys.executable, "-m", module, *args]


def figure_needs(figures: Sequence[str] | None = None) -> list[Need]:
    """Every spec of the run figures named (default: all of ``RUN_FIGURES``), in registry order."""
    from workbench.figures.registry import RUN_FIGURES

    names = list(RUN_FIGURES) if figures is None else list(figures)
    unknown = [n for n in names if n not in RUN_FIGURES]
    if unknown:
        raise PlanError(f"unknown figure(s) {', '.join(unknown)}: choose from {', '.join(RUN_FIGURES)}")
    return [Need(n, s.label, s) for n in names for s in RUN_FIGURES[n].specs]


def concrete_overrides(spec: VariantSpec, open_values: Mapping[str, Any] = OPEN_VALUES) -> dict[str, Any]:
    """The spec's overrides with every open value (``POSITIVE``) replaced by the value the pipeline trains."""
    out = {}
    for k, v in spec.overrides:
        if isinstance(v, AnyPositive):
            if k not in open_values:
                raise PlanError(
                    f"{spec.describe()}: accepts any {k} > 0 and the pipeline has no value to train for {k} "
                    "(add one to training.pipeline.plan.OPEN_VALUES)"
                )
            v = open_values[k]
            if not (isinstance(v, int | float) and v > 0):
                raise PlanError(f"OPEN_VALUES[{k!r}] = {v!r} is not a number > 0")
        out[k] = v
    return out


def plan_variants(
    needs: Sequence[Need], open_values: Mapping[str, Any] = OPEN_VALUES
) -> tuple[PlannedVariant, ...]:
    """One ``PlannedVariant`` per distinct variant the needs ask for, in order of first need.

    Raises ``PlanError`` when a spec's concrete variant does not match the spec, or when a spec would match
    several planned variants (the figure could not choose).
    """
    by_variant: dict[Variant, tuple[dict[str, Any], list[Need]]] = {}
    for need in needs:
        overrides = concrete_overrides(need.spec, open_values)
        try:
            variant = variant_from(need.spec.method, overrides)
        except ValueError as e:
            raise PlanError(f"{need.figure} ({need.label}): {e}") from None
        if not need.spec.matches(variant):
            raise PlanError(
                f"{need.figure} ({need.label}): training {need.spec.method} with {overrides} gives the variant "
                f"{variant.key}, which the spec {need.spec.describe()} does not accept"
            )
        by_variant.setdefault(variant, (overrides, []))[1].append(need)
    planned = tuple(
        PlannedVariant(v.method, tuple(sorted(ov.items())), v, tuple(ns))
        for v, (ov, ns) in by_variant.items()
    )
    for need in needs:
        hits = [p for p in planned if need.spec.matches(p.variant)]
        if len(hits) != 1:
            raise PlanError(
                f"{need.figure} ({need.label}) matches {len(hits)} planned variants "
                f"({', '.join(p.variant.key for p in hits)}); a figure needs exactly one"
            )
    return planned


def planned_config(
    preset: str, method: str, seed: int, overrides: Mapping[str, Any], settings: Mapping[str, Any]
) -> tuple[TrainConfig, dict[str, Any]]:
    """The trainer config of one run and the explicit settings (flags) that make it; checked with ``validate``."""
    explicit = {"method": method, "seed": seed, **overrides, **settings, "progress": False}
    try:
        cfg = build_config(preset, explicit)
        cfg.validate()
    except (ConfigError, TypeError) as e:
        raise PlanError(str(e)) from None
    return cfg, explicit


def make_plan(
    *,
    preset: str,
    seeds: Sequence[int],
    runs_root: Path,
    steps: int | None = None,
    figures: Sequence[str] | None = None,
    train_settings: Mapping[str, Any] | None = None,
    open_values: Mapping[str, Any] = OPEN_VALUES,
) -> Plan:
    """Every run the figures need: each planned variant at each seed, seed-major (all of seed 0 first).

    ``train_settings`` are trainer settings for every run (the flags after ``--``); ``steps`` overrides the
    preset's. The resolved hyper-parameters of each config are checked to give the planned variant.
    """
    train_settings = dict(train_settings or {})
    clash = sorted(set(train_settings) & PIPELINE_SETTINGS)
    if clash:
        raise PlanError(
            f"{', '.join(flag(k) for k in clash)}: set by the pipeline (method, seed and objective flags come "
            "from the figures' variants; use --preset/--steps of paper-figures), not a trainer flag after --"
        )
    if not seeds:
        raise PlanError("no seeds: pass --seeds N with N >= 1")
    names = figure_needs(figures)
    variants = plan_variants(names, open_values)
    settings = {**train_settings, **({"steps": steps} if steps is not None else {})}
    runs = []
    for seed in seeds:
        for pv in variants:
            cfg, explicit = planned_config(preset, pv.method, seed, dict(pv.overrides), settings)
            got = variant_from(cfg.method, asdict(cfg.hparams()))
            if got != pv.variant:
                raise PlanError(f"the config of {pv.slug} resolves to {got.key}, not {pv.variant.key}")
            flags = ("--preset", preset, *settings_flags(explicit))
            runs.append(PlannedRun(pv, seed, runs_root / f"{pv.slug}__s{seed}", cfg, flags))
    return Plan(
        preset=preset,
        seeds=tuple(seeds),
        steps=runs[0].steps,  # every run has the same settings
        runs_root=runs_root,
        figures=tuple(dict.fromkeys(n.figure for n in names)),
        variants=variants,
        runs=tuple(runs),
        train_settings=train_settings,
    )


def figure_commands(plan: Plan, out_dir: Path, all_figures: bool) -> list[list[str]]:
    """``python -m workbench.figures`` arguments that build the plan's figures from the plan's runs.

    ``all_figures``: one ``all`` command over every run (fig1 from the closed forms and every run figure);
    otherwise one command per figure over the runs that figure needs.
    """
    if all_figures:
        return [["all", "--runs", *(str(r.out) for r in plan.runs), "--out-dir", str(out_dir)]]
    out = []
    for name in plan.figures:
        runs = [str(r.out) for r in plan.runs if any(n.figure == name for n in r.variant.needs)]
        out.append([name, "--runs", *runs, "--out-dir", str(out_dir)])
    return out
