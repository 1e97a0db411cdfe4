"""The paper's gradient mechanisms, measured per step from logged tokens, for any method.

Which regime a run was in (how far the policy moved from the one that sampled):

- ``regime_summary(s, s_bar, tau)``: quantiles of ``|s_t|`` and ``s_bar``, of ``|s_bar| / tau`` and the share
  of rollouts with ``|s_bar| / tau > 1``. REAL's weights depend on ``s_bar`` only through ``e^{s_bar / tau}``:
  with ``|s_bar| / tau`` far below 1 they are fixed by the group's composition alone; only above 1 do the
  bounded weights act. ``tau`` is the method's, or for methods without one REAL's default (``REGIME_TAU``), so
  runs of every method can be placed on the same axis.

The two failure modes of the clip family (paper Sec. 3), from the logged per-token weights ``tokens.weight``
(``|A| rho_t I_t / |o|`` for the clip family, ``W_k / |o|`` for REAL; docs/run_format.md):

- *Misassignment in positives*: of the gradient mass on correct rollouts, the share on hard tokens. Hard by
  ratio: ``s_t < 0`` (the policy has lowered the token since sampling); hard by probability: ``pi_old(o_t) <
  p_hard``. ``*_share = sum_{hard} w / sum w`` and ``*_frac`` = the hard tokens' share of the count; their ratio
  ``*_lift = share / frac`` is 1 when a hard token gets the mean weight, below 1 when hard tokens are
  under-weighted (GRPO: ``|A| e^{s_t} < |A|`` exactly where ``s_t < 0``).
- *Domination in negatives*: of the gradient mass on wrong rollouts, the share carried by the top ``top``
  (default 1%) of their tokens ranked by ratio ``rho_t``; and over rollouts (every rollout whose group entered
  the loss), the share of the step's rollout weight held by the top ``top`` rollouts and its Gini coefficient.

The anchor's argument (paper Sec. 4, 5.3): ``sbar_correct`` and ``sbar_wrong``, the mean ``s_bar`` of correct
and of wrong rollouts; a classifier that separates them widens the gap, and without the anchor nothing stops
both from falling together.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.methods import DEFAULTS
from workbench.stats.load import Minibatches, read_tokens_joined
from workbench.stats.segments import seg_gini_top, seg_sum
from workbench.stats.variants import RunLike, as_run

REGIME_TAU: float = DEFAULTS["real"].tau  # the tau of |s_bar|/tau for methods that have none
REGIME_QUANTILES: tuple[float, ...] = (0.01, 0.5, 0.9, 0.99)
P_HARD: float = 0.5  # a token is hard by probability when pi_old(o_t) < P_HARD

REGIME_COLUMNS: tuple[str, ...] = (
    "s_abs_q50",
    "s_abs_q90",
    "s_abs_q99",
    "sbar_q01",
    "sbar_q50",
    "sbar_q99",
    "sbar_tau_q50",
    "sbar_tau_q90",
    "sbar_tau_q99",
    "sbar_tau_gt1",
)
MECHANISM_COLUMNS: tuple[str, ...] = (
    "pos_tokens",
    "pos_hard_s_share",
    "pos_hard_s_frac",
    "pos_hard_s_lift",
    "pos_hard_p_share",
    "pos_hard_p_frac",
    "pos_hard_p_lift",
    "neg_tokens",
    "neg_top_ratio_share",
    "top_rollout_share",
    "gini_rollout",
    "sbar_correct",
    "sbar_wrong",
    "sbar_gap",
)


def run_tau(method: str, hparams: dict | None) -> float:
    """The tau of ``|s_bar| / tau``: the method's own (REAL family), else ``REGIME_TAU``."""
    tau = (hparams or {}).get("tau")
    return float(tau) if tau is not None else REGIME_TAU


def _q(name: str, q: float) -> str:
    return f"{name}_q{round(q * 100):02d}"


