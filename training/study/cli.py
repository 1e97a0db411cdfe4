"""``python -m training study offpolicy``: train the off-policy study's runs, then its figures and report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from training.study.plan import DEFAULT_LAGS, DEFAULT_VARIANTS, STUDY, STUDY_SETTINGS

EXAMPLES = f"""\
examples:
  python -m training study offpolicy --dry-run                       # the runs, their state and commands
  nice -n 10 python -m training study offpolicy --seeds 5            # train, then figures + report
  python -m training study offpolicy --seeds 5 --lags 0 4            # two levels only
  python -m training study offpolicy --seeds 8                       # more seeds: finished runs are kept
  python -m training study offpolicy --report-only                   # rebuild figures + report from the runs

what is trained: each off-policy level (--lags; default {" ".join(map(str, DEFAULT_LAGS))}: step k samples with the
weights after step k-1-K) x each variant (--variants; default {" ".join(DEFAULT_VARIANTS)}) x seeds 0..N-1,
on the tiny preset with {", ".join(f"{k}={v}" for k, v in STUDY_SETTINGS.items())} (flags after -- override
these, e.g. -- --lr 1e-4). A seed gives every variant of a level the same warm start, prompts and first rollouts:
the report's differences are paired by seed.

a run folder that already holds the same run is skipped when finished and resumed when stopped or crashed;
one that holds another config stops the study before anything starts. Ctrl-C stops the jobs; run the same
command again to continue. Logs: <runs-root>/.jobs/; figures and report: --out-dir (offpolicy_*.png/pdf/csv,
offpolicy_report.md). exit codes: 0 done, 1 a run or the report failed, 2 bad input, 130 interrupted.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", choices=(STUDY,), help="which study (offpolicy: the rollout-lag sweep)")
    parser.add_argument(
        "--seeds", type=int, default=5, metavar="N", help="seeds 0..N-1 (default %(default)s)"
    )
    parser.add_argument(
        "--lags", type=int, nargs="+", default=list(DEFAULT_LAGS), metavar="K",
        help="off-policy levels: --rollout-lag values (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--variants", nargs="+", default=list(DEFAULT_VARIANTS), metavar="V",
        help="methods, each optionally with objective overrides: real:tau=0.1 (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help=f"RL steps per run (default {STUDY_SETTINGS['steps']})",
    )
    parser.add_argument(
        "--runs-root", type=Path, default=Path("runs") / "study-offpolicy", metavar="DIR",
        help="where the runs go (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("figures"),
        metavar="DIR",
        help="figures and report (default %(default)s)",
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
        help="trainers at once (each: 1 torch thread + a grader worker; default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the runs, their state and commands")
    parser.add_argument("--no-report", action="store_true", help="train, but build no figures or report")
    parser.add_argument(
        "--report-only", action="store_true", help="train nothing; figures + report from the runs"
    )
    parser.add_argument(
        "--status-every", type=float, default=30.0, metavar="S",
        help="seconds between status lines when the output is not a terminal",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from training.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
    from training.config import ConfigError
    from training.pipeline.cli import lock_root, parse_train_flags
    from training.pipeline.execute import Console, EventLog, run_jobs_until_done_or_stopped
    from training.pipeline.plan import PlanError, shell_command
    from training.pipeline.progress import fmt_duration
    from training.pipeline.state import SKIP, Conflict, inspect_all
    from training.study.plan import make_study_plan
    from workbench.jobs import JOBS_DIR

    t0 = time.monotonic()
    console = Console(every=args.status_every)
    lock = None
    try:
        for name in ("seeds", "jobs"):
            if getattr(args, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
        settings = parse_train_flags(list(getattr(args, "train_flags", [])))
        if args.steps is not None and args.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {args.steps}")
        plan = make_study_plan(
            lags=args.lags, seeds=range(args.seeds), variants=args.variants, runs_root=args.runs_root,
            settings=settings, steps=args.steps,
        )  # fmt: skip
        # the lock before the inspection, as paper-figures: never plan from runs another study is writing
        lock = None if args.dry_run or args.report_only else lock_root(plan.runs_root, "study")
        states = inspect_all(plan.runs, "study")
    except (UsageError, PlanError, ConfigError, Conflict) as e:
        if lock is not None:  # taken, then the inspection refused the plan: let the next session in
            lock.close()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    todo = [s for s in states if s.action != SKIP]
    console.say(
        f"study {plan.study}: lags {', '.join(map(str, plan.lags))} x {len(plan.variants)} variants x seeds "
        f"{', '.join(map(str, plan.seeds))} = {len(plan.runs)} runs of {plan.steps} steps in {plan.runs_root} "
        f"({len(todo)} to train or resume); settings {', '.join(f'{k}={v}' for k, v in plan.settings.items())}"
    )
    report_cmd = ["study", plan.study, "--report-only", "--runs-root", str(plan.runs_root),
                  "--out-dir", str(args.out_dir), "--seeds", str(args.seeds), "--lags", *map(str, args.lags),
                  "--variants", *args.variants, *(["--steps", str(args.steps)] if args.steps else []),
                  *(["--", *args.train_flags] if getattr(args, "train_flags", None) else [])]  # fmt: skip
    if args.dry_run:
        width = max(len(s.run.name) for s in states)
        for s in states:
            what = f"# {s.detail}" if s.action == SKIP else shell_command(s.args())
            console.say(f"  {s.action:<6} {s.run.name:<{width}}  {what}")
        console.say("then: " + shell_command(report_cmd))
        return EXIT_OK

    if not args.report_only and todo:
        events = EventLog(plan.runs_root / "study.jsonl")
        events.write("session_start", argv=sys.argv, runs={s.run.name: s.action for s in states})
        try:
            failed = run_jobs_until_done_or_stopped(
                states, jobs=args.jobs, runs_root=plan.runs_root, console=console,
                events=events, started=t0, by="study",
            )  # fmt: skip
        finally:
            if lock is not None:
                lock.close()
        if failed is None:
            return 130
        events.write(
            "session_end", result="failed" if failed else "ok", seconds=round(time.monotonic() - t0, 1)
        )
        if failed:
            console.say(f"{len(failed)} run(s) failed: {', '.join(sorted(failed))}; logs in "
                        f"{plan.runs_root / JOBS_DIR}. Run the same command again to retry them.")  # fmt: skip
            return EXIT_FAILED
        console.say(
            f"all {len(plan.runs)} runs finished; training took {fmt_duration(time.monotonic() - t0)}"
        )
    if args.no_report:
        return EXIT_OK
    from workbench.figures.offpolicy import build_study_outputs

    missing = [r.name for r in plan.runs if not (r.out / "run.json").is_file()]
    if missing:
        print(
            f"error: {len(missing)} run(s) not trained yet (e.g. {missing[0]}): drop --report-only",
            file=sys.stderr,
        )
        return EXIT_USAGE
    paths = build_study_outputs(
        [r.out for r in plan.runs], args.out_dir, command=shell_command(report_cmd), log=console.say
    )
    console.say(
        f"study {plan.study}: wrote {', '.join(str(p) for p in paths)} in {fmt_duration(time.monotonic() - t0)}"
    )
    return EXIT_OK
