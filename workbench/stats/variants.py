"""Runs grouped into variants: a variant is a method plus the hyper-parameters that differ from its defaults.

Studies average over seeds within a variant. ``variant_of(run)`` reads ``config["hparams"]`` (the resolved
objective hyper-parameters every writer sets, see docs/run_format.md), validates them with
``workbench.methods.resolve_hparams`` and keeps the *effective* differences from ``DEFAULTS[method]``:
``kl_target`` is dropped while ``kl_beta == 0`` (it changes nothing then).

``VariantSpec`` says which variant a figure needs ("REAL with tau = 0.1", "REAL with any KL beta > 0 to the old
policy"); ``select_variants`` finds the runs of each spec and raises ``MissingVariantsError`` naming what is
missing and what the runs offer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.methods import DEFAULTS, LABELS, resolve_hparams
from workbench.runlog import Run, RunFormatError, find_runs, open_run

RunLike = Run | str | os.PathLike


def as_run(run: RunLike) -> Run:
    """A ``Run`` from a ``Run`` or a run directory path (``RunFormatError`` if it is not one)."""
    return run if isinstance(run, Run) else open_run(Path(run))


def expand_run_paths(paths: Iterable[RunLike]) -> list[Run]:
    """Open every run named: a run directory itself, or a folder whose sub-folders are run directories.

    Raises ``FileNotFoundError`` for a path that does not exist and ``RunFormatError`` for a folder that holds
    no run. Duplicates (the same directory twice) are kept once.
    """
    runs: list[Run] = []
    seen: set[Path] = set()
    for p in paths:
        if isinstance(p, Run):
            candidates = [p]
        else:
            path = Path(p)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such run directory")
            if (path / "run.json").is_file():
                candidates = [open_run(path)]
            else:
                found = find_runs(path)
                if not found:
                    raise RunFormatError(path, "neither a run directory (no run.json) nor a folder of runs")
                candidates = [open_run(f) for f in found]
        for run in candidates:
            key = run.dir.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(run)
    return runs


def _config_field(run: Run, key: str) -> Any:
    cfg = run.config
    if key not in cfg:
        raise RunFormatError(run.dir / "run.json", "missing (every writer sets it)", field=f"config.{key}")
    return cfg[key]


def seed_of(run: RunLike) -> int:
    """``config["seed"]`` of a run."""
    run = as_run(run)
    seed = _config_field(run, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RunFormatError(run.dir / "run.json", f"must be an int, got {seed!r}", field="config.seed")
    return seed


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


@dataclass(frozen=True, order=True)
class Variant:
    """A method and its effective hyper-parameter overrides (sorted ``(name, value)`` pairs)."""

    method: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``real`` or ``real[kl_beta=0.001,kl_target=old]``."""
        if not self.overrides:
            return self.method
        return f"{self.method}[{','.join(f'{k}={_fmt(v)}' for k, v in self.overrides)}]"

    @property
    def label(self) -> str:
        """Human label, e.g. ``REAL``, ``REAL τ=0.1``, ``REAL KL→old β=0.001``, ``GRPO bidirectional clip``."""
        o = dict(self.overrides)
        parts: list[str] = []
        if "tau" in o:
            parts.append(f"τ={_fmt(o.pop('tau'))}")
        if "kl_beta" in o or "kl_target" in o:
            default = asdict(DEFAULTS[self.method])
            beta = o.pop("kl_beta", default["kl_beta"])
            target = o.pop("kl_target", default["kl_target"])
            parts.append("no KL" if beta == 0 else f"KL→{target} β={_fmt(beta)}")
        if "clip_mode" in o:
            mode = o.pop("clip_mode")
            parts.append("no clip" if mode == "none" else f"{mode} clip")
        for name in ("eps_low", "eps_high"):
            if name in o:
                parts.append(f"ε_{name[4:]}={_fmt(o.pop(name))}")
        parts.extend(f"{k}={_fmt(v)}" for k, v in sorted(o.items()))
        return " ".join([LABELS[self.method], *parts])

    def hparams(self) -> dict[str, Any]:
        """The full resolved hyper-parameters of the variant."""
        return asdict(resolve_hparams(self.method, dict(self.overrides)))


def variant_from(method: str, hparams: Mapping[str, Any]) -> Variant:
    """The variant of ``method`` with (possibly partial) ``hparams``: the effective differences from
    ``DEFAULTS[method]`` after ``resolve_hparams`` (``kl_target`` dropped while ``kl_beta == 0``).

    Raises ``ValueError`` for an unknown method, name or value. This is how runs are matched to figures, so a
    trainer that plans runs for a figure checks its configs with it.
    """
    resolved = asdict(resolve_hparams(method, dict(hparams)))
    default = asdict(DEFAULTS[method])
    diff = {k: v for k, v in resolved.items() if not _same(v, default[k])}
    if resolved.get("kl_beta", 0) == 0:
        diff.pop("kl_target", None)
    return Variant(method, tuple(sorted(diff.items())))


