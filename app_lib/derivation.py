"""The derivation Eq. 3 -> Eq. 5/8 -> Eq. 9/10 and the appendix erratum, written once: the Learn page shows it
(``render``) and offers it as a printable PDF (``pdf_bytes``).

``BLOCKS`` is a list of ``(kind, text)``: ``h`` a heading, ``p`` a paragraph (Markdown with ``**bold**`` and
inline ``$math$``), ``eq`` a displayed equation, ``warn`` the erratum box. Every equation is written in the LaTeX
both KaTeX (the browser) and matplotlib's mathtext (the PDF) read: ``\\frac``, ``\\left(``, ``\\mathrm``,
``\\mathcal{O}``, ``\\mathbb{I}``; no ``\\text``, ``\\Big`` or ``cases`` (the PDF draws a displayed ``\\frac`` as ``\\dfrac``).

The PDF is drawn with matplotlib (``PdfPages`` and mathtext), already a dependency of the figures: the
derivation's formulas are within mathtext's reach, and a LaTeX toolchain or a PDF library would add an install
for one page of text.
"""

from __future__ import annotations

import io
import re

import matplotlib
import streamlit as st

from app_lib.glossary import help_for, symbols_in

TITLE = "Where REAL's gradient weights come from"

BLOCKS: list[tuple[str, str]] = [
    ("h", "1. GRPO: the token weight (Eq. 3)"),
    ("p", "With the token log-ratio and ratio"),
    ("eq", r"s_t = \log\pi_\theta(o_t|q) - \log\pi_{\mathrm{old}}(o_t|q), \qquad \rho_t = e^{s_t},"),
    (
        "p",
        r"GRPO maximises $\frac{1}{|o|}\sum_t \min(\rho_t A,\ \mathrm{clip}(\rho_t, 1-\varepsilon, 1+\varepsilon)"
        r" A)$. Where the clip is not active, $\nabla_\theta \rho_t = \rho_t \nabla_\theta \log\pi_\theta(o_t)$, so "
        "each token's log-prob is pushed with",
    ),
    ("eq", r"|\mathcal{W}_{\mathrm{GRPO}}| = |A|\,e^{s_t}\,\mathbb{I}_{\mathrm{clip}} \qquad (3)"),
    (
        "p",
        "It grows **exponentially** with $s_t$ and has no upper bound for wrong rollouts ($A<0$, the high side is "
        r"never clipped), and it vanishes for correct tokens the policy under-rates ($s_t \ll 0$).",
    ),
    ("h", "2. REAL: the loss (Eq. 5, Eq. 8)"),
    ("p", "Each rollout gets one logit, its mean token log-ratio"),
    ("eq", r"\bar{s}^k = \frac{1}{|o^k|}\sum_{t=1}^{|o^k|} s^k_t \qquad (5)"),
    (
        "p",
        r"and the group's loss separates correct ($\mathcal{O}_+$, reward $r = 1$) from wrong ($\mathcal{O}_-$, "
        r"$r = 0$) rollouts against an anchor logit at 0, with temperature $\tau$:",
    ),
    (
        "eq",
        r"\mathcal{L} = \log\left(1 + \sum_{i\in\mathcal{O}_+} e^{-\bar{s}^i/\tau}\right)"
        r" + \log\left(1 + \sum_{j\in\mathcal{O}_-} e^{\bar{s}^j/\tau}\right) \qquad (8)",
    ),
    ("h", "3. Differentiate: a correct rollout k (r = 1)"),
    ("p", r"Only the first term depends on $\bar{s}^k$ when $k\in\mathcal{O}_+$:"),
    (
        "eq",
        r"\frac{\partial \mathcal{L}}{\partial \bar{s}^k} = -\frac{1}{\tau}\,"
        r"\frac{e^{-\bar{s}^k/\tau}}{1 + \sum_{i\in\mathcal{O}_+} e^{-\bar{s}^i/\tau}}",
    ),
    (
        "p",
        r"Split rollout k off the sum, $C_+ = 1 + \sum_{i\neq k} e^{-\bar{s}^i/\tau}$, and divide numerator and "
        r"denominator by $e^{-\bar{s}^k/\tau}$: the exponent turns to $+\bar{s}^k/\tau$.",
    ),
    (
        "eq",
        r"\frac{\partial \mathcal{L}}{\partial \bar{s}^k} = -\frac{1}{\tau}\,\frac{e^{-\bar{s}^k/\tau}}{C_+ + "
        r"e^{-\bar{s}^k/\tau}} = -\frac{1}{\tau}\,\frac{1}{1 + C_+\,e^{+\bar{s}^k/\tau}}",
    ),
    ("h", "4. A wrong rollout k (r = 0)"),
    (
        "p",
        r"Only the second term depends on it; with $C_- = 1 + \sum_{j\neq k} e^{+\bar{s}^j/\tau}$, dividing by "
        r"$e^{+\bar{s}^k/\tau}$ turns the exponent to $-\bar{s}^k/\tau$:",
    ),
    (
        "eq",
        r"\frac{\partial \mathcal{L}}{\partial \bar{s}^k} = +\frac{1}{\tau}\,\frac{e^{\bar{s}^k/\tau}}{C_- + "
        r"e^{\bar{s}^k/\tau}} = +\frac{1}{\tau}\,\frac{1}{1 + C_-\,e^{-\bar{s}^k/\tau}}",
    ),
    ("h", "5. Result (Eq. 9/10) and the tokens"),
    (
        "eq",
        r"r = 1:\quad |\mathcal{W}_{\mathrm{REAL}}| = \frac{1}{\tau}\,\frac{1}{1 + C_+\,e^{+\bar{s}^k/\tau}}",
    ),
    (
        "eq",
        r"r = 0:\quad |\mathcal{W}_{\mathrm{REAL}}| = \frac{1}{\tau}\,\frac{1}{1 + C_-\,e^{-\bar{s}^k/\tau}} \qquad (9)",
    ),
    (
        "eq",
        r"C_+ = 1 + \sum_{i\in\mathcal{O}_+,\, i\neq k} e^{-\bar{s}^i/\tau}, \qquad "
        r"C_- = 1 + \sum_{j\in\mathcal{O}_-,\, j\neq k} e^{+\bar{s}^j/\tau} \qquad (10)",
    ),
    (
        "p",
        "The sign of the exponent follows the label: **correct (r = 1) takes $+\\bar{s}^k/\\tau$**, so the weight "
        "falls as a correct rollout becomes likelier; **wrong (r = 0) takes $-\\bar{s}^k/\\tau$**, so it rises as a "
        r"wrong one does. Both are **bounded by $1/\tau$** for *any* $C > 0$, since $1/(1 + C e^{\pm\bar{s}/\tau}) < 1$:"
        " the bound comes from the form, not from the anchor's 1 in $C$. Since "
        r"$\partial\bar{s}^k/\partial\log\pi(o^k_t) = 1/|o^k|$, every token of rollout k carries $W_k/|o^k|$.",
    ),
    ("h", "Erratum: the appendix flips two signs and drops a “1 +”"),
    (
        "warn",
        r"Appendix **Eq. 21** names $C = \sum_{i\neq k} e^{-\bar{s}^i/\tau}$, *without* the anchor's 1, so Eq. 20 "
        r"becomes $\frac{1}{\tau}\frac{1}{1 + (1 + C)\, e^{+\bar{s}^k/\tau}}$; **Eq. 22** prints "
        r"$\frac{1}{\tau}\frac{1}{1 + C e^{-\bar{s}^k/\tau}}$, which drops that “1 +” (Eq. 24 puts the 1 "
        "back into $C$, as Eq. 10 does). Eq. 22 (and Eq. 23) also has the wrong sign for a correct rollout: dividing "
        r"by $e^{-\bar{s}^k/\tau}$ gives $e^{+\bar{s}^k/\tau}$, not $e^{-\bar{s}^k/\tau}$. Appendix **Eq. 24** prints "
        r"$C_- = 1 + \sum_{j\neq k} e^{-\bar{s}^j/\tau}$, but the wrong rollouts enter Eq. 8 as "
        r"$e^{+\bar{s}^j/\tau}$. The main text's Eq. 9/10 are right: autograd agrees with them to float precision "
        "and not with the appendix (pinned by `tests/workbench/test_closed_form_properties.py`; see the *appendix* "
        "column of the worked example, which uses Eq. 23/24).",
    ),
]


