"""Per-segment reductions over flat numpy arrays (a segment is a step, or a step and a class).

Every function takes ``code`` (int64 segment index of each element, ``0 <= code < n``) and works with
``np.bincount`` or one global sort, so a whole run is reduced in a few vectorised passes.
"""

from __future__ import annotations

import numpy as np


def segment_codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(code, uniques)`` with ``uniques[code] == keys``; ``uniques`` ascending.

    Linear time when ``keys`` is already sorted (steps concatenated in order), ``np.unique`` otherwise.
    """
    keys = np.asarray(keys)
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), keys[:0].astype(np.int64)
    if np.all(keys[1:] >= keys[:-1]):
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        code = np.zeros(len(keys), dtype=np.int64)
        code[starts[1:]] = 1
        return np.cumsum(code), keys[starts].astype(np.int64)
    uniques, code = np.unique(keys, return_inverse=True)
    return code.astype(np.int64), uniques.astype(np.int64)


def seg_sum(code: np.ndarray, n: int, values: np.ndarray | None = None) -> np.ndarray:
    """Sum of ``values`` (count if None) per segment, float64 (counts int64)."""
    if values is None:
        return np.bincount(code, minlength=n).astype(np.int64)
    return np.bincount(code, weights=np.asarray(values, dtype=np.float64), minlength=n)


def seg_pearson(code: np.ndarray, n: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` within each segment (two-pass, float64).

    NaN where a segment has fewer than 2 elements or ``x`` or ``y`` is constant in it.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    cnt = seg_sum(code, n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = seg_sum(code, n, x) / cnt
        my = seg_sum(code, n, y) / cnt
        dx = x - mx[code]
        dy = y - my[code]
        sxy = seg_sum(code, n, dx * dy)
        sxx = seg_sum(code, n, dx * dx)
        syy = seg_sum(code, n, dy * dy)
        # relative tolerance: a variance at rounding level is a constant column
        tiny_x = sxx <= 1e-24 * np.maximum(seg_sum(code, n, x * x), 1e-300)
        tiny_y = syy <= 1e-24 * np.maximum(seg_sum(code, n, y * y), 1e-300)
        r = sxy / np.sqrt(sxx * syy)
    r[(cnt < 2) | tiny_x | tiny_y] = np.nan
    return np.clip(r, -1.0, 1.0)


def sort_within(code: np.ndarray, n: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort non-negative ``w`` ascending within each segment by one int64 sort.

    Returns ``(code_sorted, w_sorted, rank)`` with ``rank`` the 1-based position within its segment. The key
    is ``code << 32 | bits(float32 w)``: for non-negative IEEE floats the bit pattern orders like the value.
    Raises ``ValueError`` on negative or NaN weights.
    """
    w32 = np.asarray(w, dtype=np.float32)
    if not np.all(w32 >= 0):  # also False for NaN
        raise ValueError("gradient weights must be >= 0 and not NaN")
    w32 = np.abs(w32)  # -0.0 -> +0.0, whose bits sort first
    key = (np.asarray(code, dtype=np.int64) << 32) | w32.view(np.uint32).astype(np.int64)
    key.sort()
    code_s = key >> 32
    w_s = (key & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    starts = np.zeros(n, dtype=np.int64)
    counts = seg_sum(code_s, n)
    starts[1:] = np.cumsum(counts)[:-1]
    rank = np.arange(1, len(key) + 1, dtype=np.int64) - starts[code_s]
    return code_s, w_s, rank


def seg_gini_top(code: np.ndarray, n: int, w: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """Per segment: Gini coefficient of ``w`` and the share of ``sum(w)`` held by its largest ``ceil(top * m)``.

    With ``w_(1) <= ... <= w_(m)`` in a segment of ``m`` elements:
    ``Gini = 2 sum_i i w_(i) / (m sum_i w_(i)) - (m + 1) / m`` (0: all equal; ``(m - 1) / m``: one holds all),
    ``top share = sum_{i > m - k} w_(i) / sum_i w_(i)`` with ``k = max(1, ceil(top * m))``.
    Both NaN where the segment's weights sum to 0 (or it is empty).
    """
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top}")
    code_s, w_s, rank = sort_within(code, n, w)
    m = seg_sum(code_s, n)
    total = seg_sum(code_s, n, w_s)
    k = np.maximum(1, np.ceil(np.round(top * m, 9))).astype(np.int64)
    in_top = rank > (m - k)[code_s]
    top_sum = seg_sum(code_s, n, np.where(in_top, w_s, 0.0))
    ranked = seg_sum(code_s, n, rank * w_s.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        gini = 2.0 * ranked / (m * total) - (m + 1.0) / m
        share = top_sum / total
    undefined = ~(total > 0)
    gini[undefined] = np.nan
    share[undefined] = np.nan
    return gini, share
