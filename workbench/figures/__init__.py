"""Figure builders. Each ``build_*`` returns a matplotlib Figure; ``python -m workbench.figures`` saves them."""

from workbench.figures.fig1 import Fig1Params, build_fig1

__all__ = ["Fig1Params", "build_fig1"]
