"""The Runs page over many runs, and every figure download of the Paper figures page (issue 15).

- ``runs_page_times(root)``: the Runs page opened under ``streamlit.testing.v1.AppTest`` with every run under
  ``root``: *first* (no cache: every run's metrics read and checked), *cold* (the app's in-memory caches emptied,
  as after a restart; the disk cache kept) and *warm* (a new session on warm caches, as a second browser tab or a
  reload), the median of ``repeats`` each.
- ``download_times(root)``: per figure of the Paper figures page and per format, the seconds to make the
  file on warm caches (the figure's data cached: the page drew it): the PNG is built and saved with the page
  and offered as is; PDF and CSV are made on the click (``app_pages/paper_figures.py``: the run figure built for
  the PNG saved again, Fig. 1 built afresh; ``RunFigure.csv_text``), so theirs are the click-to-file times.
- ``build_suite_root``: a SYNTHETIC root with every variant the figures need x ``seeds`` (33 runs for 3 seeds,
  as ``paper-figures --seeds 3`` trains), built once under the cache folder.
"""

from __future__ import annotations

import io
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from workbench.synthetic_run import PAPER_VARIANTS, variant_name, write_synthetic_suite

REPO = Path(__file__).resolve().parent.parent
RUNS_TARGET_S = 2.0
DOWNLOAD_TARGET_S = 5.0


def build_suite_root(cache: Path, seeds: int, steps: int) -> Path:
    """Every figure variant x ``seeds`` seeds of ``steps`` small steps (4 groups of 4 rollouts), built once."""
    root = cache / "runs_page" / f"suite-{seeds}x{steps}"
    names = [variant_name(m, hp, s) for m, hp in PAPER_VARIANTS for s in range(seeds)]
    if root.is_dir() and all((root / n / "metrics" / f"step_{steps:06d}.parquet").exists() for n in names):
        return root
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    print(f"building {len(names)} SYNTHETIC runs of {steps} steps under {root} ...", flush=True)
    write_synthetic_suite(
        root, seeds=tuple(range(seeds)), steps=steps, prompts=4, group_size=4, minibatches=2, mean_len=8
    )
    print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    return root


def _open_runs_page() -> float:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    at.switch_page("app_pages/runs.py")
    t0 = time.perf_counter()
    at.run()
    dt = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"the Runs page raised: {[e.value for e in at.exception]}")
    if not at.get("vega_lite_chart"):
        raise RuntimeError("the Runs page drew no chart")
    return dt


def runs_page_times(repeats: int) -> dict[str, float]:
    """Median seconds to open the Runs page (app script + page, one session), the runs root being
    ``$REAL_RUNS_ROOT``: *first* (no cache at all: the app has never seen these runs), *cold* (the app's
    in-memory caches emptied, as after a restart; its disk cache of checked metrics, ``app_lib.metrics_cache``,
    kept) and *warm* (a new session on warm caches). The disk cache is a temporary folder of this call."""
    import os
    import tempfile

    import streamlit as st

    from app_lib.metrics_cache import ENV_VAR

    first, cold, warm = [], [], []
    before = os.environ.get(ENV_VAR)
    with tempfile.TemporaryDirectory(prefix="runs-page-cache-") as cache:
        os.environ[ENV_VAR] = cache
        try:
            for _ in range(repeats):
                shutil.rmtree(Path(cache) / "metrics", ignore_errors=True)
                st.cache_data.clear()
                st.cache_resource.clear()
                first.append(_open_runs_page())
                st.cache_data.clear()
                st.cache_resource.clear()
                cold.append(_open_runs_page())
                warm.append(_open_runs_page())
        finally:
            if before is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = before
    return {
        "first": statistics.median(first),
        "cold": statistics.median(cold),
        "warm": statistics.median(warm),
    }


def _save(fig: object, fmt: str) -> bytes:
    """As ``app_pages/paper_figures._save``."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    if fmt == "png":
        fig.savefig(buf, format="png", dpi=150)  # type: ignore[attr-defined]
    else:
        fig.savefig(buf, format="pdf", metadata={"CreationDate": None})  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return buf.getvalue()


def download_times(root: Path) -> dict[str, dict[str, float]]:
    """Seconds from a click to each download's bytes, per figure and format, on warm data (see the module doc);
    checks each file's first bytes."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from app_lib.data import figure_csv
    from workbench.figures.fig1 import Fig1Params, build_fig1, curves
    from workbench.figures.registry import RUN_FIGURES

    magic = {"png": b"\x89PNG", "pdf": b"%PDF"}
    out: dict[str, dict[str, float]] = {}

    def timed(name: str, fmt: str, make: Callable[..., bytes], *args: Any) -> None:
        t0 = time.perf_counter()
        data = make(*args)
        out.setdefault(name, {})[fmt] = time.perf_counter() - t0
        if fmt in magic and not data.startswith(magic[fmt]):
            raise RuntimeError(f"{name}.{fmt} is not a {fmt.upper()} file")
        if fmt == "csv" and pd.read_csv(io.BytesIO(data)).empty:
            raise RuntimeError(f"{name}.csv holds no row")

    built: dict[str, Any] = {}

    def drawn(name: str, build: Callable[[], Any], fmt: str) -> bytes:
        if name not in built:  # the page builds a run figure once, for its PNG, and keeps it for the PDF
            built[name] = build()
            plt.close(built[name])
        return _save(built[name], fmt)

    p = Fig1Params()
    for fmt in ("png", "pdf"):  # Fig. 1 is built afresh per format (its own cache, per parameters)
        timed("fig1", fmt, lambda fmt=fmt: _save(build_fig1(p), fmt))
    timed("fig1", "csv", lambda: pd.DataFrame(curves(p)).to_csv(index=False).encode())
    runs = sorted(d for d in root.iterdir() if (d / "run.json").exists())
    for cli, fig in RUN_FIGURES.items():
        params = fig.params()
        fdata = fig.data(runs, params)  # drawn by the page before any click: cached there
        for fmt in ("png", "pdf"):
            timed(
                cli,
                fmt,
                drawn,
                cli,
                lambda fig=fig, fdata=fdata, params=params: fig.build(fdata, params),
                fmt,
            )
        timed(cli, "csv", figure_csv, cli, fdata)
    return out