def regime_summary(s: np.ndarray, s_bar: np.ndarray, tau: float) -> dict[str, float]:
    """Quantiles of ``|s_t|`` (tokens), of ``s_bar`` and ``|s_bar| / tau`` (rollouts), and the share of rollouts
    with ``|s_bar| / tau > 1``: the keys of ``REGIME_COLUMNS``. NaN where there is nothing to summarise; non-finite
    inputs are ignored."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    s = np.abs(np.asarray(s, dtype=np.float64))
    s = s[np.isfinite(s)]
    sb = np.asarray(s_bar, dtype=np.float64)
    sb = sb[np.isfinite(sb)]
    out: dict[str, float] = {}
    for q in (0.5, 0.9, 0.99):
        out[_q("s_abs", q)] = float(np.quantile(s, q)) if len(s) else math.nan
    for q in (0.01, 0.5, 0.99):
        out[_q("sbar", q)] = float(np.quantile(sb, q)) if len(sb) else math.nan
    ratio = np.abs(sb) / tau
    for q in (0.5, 0.9, 0.99):
        out[_q("sbar_tau", q)] = float(np.quantile(ratio, q)) if len(ratio) else math.nan
    out["sbar_tau_gt1"] = float((ratio > 1).mean()) if len(ratio) else math.nan
    return out


def share_and_frac(code: np.ndarray, n: int, weight: np.ndarray, flag: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per segment: ``share = sum_{flag} w / sum w``, ``frac = #flag / #all``, ``lift = share / frac``.

    ``share`` NaN where the segment's weight sums to 0; ``lift`` NaN where ``frac`` is 0."""
    w = np.asarray(weight, dtype=np.float64)
    flag = np.asarray(flag, dtype=bool)
    total = seg_sum(code, n, w)
    count = seg_sum(code, n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, seg_sum(code, n, np.where(flag, w, 0.0)) / total, np.nan)
        frac = np.where(count > 0, seg_sum(code, n, flag.astype(np.float64)) / count, np.nan)
        lift = np.where(frac > 0, share / frac, np.nan)
    return share, frac, lift


