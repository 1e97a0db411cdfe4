"""The app's settings: the runs root (``streamlit run app.py -- --runs-root DIR``, ``$REAL_RUNS_ROOT``, ``runs/``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.runs_root import ENV_VAR, runs_root

REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The app's own flags, given after ``--`` on the streamlit command line; unknown ones are ignored."""
    p = argparse.ArgumentParser(prog="streamlit run app.py --", allow_abbrev=False, add_help=False)
    p.add_argument(
        "--runs-root",
        default=None,
        help=f"folder the app reads runs from and trains into (default: ${ENV_VAR} or runs/)",
    )
    args, _ = p.parse_known_args(argv)
    return args


def get_runs_root() -> Path:
    """The runs root of this app process, as an absolute path (it need not exist yet)."""
    return runs_root(parse_args(sys.argv[1:]).runs_root).absolute()
