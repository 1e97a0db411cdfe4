"""``python -m training paper-figures``: arguments, the plan printed for people, and the whole run."""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Any

from training.config import PRESET_NAMES, ConfigError
from workbench.jobs import JOBS_DIR

EXAMPLES = """\
examples:
  python -m training paper-figures --preset tiny --seeds 3 --dry-run     # the runs and their exact commands
  nice -n 10 python -m training paper-figures --preset tiny --seeds 3    # train 33 runs, then every figure
  python -m training paper-figures --figures fig2 --seeds 2 --steps 20   # only what Fig. 2 needs
  python -m training paper-figures --seeds 3 -- --val-prompts 64         # a trainer flag for every run

what is trained: every variant the run figures declare (workbench/figures/*.py, SPECS / ROWS), at seeds
0..N-1; a spec that accepts "any KL beta > 0" is trained at beta 0.001, the paper's only KL weight (GRPO's).
--dry-run prints the variants, which figure needs each, and every command.

a run directory <runs-root>/<variant>__s<seed> that already holds the same run is skipped when finished and
resumed (python -m training train --resume) when stopped, crashed or shorter; one that holds another config
stops the pipeline before anything starts (nothing is overwritten). Ctrl-C stops the jobs cleanly; run the same
command again to continue. Logs: <runs-root>/.jobs/<run>.log; session record: <runs-root>/paper-figures.jsonl.
exit codes: 0 done, 1 a run or a figure failed, 2 bad input or a conflicting run directory, 130 interrupted.
"""


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        from training.cli_common import UsageError

        raise UsageError(f"trainer flags after --: {message}")