def variant_of(run: RunLike) -> Variant:
    """The variant of a run: ``run.json``'s method and the effective overrides in ``config["hparams"]``.

    Raises ``RunFormatError`` (naming run.json and the field) when ``config.hparams`` is missing, not an
    object, or holds a name or value ``resolve_hparams`` rejects.
    """
    run = as_run(run)
    hp = _config_field(run, "hparams")
    where = run.dir / "run.json"
    if not isinstance(hp, Mapping):
        raise RunFormatError(where, f"must be an object, got {type(hp).__name__}", field="config.hparams")
    try:
        return variant_from(run.method, hp)
    except ValueError as e:
        raise RunFormatError(where, str(e), field="config.hparams") from None


class AnyPositive:
    """Spec value matching any number > 0 (e.g. "some KL beta")."""

    def __repr__(self) -> str:
        return "POSITIVE"

    def matches(self, value: Any) -> bool:
        return isinstance(value, int | float) and value > 0


POSITIVE = AnyPositive()


@dataclass(frozen=True)
class VariantSpec:
    """A variant a figure needs: ``method`` with exactly these overrides (a value, or ``POSITIVE``)."""

    label: str
    method: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def matches(self, variant: Variant) -> bool:
        if variant.method != self.method:
            return False
        got = dict(variant.overrides)
        want = dict(self.overrides)
        if set(got) != set(want):
            return False
        for k, v in want.items():
            if isinstance(v, AnyPositive):
                if not v.matches(got[k]):
                    return False
            elif not _same(got[k], v):
                return False
        return True

    def describe(self) -> str:
        """What runs of this spec look like, for error messages."""
        if not self.overrides:
            return f"{self.label} (method {self.method}, default hparams)"
        parts = ", ".join(
            f"{k}={'any value > 0' if isinstance(v, AnyPositive) else _fmt(v)}" for k, v in self.overrides
        )
        return f"{self.label} (method {self.method} with {parts}, other hparams default)"


def spec(label: str, method: str, **overrides: Any) -> VariantSpec:
    """``VariantSpec(label, method, sorted overrides)``."""
    return VariantSpec(label, method, tuple(sorted(overrides.items())))


class MissingVariantsError(ValueError):
    """A study needs variants the given runs do not contain; the message lists missing and available ones."""

    def __init__(self, what: str, missing: Sequence[VariantSpec], available: Mapping[str, Sequence[Run]]):
        lines = [f"{what}: no runs for {len(missing)} needed variant(s):"]
        lines += [f"  - {s.describe()}" for s in missing]
        if available:
            lines.append("the runs given hold:")
            lines += [
                f"  - {label}: {', '.join(r.name for r in runs)}" for label, runs in sorted(available.items())
            ]
        else:
            lines.append("no runs were given")
        super().__init__("\n".join(lines))
        self.missing = list(missing)


@dataclass(frozen=True)
class Selected:
    """Runs of one spec, sorted by seed."""

    spec: VariantSpec
    variant: Variant
    runs: tuple[Run, ...]
    seeds: tuple[int, ...]


def group_runs(runs: Iterable[RunLike]) -> dict[Variant, list[Run]]:
    """Runs by variant, each list sorted by seed. Raises ``ValueError`` if two runs share variant and seed."""
    out: dict[Variant, list[Run]] = {}
    for r in runs:
        run = as_run(r)
        out.setdefault(variant_of(run), []).append(run)
    for variant, rs in out.items():
        rs.sort(key=seed_of)
        seeds = [seed_of(r) for r in rs]
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            names = [r.name for r in rs if seed_of(r) in dup]
            raise ValueError(
                f"runs {', '.join(names)} are all {variant.label} with seed(s) {dup}; pass one run per seed"
            )
    return out


def select_variants(what: str, runs: Iterable[RunLike], specs: Sequence[VariantSpec]) -> list[Selected]:
    """For each spec, the runs of the one variant it matches, in spec order.

    Raises ``MissingVariantsError`` listing every spec without runs (and the variants the runs do hold), and
    ``ValueError`` when a spec matches two different variants (e.g. two KL betas).
    """
    groups = group_runs(runs)
    selected, missing = [], []
    for sp in specs:
        hits = [v for v in groups if sp.matches(v)]
        if not hits:
            missing.append(sp)
            continue
        if len(hits) > 1:
            raise ValueError(
                f"{what}: {sp.label} matches several variants ({', '.join(v.label for v in sorted(hits))}); "
                "pass the runs of one of them"
            )
        v = hits[0]
        selected.append(Selected(sp, v, tuple(groups[v]), tuple(seed_of(r) for r in groups[v])))
    if missing:
        raise MissingVariantsError(what, missing, {v.label: rs for v, rs in groups.items()})
    return selected