def render() -> None:
    """The derivation on the page; every equation's hover help defines the symbols it uses."""
    for kind, text in BLOCKS:
        if kind == "h":
            st.subheader(text)
        elif kind == "p":
            st.markdown(text)
        elif kind == "eq":
            names = symbols_in(text)
            st.latex(text, help=help_for(*names) if names else None)
        else:
            st.warning(text, icon=":material/report:")


# ----------------------------------------------------------------------------------------------- the PDF

_MATH = re.compile(r"(\$[^$]+\$)")
_PAGE_W, _PAGE_H, _MARGIN = 8.27, 11.69, 0.8  # A4, inches
# Computer Modern maths, serif text; unhinted glyphs, so that text measured by Agg is as wide as in the PDF
RC = {"mathtext.fontset": "cm", "font.family": "serif", "text.hinting": "none"}


def _plain(text: str) -> str:
    """Markdown to mathtext-ready text: no emphasis marks or code ticks; ``$`` kept for inline math."""
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\\$])\*(.+?)\*", r"\1", text)
    return text.replace("`", "")


def _words(text: str) -> list[str]:
    """Words of a paragraph; inline math is never split, and stays glued to the punctuation around it."""
    glued = _MATH.sub(lambda m: m.group(1).replace(" ", "\x00"), _plain(text))
    return [w.replace("\x00", " ") for w in glued.split()]


