"""Shared plumbing of the figure builders: style, saving PNG + PDF + a sidecar that says how a figure was made."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# One colour per method, used by every figure and the app.
METHOD_COLORS: dict[str, str] = {
    "grpo": "#d62728",
    "dapo": "#ff7f0e",
    "gspo": "#2ca02c",
    "real": "#1f77b4",
    "real_bce": "#9467bd",
    "real_no_anchor": "#17becf",
}
DEFAULT_OUT = Path("figures")


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.8) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained", squeeze=False
    )
    return fig, axes


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
