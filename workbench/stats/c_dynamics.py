"""C+/C- dynamics: REAL's group constants and weights against group composition, logged or recomputed.

For a rollout ``k`` of a prompt group, REAL's weight is ``W_k = (1/tau) / (1 + C_k e^{+-s_bar_k/tau})`` with
``C+`` (correct) or ``C-`` (wrong) built from the *other* rollouts of its group (``workbench.closed_forms``:
``real_log_c``, ``real_weight``, ``real_group_usage``). REAL-family runs log ``log_c`` and ``weight`` per
rollout; for any run (a clip-family one, or a REAL run at another tau) ``real_weights(..., recompute=True)``
evaluates what REAL *would* have given on the same logged ``s_bar`` by calling those closed forms, group by
group over the whole run at once.

Group composition is ``group_correct``, the number of correct rollouts among the group's ``group_size``. At
``s_bar = 0`` (every first mini-batch) REAL's constants are ``C+ = group_correct`` and
``C- = group_size - group_correct``; later mini-batches show how they move.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.closed_forms import real_log_c, real_weight
from workbench.groups import GroupLayout, real_group_usage
from workbench.methods import DEFAULTS, LABELS, REAL_METHODS, RealHParams
from workbench.stats.load import Minibatches, check_minibatches, later_minibatch_mask, read_rollouts
from workbench.stats.segments import segment_codes
from workbench.stats.variants import RunLike, as_run

# closed_forms' names of the REAL-family variants
CLOSED_FORM_VARIANT = {"real": "real", "real_bce": "bce", "real_no_anchor": "no_anchor"}

_ROLLOUT_COLUMNS = [
    "minibatch",
    "rollout",
    "group",
    "group_size",
    "group_correct",
    "correct",
    "s_bar",
    "log_c",
    "weight",
    "used",
]


def recompute_real(
    step: np.ndarray,
    group: np.ndarray,
    s_bar: np.ndarray,
    correct: np.ndarray,
    *,
    method: str = "real",
    tau: float = DEFAULTS["real"].tau,
    group_filter: str = "mixed",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log_c, weight, used)`` per rollout, from the closed forms, for rollouts grouped by ``(step, group)``.

    ``method`` is a REAL-family method (real, real_bce, real_no_anchor). ``weight`` is ``W_k`` (0 in groups
    ``real_group_usage(..., group_filter)`` leaves out of the loss); nothing is normalised.
    """
    if method not in REAL_METHODS:
        raise ValueError(f"method={method!r} is not a REAL-family method ({', '.join(REAL_METHODS)})")
    RealHParams(tau=tau, group_filter=group_filter)  # validates tau and group_filter
    if len(s_bar) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    gkey = (np.asarray(step, dtype=np.int64) << 32) | np.asarray(group, dtype=np.int64)
    gcode, _ = segment_codes(gkey)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small [groups, G, G] ops: one thread is ~10x faster than contended OpenMP
    try:
        layout = GroupLayout.from_ids(torch.from_numpy(gcode))
        s = torch.from_numpy(np.asarray(s_bar, dtype=np.float64))
        r = torch.from_numpy(np.asarray(correct, dtype=np.float64))
        log_c = real_log_c(s, r, layout, tau, CLOSED_FORM_VARIANT[method])
        w = real_weight(s, log_c, tau, r > 0.5)
        used = layout.broadcast(real_group_usage(r, layout, group_filter))
        w = torch.where(used, w, torch.zeros_like(w))
    finally:
        torch.set_num_threads(threads)
    return log_c.numpy(), w.numpy(), used.numpy()


