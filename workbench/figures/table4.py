"""Table 4: final validation Pass@1 of REAL's ablations, next to (never mixed with) the paper's reported values.

Ours: each run's last logged ``val_pass1`` (``workbench.stats.final_metric``), mean and sample sd over seeds,
in percent. The paper's column is copied from its Table 4 (average Pass@1 over six math benchmarks, 1.5B model)
and only sits beside ours for reference: the models, data and validation sets differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.figures.common import new_figure
from workbench.figures.from_runs import RunFigureData, add_caption, runs_caption, select
from workbench.stats import POSITIVE, collect, final_metric, initial_validation, spec
from workbench.stats.variants import RunLike, VariantSpec

NAME = "table4_real_ablations"
ROWS: tuple[VariantSpec, ...] = (
    spec("w/ BCE loss", "real_bce"),
    spec("w/o Anchor Logits", "real_no_anchor"),
    spec("τ = 0.1", "real", tau=0.1),
    spec("τ = 1.0", "real", tau=1.0),
    spec("KL w/ reference model", "real", kl_beta=POSITIVE),
    spec("KL w/ old policy", "real", kl_beta=POSITIVE, kl_target="old"),
    spec("REAL", "real"),
)
# The paper's Table 4: Pass@1 (%) averaged over six math benchmarks, DeepSeek-R1-Distill-Qwen-1.5B.
PAPER_TABLE4: dict[str, float] = {
    "w/ BCE loss": 50.4,
    "w/o Anchor Logits": 51.4,
    "τ = 0.1": 52.3,
    "τ = 1.0": 51.5,
    "KL w/ reference model": 52.1,
    "KL w/ old policy": 51.9,
    "REAL": 52.6,
}
OURS_HEADER = "This project: final val Pass@1 (%), mean ± sd over seeds"
BEFORE_HEADER = "This project: before RL (%)"
PAPER_HEADER = "Paper's reported Pass@1 (%) (Table 4, avg. of 6 benchmarks, 1.5B)"


@dataclass(frozen=True)
class Table4Params:
    """Table 4 has no options beyond the runs; the dataclass keeps the pattern (and the sidecar) uniform."""

    metric: str = "val_pass1"


def table4_data(runs: Sequence[RunLike], p: Table4Params | None = None) -> RunFigureData:
    p = p or Table4Params()
    selected = select(NAME, runs, ROWS)
    finals = collect(final_metric, [r for s in selected for r in s.runs], metric=p.metric)
    no_val = finals[~np.isfinite(finals["value"])]["run"].tolist()
    rows = []
    for sel in selected:
        names = {r.name for r in sel.runs}
        f = finals[finals["run"].isin(names) & np.isfinite(finals["value"])]
        vals = 100 * f["value"].to_numpy(dtype=float)
        before = [initial_validation(r).get(p.metric) for r in sel.runs]
        before = [100 * float(v) for v in before if isinstance(v, int | float) and np.isfinite(v)]
        rows.append(
            {
                "setting": sel.spec.label,
                "variant": sel.variant.label,
                "ours_mean_pct": float(vals.mean()) if len(vals) else np.nan,
                "ours_sd_pct": float(vals.std(ddof=1)) if len(vals) > 1 else np.nan,
                "ours_seeds": ",".join(str(s) for s in f["seed"].tolist()),
                "ours_final_steps": ",".join(str(int(s)) for s in f["step"].tolist()),
                "ours_before_rl_pct": float(np.mean(before)) if before else np.nan,
                "paper_reported_pct": PAPER_TABLE4[sel.spec.label],
            }
        )
    table = pd.DataFrame(rows)
    caption = (
        "Table 4 (REAL ablations). Ours: last logged validation Pass@1 of each run, mean ± sample sd over seeds; "
        "'before RL': the same validation before the first step (the starting policy), mean over seeds. "
        "The paper's column is its reported Table 4 (average over six benchmarks, 1.5B model), shown beside "
        "ours, not comparable in scale. " + runs_caption(selected, None)
    )
    notes = {"runs_without_validation": no_val} if no_val else {}
    return RunFigureData(NAME, selected, {"table": table, "finals": finals}, caption, notes)


def _ours_cell(row: pd.Series) -> str:
    if not np.isfinite(row["ours_mean_pct"]):
        return "n/a (no validation logged)"
    n = len(row["ours_seeds"].split(","))
    sd = f" ± {row['ours_sd_pct']:.1f}" if np.isfinite(row["ours_sd_pct"]) else ""
    return f"{row['ours_mean_pct']:.1f}{sd} (n={n})"


def _before_cell(row: pd.Series) -> str:
    return f"{row['ours_before_rl_pct']:.1f}" if np.isfinite(row["ours_before_rl_pct"]) else "n/a"


def table4_markdown(data: RunFigureData) -> str:
    t = data.frames["table"]
    lines = [
        f"| Setting | Our variant | {OURS_HEADER} | {BEFORE_HEADER} | Seeds | {PAPER_HEADER} |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for _, row in t.iterrows():
        lines.append(
            f"| {row['setting']} | {row['variant']} | {_ours_cell(row)} | {_before_cell(row)} | "
            f"{row['ours_seeds'] or '-'} | {row['paper_reported_pct']:.1f} |"
        )
    return "\n".join(lines) + "\n\n" + data.caption + "\n"


def table4_csv(data: RunFigureData) -> str:
    """The table as CSV (column ``paper_reported_pct`` holds the paper's values), percentages to 4 decimals."""
    return data.frames["table"].to_csv(index=False, float_format="%.4f")


def write_table4_files(data: RunFigureData, out_dir: Path) -> list[Path]:
    """``table4_real_ablations.csv`` (``table4_csv``) and ``.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md = out_dir / f"{NAME}.csv", out_dir / f"{NAME}.md"
    csv.write_text(table4_csv(data))
    md.write_text(table4_markdown(data))
    return [csv, md]


def build_table4(data: RunFigureData, p: Table4Params | None = None) -> Figure:
    t = data.frames["table"]
    fig, axes = new_figure(width=9.5, height=0.3 * len(t) + 1.5)
    ax = axes[0, 0]
    ax.axis("off")
    cells = [
        [r["setting"], r["variant"], _ours_cell(r), _before_cell(r), f"{r['paper_reported_pct']:.1f}"]
        for _, r in t.iterrows()
    ]
    tbl = ax.table(
        cellText=cells,
        colLabels=[
            "Setting",
            "Our variant",
            "This project:\nfinal val Pass@1 (%)",
            "This project:\nbefore RL (%)",
            "Paper's reported\nPass@1 (%)",
        ],
        loc="center",
        cellLoc="left",
        colLoc="left",
        colWidths=[0.2, 0.24, 0.22, 0.15, 0.19],
    )
    tbl.auto_set_font_size(False)
    tbl.set_fontsize(8)
    tbl.scale(1, 1.3)
    for (r, c), cell in tbl.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_height(cell.get_height() * 1.6)
        if c == 4:
            cell.set_facecolor("#f0f0f0")  # the paper's column, set apart
    ax.set_title(
        "Table 4: REAL ablations (ours vs the paper's reported values, separate columns)", fontsize=10
    )
    add_caption(fig, data.caption)
    return fig
