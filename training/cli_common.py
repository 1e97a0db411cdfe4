"""What the ``python -m training`` subcommands share: exit codes, ``UsageError``, the ``Command`` record, and the
trainer's flags generated from ``TrainConfig`` (used by ``train`` and, for the flags after ``--``, by
``paper-figures`` and ``study``). The subcommand modules import this one, never each other."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from training.config import PRESETS, RESUME_MUTABLE, TrainConfig, flag

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


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in fields(TrainConfig) if f.metadata.get("cli") is not False}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def check_writable(out: Path) -> None:
    """``UsageError`` when ``out`` (or its nearest existing parent) is not writable, before any work starts."""
    import os

    parent = out if out.exists() else out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {out}: {parent} is not writable")


def add_field_arguments(parser: argparse.ArgumentParser) -> None:
    """``--problem-field`` and ``--answer-field``: other column names for the problem and the gold answer."""
    parser.add_argument("--problem-field", default=None, metavar="COLUMN",
                        help="column holding the problem (a string or a chat list; dotted for nested columns, "
                        "e.g. 'question'; default: 'problem', else a verl-style 'prompt'); for every set named "
                        "except the six benchmarks")  # fmt: skip
    parser.add_argument("--answer-field", default=None, metavar="COLUMN",
                        help="column holding the gold answer (dotted for nested columns; a worked solution gives "
                        "the content of its last \\boxed{}, e.g. 'solution'; default: 'answer', else "
                        "'reward_model.ground_truth')")  # fmt: skip
