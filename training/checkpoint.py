"""Training checkpoints under ``<run>/checkpoints/step_NNNNNN/``, written atomically.

A checkpoint holds the policy's state dict (``model.pt``), the optimizer's state (``optimizer.pt``) and
``meta.json`` (step, time). It is written into a hidden temporary folder, every file flushed to disk, then the
folder is renamed into place: a checkpoint folder that exists is complete. The newest ``keep`` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch

CHECKPOINTS = "checkpoints"


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
    run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, keep: int
) -> Path:
    """Write the checkpoint of ``step`` atomically and delete all but the newest ``keep``."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-step_{step:06d}-{os.getpid()}"
    tmp.mkdir()
    _save(model.state_dict(), tmp / "model.pt")
    _save(optimizer.state_dict(), tmp / "optimizer.pt")
    with open(tmp / "meta.json", "w") as f:
        json.dump({"step": step, "time": time.time()}, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
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


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimizer state from a checkpoint folder; returns its step."""
    path = Path(path)
    device = next(model.parameters()).device
    model.load_state_dict(torch.load(path / "model.pt", map_location=device, weights_only=True))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    return int(json.loads((path / "meta.json").read_text())["step"])
