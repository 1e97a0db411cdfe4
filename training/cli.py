"""``python -m training <command>``: the registry of the trainer's commands and the parser.

Each command is one module with its arguments, what it runs and a ``Command`` (``training.cli_common``):
``train``, ``check-data``, ``eval``, ``export`` in ``training/commands/``, ``paper-figures`` in
``training.pipeline.cli``, ``study`` in ``training.study.cli``. To add one, write its module and register its
``Command`` in ``COMMANDS``. Exit codes: 0 done, 1 failed while running, 2 bad input (nothing was started).
"""

from __future__ import annotations

import argparse
import sys

from training.cli_common import Command
from training.commands import check_data, export, train
from training.commands import eval as eval_command


def _add_paper_figures_arguments(parser: argparse.ArgumentParser) -> None:
    from training.pipeline.cli import add_arguments

    add_arguments(parser)


def _run_paper_figures(args: argparse.Namespace) -> int:
    from training.pipeline.cli import run

    return run(args)


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    from training.study.cli import add_arguments

    add_arguments(parser)


def _run_study(args: argparse.Namespace) -> int:
    from training.study.cli import run

    return run(args)


def _study_epilog() -> str:
    from training.study.cli import EXAMPLES

    return EXAMPLES


def _paper_figures_epilog() -> str:
    from training.pipeline.cli import EXAMPLES

    return EXAMPLES


COMMANDS: dict[str, Command] = {
    "train": train.COMMAND,
    "paper-figures": Command(
        name="paper-figures",
        help="train every run the paper's figures need (skipping finished ones), then build the figures",
        add_arguments=_add_paper_figures_arguments,
        run=_run_paper_figures,
        description="Train every variant the run figures declare (Fig. 2, 4, 5, Table 4, allocation, "
        "C+/C- dynamics) at each seed on the chosen preset, several at a time, skipping finished runs and "
        "resuming partial ones; then build every figure with python -m workbench.figures. Trainer flags for "
        "every run go after --.",
        epilog=_paper_figures_epilog(),
    ),
    "study": Command(
        name="study",
        help="mechanism studies: the off-policy sweep (rollout lag x method x seed), its figures and report",
        add_arguments=_add_study_arguments,
        run=_run_study,
        description="Train the runs of a study, several at a time, skipping finished runs and resuming partial "
        "ones, then build its figures and a report with paired, seed-matched comparisons and bootstrap "
        "intervals. offpolicy: sweeps --rollout-lag so the paper's mechanisms (misassignment in positives, "
        "domination in negatives, REAL's bounded weights) act, and measures them per method.",
        epilog=_study_epilog(),
    ),
    "check-data": check_data.COMMAND,
    "eval": eval_command.COMMAND,
    "export": export.COMMAND,
}
# Commands that take trainer flags after ``--`` (``args.train_flags``).
TAKES_TRAIN_FLAGS = frozenset({"paper-figures", "study"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="RLVR training for the REAL workbench.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            epilog=cmd.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if extra and args.command not in TAKES_TRAIN_FLAGS:
        parser.error(f"{args.command} takes no arguments after --: {' '.join(extra)}")
    args.train_flags = extra
    return COMMANDS[args.command].run(args)
