"""Eq. 9/10 with one rollout's numbers, as the LaTeX lines the Learn page shows (``aligned``: one display): every number substituted into
the formula, then worked out. The numbers come from ``workbench.worked_example.RolloutArithmetic`` (C and W from
the method's closed form); this module only writes them down."""

from __future__ import annotations

import math

from workbench.worked_example import RolloutArithmetic

MAX_TERMS = 6  # terms of a sum written out; a longer sum shows its first and last ones around "\cdots"


def num(x: float, digits: int = 4) -> str:
    """``x`` for a formula: ``digits`` significant digits, no exponent below 1e5, a real minus sign."""
    if math.isnan(x):
        return r"\mathrm{NaN}"
    if not math.isfinite(x):
        return r"\infty" if x > 0 else r"-\infty"
    text = f"{x:.{digits}g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.{digits}e}"
    if "e" in text:
        mant, exp = text.split("e")
        text = rf"{mant}\times 10^{{{int(exp)}}}"
    return text.replace("-", "{-}") if text.startswith("-") else text


def _sum(items: list[str]) -> str:
    if len(items) > MAX_TERMS:
        items = [*items[: MAX_TERMS - 1], r"\cdots", items[-1]]
    return " + ".join(items)


def _exp_of(sign: int, s_bar: float, tau: float) -> str:
    """``e^{sign (s_bar) / tau}`` with the numbers in."""
    return rf"e^{{{'+' if sign > 0 else '-'}({num(s_bar)})/{num(tau)}}}"


def c_lines(a: RolloutArithmetic) -> list[str]:
    """C+ (correct) or C- (wrong) of rollout k: the definition, the numbers in, each term, the value."""
    name = "C_+" if a.positive else "C_-"
    cls, idx = (r"\mathcal{O}_+", "i") if a.positive else (r"\mathcal{O}_-", "j")
    sgn = "-" if a.positive else "+"
    if a.method == "real_bce":
        return [r"C &= 1 \quad (\mathrm{BCE}: \mathrm{every\ rollout\ on\ its\ own})"]
    same_def = rf"\sum_{{{idx}\in{cls},\,{idx}\neq k}} e^{{{sgn}\bar{{s}}^{idx}/\tau}}"
    same_num = [_exp_of(-a.sign, s, a.tau) for _, s, _ in a.same]
    same_val = [num(t) for *_, t in a.same]
    if a.method == "real":
        definition = rf"{name} &= 1 + {same_def}"
        if not a.same:
            return [
                definition
                + rf" = 1 \quad (\mathrm{{no\ other\ {'correct' if a.positive else 'wrong'}\ rollout}})"
            ]
        return [
            definition,
            rf"&= 1 + {_sum(same_num)}",
            rf"&= 1 + {_sum(same_val)} = {num(a.c_from_terms, 6)}",
        ]
    # REAL w/o anchor: the other class's mass M enters as 1 / M
    other_cls, oidx, osgn = (r"\mathcal{O}_-", "j", "+") if a.positive else (r"\mathcal{O}_+", "i", "-")
    definition = (
        rf"{name} &= {same_def} + 1 \Big/ \sum_{{{oidx}\in{other_cls}}} e^{{{osgn}\bar{{s}}^{oidx}/\tau}}"
    )
    if not a.other:
        return [definition + r" = \infty \quad (\mathrm{no\ rollout\ of\ the\ other\ class})"]
    other_num = [_exp_of(a.sign, s, a.tau) for _, s, _ in a.other]
    other_val = [num(t) for *_, t in a.other]
    lead_num = (_sum(same_num) + " + ") if a.same else ""
    lead_val = (_sum(same_val) + " + ") if a.same else ""
    return [
        definition,
        rf"&= {lead_num}1 \big/ ({_sum(other_num)})",
        rf"&= {lead_val}1 / ({_sum(other_val)}) = {num(a.c_from_terms, 6)}",
    ]


def weight_lines(a: RolloutArithmetic) -> list[str]:
    """|W_k| of Eq. 9 with the label's sign in the exponent, the numbers in, and the value."""
    name = "C" if a.method == "real_bce" else ("C_+" if a.positive else "C_-")
    sgn = "+" if a.sign > 0 else "-"
    label = r"r = 1,\ \mathrm{correct}" if a.positive else r"r = 0,\ \mathrm{wrong}"
    return [
        rf"|\mathcal{{W}}_k| &= \frac{{1}}{{\tau}}\,\frac{{1}}{{1 + {name}\,e^{{{sgn}\bar{{s}}^k/\tau}}}}"
        rf"\qquad ({label}:\ \mathrm{{exponent}}\ {sgn}\bar{{s}}^k/\tau)",
        rf"&= \frac{{1}}{{{num(a.tau)}}}\,\frac{{1}}{{1 + {num(a.c_from_terms, 6)}"
        rf"\times {_exp_of(a.sign, a.s_bar, a.tau)}}}",
        rf"&= {num(1 / a.tau)}\times\frac{{1}}{{1 + {num(a.c_from_terms, 6)}"
        rf"\times {num(a.exp_term, 6)}}} = {num(1 / a.tau)}\times\frac{{1}}{{{num(a.denominator, 6)}}}"
        rf" = {num(a.weight_from_terms, 6)}",
    ]


def aligned(lines: list[str]) -> str:
    """``lines`` (each with one ``&=``) as one display, the equals signs under each other."""
    return r"\begin{aligned}" + r" \\[6pt] ".join(lines) + r"\end{aligned}"
