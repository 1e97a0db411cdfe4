"""Figure builders. Each ``build_*`` returns a matplotlib Figure; ``python -m workbench.figures`` saves them.

Figures from run directories come in two steps, ``*_data(runs, params) -> RunFigureData`` (reads the runs
through ``workbench.stats``) and ``build_*(data, params) -> Figure`` (draws only); ``RUN_FIGURES`` in
``workbench.figures.registry`` lists them by CLI name.
"""

from workbench.figures.allocation import AllocationParams, allocation_data, build_allocation
from workbench.figures.c_dynamics import CDynamicsParams, build_c_dynamics, c_dynamics_data
from workbench.figures.dynamics import DynamicsParams, build_dynamics, fig4_data, fig5_data
from workbench.figures.fig1 import Fig1Params, build_fig1
from workbench.figures.fig2 import Fig2Params, build_fig2, fig2_data
from workbench.figures.from_runs import RunFigureData
from workbench.figures.table4 import Table4Params, build_table4, table4_data, table4_markdown

__all__ = [
    "AllocationParams",
    "CDynamicsParams",
    "DynamicsParams",
    "Fig1Params",
    "Fig2Params",
    "RunFigureData",
    "Table4Params",
    "allocation_data",
    "build_allocation",
    "build_c_dynamics",
    "build_dynamics",
    "build_fig1",
    "build_fig2",
    "build_table4",
    "c_dynamics_data",
    "fig2_data",
    "fig4_data",
    "fig5_data",
    "table4_data",
    "table4_markdown",
]
