"""``python -m training <command>``: the trainer's command line.

Commands register in ``COMMANDS`` (name -> ``Command``); each adds its own arguments and runs from the parsed
namespace, returning an exit code. To add one, write ``add_arguments(parser)`` and ``run(args) -> int`` and append
a ``Command``. Exit codes: 0 done, 1 failed while running, 2 bad input (nothing was started).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from training.config import (
    PRESETS,
    RESUME_MUTABLE,
    ConfigError,
    TrainConfig,
    build_config,
    flag,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input found before any work started (exit code 2)."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
    epilog: str = ""


# ------------------------------------------------------------------------------------------------ train


GROUP_TITLES = {
    "run": "run",
    "model": "policy model",
    "data": "data",
    "warmstart": "warm start (embedded model only)",
    "rl": "RL batch and sampling",
    "optim": "optimizer",
    "objective": "objective hyper-parameters (default: the method's paper value from workbench.methods)",
    "validation": "validation",
    "checkpoint": "checkpoints and logs",
    "system": "system",
}


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of a config field's annotation."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing), {})  # annotations are strings (PEP 563)
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        return non_none[0], True
    return annotation, False


def _parse_optional(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if text.lower() == "none":
            return None
        return kind(text)

    parse.__name__ = kind.__name__
    return parse


def _method_defaults(name: str) -> str:
    """The paper defaults of an objective field per method, from ``workbench.methods.DEFAULTS``."""
    from workbench.methods import DEFAULTS

    by_value: dict[str, list[str]] = {}
    for method, hp in DEFAULTS.items():
        if hasattr(hp, name):
            by_value.setdefault(str(getattr(hp, name)), []).append(method)
    return "; ".join(f"{v} for {', '.join(ms)}" for v, ms in by_value.items())


def _preset_note(name: str) -> str:
    values = [f"{p}={preset.values[name]}" for p, preset in PRESETS.items() if name in preset.values]
    return f" [{', '.join(values)}]" if values else ""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint; its logged config is reused, and only "
        + ", ".join(flag(n) for n in sorted(RESUME_MUTABLE))
        + " may change",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(TrainConfig):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        group = groups.setdefault(meta["group"], parser.add_argument_group(GROUP_TITLES[meta["group"]]))
        kind, optional = _base_type(f.type)
        default = f.default
        if meta["group"] == "objective":
            default = _method_defaults(f.name)
        shown = meta.get("shown", default)
        if (isinstance(shown, str) and shown != shown.strip()) or "\n" in str(shown):
            shown = repr(shown)
        help_text = f"{meta['help']} (default: {shown}){_preset_note(f.name)}"
        help_text = help_text.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _parse_optional(kind) if optional else kind
            kwargs["metavar"] = (
                f.name.upper() if not meta.get("choices") else "{" + ",".join(meta["choices"]) + "}"
            )
        group.add_argument(flag(f.name), **kwargs)


def presets_epilog() -> str:
    lines = ["presets (a flag overrides any value a preset sets):"]
    for name, preset in PRESETS.items():
        lines.append(f"  {name}: {preset.description}")
        items = ", ".join(f"{k}={v}" for k, v in preset.values.items())
        lines.append(f"      sets {items}")
    lines += [
        "",
        "examples:",
        "  python -m training train --method real --preset tiny --out runs/real-tiny",
        "  python -m training train --out runs/real-tiny --resume          # after a crash or Ctrl-C",
        "  python -m training train --method grpo --preset tiny --kl-beta 0 --clip-mode bidirectional --out runs/g",
        "",
        "logs: <out>/run.json (config, environment), <out>/metrics|rollouts|tokens/step_NNNNNN.parquet,",
        "<out>/events.jsonl, <out>/status.json, <out>/checkpoints/; read them with workbench.runlog.open_run.",
    ]
    return "\n".join(lines)


def _explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in fields(TrainConfig) if f.metadata.get("cli") is not False}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's config and, on resume, the settings changed from the logged config. Raises UsageError."""
    from workbench.runlog import RunFormatError, read_meta

    out = Path(args.out)
    explicit = _explicit_settings(args)
    holds_run = (out / "run.json").is_file()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder: choose another --out")
    if args.resume:
        if not holds_run:
            raise UsageError(
                f"--resume: {out} holds no run to continue (no run.json); drop --resume to start one"
            )
        try:
            meta = read_meta(out)
        except RunFormatError as e:
            raise UsageError(f"--resume: {e}") from None
        saved = dict(meta["config"])
        saved.pop("hparams", None)
        try:
            base = TrainConfig.from_dict(saved)
        except (ConfigError, TypeError) as e:
            raise UsageError(f"--resume: the logged config of {out} cannot be read ({e})") from None
        changed = {k: v for k, v in explicit.items() if getattr(base, k) != v}
        fixed = sorted(set(changed) - RESUME_MUTABLE)
        if fixed:
            details = ", ".join(f"{flag(k)} {changed[k]!r} (the run has {getattr(base, k)!r})" for k in fixed)
            raise UsageError(
                f"--resume continues {out} with its own settings; these differ: {details}. Drop them, or start "
                "a new run with another --out"
            )
        cfg = build_config(base.preset, {**saved, **changed})
        cfg._explicit = frozenset(explicit)
        return cfg, changed
    if holds_run:
        raise UsageError(
            f"--out {out} already holds a run: pass --resume to continue it, or choose another --out"
        )
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out} is a folder that is not empty and holds no run: choose another --out")
    if "method" not in explicit:
        raise UsageError(
            "--method is required: choose one of grpo, dapo, gspo, real, real_bce, real_no_anchor"
        )
    preset = explicit.pop("preset", "tiny")
    try:
        cfg = build_config(preset, explicit)
    except TypeError as e:
        raise UsageError(str(e)) from None
    return cfg, {}


