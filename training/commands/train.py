"""``python -m training train``: one RL run with one objective (``training.loop.Trainer``), every flag generated
from the config and the method specs (``training.config``), resumable (``--resume``) and locked per run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from training.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    UsageError,
    add_train_arguments,
    check_writable,
    explicit_settings,
)
from training.config import (
    PRESETS,
    RESUME_MUTABLE,
    ConfigError,
    TrainConfig,
    build_config,
    check_logged_config,
    flag,
)
from training.runlock import visible_entries


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


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's config and, on resume, the settings changed from the logged config. Raises UsageError."""
    from workbench.runlog import RunFormatError, read_meta

    out = Path(args.out)
    explicit = explicit_settings(args)
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
            filled = check_logged_config(saved)
            base = TrainConfig.from_dict({**saved, **filled})
        except (ConfigError, TypeError) as e:
            raise UsageError(f"--resume: the logged config of {out} cannot be read ({e})") from None
        if filled:  # settings added by a newer version: their documented defaults, written into run.json
            from workbench.runlog import RunWriter

            print(f"note: {out}/run.json lacks {', '.join(sorted(filled))}; using the defaults "
                  f"{filled} (recorded in run.json and events.jsonl)", file=sys.stderr)  # fmt: skip
            RunWriter(out).event("config_default", settings=filled)
        changed = {k: v for k, v in explicit.items() if getattr(base, k) != v}
        fixed = sorted(set(changed) - RESUME_MUTABLE)
        if fixed:
            details = ", ".join(f"{flag(k)} {changed[k]!r} (the run has {getattr(base, k)!r})" for k in fixed)
            raise UsageError(
                f"--resume continues {out} with its own settings; these differ: {details}. Drop them, or start "
                "a new run with another --out"
            )
        cfg = build_config(base.preset, {**saved, **filled, **changed})
        cfg._explicit = frozenset(explicit)
        return cfg, {**filled, **changed}
    if holds_run:
        raise UsageError(
            f"--out {out} already holds a run: pass --resume to continue it, or choose another --out"
        )
    if out.is_dir() and visible_entries(out):
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


def run_train(args: argparse.Namespace) -> int:
    from training.runlock import RunLock, RunLocked

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a folder: choose another --out", file=sys.stderr)
        return EXIT_USAGE
    try:  # before anything is checked or written: one writer per run folder
        check_writable(out)
        lock = RunLock.acquire(out)
    except RunLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run_train_locked(args)
    finally:
        lock.release(remove_if_empty=True)


def _run_train_locked(args: argparse.Namespace) -> int:
    from training.rollout import BackendUnavailable, check_backend

    try:
        cfg, changed = config_from_args(args)
        cfg.validate()
        check_backend(cfg.backend)
        check_writable(Path(args.out))
        cache = Path(cfg.cache_dir)
        if cfg.model is None and cfg.warmstart:
            check_writable(cache)
    except (UsageError, ConfigError, BackendUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from training.checkpoint import CheckpointError
    from training.datasets import DataFormatError
    from training.loop import SetupError, Trainer, update_logged_config

    if changed:
        update_logged_config(Path(args.out), changed)
    try:
        Trainer(cfg, args.out, resume=args.resume).run()
    except KeyboardInterrupt:
        print(f"stopped; continue with: python -m training train --out {args.out} --resume", file=sys.stderr)
        return 130
    except (BackendUnavailable, SetupError, DataFormatError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a write failed (disk full, read-only, quota): one line, the run is resumable
        where = f"{e.filename}: " if getattr(e, "filename", None) else f"{args.out}: "
        print(f"error: {where}{e.strerror or e} (the logged steps are intact; once this is fixed, continue "
              f"with: python -m training train --out {args.out} --resume)", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    print(f"done: {args.out}", file=sys.stderr)
    return EXIT_OK


COMMAND = Command(
    name="train",
    help="train a policy with one objective and log every rollout and token",
    add_arguments=add_train_arguments,
    run=run_train,
    description="Train with any registered method (GRPO, DAPO, GSPO, CISPO, Dr. GRPO or a REAL variant; paper "
    "Algorithm 1) and log every step, rollout and token to --out in the run format of workbench.runlog.",
    epilog=presets_epilog(),
)