class _Layout:
    """Text placed top-down on A4 figures, measured before it is placed, a new page when one is full. Pages are
    measured at 72 dpi, the PDF's own; a paragraph's words are placed one by one on a shared baseline."""

    DPI = 72

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self._figure, self._canvas = Figure, FigureCanvasAgg
        self.figs: list = []
        self._new_page()

    def _new_page(self) -> None:
        fig = self._figure(figsize=(_PAGE_W, _PAGE_H), dpi=self.DPI)
        self._canvas(fig)
        self.figs.append(fig)
        self.renderer = fig.canvas.get_renderer()
        self.y = _PAGE_H - _MARGIN

    def size(self, text: str, fontsize: float, weight: str = "normal") -> tuple[float, float, float]:
        """Width, height and descent (below the baseline) in inches of ``text`` as drawn."""
        fig = self.figs[-1]
        t = fig.text(0, 0.5, text, fontsize=fontsize, weight=weight, va="baseline")
        box = t.get_window_extent(self.renderer)
        t.remove()
        base = 0.5 * fig.bbox.height
        return box.width / self.DPI, box.height / self.DPI, max(0.0, base - box.y0) / self.DPI

    def _room(self, height: float) -> None:
        if self.y - height < _MARGIN:
            self._new_page()

    def put(self, text: str, fontsize: float, gap: float = 0.06, center: bool = False, **kw) -> None:
        _, h, _ = self.size(text, fontsize, kw.get("weight", "normal"))
        self._room(h)
        x = _PAGE_W / 2 if center else _MARGIN
        self.figs[-1].text(x / _PAGE_W, self.y / _PAGE_H, text, fontsize=fontsize, va="top",
                           ha="center" if center else "left", **kw)  # fmt: skip
        self.y -= h + gap

    def paragraph(self, text: str, fontsize: float, **kw) -> None:
        """``text`` wrapped to the page's width (measured), never inside inline math; words share a baseline."""
        room = _PAGE_W - 2 * _MARGIN
        space = 0.3 * fontsize / 72  # a serif word space, 0.3 em
        lines: list[list[tuple[str, float, float, float]]] = [[]]
        used = 0.0
        for word in _words(text):
            w, h, d = self.size(word, fontsize)
            if lines[-1] and used + space + w > room:
                lines.append([])
                used = 0.0
            used += w + (space if lines[-1] else 0.0)
            lines[-1].append((word, w, h, d))
        for line in lines:
            ascent = max(h - d for _, _, h, d in line)
            descent = max(d for *_, d in line)
            self._room(ascent + descent)
            base, x = self.y - ascent, _MARGIN
            for word, w, _, _ in line:
                self.figs[-1].text(x / _PAGE_W, base / _PAGE_H, word, fontsize=fontsize, va="baseline", **kw)
                x += w + space
            self.y = base - descent - 0.04
        self.y -= 0.06


def pages() -> list:
    """The derivation laid out on A4 pages (matplotlib Figures): headings, text, equations, erratum in order."""
    page = _Layout()
    page.put(TITLE, 17.0, gap=0.1, weight="bold")
    page.put("Rewards as Labels, main text Eq. 3 to Eq. 9/10 (REAL workbench; docs/derivation.md)", 9.5, gap=0.2,
             color="0.35")  # fmt: skip
    for kind, text in BLOCKS:
        if kind == "h":
            page.y -= 0.15
            page.put(text, 13.0, gap=0.1, weight="bold")
        elif kind == "eq":
            page.y -= 0.04
            page.put("$" + text.replace(r"\frac", r"\dfrac") + "$", 13.0, gap=0.16, center=True)
        elif kind == "p":
            page.paragraph(text, 10.5)
        else:
            page.y -= 0.05
            page.paragraph("Erratum. " + text, 10.0, color="#7a3b00")
    return page.figs


def pdf_bytes() -> bytes:
    """The derivation as an A4 PDF (``pages`` through matplotlib's PdfPages and mathtext)."""
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        figs = pages()
        with PdfPages(buf, metadata={"Title": TITLE, "Creator": "REAL workbench"}) as pdf:
            for fig in figs:
                pdf.savefig(fig)
    return buf.getvalue()
