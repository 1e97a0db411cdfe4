"""The figures drawn from run directories, by CLI name: parameters, data step, drawing step, extra files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from workbench.figures import allocation, c_dynamics, dynamics, fig2, table4
from workbench.figures.common import save_figure
from workbench.figures.from_runs import RunFigureData
from workbench.stats.variants import RunLike, VariantSpec


@dataclass(frozen=True)
class RunFigure:
    cli: str
    name: str
    summary: str
    description: str
    specs: tuple[VariantSpec, ...]
    params: type
    data: Callable[[Sequence[RunLike], Any], RunFigureData]
    build: Callable[[RunFigureData, Any], Figure]
    extra_files: Callable[[RunFigureData, Path], list[Path]] | None = None
    plotted: tuple[str, ...] = ()  # frames of RunFigureData holding exactly what is drawn (means, bands)

    def csv_text(self, data: RunFigureData) -> str | None:
        """The CSV of this figure's numbers that ``make`` writes (and the app's CSV download holds): the drawn
        frames (``plotted_table``) or, for Table 4, the table; None for a figure without one."""
        if self.plotted:
            return plotted_table(data, self.plotted).to_csv(index=False, float_format=CSV_FLOAT_FORMAT)
        if self.cli == "table4":
            return table4.table4_csv(data)
        return None

    def make(self, runs: Sequence[RunLike], params: Any, out_dir: Path, command: str) -> list[Path]:
        """Read the runs, draw, and write PNG + PDF + JSON sidecar (and any extra files) into ``out_dir``.

        ``command`` is the command line recorded in the sidecar. With ``plotted``, the drawn values are also
        written to ``<name>.csv`` (``plotted_values``), which the sidecar names.
        """
        data = self.data(runs, params)
        paths = list(self.extra_files(data, out_dir)) if self.extra_files else []
        meta = data.meta(params)
        if self.plotted:
            paths.append(plotted_values(data, self.plotted, out_dir / f"{self.name}.csv"))
            meta["plotted_values"] = {
                "file": f"{self.name}.csv",
                "frames": list(self.plotted),
                "note": "one row per drawn point: mean over seeds, band lo/hi, n_seeds (column frame: which part)",
            }
        return save_figure(self.build(data, params), self.name, out_dir, meta, command) + paths


# Columns that count or index (steps, seeds, rollouts): written as integers, never 1.0 or 1.23457e+06.
INT_COLUMNS = ("step", "seed", "n_seeds", "count", "group_correct", "group_size")
CSV_FLOAT_FORMAT = "%.6g"  # every float of a figure's CSV (the app's chart CSVs too)


def whole_int_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each float column of ``INT_COLUMNS`` that holds only whole numbers (or missing values) as
    nullable integers, in place; returns it."""
    for col in INT_COLUMNS:
        if col in table and pd.api.types.is_float_dtype(table[col]):
            values = table[col].dropna()
            if (values == values.round()).all():
                table[col] = table[col].astype("Int64")
    return table


def plotted_table(data: RunFigureData, frames: Sequence[str]) -> pd.DataFrame:
    """The drawn frames of ``data`` as one table, a leading ``frame`` column naming each row's frame. Columns of
    ``INT_COLUMNS`` holding whole numbers are integers (nullable where a frame lacks them)."""
    parts = [data.frames[k].assign(frame=k) for k in frames]
    table = pd.concat(parts, ignore_index=True)
    table = table[["frame", *[c for c in table.columns if c != "frame"]]].copy()
    return whole_int_columns(table)