def _finite_or_nan(x: np.ndarray) -> np.ndarray:
    """float64 copy with +-inf as NaN (REAL w/o anchor has log C = inf in single-label groups; logs hold null)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, np.nan)


def real_weights(
    run: RunLike,
    *,
    recompute: bool | None = None,
    method: str | None = None,
    tau: float | None = None,
    minibatches: Minibatches = "later",
) -> pd.DataFrame:
    """One row per rollout: its group composition, ``s_bar``, REAL's ``log C`` and weight, and the logged weight.

    ``recompute`` (default: False for REAL-family runs, True for the clip family) evaluates REAL with the
    closed forms on the logged ``s_bar`` instead of reading the logged ``log_c`` and ``weight``. It uses
    ``method`` (default: the run's method if REAL-family, else ``real``), ``tau`` (default: the run's, else
    0.5) and the run's ``group_filter`` (REAL family) or ``mixed``.

    Columns: ``run, step, minibatch, rollout, group, group_size, group_correct, correct, s_bar, log_c,
    weight, used, logged_weight, source, tau``. ``logged_weight`` is ``rollouts.weight`` as the run logged it
    (GRPO: ``sum_t |A| rho_t I_t / |o|``); ``log_c`` is NaN where it is null or infinite (REAL w/o anchor in
    single-label groups); ``source`` says ``logged`` or e.g. ``recomputed REAL τ=0.5``.
    """
    run = as_run(run)
    check_minibatches(minibatches)
    is_real = run.method in REAL_METHODS
    recompute = (not is_real) if recompute is None else recompute
    hp: dict[str, Any] = run.config.get("hparams") or {}
    rol = read_rollouts(run, _ROLLOUT_COLUMNS, "all")
    step = rol.steps[rol.step_code]
    if recompute:
        m = method or (run.method if is_real else "real")
        t = float(
            tau
            if tau is not None
            else (hp.get("tau", DEFAULTS["real"].tau) if is_real else DEFAULTS["real"].tau)
        )
        gf = hp.get("group_filter", "mixed") if is_real else "mixed"
        log_c, weight, used = recompute_real(
            step, rol["group"], rol["s_bar"], rol["correct"], method=m, tau=t, group_filter=gf
        )
        source = f"recomputed {LABELS[m]} τ={t:g}"
    else:
        if not is_real:
            raise ValueError(f"{run.name} is a {run.method} run: it logs no log_c; pass recompute=True")
        if method is not None or tau is not None:
            raise ValueError("method and tau apply only with recompute=True")
        t = float(hp.get("tau", DEFAULTS["real"].tau))
        log_c, weight, used = rol["log_c"], rol["weight"], rol["used"]
        source = "logged"
    out = pd.DataFrame(
        {
            "run": run.name,
            "step": step,
            "minibatch": rol["minibatch"],
            "rollout": rol["rollout"],
            "group": rol["group"],
            "group_size": rol["group_size"],
            "group_correct": rol["group_correct"],
            "correct": rol["correct"],
            "s_bar": rol["s_bar"],
            "log_c": _finite_or_nan(log_c),
            "weight": np.asarray(weight, dtype=np.float64),
            "used": np.asarray(used, dtype=bool),
            "logged_weight": rol["weight"],
            "source": source,
            "tau": t,
        }
    )
    if minibatches == "later":
        out = out[later_minibatch_mask(rol)].reset_index(drop=True)
    return out


def c_by_composition(values: pd.DataFrame, *, per_step: bool = False, used_only: bool = True) -> pd.DataFrame:
    """Distribution of ``log C`` and of the weights per group composition, from ``real_weights`` rows.

    Groups rows by ``run, [step,] group_size, group_correct, correct`` (``used_only``: rows with ``used``).
    Columns: those keys, ``rollouts``, ``log_c_mean, log_c_q25, log_c_median, log_c_q75``,
    ``weight_mean, weight_q25, weight_median, weight_q75``, ``logged_weight_mean``.
    """
    need = {
        "run",
        "step",
        "group_size",
        "group_correct",
        "correct",
        "log_c",
        "weight",
        "logged_weight",
        "used",
    }
    missing = sorted(need - set(values.columns))
    if missing:
        raise ValueError(
            f"c_by_composition needs real_weights() rows; missing column(s) {', '.join(missing)}"
        )
    df = values[values["used"]] if used_only else values
    keys = ["run", *(["step"] if per_step else []), "group_size", "group_correct", "correct"]
    order = ["rollouts", "log_c_mean", "log_c_q25", "log_c_median", "log_c_q75"]
    order += ["weight_mean", "weight_q25", "weight_median", "weight_q75", "logged_weight_mean"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=df[c].dtype if c in df else float) for c in [*keys, *order]})
    g = df.groupby(keys, observed=True, sort=True)
    out = g.agg(
        rollouts=("log_c", "size"),
        log_c_mean=("log_c", "mean"),
        weight_mean=("weight", "mean"),
        logged_weight_mean=("logged_weight", "mean"),
    )
    q = g[["log_c", "weight"]].quantile([0.25, 0.5, 0.75]).unstack()
    for col in ("log_c", "weight"):
        for level, name in ((0.25, "q25"), (0.5, "median"), (0.75, "q75")):
            out[f"{col}_{name}"] = q[(col, level)]
    return out[order].reset_index()
