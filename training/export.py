"""``python -m training export RUN_DIR --step N --out DIR``: a run's checkpoint as a ``save_pretrained`` folder.

A checkpoint (``training.checkpoint``) holds the policy's state dict, not a model folder. The export rebuilds the
policy the way the trainer built it, from the run's logged config (``run.json``): the embedded decoder from its
shape (``--tiny-*``) with the embedded tokenizer, or the ``--model`` folder's (or Hub id's) architecture and
tokenizer; loads the checkpoint's weights into it, and writes model and tokenizer with ``save_pretrained``, in the
run's precision (bfloat16 for a run that computes in bfloat16, as its ``final_model``; ``--dtype`` overrides).
The folder then loads with ``transformers.AutoModelForCausalLM.from_pretrained`` and works as ``eval --model``.
``export.json`` beside the weights names the run, the step and the checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import CheckpointError, list_checkpoints, read_model_state


class ExportError(ValueError):
    """A run, step or output folder that cannot be exported as asked; the message says which and why."""


def _run_config(run_dir: Path):
    """The run's ``TrainConfig`` as logged in ``run.json`` (defaults filled for settings an older run lacks)."""
    from training.config import ConfigError, TrainConfig, check_logged_config
    from workbench.runlog import RunFormatError, read_meta

    try:
        meta = read_meta(run_dir)
    except RunFormatError as e:
        raise ExportError(str(e)) from None
    saved = dict(meta["config"])
    saved.pop("hparams", None)
    try:
        return TrainConfig.from_dict({**saved, **check_logged_config(saved)})
    except (ConfigError, TypeError) as e:
        raise ExportError(f"{run_dir}/run.json: the logged config cannot be read ({e})") from None


def rebuild_policy(cfg) -> tuple[torch.nn.Module, Any]:
    """The trainer's policy architecture and tokenizer for ``cfg``, in float32, weights not yet loaded: the
    embedded decoder (``training.loop.load_policy`` builds the same one) or ``--model``'s."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from training.model import build_tiny_model, load_local_tokenizer, resolve_model
    from training.tokenizer import build_tokenizer

    if cfg.model is None:
        tokenizer = build_tokenizer()
        model = build_tiny_model(cfg.tiny_spec(), len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id,
                                 cfg.warmstart_seed)  # fmt: skip
        return model, tokenizer
    try:
        folder = resolve_model(cfg.model)
    except ValueError as e:
        raise ExportError(f"the run's {e}") from None
    tokenizer = load_local_tokenizer(folder)
    if tokenizer.pad_token_id is None:  # as load_local_model does for training
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32), tokenizer


def export_checkpoint(
    run_dir: Path | str, step: int | None, out: Path | str, dtype: str | None = None
) -> Path:
    """Write checkpoint ``step`` of ``run_dir`` (the newest when None) to ``out`` as a ``save_pretrained`` folder
    (module docstring); returns ``out``. Raises ``ExportError`` / ``CheckpointError`` with one line: no run, no
    such step (the steps there are named), a damaged checkpoint, an ``out`` that is not empty."""
    run_dir, out = Path(run_dir), Path(out)
    cfg = _run_config(run_dir)
    found = dict(list_checkpoints(run_dir))
    if not found:
        raise ExportError(
            f"{run_dir}: the run has no checkpoint yet (checkpoints/step_NNNNNN, every --save-every)"
        )
    if step is None:
        step = max(found)
    if step not in found:
        raise ExportError(
            f"{run_dir}: no checkpoint of step {step}; the run has steps {', '.join(map(str, sorted(found)))}"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out} exists and is not an empty folder: choose another --out")
    dtype = dtype or ("bfloat16" if cfg.dtype == "bfloat16" else "float32")
    if dtype not in ("float32", "bfloat16"):
        raise ExportError(f"--dtype {dtype}: choose float32 or bfloat16")

    path = found[step]
    logged_step, state = read_model_state(path)
    if logged_step != step:
        raise CheckpointError(path / "meta.json", f"names step {logged_step}, not its folder's {step}")
    model, tokenizer = rebuild_policy(cfg)
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(path / "model.pt", f"does not fit the run's model ({e})") from None
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)  # config.json then says bfloat16, and from_pretrained loads it so

    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"run": str(run_dir.resolve()), "step": step, "checkpoint": str(path.resolve()),
                "method": cfg.method, "base_model": cfg.model or "embedded", "dtype": dtype}  # fmt: skip
        (tmp / "export.json").write_text(json.dumps(info, indent=1) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