def plotted_values(data: RunFigureData, frames: Sequence[str], path: Path) -> Path:
    """Write the drawn frames of ``data`` (``plotted_table``) as one CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plotted_table(data, frames).to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    return path


# help text of every parameter field of the run figures
PARAM_HELP = {
    "band": "band around the mean over seeds: minmax (min to max) or sd (±1 sample sd)",
    "minibatches": "later: only each step's later mini-batches (s = 0 in the first); all: every mini-batch",
    "smooth": "trailing mean over this many steps of each run's per-step series before averaging over seeds "
    "(1: none; validation Pass@1 is never smoothed)",
    "step": "panel (a) at this training step (the paper shows step 200); default: mean over all logged steps",
    "top": "fraction of tokens / rollouts whose share of the weight is shown (0.01: top 1%%)",
    "tau": "tau of REAL recomputed on GRPO's logged s_bar",
    "metric": "metrics column whose last logged value is the final score",
}
PARAM_CHOICES = {"band": ("minmax", "sd"), "minibatches": ("later", "all")}


def _needs(specs: Sequence[VariantSpec]) -> str:
    return "Needs runs of: " + "; ".join(s.describe() for s in specs) + "."


RUN_FIGURES: dict[str, RunFigure] = {
    f.cli: f
    for f in (
        RunFigure(
            "fig2",
            fig2.NAME,
            "Fig. 2: GRPO token shares per ratio interval, clip discards, Pass@1 vanilla vs bidirectional",
            "Fig. 2 from runs: (a) share of GRPO's tokens per ratio interval split by the sign of A, (b) share "
            "each clip mode (vanilla, bidirectional) discards on those tokens, (c) validation Pass@1 of GRPO "
            "with vanilla against bidirectional clipping. " + _needs(fig2.SPECS),
            fig2.SPECS,
            fig2.Fig2Params,
            fig2.fig2_data,
            fig2.build_fig2,
            plotted=("bars", "discard_band", "val_band"),
        ),
        RunFigure(
            "fig4",
            dynamics.FIG4_NAME,
            "Fig. 4: entropy, val Pass@1, reward, 100%% solved ratio for GRPO, DAPO, GSPO, REAL",
            "Fig. 4 from runs: training dynamics (entropy, validation Pass@1, reward, 100% solved ratio) over "
            "steps, mean over seeds with a band. " + _needs(dynamics.FIG4_SPECS),
            dynamics.FIG4_SPECS,
            dynamics.DynamicsParams,
            dynamics.fig4_data,
            dynamics.build_dynamics,
            plotted=("band",),
        ),
        RunFigure(
            "fig5",
            dynamics.FIG5_NAME,
            "Fig. 5: the same dynamics for DAPO, REAL w/ BCE, REAL w/o anchor, REAL",
            "Fig. 5 from runs: training dynamics of DAPO, REAL w/ BCE, REAL w/o anchor logits and REAL. "
            + _needs(dynamics.FIG5_SPECS),
            dynamics.FIG5_SPECS,
            dynamics.DynamicsParams,
            dynamics.fig5_data,
            dynamics.build_dynamics,
            plotted=("band",),
        ),
        RunFigure(
            "table4",
            table4.NAME,
            "Table 4: final Pass@1 of REAL's ablations, the paper's values in a separate column",
            "Table 4 from runs: the last logged validation Pass@1 of each run, mean ± sd over seeds, per REAL "
            "ablation, with the paper's reported values in a separate, labelled column. The command writes CSV, Markdown, "
            "PNG, PDF and a JSON sidecar. " + _needs(table4.ROWS),
            table4.ROWS,
            table4.Table4Params,
            table4.table4_data,
            table4.build_table4,
            table4.write_table4_files,
        ),
        RunFigure(
            "allocation",
            allocation.NAME,
            "new: top-1%% share of the gradient weight and weight-s correlations over training per method",
            "Gradient allocation over training (not in the paper): share of each step's gradient weight held by "
            "the top 1% of tokens and of rollouts, and the correlation of rollout weight with s_bar for correct "
            "and wrong rollouts. " + _needs(allocation.SPECS),
            allocation.SPECS,
            allocation.AllocationParams,
            allocation.allocation_data,
            allocation.build_allocation,
            plotted=("band",),
        ),
        RunFigure(
            "c-dynamics",
            c_dynamics.NAME,
            "new: REAL's C+/C- and weights against group composition; REAL recomputed on GRPO's s_bar",
            "C+/C- against group composition (not in the paper): REAL's logged log C and weights by the number "
            "of correct rollouts in the group, what REAL would give on GRPO's logged s_bar (closed forms), "
            "GRPO's own weights, and log C over training. " + _needs(c_dynamics.SPECS),
            c_dynamics.SPECS,
            c_dynamics.CDynamicsParams,
            c_dynamics.c_dynamics_data,
            c_dynamics.build_c_dynamics,
            plotted=("by_composition", "over_steps", "reference"),
        ),
    )
}
