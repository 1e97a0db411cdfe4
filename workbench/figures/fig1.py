"""Fig. 1: gradient magnitude of GRPO against ``s_t`` and of REAL against ``s_bar``, from the closed forms.

(a) correct rollouts (r = 1, A > 0): GRPO ``|A| e^{s_t}`` (Eq. 3) shrinks for hard, low-probability tokens and is
clipped above ``log(1 + eps_high)``; REAL ``(1/tau) / (1 + C+ e^{s_bar/tau})`` (Eq. 9) is largest for them.
(b) wrong rollouts (r = 0, A < 0): GRPO grows without bound; REAL saturates at ``1/tau``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from matplotlib.figure import Figure

from workbench.closed_forms import grpo_token_weight, real_weight_c
from workbench.figures.common import METHOD_COLORS, new_figure
from workbench.methods import DEFAULTS

NAME = "fig1_gradient_magnitude"
LOG_FLOAT64_MAX = 709.0  # e^x overflows float64 beyond x = 709.78


@dataclass(frozen=True)
class Fig1Params:
    """Everything Fig. 1 depends on; the paper's values are the defaults."""

    eps_low: float = DEFAULTS["grpo"].eps_low
    eps_high: float = DEFAULTS["grpo"].eps_high
    advantage: float = 1.0  # |A| of both panels (A = +|A| in (a), -|A| in (b))
    clip_mode: str = "vanilla"
    tau: float = DEFAULTS["real"].tau
    c_pos: float = 4.0
    c_neg: float = 4.0
    s_min: float = -2.0
    s_max: float = 2.0
    points: int = 801

    def __post_init__(self) -> None:
        for name in ("eps_low", "eps_high", "advantage", "tau", "c_pos", "c_neg", "s_min", "s_max"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not self.s_min < self.s_max:
            raise ValueError(f"s_min ({self.s_min}) must be below s_max ({self.s_max})")
        if self.advantage <= 0:
            raise ValueError(f"advantage is |A| and must be > 0, got {self.advantage}")
        if self.tau <= 0 or self.c_pos <= 0 or self.c_neg <= 0:
            raise ValueError("tau, c_pos and c_neg must be > 0")
        if not 0 <= self.eps_low < 1 or self.eps_high < 0:
            raise ValueError("need 0 <= eps_low < 1 and eps_high >= 0")
        if self.points < 2:
            raise ValueError("points must be >= 2")
        if math.log(self.advantage) + max(abs(self.s_min), abs(self.s_max)) > LOG_FLOAT64_MAX:
            raise ValueError(
                f"GRPO's weight |A| e^s overflows float64 on [{self.s_min}, {self.s_max}] with |A| = "
                f"{self.advantage}: keep log|A| + max|s| <= {LOG_FLOAT64_MAX:.0f}"
            )


def curves(p: Fig1Params) -> dict[str, np.ndarray]:
    """The four curves of Fig. 1 on a common grid ``s``."""
    s = np.linspace(p.s_min, p.s_max, p.points)
    return {
        "s": s,
        "grpo_pos": grpo_token_weight(s, p.advantage, p.eps_low, p.eps_high, p.clip_mode),
        "grpo_neg": grpo_token_weight(s, -p.advantage, p.eps_low, p.eps_high, p.clip_mode),
        "real_pos": real_weight_c(s, p.c_pos, p.tau, True),
        "real_neg": real_weight_c(s, p.c_neg, p.tau, False),
    }


def _stretches(keep: np.ndarray) -> list[slice]:
    """The maximal runs of True in ``keep``, as slices."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    return [slice(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _panel(ax, s, grpo, real, p: Fig1Params, title: str, note: str, legend_loc: str) -> None:
    # Draw GRPO with gaps where it is clipped (a vertical drop at the clip boundary is not part of the curve):
    # one line per unclipped stretch, so that no NaN is plotted.
    for k, part in enumerate(_stretches(grpo > 0)):
        label = r"GRPO $|W|$ vs $s_t$" if k == 0 else "_nolegend_"
        ax.plot(s[part], grpo[part], color=METHOD_COLORS["grpo"], lw=2.2, label=label)
    clipped = grpo == 0
    if clipped.any():
        ax.plot(
            s[clipped],
            grpo[clipped],
            color=METHOD_COLORS["grpo"],
            lw=2.2,
            ls=":",
            alpha=0.8,
            label="GRPO clipped (0)",
        )
    ax.plot(s, real, color=METHOD_COLORS["real"], lw=2.2, label=r"REAL $|W|$ vs $\bar{s}$")
    ax.axhline(1 / p.tau, color=METHOD_COLORS["real"], lw=0.8, ls="--", alpha=0.7)
    ax.text(
        p.s_min + 0.02 * (p.s_max - p.s_min),
        1 / p.tau,
        rf" REAL bound $1/\tau$ = {1 / p.tau:.3g}",
        va="bottom",
        fontsize=8,
        color=METHOD_COLORS["real"],
    )
    for x in (math.log1p(-p.eps_low), math.log1p(p.eps_high)):
        if p.s_min < x < p.s_max and p.clip_mode != "none":
            ax.axvline(x, color="0.5", lw=0.8, ls=":")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(r"relative log-probability: $s_t$ (GRPO), $\bar{s}$ (REAL)")
    ax.set_ylabel("gradient magnitude |W|")
    ax.set_xlim(p.s_min, p.s_max)
    top = max(np.nanmax(real), 1 / p.tau) * 1.6
    grpo_top = np.nanmax(grpo)
    ax.set_ylim(0, max(top, min(grpo_top * 1.05, 4 * top)))
    ax.text(
        0.98, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=8, color="0.25", wrap=True
    )
    ax.grid(alpha=0.25)
    ax.legend(loc=legend_loc, fontsize=8, frameon=False)


def build_fig1(p: Fig1Params | None = None) -> Figure:
    """Two panels as in the paper: (a) correct rollouts, A > 0; (b) wrong rollouts, A < 0."""
    p = p or Fig1Params()
    c = curves(p)
    fig, axes = new_figure(ncols=2)
    _panel(axes[0, 0], c["s"], c["grpo_pos"], c["real_pos"], p,
           f"(a) correct rollouts (r = 1, A = +{p.advantage:g})",
           "GRPO: hard (low-$s$) positives get weak updates\n(gradient misassignment)", "center right")  # fmt: skip
    _panel(axes[0, 1], c["s"], c["grpo_neg"], c["real_neg"], p,
           f"(b) wrong rollouts (r = 0, A = -{p.advantage:g})",
           "GRPO: unbounded, high-$s$ negatives dominate\n(gradient domination)", "upper left")  # fmt: skip
    fig.suptitle(
        rf"GRPO: $\varepsilon$ = [{p.eps_low:g}, {p.eps_high:g}], |A| = {p.advantage:g}, clip {p.clip_mode}   "
        rf"REAL: $\tau$ = {p.tau:g}, $C_+$ = {p.c_pos:g}, $C_-$ = {p.c_neg:g}   (closed forms, Eq. 3 and Eq. 9)",
        fontsize=9,
    )
    return fig


def fig1_meta(p: Fig1Params) -> dict:
    return {
        "parameters": asdict(p),
        "source": "closed forms: workbench.closed_forms (Eq. 3, Eq. 9)",
        "runs": [],
    }