def top_share_by(code: np.ndarray, n: int, key: np.ndarray, weight: np.ndarray, top: float) -> np.ndarray:
    """Per segment of ``m`` elements: the share of ``sum(weight)`` held by the ``max(1, ceil(top * m))`` elements
    with the largest ``key`` (ties broken by position). NaN where the weights sum to 0 or the segment is empty."""
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top}")
    code = np.asarray(code, dtype=np.int64)
    key = np.asarray(key, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    order = np.lexsort((-key, code))  # by segment, then key descending
    code_s = code[order]
    m = seg_sum(code, n)
    start = np.cumsum(m) - m
    rank = np.arange(len(code_s)) - start[code_s]  # 0-based within the segment
    k = np.maximum(1, np.ceil(top * m - 1e-9)).astype(np.int64)
    in_top = rank < k[code_s]
    total = seg_sum(code, n, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, seg_sum(code_s, n, np.where(in_top, w[order], 0.0)) / total, np.nan)


def _group_means(code: np.ndarray, n: int, values: np.ndarray) -> np.ndarray:
    count = seg_sum(code, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, seg_sum(code, n, values) / np.maximum(count, 1), np.nan)


def mechanism_stats(
    run: RunLike,
    *,
    top: float = 0.01,
    p_hard: float = P_HARD,
    tau: float | None = None,
    minibatches: Minibatches = "later",
    used_only: bool = True,
) -> pd.DataFrame:
    """One row per step: the regime (``REGIME_COLUMNS``) and the mechanism statistics (``MECHANISM_COLUMNS``).

    Rollouts (and their tokens) of ``minibatches`` ("later": each step's later mini-batches, where the policy
    has moved; with ``--rollout-lag`` every mini-batch is off-policy) whose group entered the loss
    (``used_only``). ``tau`` defaults to ``run_tau`` of the run's method. Columns: ``run, step,
    REGIME_COLUMNS, MECHANISM_COLUMNS, tau``.
    """
    run = as_run(run)
    if tau is None:
        tau = run_tau(run.method, run.config.get("hparams"))
    if not 0 < p_hard <= 1:
        raise ValueError(f"p_hard must be in (0, 1], got {p_hard}")
    tok, rol, row = read_tokens_joined(
        run, ["s", "weight", "old_logp"], ["correct", "weight", "s_bar"], minibatches, used_only=used_only
    )
    steps = np.union1d(tok.steps, rol.steps)
    n = len(steps)
    t_code = np.searchsorted(steps, tok.steps)[tok.step_code]
    r_code = np.searchsorted(steps, rol.steps)[rol.step_code]
    t_correct = rol["correct"][row].astype(bool)
    s = tok["s"].astype(np.float64)
    w = tok["weight"].astype(np.float64)

    # regime, vectorised by step through pandas' grouped quantiles
    reg = pd.DataFrame(index=pd.Index(range(n)))
    tq = pd.Series(np.abs(s)).groupby(t_code)
    for q in (0.5, 0.9, 0.99):
        reg[_q("s_abs", q)] = tq.quantile(q)
    sbar = rol["s_bar"].astype(np.float64)
    rq = pd.Series(sbar).groupby(r_code)
    for q in (0.01, 0.5, 0.99):
        reg[_q("sbar", q)] = rq.quantile(q)
    ratio = pd.Series(np.abs(sbar) / tau).groupby(r_code)
    for q in (0.5, 0.9, 0.99):
        reg[_q("sbar_tau", q)] = ratio.quantile(q)
    reg["sbar_tau_gt1"] = pd.Series((np.abs(sbar) / tau > 1).astype(np.float64)).groupby(r_code).mean()

    out = pd.DataFrame({"run": run.name, "step": steps})
    for c in REGIME_COLUMNS:
        out[c] = reg[c].to_numpy() if c in reg else np.nan

    pos = t_correct
    out["pos_tokens"] = seg_sum(t_code[pos], n)
    hard_s = s[pos] < 0
    share, frac, lift = share_and_frac(t_code[pos], n, w[pos], hard_s)
    out["pos_hard_s_share"], out["pos_hard_s_frac"], out["pos_hard_s_lift"] = share, frac, lift
    hard_p = tok["old_logp"].astype(np.float64)[pos] < math.log(p_hard)
    share, frac, lift = share_and_frac(t_code[pos], n, w[pos], hard_p)
    out["pos_hard_p_share"], out["pos_hard_p_frac"], out["pos_hard_p_lift"] = share, frac, lift

    neg = ~t_correct
    out["neg_tokens"] = seg_sum(t_code[neg], n)
    out["neg_top_ratio_share"] = top_share_by(t_code[neg], n, s[neg], w[neg], top)

    gini, top_r = seg_gini_top(r_code, n, rol["weight"].astype(np.float64), top)
    out["top_rollout_share"], out["gini_rollout"] = top_r, gini
    r_correct = rol["correct"].astype(bool)
    out["sbar_correct"] = _group_means(r_code[r_correct], n, sbar[r_correct])
    out["sbar_wrong"] = _group_means(r_code[~r_correct], n, sbar[~r_correct])
    out["sbar_gap"] = out["sbar_correct"] - out["sbar_wrong"]
    out["tau"] = tau
    return out[["run", "step", *REGIME_COLUMNS, *MECHANISM_COLUMNS, "tau"]]


LOGGED_REGIME: tuple[str, ...] = ("sbar_tau_gt1", "sbar_tau_q90", "s_abs_q99")


def logged_regime(run: RunLike) -> dict[str, float]:
    """A run's regime from what the trainer logged per step (``REGIME_COLUMNS`` in the metrics table, over every
    update of the step): the mean over steps of ``sbar_tau_gt1`` (share of rollouts with ``|s_bar|/tau > 1``)
    and the medians over steps of ``sbar_tau_q90`` and ``s_abs_q99``, plus ``tau``. Empty for a run that did not
    log them (runs older than the regime columns, the engines' runs)."""
    run = as_run(run)
    try:
        met = run.read("metrics", columns=["step", *LOGGED_REGIME]).to_pandas()
    except (KeyError, ValueError):
        return {}
    if met.empty or not set(LOGGED_REGIME) <= set(met.columns):
        return {}
    vals = {c: met[c].to_numpy(dtype=np.float64) for c in LOGGED_REGIME}
    if not all(np.isfinite(v).any() for v in vals.values()):
        return {}
    return {
        "sbar_tau_gt1": float(np.nanmean(vals["sbar_tau_gt1"])),
        "sbar_tau_q90": float(np.nanmedian(vals["sbar_tau_q90"])),
        "s_abs_q99": float(np.nanmedian(vals["s_abs_q99"])),
        "tau": run_tau(run.method, run.config.get("hparams")),
    }
