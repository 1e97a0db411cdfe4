"""``python -m workbench.figures NAME [options]``: regenerate the paper's figures into ``figures/``."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path

from workbench.figures.common import DEFAULT_OUT, command_line, save_figure
from workbench.figures.fig1 import NAME as FIG1_NAME
from workbench.figures.fig1 import Fig1Params, build_fig1, fig1_meta
from workbench.figures.registry import PARAM_CHOICES, PARAM_HELP, RUN_FIGURES, RunFigure
from workbench.runlog import RunFormatError
from workbench.stats import expand_run_paths

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
RUNS_HELP = (
    "run directories, or folders holding run directories (e.g. runs/paper-tiny/* or runs/paper-tiny); runs are "
    "grouped into variants by method + hparams and averaged over their config seed"
)
# Errors a user can fix: printed as one message, no traceback.
USER_ERRORS = (ValueError, RunFormatError, FileNotFoundError)


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


def _field_type(params: type, name: str) -> type:
    hint = typing.get_type_hints(params)[name]
    if isinstance(hint, types.UnionType):  # e.g. int | None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _add_params(p: argparse.ArgumentParser, params: type) -> None:
    for f in fields(params):
        flag = "--" + f.name.replace("_", "-")
        if f.name in PARAM_CHOICES:
            p.add_argument(flag, default=f.default, choices=PARAM_CHOICES[f.name], help=PARAM_HELP[f.name])
        else:
            p.add_argument(flag, type=_field_type(params, f.name), default=f.default, help=PARAM_HELP[f.name])


def _add_run_figure(sub: argparse._SubParsersAction, fig: RunFigure) -> None:
    p = sub.add_parser(
        fig.cli,
        help=fig.summary,
        description=fig.description + f" Writes {fig.name}.png, .pdf and .json into --out-dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR", help=RUNS_HELP)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="folder for the figure files")
    _add_params(p, fig.params)


def _add_all(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "all",
        help="every figure: fig1 from the closed forms and " + ", ".join(RUN_FIGURES) + " from --runs",
        description="Build fig1 (closed forms, paper defaults) and every run figure ("
        + ", ".join(RUN_FIGURES)
        + ") from the runs given, with each figure's defaults. A figure whose runs are missing is reported "
        "and skipped; the others are still written. Exit status 1 if any figure failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR", help=RUNS_HELP)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="folder for the figure files")
    p.add_argument("--band", default="minmax", choices=PARAM_CHOICES["band"], help=PARAM_HELP["band"])
    p.add_argument(
        "--minibatches", default="later", choices=PARAM_CHOICES["minibatches"], help=PARAM_HELP["minibatches"]
    )


def _params_from(args: argparse.Namespace, params: type):
    return params(**{f.name: getattr(args, f.name) for f in fields(params) if hasattr(args, f.name)})


def run_all(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    paths = save_figure(
        build_fig1(Fig1Params()), FIG1_NAME, args.out_dir, fig1_meta(Fig1Params()), args.command
    )
    for path in paths:
        print(f"wrote {path}", flush=True)
    runs = expand_run_paths(args.runs)
    failed = []
    for cli, fig in RUN_FIGURES.items():
        try:
            new = fig.make(runs, _params_from(args, fig.params), args.out_dir, args.command)
        except USER_ERRORS as e:
            print(f"{cli}: not built: {e}", file=sys.stderr)
            failed.append(cli)
            continue
        for path in new:
            print(f"wrote {path}", flush=True)
        paths += new
    return paths, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.figures",
        description="Regenerate the paper's figures from closed forms and from run directories. "
        "Each figure is written as PNG and PDF with a JSON sidecar naming the command, parameters and runs. "
        "Run figures: python -m workbench.figures NAME --runs DIR... [--out-dir figures]; "
        "everything at once: python -m workbench.figures all --runs runs/paper-tiny/*. "
        "NAME --help lists the runs each figure needs.",
    )
    sub = parser.add_subparsers(dest="figure", required=True, metavar="NAME")
    _add_fig1(sub)
    for fig in RUN_FIGURES.values():
        _add_run_figure(sub, fig)
    _add_all(sub)
    args = parser.parse_args(argv)
    args.command = command_line(argv)
    try:
        if args.figure == "fig1":
            paths = run_fig1(args)
        elif args.figure == "all":
            paths, failed = run_all(args)
            if failed:
                print(f"not built: {', '.join(failed)} (see the messages above)", file=sys.stderr)
                return 1
            return 0
        else:
            fig = RUN_FIGURES[args.figure]
            paths = fig.make(
                expand_run_paths(args.runs), _params_from(args, fig.params), args.out_dir, args.command
            )
    except USER_ERRORS as e:
        print(f"python -m workbench.figures {args.figure}: error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
