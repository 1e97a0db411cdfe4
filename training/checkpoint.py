"""Training checkpoints under ``<run>/checkpoints/step_NNNNNN/``, written atomically.

A checkpoint holds the policy's state dict (``model.pt``), the optimizer's state (``optimizer.pt``) and
``meta.json`` (step, time). It is written into a hidden temporary folder, every file flushed to disk, then the
folder is renamed into place: a checkpoint folder that exists is complete. The newest ``keep`` are kept.

A checkpoint damaged after it was written (a truncated or overwritten file, a disk error) cannot be loaded: that
is a ``CheckpointError`` naming the file. On resume, ``load_latest`` then falls back to the newest checkpoint that
loads (the steps after it are redone, identically), and fails naming every file only when none does.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch

CHECKPOINTS = "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what is wrong with it."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save(obj, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:06d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first. Hidden (temporary) folders are not checkpoints."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.name.startswith("step_") and p.is_dir() and (p / "meta.json").is_file():
            try:
                out.append((int(p.name[5:]), p))
            except ValueError:
                continue
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    keep: int,
    extra: dict[str, dict] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` atomically and delete all but the newest ``keep``.

    ``extra``: more state dicts to keep with it, each written as ``<name>.pt`` (e.g. ``lagged``, the behaviour
    policies of ``--rollout-lag``); ``load_latest(..., extra={name: {}})`` reads them back."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-step_{step:06d}-{os.getpid()}"
    tmp.mkdir()
    try:
        _save(model.state_dict(), tmp / "model.pt")
        _save(optimizer.state_dict(), tmp / "optimizer.pt")
        for name, state in (extra or {}).items():
            _save(state, tmp / f"{name}.pt")
        with open(tmp / "meta.json", "w") as f:
            json.dump({"step": step, "time": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
    except BaseException:  # a full disk, a kill: leave no half-written checkpoint behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = checkpoint_dir(run_dir, step)
    if final.exists():  # the step was redone after a resume: replace its checkpoint
        old = root / f".old-step_{step:06d}-{os.getpid()}"
        os.rename(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, final)
    _fsync_dir(root)
    for _, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def _load_state(path: Path, device: torch.device) -> dict:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(path, "missing") from None
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a damaged file
        raise CheckpointError(path, f"not a readable checkpoint file ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"holds a {type(state).__name__}, not a state dict")
    return state


def _checkpoint_step(path: Path) -> int:
    meta = path / "meta.json"
    try:
        step = json.loads(meta.read_bytes().decode("utf-8"))["step"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as e:
        raise CheckpointError(meta, f"not a checkpoint's meta.json ({type(e).__name__}: {e})") from None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(meta, f"field 'step' must be a step number, got {step!r}")
    return step


def read_model_state(path: Path) -> tuple[int, dict]:
    """(step, the policy's state dict on the CPU) of a checkpoint folder, without an optimizer (for export); a
    damaged checkpoint raises ``CheckpointError`` naming the file."""
    path = Path(path)
    return _checkpoint_step(path), _load_state(path / "model.pt", torch.device("cpu"))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimizer state from a checkpoint folder; returns its step. A damaged or foreign
    checkpoint raises ``CheckpointError`` naming the file (model and optimizer may then be partly restored:
    load another checkpoint into them before use)."""
    path = Path(path)
    device = next(model.parameters()).device
    step = _checkpoint_step(path)
    for name, target in (("model.pt", model), ("optimizer.pt", optimizer)):
        state = _load_state(path / name, device)
        try:
            target.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(path / name, f"does not fit this run's {name[:-3]} ({e})") from None
    return step


def load_latest(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    extra: dict[str, dict] | None = None,
) -> tuple[int, list[CheckpointError]]:
    """Load the newest checkpoint of ``run_dir`` that loads; returns its step (0 if the run has none) and the
    errors of the newer ones passed over. Raises ``CheckpointError`` (listing every error) if checkpoints exist
    but none loads: the run is not silently restarted from step 0.

    ``extra``: its keys name the extra state dicts the checkpoint must hold (``save_checkpoint(..., extra=)``);
    their values are replaced by what was read (on the CPU). A checkpoint without them counts as damaged."""
    found = list_checkpoints(run_dir)
    bad: list[CheckpointError] = []
    for _, path in reversed(found):
        try:
            loaded = {name: _load_state(path / f"{name}.pt", torch.device("cpu")) for name in extra or {}}
            step = load_checkpoint(path, model, optimizer)
        except CheckpointError as e:
            bad.append(e)
            continue
        if extra is not None:
            extra.update(loaded)
        return step, bad
    if bad:
        raise CheckpointError(
            Path(run_dir) / CHECKPOINTS,
            f"none of the {len(bad)} checkpoints loads: " + "; ".join(str(e) for e in bad),
        )
    return 0, bad
