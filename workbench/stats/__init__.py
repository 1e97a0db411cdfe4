"""Statistics over run directories (docs/run_format.md), vectorised over whole runs, returning tidy DataFrames.

Every statistic takes one run (a ``workbench.runlog.Run`` or a run directory path) plus keyword options of
plain types, and returns a pandas DataFrame with a ``run`` column. ``collect(stat, runs, **kw)`` runs it over
many runs and adds ``variant, label, method, seed``; ``seed_band`` averages over seeds with a band.

- Hard-token intervals (Fig. 2): ``token_intervals``, ``clip_discards``.
- Gradient allocation: ``gradient_allocation``.
- C+/C- dynamics: ``real_weights`` (logged, or recomputed with the closed forms), ``c_by_composition``.
- Mechanisms and regime (the off-policy study): ``mechanism_stats`` (misassignment in positives, domination in
  negatives, s_bar of correct and wrong rollouts, quantiles of |s_bar|/tau), ``regime_summary``.
- Training dynamics: ``training_dynamics`` (with the validation before training as step 0), ``final_metric``,
  ``initial_validation``.
- Runs and variants: ``describe_runs``, ``variant_of``, ``group_runs``, ``select_variants``, ``expand_run_paths``.

Ratio statistics use only each step's later mini-batches by default (``minibatches="later"``): ``s`` is 0 in
the first one.
"""

from workbench.stats.allocation import ALLOCATION_COLUMNS, gradient_allocation
from workbench.stats.c_dynamics import c_by_composition, real_weights, recompute_real
from workbench.stats.dynamics import DYNAMICS_METRICS, final_metric, initial_validation, training_dynamics
from workbench.stats.intervals import INTERVALS, SIGNS, clip_discards, run_eps, token_intervals
from workbench.stats.load import MINIBATCH_CHOICES, MINIBATCH_NOTE
from workbench.stats.mechanisms import MECHANISM_COLUMNS, REGIME_COLUMNS, mechanism_stats, regime_summary
from workbench.stats.seeds import BAND_CHOICES, BAND_NOTE, collect, describe_runs, seed_band
from workbench.stats.variants import (
    POSITIVE,
    MissingVariantsError,
    Selected,
    Variant,
    VariantSpec,
    as_run,
    expand_run_paths,
    group_runs,
    seed_of,
    select_variants,
    spec,
    variant_of,
)

__all__ = [
    "ALLOCATION_COLUMNS",
    "BAND_CHOICES",
    "BAND_NOTE",
    "DYNAMICS_METRICS",
    "INTERVALS",
    "MECHANISM_COLUMNS",
    "MINIBATCH_CHOICES",
    "MINIBATCH_NOTE",
    "POSITIVE",
    "REGIME_COLUMNS",
    "SIGNS",
    "MissingVariantsError",
    "Selected",
    "Variant",
    "VariantSpec",
    "as_run",
    "c_by_composition",
    "clip_discards",
    "collect",
    "describe_runs",
    "expand_run_paths",
    "final_metric",
    "gradient_allocation",
    "group_runs",
    "initial_validation",
    "mechanism_stats",
    "real_weights",
    "recompute_real",
    "regime_summary",
    "run_eps",
    "seed_band",
    "seed_of",
    "select_variants",
    "spec",
    "token_intervals",
    "training_dynamics",
    "variant_of",
]
