"""``python -m workbench.figures NAME [options]``: regenerate the paper's figures into ``figures/``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from workbench.figures.common import DEFAULT_OUT, command_line, save_figure
from workbench.figures.fig1 import NAME as FIG1_NAME
from workbench.figures.fig1 import Fig1Params, build_fig1, fig1_meta

FIG1_HELP = {
    "eps_low": "GRPO lower clip: ratio below 1 - eps_low is clipped for A < 0",
    "eps_high": "GRPO upper clip: ratio above 1 + eps_high is clipped for A > 0",
    "advantage": "|A| of the GRPO curves (A = +|A| in panel a, -|A| in panel b)",
    "clip_mode": "GRPO clip mode: vanilla, bidirectional (Fig. 2 ablation) or none",
    "tau": "REAL temperature; REAL's weight is bounded by 1/tau",
    "c_pos": "REAL C+ of the correct rollout (>= 1; 1 + sum of the other correct rollouts' e^{-s/tau})",
    "c_neg": "REAL C- of the wrong rollout (>= 1; 1 + sum of the other wrong rollouts' e^{s/tau})",
    "s_min": "left end of the s axis",
    "s_max": "right end of the s axis",
    "points": "grid points per curve",
}


def _add_fig1(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fig1",
        help="Fig. 1: GRPO |W| vs s_t and REAL |W| vs s_bar, from the closed forms",
        description="Fig. 1 of the paper from the closed forms: panel (a) correct rollouts, panel (b) wrong ones. "
        "GRPO's token weight |A| e^{s_t} (Eq. 3) and REAL's rollout weight (1/tau)/(1 + C e^{+-s_bar/tau}) (Eq. 9). "
        "Defaults are the paper's: eps 0.2, A = 1, tau 0.5, C+ = C- = 4.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in fields(Fig1Params):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "clip_mode":
            p.add_argument(
                flag, default=f.default, choices=["vanilla", "bidirectional", "none"], help=FIG1_HELP[f.name]
            )
        else:
            p.add_argument(flag, type=type(f.default), default=f.default, help=FIG1_HELP[f.name])
    p.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT, help="folder for the PNG, PDF and JSON sidecar"
    )


def run_fig1(args: argparse.Namespace) -> list[Path]:
    params = Fig1Params(**{f.name: getattr(args, f.name) for f in fields(Fig1Params)})
    return save_figure(build_fig1(params), FIG1_NAME, args.out_dir, fig1_meta(params), args.command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.figures",
        description="Regenerate the paper's figures from closed forms and from run directories. "
        "Each figure is written as PNG and PDF with a JSON sidecar naming the command, parameters and runs.",
    )
    sub = parser.add_subparsers(dest="figure", required=True, metavar="NAME")
    _add_fig1(sub)
    args = parser.parse_args(argv)
    args.command = command_line(argv)
    try:
        paths = {"fig1": run_fig1}[args.figure](args)
    except ValueError as e:
        parser.error(str(e))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
