"""The symbols of the derivation, defined once: hover help on the Learn page and the inspector, and the glossary.

``GLOSSARY`` maps a symbol's name to ``(symbol as shown, definition)``. ``symbols_in(latex)`` names the symbols an
equation uses, so an equation's hover help lists exactly those; ``help_for(*names)`` joins their definitions
into one tooltip (Markdown, as Streamlit's ``help=`` renders it); ``abbr(name)`` is the symbol as an HTML
``<abbr>`` whose browser tooltip is its definition, for running text.
"""

from __future__ import annotations

import html
import re

SIGN_CONVENTION = (
    "Correct rollout (r = 1): |W| = (1/τ) / (1 + C+ e^{+s̄/τ}), exponent **+s̄/τ**: the weight falls as the rollout "
    "becomes likelier (s̄ grows), and the gradient raises its log-probs. Wrong rollout (r = 0): |W| = (1/τ) / "
    "(1 + C- e^{−s̄/τ}), exponent **−s̄/τ**: the weight grows as the wrong rollout becomes likelier, and the "
    "gradient lowers its log-probs. Either way the weight is largest where the policy rates the rollout on the "
    "wrong side of 0."
)

GLOSSARY: dict[str, tuple[str, str]] = {
    "s_t": (
        "s_t",
        "Token log-ratio log π_θ(o_t|q) − log π_old(o_t|q): how much likelier the policy being trained makes token "
        "t than the policy that sampled it. Its ratio is ρ_t = e^{s_t}. In a step's first mini-batch s_t = 0.",
    ),
    "s_bar": (
        "s̄",
        "A rollout's mean token log-ratio (Eq. 5), s̄ = (1/|o|) Σ_t s_t: REAL's logit for the rollout. s̄ > 0: the "
        "current policy rates the rollout above the policy that sampled it.",
    ),
    "A": (
        "A",
        "GRPO's advantage of a rollout: its reward minus the group's mean reward, divided by the group's standard "
        "deviation. Positive for correct rollouts of a mixed group, negative for wrong ones, 0 when every "
        "rollout of the group has the same reward.",
    ),
    "C+": (
        "C+",
        "For a correct rollout k (r = 1): C+ = 1 + Σ over the other correct rollouts i of e^{−s̄_i/τ} (Eq. 10). The "
        "1 is the anchor logit at 0. Large when other correct rollouts are still under-rated; the larger C+, "
        "the smaller k's weight.",
    ),
    "C-": (
        "C−",
        "For a wrong rollout k (r = 0): C− = 1 + Σ over the other wrong rollouts j of e^{+s̄_j/τ} (Eq. 10). Large "
        "when other wrong rollouts are still over-rated; the larger C−, the smaller k's weight.",
    ),
    "tau": ("τ", "REAL's temperature: the logits are s̄/τ, and every weight lies between 0 and 1/τ."),
    "W": (
        "|W|",
        "Gradient weight: the size of dL/d log π of a rollout (REAL: W_k of Eq. 9; each of its tokens carries "
        "W_k/|o|) or of a token (GRPO: |A| e^{s_t} when not clipped, Eq. 3).",
    ),
    "r": ("r", "The reward, read by REAL as a class label: r = 1 correct, r = 0 wrong."),
    "sign": ("e^{±s̄/τ}", SIGN_CONVENTION),
}

# How each symbol is written in the app's LaTeX (KaTeX and matplotlib mathtext).
_LATEX = {
    "s_t": r"s_t|s\^k_t",
    "s_bar": r"\\bar\{?s\}?",
    "A": r"(?<![A-Za-z\\])A(?![A-Za-z])",
    "C+": r"C_\+|C_\{\+\}",
    "C-": r"C_-|C_\{-\}",
    "tau": r"\\tau",
    "W": r"\\mathcal\{?W\}?",
    "r": r"(?<![A-Za-z\\])r\s*=",
}


def symbols_in(latex: str) -> list[str]:
    """The glossary names of the symbols ``latex`` uses, in glossary order (the sign convention with C+ or C-)."""
    found = [name for name, pattern in _LATEX.items() if re.search(pattern, latex)]
    if "C+" in found or "C-" in found:
        found.append("sign")
    return [n for n in GLOSSARY if n in found]


def help_for(*names: str) -> str:
    """One tooltip defining ``names`` (glossary keys), a paragraph each."""
    return "\n\n".join(f"**{GLOSSARY[n][0]}**: {GLOSSARY[n][1]}" for n in names)


def abbr(name: str, shown: str | None = None) -> str:
    """``shown`` (default: the symbol) as an HTML ``<abbr>`` whose hover text is the definition of ``name``."""
    symbol, text = GLOSSARY[name]
    plain = text.replace("**", "")
    return f'<abbr title="{html.escape(plain, quote=True)}">{html.escape(shown or symbol)}</abbr>'