def parse_train_flags(flags: list[str]) -> dict[str, Any]:
    """The settings given by trainer flags after ``--`` (validated by the trainer's own parser)."""
    from training.cli_common import UsageError, add_train_arguments, explicit_settings

    for bad in ("--out", "--resume"):
        if any(f == bad or f.startswith(bad + "=") for f in flags):
            raise UsageError(f"trainer flags after --: {bad} is set by the pipeline (use --runs-root)")
    parser = _RaisingParser(prog="python -m training paper-figures ... --", add_help=False)
    add_train_arguments(parser)
    return explicit_settings(parser.parse_args(["--out", "-", *flags]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", choices=PRESET_NAMES, help="trainer preset of every run")
    parser.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 of every variant")
    parser.add_argument(
        "--steps", type=int, default=None, metavar="N", help="RL steps of every run (default: the preset's)"
    )
    parser.add_argument(
        "--runs-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the runs go (default: runs/paper-PRESET)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path("figures"), metavar="DIR", help="where the figures go"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="trainers at once (each uses 1 torch thread plus its grader worker; default: the CPU count, "
        "%(default)s here)",
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only these run figures and their runs (fig2 fig4 fig5 table4 allocation c-dynamics); default: "
        "all of them, built with python -m workbench.figures all (which also redraws fig1)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the runs, their state and commands; run nothing"
    )
    parser.add_argument("--no-figures", action="store_true", help="train, but do not build the figures")
    parser.add_argument(
        "--status-every", type=float, default=30.0, metavar="S",
        help="seconds between status lines when the output is not a terminal",
    )  # fmt: skip


def _describe(plan, states) -> list[str]:
    from training.pipeline.state import RESUME, SKIP, TRAIN

    counts = {a: sum(1 for s in states if s.action == a) for a in (TRAIN, RESUME, SKIP)}
    lines = [
        f"paper-figures: preset {plan.preset}, seeds {', '.join(map(str, plan.seeds))}, {plan.steps} steps per run; "
        f"{len(plan.variants)} variants x {len(plan.seeds)} seeds = {len(plan.runs)} runs in {plan.runs_root}",
        f"  {counts[TRAIN]} to train, {counts[RESUME]} to resume, {counts[SKIP]} finished (skipped)",
        "variants (from the figures' specs):",
    ]
    width = max(len(v.slug) for v in plan.variants)
    for v in plan.variants:
        lines.append(f"  {v.slug:<{width}}  {v.label:<26} for {v.used_by()}")
    lines.append(
        f"  (other objective settings: the method's paper defaults, workbench.methods.DEFAULTS; {_grpo_note()})"
    )
    if plan.train_settings:
        lines.append("trainer flags for every run: " + " ".join(
            f"{k}={v}" for k, v in plan.train_settings.items()))  # fmt: skip
    return lines


def _grpo_note() -> str:
    from workbench.methods import DEFAULTS

    g = DEFAULTS["grpo"]
    return f"GRPO: eps {g.eps_low:g}, KL beta {g.kl_beta:g} to the {'reference' if g.kl_target == 'ref' else 'old policy'}"


def lock_root(root: Path, who: str = "paper-figures"):
    """An exclusive lock on ``root/.<who>.lock``, held while the returned file is open; UsageError if another
    process holds it."""
    from training.cli_common import UsageError

    root.mkdir(parents=True, exist_ok=True)
    f = open(root / f".{who}.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(
            f"another {who} is running on {root}: wait for it, or use another --runs-root"
        ) from None
    return f


def run(args: argparse.Namespace) -> int:
    from training.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
    from training.pipeline.execute import Console, EventLog, build_figures, run_jobs_until_done_or_stopped
    from training.pipeline.plan import PlanError, figure_commands, make_plan, shell_command
    from training.pipeline.progress import fmt_duration
    from training.pipeline.state import SKIP, Conflict, inspect_all

    t_start = time.monotonic()
    console = Console(every=args.status_every)
    lock = None
    try:
        if args.seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
        if args.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
        if args.steps is not None and args.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {args.steps}")
        settings = parse_train_flags(list(getattr(args, "train_flags", [])))
        root = args.runs_root or Path("runs") / f"paper-{args.preset}"
        plan = make_plan(
            preset=args.preset,
            seeds=range(args.seeds),
            runs_root=root,
            steps=args.steps,
            figures=args.figures,
            train_settings=settings,
        )
        # the lock before the inspection: runs another pipeline is still writing are not planned from a stale look
        lock = None if args.dry_run else lock_root(plan.runs_root)
        states = inspect_all(plan.runs, "plan")
    except (UsageError, PlanError, ConfigError, Conflict) as e:
        if lock is not None:  # taken, then the inspection refused the plan: let the next session in
            lock.close()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    commands = figure_commands(plan, args.out_dir, all_figures=args.figures is None)
    for line in _describe(plan, states):
        console.say(line)
    if args.dry_run:
        console.say("runs:")
        width = max(len(s.run.name) for s in states)
        for s in states:
            what = f"# {s.detail}" if s.action == SKIP else shell_command(s.args())
            console.say(f"  {s.action:<6} {s.run.name:<{width}}  {what}")
        console.say("then:" if not args.no_figures else "then (skipped: --no-figures):")
        for c in commands:
            console.say("  " + shell_command(c, "workbench.figures"))
        return EXIT_OK

    events = EventLog(plan.runs_root / "paper-figures.jsonl")
    events.write("session_start", argv=sys.argv, preset=plan.preset, seeds=list(plan.seeds), steps=plan.steps,
                 runs={s.run.name: s.action for s in states}, cpus=os.cpu_count(), nice=os.nice(0))  # fmt: skip
    failed = run_jobs_until_done_or_stopped(
        states, jobs=args.jobs, runs_root=plan.runs_root, console=console, events=events,
        started=t_start,
    )  # fmt: skip
    if failed is None:
        return 130
    t_train = time.monotonic() - t_start
    if failed:
        console.say(f"{len(failed)} run(s) failed: {', '.join(sorted(failed))}; see their logs in "
                    f"{plan.runs_root / JOBS_DIR}. Finished runs are kept: run the same command again to retry "
                    "the others. Figures not built.")  # fmt: skip
        events.write("session_end", result="failed", failed=failed, seconds=round(t_train, 1))
        return EXIT_FAILED
    loads = events.loads
    console.say(
        f"all {len(plan.runs)} runs finished; training took {fmt_duration(t_train)} "
        f"(1-min load average {min(loads):.2f}..{max(loads):.2f}, mean {sum(loads) / len(loads):.2f})"
    )
    rc = 0
    if not args.no_figures:
        rc = build_figures(commands, console, events)
    total = time.monotonic() - t_start
    events.write("session_end", result="ok" if rc == 0 else "figures failed", seconds=round(total, 1),
                 train_seconds=round(t_train, 1), load1_mean=round(sum(loads) / len(loads), 2))  # fmt: skip
    console.say(f"paper-figures: {'done' if rc == 0 else 'figures failed'} in {fmt_duration(total)}")
    if lock is not None:
        lock.close()
    return EXIT_OK if rc == 0 else EXIT_FAILED
