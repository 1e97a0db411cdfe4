"""Shared plumbing of the figure builders: style, saving PNG + PDF + a sidecar that says how a figure was made."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from workbench.methods import COLORS

# One colour per method, used by every figure and the app.
METHOD_COLORS: dict[str, str] = COLORS  # from each method's spec (workbench.methods.SPECS)
DEFAULT_OUT = Path("figures")


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.8) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained", squeeze=False
    )
    return fig, axes


# Legibility: the app shows a figure's PNG as wide as its page (about 940 px in a 1400 px wide window), shrinking a
# wide figure; every text must still be at least MIN_TEXT_PX high there.
DISPLAY_WIDTH_PX = 940
MIN_TEXT_PX = 10.0


def min_text_pt(fig: Figure) -> float:
    """The smallest font size (points) of ``fig`` that shows ``MIN_TEXT_PX`` high when the figure is drawn
    ``DISPLAY_WIDTH_PX`` wide (a point is 1/72 inch of the figure's width); never below 7 pt."""
    return max(7.0, MIN_TEXT_PX * 72.0 * fig.get_figwidth() / DISPLAY_WIDTH_PX)


def legible_text(fig: Figure) -> None:
    """Raise every text of ``fig`` (titles, axis labels, ticks, legends, notes) smaller than ``min_text_pt``."""
    from matplotlib.text import Text

    floor = min_text_pt(fig)
    for text in fig.findobj(Text):
        if text.get_fontsize() < floor:
            text.set_fontsize(floor)


# Where a panel's legend may go, in order of preference (matplotlib's names).
LEGEND_LOCS = (
    "upper right",
    "upper left",
    "upper center",
    "lower right",
    "lower left",
    "lower center",
    "center right",
    "center left",
    "center",
)


def _legend_origin(loc: str, area: Bbox, width: float, height: float, pad: float) -> tuple[float, float]:
    vertical, _, horizontal = loc.partition(" ") if " " in loc else (loc, "", loc)
    x = {"left": area.x0 + pad, "right": area.x1 - pad - width}.get(
        horizontal, area.x0 + (area.width - width) / 2
    )
    y = {"lower": area.y0 + pad, "upper": area.y1 - pad - height}.get(
        vertical, area.y0 + (area.height - height) / 2
    )
    return x, y


def covers_data(ax: Axes, box: Bbox, renderer) -> bool:
    """Whether ``box`` (display coordinates) covers a line segment, a band's area, a bar or a note of ``ax``."""
    for line in ax.get_lines():
        path = line.get_path()
        if line.get_visible() and len(path.vertices):
            if path.transformed(line.get_transform()).intersects_bbox(box, filled=False):
                return True
    for coll in ax.collections:
        for path in coll.get_paths():
            if len(path.vertices) and path.transformed(coll.get_transform()).intersects_bbox(
                box, filled=True
            ):
                return True
    others = [*ax.patches, *ax.texts]
    return any(a.get_visible() and a.get_window_extent(renderer).overlaps(box) for a in others)


def clear_legends(fig: Figure, legends: Sequence[tuple[Axes, dict[str, Any]]]) -> None:
    """Give each panel its legend (``ax.legend(**kwargs)``) where it hides nothing.

    Call it once the panels are drawn. The legend goes to the first of ``LEGEND_LOCS`` where its box covers
    no line, band area, bar or note of its panel (``covers_data``). If every spot covers something, it goes
    outside the panel on the right; the constrained layout makes room. Matplotlib's ``loc="best"`` avoids
    line vertices only, so it can still cover a band. No legend text is smaller than ``min_text_pt``.
    """
    floor = min_text_pt(fig)
    legends = [
        (
            ax,
            {
                **kw,
                **{
                    k: max(float(kw.get(k, floor)), floor)
                    for k in ("fontsize", "title_fontsize")
                    if k in kw or k == "fontsize"
                },
            },
        )
        for ax, kw in legends
    ]
    outside: set[int] = set()
    for _ in range(len(legends) + 1):  # an outside legend narrows the panels: place the others again
        fig.canvas.draw()  # settle the layout, so that display coordinates are final
        renderer = fig.canvas.get_renderer()
        moved_out = False
        for i, (ax, kwargs) in enumerate(legends):
            if i in outside:
                continue
            legend = ax.legend(**kwargs)
            size = legend.get_window_extent(renderer)
            pad = legend.borderaxespad * legend.prop.get_size_in_points() * fig.dpi / 72
            area = ax.get_window_extent(renderer)
            for loc in LEGEND_LOCS:
                x, y = _legend_origin(loc, area, size.width, size.height, pad)
                if not covers_data(ax, Bbox.from_bounds(x, y, size.width, size.height), renderer):
                    legend.set_loc(loc)
                    break
            else:
                legend.remove()
                ax.legend(
                    **{**kwargs, "loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}
                )
                outside.add(i)
                moved_out = True
        if not moved_out:
            return


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def command_line(argv: list[str] | None) -> str:
    """The command that made a figure, for its sidecar."""
    args = sys.argv[1:] if argv is None else argv
    return "python -m workbench.figures " + " ".join(shlex.quote(a) for a in args)


def save_figure(
    fig: Figure,
    name: str,
    out_dir: Path,
    meta: Mapping[str, Any],
    command: str,
    formats: tuple[str, ...] = ("png", "pdf"),
) -> list[Path]:
    """Write ``out_dir/name.{png,pdf}`` and ``out_dir/name.json`` (command, parameters, inputs, commit)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(
            path, dpi=150 if fmt == "png" else None, metadata={"CreationDate": None} if fmt == "pdf" else None
        )
        paths.append(path)
    sidecar = {
        "figure": name,
        "command": command,
        "commit": git_commit(),
        **meta,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n")
    plt.close(fig)
    return paths
