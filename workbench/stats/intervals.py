"""Hard-token intervals (paper Fig. 2): where token ratios fall, and what each clip mode throws away.

For every token, with ``rho = e^{s}`` and the run's ``eps_low``, ``eps_high``, one of four intervals:

    "<1-eps"     rho <  1 - eps_low
    "[1-eps,1)"  1 - eps_low <= rho < 1
    "[1,1+eps]"  1 <= rho <= 1 + eps_high
    ">1+eps"     rho >  1 + eps_high

compared in log space (``s`` against ``log1p(-eps_low)``, 0, ``log1p(eps_high)``), split by the sign of the
rollout's advantage (``workbench.stats.load.advantage_sign``). A clip mode discards a token when
``keep_indicator(s, A, eps_low, eps_high, mode)`` from ``workbench.closed_forms`` is False (vanilla: A > 0 above
``1 + eps_high`` and A < 0 below ``1 - eps_low``; bidirectional: every token outside the interval) *and* the token
carries gradient (A != 0): a token with A = 0 (its group's rollouts all got the same reward) has none to discard
under either rule. This is how verl counts its clip fraction, and how ``workbench.objectives`` logs ``clip_frac``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.closed_forms import keep_indicator
from workbench.methods import CLIP_METHODS
from workbench.stats.load import Minibatches, read_tokens_joined
from workbench.stats.segments import seg_sum
from workbench.stats.variants import RunLike, as_run

INTERVALS: tuple[str, ...] = ("<1-eps", "[1-eps,1)", "[1,1+eps]", ">1+eps")
SIGNS: tuple[str, ...] = ("A>0", "A<0", "A=0")
CLIP_MODES_COMPARED: tuple[str, ...] = ("vanilla", "bidirectional")
DEFAULT_EPS = 0.2  # used for REAL-family runs, which have no eps


def run_eps(run: RunLike, eps_low: float | None = None, eps_high: float | None = None) -> tuple[float, float]:
    """``(eps_low, eps_high)``: the arguments where given, else the run's clip hyper-parameters, else 0.2."""
    run = as_run(run)
    hp = run.config.get("hparams") or {}
    if run.method in CLIP_METHODS:
        lo = hp.get("eps_low", DEFAULT_EPS) if eps_low is None else eps_low
        hi = hp.get("eps_high", DEFAULT_EPS) if eps_high is None else eps_high
    else:
        lo = DEFAULT_EPS if eps_low is None else eps_low
        hi = DEFAULT_EPS if eps_high is None else eps_high
    if not (0 <= lo < 1 and hi >= 0):
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {lo}, {hi}")
    return float(lo), float(hi)


def interval_code(s: np.ndarray, eps_low: float, eps_high: float) -> np.ndarray:
    """Index into ``INTERVALS`` of each log-ratio ``s`` (int8)."""
    lo, hi = math.log1p(-eps_low), math.log1p(eps_high)
    s = np.asarray(s, dtype=np.float64)  # the precision keep_indicator compares in
    return (
        (s >= lo).astype(np.int8) + (s >= 0).astype(np.int8) + (s > hi).astype(np.int8)
    )  # 0: below, 1: [lo,0), 2: [0,hi], 3: above


def _sign_code(sign: np.ndarray) -> np.ndarray:
    """+1 -> 0 ("A>0"), -1 -> 1 ("A<0"), 0 -> 2 ("A=0")."""
    return np.where(sign > 0, 0, np.where(sign < 0, 1, 2)).astype(np.int8)


def token_intervals(
    run: RunLike,
    *,
    eps_low: float | None = None,
    eps_high: float | None = None,
    minibatches: Minibatches = "later",
) -> pd.DataFrame:
    """Per step, the share of tokens in each ratio interval, split by the sign of the advantage.

    Columns: ``run, step, sign, interval, tokens, share, eps_low, eps_high``; one row for every step, sign
    (``SIGNS``) and interval (``INTERVALS``), zeros included. ``share = tokens / tokens of the step`` (the 12
    shares of a step sum to 1). ``sign`` and ``interval`` are ordered categoricals.
    """
    run = as_run(run)
    lo, hi = run_eps(run, eps_low, eps_high)
    tok, rol, row = read_tokens_joined(run, ["s"], ["sign"], minibatches)
    n_steps = len(tok.steps)
    cell = tok.step_code * 12 + _sign_code(rol["sign"])[row] * 4 + interval_code(tok["s"], lo, hi)
    counts = seg_sum(cell, n_steps * 12).reshape(n_steps, 3, 4)
    per_step = counts.sum(axis=(1, 2))
    step_idx, sign_idx, int_idx = np.meshgrid(np.arange(n_steps), np.arange(3), np.arange(4), indexing="ij")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts / per_step[:, None, None]
    return pd.DataFrame(
        {
            "run": run.name,
            "step": tok.steps[step_idx.ravel()],
            "sign": pd.Categorical.from_codes(sign_idx.ravel(), categories=SIGNS, ordered=True),
            "interval": pd.Categorical.from_codes(int_idx.ravel(), categories=INTERVALS, ordered=True),
            "tokens": counts.ravel(),
            "share": share.ravel(),
            "eps_low": lo,
            "eps_high": hi,
        }
    )


def clip_discards(
    run: RunLike,
    *,
    eps_low: float | None = None,
    eps_high: float | None = None,
    minibatches: Minibatches = "later",
) -> pd.DataFrame:
    """Per step and clip mode (vanilla, bidirectional), the tokens that mode would discard on this run's tokens.

    Columns: ``run, step, clip_mode, tokens, with_gradient, discarded, share, eps_low, eps_high``. ``tokens``: all
    tokens of the step; ``with_gradient``: those with A != 0; ``discarded``: tokens with A != 0 for which
    ``keep_indicator(s, A, eps_low, eps_high, clip_mode)`` is False, with ``A`` the advantage's sign as in
    ``token_intervals``; ``share = discarded / tokens`` (verl's clip fraction: clipped tokens that carry gradient
    over all response tokens). Tokens with A = 0 are never counted as discarded: they carry no gradient under
    either rule, so counting them (as the bidirectional rule's interval test alone would) overstates what it
    removes.
    """
    run = as_run(run)
    lo, hi = run_eps(run, eps_low, eps_high)
    tok, rol, row = read_tokens_joined(run, ["s"], ["sign"], minibatches)
    n_steps = len(tok.steps)
    s = tok["s"]
    sign = rol["sign"][row].astype(np.float32)
    total = seg_sum(tok.step_code, n_steps)
    active = sign != 0
    with_gradient = seg_sum(tok.step_code[active], n_steps)
    frames = []
    for mode in CLIP_MODES_COMPARED:
        dropped = active & ~keep_indicator(s, sign, lo, hi, mode)
        disc = seg_sum(tok.step_code[dropped], n_steps)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = disc / total
        frames.append(
            pd.DataFrame(
                {
                    "run": run.name,
                    "step": tok.steps,
                    "clip_mode": mode,
                    "tokens": total,
                    "with_gradient": with_gradient,
                    "discarded": disc,
                    "share": share,
                    "eps_low": lo,
                    "eps_high": hi,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["clip_mode"] = pd.Categorical(out["clip_mode"], categories=CLIP_MODES_COMPARED, ordered=True)
    return out.sort_values(["step", "clip_mode"], ignore_index=True)
