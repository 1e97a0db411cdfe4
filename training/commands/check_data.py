"""``python -m training check-data``: load data files or sets and grade every gold answer against itself and
against other problems' answers (``training.datacheck``), with the gold audit."""

from __future__ import annotations

import argparse
import sys

from training.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command, add_field_arguments
from training.grader_config import add_grader_arguments, grader_config_from


def add_check_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="data files (.json, .jsonl, .parquet), benchmark names (aime, aime25, amc, math, minerva, "
        "olympiad_bench; 'benchmarks' for all six; shipped with the package, $REAL_DATA_DIR overrides them), "
        "or Hugging Face data sets: a Hub id or folder, owner/name[:split=S][:name=C][:revision=R]",
    )
    parser.add_argument("--workers", type=int, default=2, help="grader worker processes (default: 2)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per graded answer before its worker is killed"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="check only the first N problems of each file"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-check's pairing (default: 0)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results to this file")
    parser.add_argument(
        "--audit", action=argparse.BooleanOptionalAction, default=True,
        help="grade each gold against trivial and adversarial answers (0, 1, -1, its numbers, an empty box, "
        "itself without words) and report the golds that accept one (default: yes; cached by content)",
    )  # fmt: skip
    parser.add_argument(
        "--cache-dir", default="cache", help="where audit results are cached (default: cache)"
    )
    add_field_arguments(parser)
    add_grader_arguments(parser)


def _data_paths(specs: list[str]) -> list[str]:
    from training.datasets import BENCHMARKS, benchmark_path

    out = []
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if item == "benchmarks":
                out += [str(benchmark_path(b)) for b in BENCHMARKS]
            elif item:
                out.append(str(benchmark_path(item)) if item in BENCHMARKS else item)
    return out


def run_check_data(args: argparse.Namespace) -> int:
    from training.datacheck import format_results, run_check

    if args.workers < 1 or not args.timeout > 0 or (args.limit is not None and args.limit < 2):
        print("error: --workers must be >= 1, --timeout > 0 and --limit >= 2", file=sys.stderr)
        return EXIT_USAGE
    paths = _data_paths(args.paths)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        config = grader_config_from(args, timeout=args.timeout)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    results, unreadable = run_check(
        paths, workers=args.workers, timeout=args.timeout, seed=args.seed, limit=args.limit,
        json_out=args.json_out, log=log, problem_field=args.problem_field, answer_field=args.answer_field,
        config=config, audit=args.audit, cache_dir=args.cache_dir,
    )  # fmt: skip
    if results:
        print(format_results(results))
    for e in unreadable:
        print(f"unreadable: {e}")
    failed = [r.path for r in results if not r.self_ok]
    if failed:
        print(f"self-check failed in: {', '.join(failed)}")
    return EXIT_FAILED if failed or unreadable else EXIT_OK


COMMAND = Command(
    name="check-data",
    help="grade every gold answer against itself and against another problem's answer, per file",
    add_arguments=add_check_data_arguments,
    run=run_check_data,
    description="Load each data file or data set (bad rows are skipped and listed) and grade, with the trainer's "
    "math-verify grader, every accepted gold answer written as \\boxed{answer} against itself "
    "(self-check: must pass for every problem, else training and evaluation would score that problem 0) "
    "and each problem's answer against another problem's gold answers (cross-check: accepted pairs are "
    "counted; distinct problems can share an answer). Exit code 1 when a self-check fails or a file "
    "cannot be read.",
    epilog="examples:\n  python -m training check-data benchmarks\n"
    "  python -m training check-data agentica-org/DeepScaleR-Preview-Dataset:split=train --limit 500\n"
    "  python -m training check-data data/mine.jsonl --problem-field question --answer-field solution",
)