def _check_writable(out: Path) -> None:
    parent = out if out.exists() else out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    import os

    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {out}: {parent} is not writable")


def run_train(args: argparse.Namespace) -> int:
    from training.rollout import BackendUnavailable, check_backend

    try:
        cfg, changed = config_from_args(args)
        cfg.validate()
        check_backend(cfg.backend)
        _check_writable(Path(args.out))
        cache = Path(cfg.cache_dir)
        if cfg.model is None and cfg.warmstart:
            _check_writable(cache)
    except (UsageError, ConfigError, BackendUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from training.loop import SetupError, Trainer, update_logged_config

    if changed:
        update_logged_config(Path(args.out), changed)
    try:
        Trainer(cfg, args.out, resume=args.resume).run()
    except KeyboardInterrupt:
        print(f"stopped; continue with: python -m training train --out {args.out} --resume", file=sys.stderr)
        return 130
    except (BackendUnavailable, SetupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"done: {args.out}", file=sys.stderr)
    return EXIT_OK


def _add_paper_figures_arguments(parser: argparse.ArgumentParser) -> None:
    from training.pipeline.cli import add_arguments

    add_arguments(parser)


def _run_paper_figures(args: argparse.Namespace) -> int:
    from training.pipeline.cli import run

    return run(args)


def _paper_figures_epilog() -> str:
    from training.pipeline.cli import EXAMPLES

    return EXAMPLES


COMMANDS: dict[str, Command] = {
    "train": Command(
        name="train",
        help="train a policy with one objective and log every rollout and token",
        add_arguments=add_train_arguments,
        run=run_train,
        description="Train with GRPO, DAPO, GSPO or a REAL variant (paper Algorithm 1) and log every step, "
        "rollout and token to --out in the run format of workbench.runlog.",
        epilog=presets_epilog(),
    ),
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
}
# Commands that take trainer flags after ``--`` (``args.train_flags``).
TAKES_TRAIN_FLAGS = frozenset({"paper-figures"})


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
