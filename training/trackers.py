"""Experiment trackers (``--report-to tensorboard,wandb``): the run directory's step metrics and config, mirrored.

A tracker receives the run's config once (as ``run.json`` holds it) and, per step, exactly the row the run
directory's ``metrics/step_*.parquet`` holds: the same names at the same step, null values (``val_pass1`` on a step
without validation) and non-numeric values left out. The run directory stays the record; a tracker is a view.

- TensorBoard writes event files under ``<run>/tensorboard`` (``torch.utils.tensorboard.SummaryWriter``, which
  needs the ``tensorboard`` package); a resumed run purges the steps logged after its checkpoint
  (``purge_step``), so a step is never shown twice.
- Weights & Biases writes under ``<run>/wandb``; offline when ``WANDB_MODE=offline`` or ``--wandb-offline``
  (``wandb sync <run>/wandb/offline-run-*`` uploads it later). The W&B run id is kept in
  ``<run>/wandb/run_id``, so a resumed run continues the same W&B run. Project: ``$WANDB_PROJECT`` or
  ``real-workbench``.

Both packages are imported only when asked for; a missing one is ``TrackerUnavailable``, one line naming the
extra to install. ``Trackers`` holds the open ones: a tracker that raises is closed, named in one warning and left
out for the rest of the run (training never stops for a tracker).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

TRACKERS = ("tensorboard", "wandb")
INSTALL_HINT = "pip install -e .[trackers]"
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


class TrackerUnavailable(RuntimeError):
    """A tracker's package is not installed; the message is one line naming the extra to install."""


class Tracker(Protocol):
    """What the trainer sends to a tracker."""

    name: str

    def log_config(self, config: Mapping[str, Any]) -> None: ...

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def parse_report_to(spec: str | None) -> tuple[str, ...]:
    """The trackers named by a ``--report-to`` value: a comma list of ``tensorboard``, ``wandb``, or ``none``
    (also empty or None). Raises ValueError with a one-line message for an unknown name or ``none`` among
    others."""
    items = [x.strip().lower() for x in (spec or "").split(",") if x.strip()]
    if items == ["none"] or not items:
        return ()
    unknown = [x for x in items if x not in TRACKERS]
    if unknown:
        raise ValueError(
            f"--report-to {spec!r}: unknown tracker {unknown[0]!r}; choose a comma list of "
            f"{', '.join(TRACKERS)}, or none"
        )
    return tuple(dict.fromkeys(items))  # order kept, duplicates dropped


def check_available(names: tuple[str, ...]) -> None:
    """Raise ``TrackerUnavailable`` if the package of a tracker in ``names`` is not installed (found without
    importing it)."""
    from importlib.util import find_spec

    for name in names:
        package = _PACKAGES[name]
        if find_spec(package) is None:
            raise TrackerUnavailable(
                f"--report-to {name} needs the {package} package, which is not installed: {INSTALL_HINT}"
            )


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The values a tracker plots: the numeric, finite entries of a metrics row, without ``step`` (the x axis)."""
    out = {}
    for key, value in metrics.items():
        if key == "step" or isinstance(value, str) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


class TensorBoardTracker:
    """Event files under ``log_dir``: one scalar per metric (tag = the metric's name), the config as text."""

    name = "tensorboard"

    def __init__(self, log_dir: Path, purge_step: int | None = None):
        check_available(("tensorboard",))
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        self.writer.add_text("config", "```\n" + text + "\n```", global_step=0)
        self.writer.flush()

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        for key, value in scalars(metrics).items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run writing under ``<run_dir>/wandb``: ``run.log(metrics, step=step)``, the config as its config."""

    name = "wandb"

    def __init__(self, run_dir: Path, run_name: str, offline: bool = False):
        check_available(("wandb",))
        import wandb

        folder = Path(run_dir) / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        id_file.write_text(run_id + "\n")
        mode = "offline" if offline or os.environ.get("WANDB_MODE", "").lower() == "offline" else None
        self.run = wandb.init(
            dir=str(run_dir),
            project=os.environ.get("WANDB_PROJECT") or "real-workbench",
            name=run_name,
            id=run_id,
            resume="allow",
            mode=mode,
            reinit="create_new",  # never the global run another library (TRL's callback) may hold
            settings=wandb.Settings(console="off", save_code=False, silent=True, x_disable_stats=True),
        )

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config), allow_val_change=True)

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.run.log(scalars(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """The open trackers of a run. Each call goes to every tracker; one that raises is closed, reported once
    through ``warn`` and dropped, so the run goes on without it."""

    def __init__(self, trackers: list[Tracker] | None = None, warn: Callable[[str, str], None] | None = None):
        self.trackers = list(trackers or [])
        self.warn = warn or (lambda name, error: None)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers]

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as e:  # a tracker never stops training
                self.trackers.remove(tracker)
                self.warn(tracker.name, f"{what}: {type(e).__name__}: {e}")
                try:
                    tracker.close()
                except Exception:
                    pass

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._each("log_config", lambda t: t.log_config(config))

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        self._each(f"log_metrics(step {step})", lambda t: t.log_metrics(step, metrics))

    def close(self) -> None:
        self._each("close", lambda t: t.close())
        self.trackers = []


def open_trackers(
    names: tuple[str, ...],
    run_dir: Path,
    *,
    run_name: str,
    resume_step: int = 0,
    wandb_offline: bool = False,
    warn: Callable[[str, str], None] | None = None,
) -> Trackers:
    """Open the trackers ``names`` for the run directory ``run_dir`` (``resume_step``: the last step of a resumed
    run, whose later steps a tracker drops). A missing package raises ``TrackerUnavailable``; any other failure
    to open one is a warning and the run goes on without it."""
    check_available(names)
    warn = warn or (lambda name, error: None)
    opened: list[Tracker] = []
    for name in names:
        try:
            if name == "tensorboard":
                purge = resume_step + 1 if resume_step else None
                opened.append(TensorBoardTracker(Path(run_dir) / "tensorboard", purge_step=purge))
            else:
                opened.append(WandbTracker(Path(run_dir), run_name, offline=wandb_offline))
        except TrackerUnavailable:
            raise
        except Exception as e:
            warn(name, f"open: {type(e).__name__}: {e}")
    return Trackers(opened, warn)
