"""Supervised warm start of the embedded model on generated worked solutions, cached and shared by every run.

RL from a random tiny model learns nothing (every group is all-wrong). The warm start fits the embedded model
to worked solutions of the ``sft`` split (next-token cross-entropy on the solution tokens only) and stops as soon
as the pass rate at the sampling temperature, measured with the real sampler and grader on ``train`` prompts,
reaches ``warmstart_target`` (default 0.35, inside the 20-60% band where groups mix correct and wrong rollouts),
or after ``warmstart_max_steps``.

The result is cached in ``<cache_dir>/warmstart/<key>/`` as a ``save_pretrained`` folder (model + tokenizer, so
it is also a valid ``--model`` folder) plus ``warmstart.json`` (measured pass rate, steps, history, and the
SHA-256 of every other file of the folder). ``key`` hashes everything that determines the result; the folder is
written under a temporary name and renamed into place, and a file lock makes concurrent runs wait for one warm
start instead of computing it twice.

Integrity: on load every file's digest is checked against ``warmstart.json``; a damaged cache (a file missing,
changed, truncated or unreadable, or a ``warmstart.json`` that cannot be read) is named in one line, removed and
rebuilt. The recorded pass rate is the one measured when the cache was written (``pass_rate_source``). Temporary
folders left by a killed writer (``.tmp-<key>-<pid>`` of a dead pid) are removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from training.config import TrainConfig
from training.model import build_tiny_model
from training.rewards import Grader
from training.rollout import TransformersBackend
from training.task import Problem, encode_prompt
from training.tokenizer import TOKENIZER_VERSION, build_tokenizer, response_texts
from workbench.runlog import atomic_write_json

WARMSTART_VERSION = "ws-v1"
EVAL_PROMPTS, EVAL_SAMPLES = 64, 4


def warmstart_key(cfg: TrainConfig) -> str:
    """Hash of everything that determines the warm-start checkpoint."""
    spec = {
        "version": WARMSTART_VERSION,
        "tokenizer": TOKENIZER_VERSION,
        "model": asdict(cfg.tiny_spec()),
        "task": asdict(cfg.task_spec()),
        "prompt_template": cfg.prompt_template,
        "temperature": cfg.temperature,
        "max_new_tokens": cfg.max_new_tokens,
        "target": cfg.warmstart_target,
        "max_steps": cfg.warmstart_max_steps,
        "eval_every": cfg.warmstart_eval_every,
        "batch": cfg.warmstart_batch,
        "lr": cfg.warmstart_lr,
        "seed": cfg.warmstart_seed,
        "torch": ".".join(torch.__version__.split(".")[:2]),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def pass_rate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[Problem],
    cfg: TrainConfig,
    grader: Grader,
    *,
    samples: int,
    seed: int,
    temperature: float | None = None,
) -> tuple[float, float]:
    """Mean reward of ``samples`` completions per problem at the sampling temperature (Pass@1 over k), and the
    share of problems whose samples mix correct and wrong answers (the groups every method learns from)."""
    backend = TransformersBackend(model, tokenizer.pad_token_id, tokenizer.eos_token_id)
    prompts = [encode_prompt(tokenizer, cfg.prompt_template, p) for p in problems]
    gens = backend.generate(
        prompts,
        samples,
        temperature=temperature or cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        seed=seed,
    )
    texts = response_texts(tokenizer, gens.responses)
    answers = [problems[i // samples].answer for i in range(len(texts))]
    r = np.asarray(grader.grade(texts, answers).rewards).reshape(len(problems), samples)
    mixed = (r.max(1) > 0.5) & (r.min(1) < 0.5)
    return float(r.mean()), float(mixed.mean())


def _sft_batch(
    tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig, problems: list[Problem]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside the solution and EOS)."""
    rows, starts = [], []
    for p in problems:
        prompt = encode_prompt(tokenizer, cfg.prompt_template, p)
        answer = [*list(tokenizer(p.solution, add_special_tokens=False)["input_ids"]), tokenizer.eos_token_id]
        rows.append(prompt + answer)
        starts.append(len(prompt))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, s) in enumerate(zip(rows, starts, strict=True)):
        ids[i, : len(r)] = torch.as_tensor(r)
        mask[i, : len(r)] = 1
        labels[i, s : len(r)] = torch.as_tensor(r[s:])
    return ids, mask, labels


def train_warmstart(
    cfg: TrainConfig,
    splits: dict[str, list[Problem]],
    grader: Grader,
    *,
    log: Callable[[str], None] = print,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Fit the embedded model to worked solutions until the pass rate reaches the target (see module doc)."""
    tokenizer = build_tokenizer()
    model = build_tiny_model(
        cfg.tiny_spec(), len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, cfg.warmstart_seed
    )
    sft = [p for p in splits["sft"] if p.solution]
    if not sft:
        raise ValueError("the warm start needs problems with worked solutions (the sft split is empty)")
    eval_set = splits["train"][:EVAL_PROMPTS]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.warmstart_lr, weight_decay=0.01)
    gen = np.random.default_rng([cfg.warmstart_seed, 0x5F7])
    order = gen.permutation(len(sft))
    cursor, history, rate, mixed = 0, [], 0.0, 0.0
    t0 = time.perf_counter()
    model.train()
    step = 0
    for step in range(1, cfg.warmstart_max_steps + 1):
        if cursor + cfg.warmstart_batch > len(order):
            order, cursor = gen.permutation(len(sft)), 0
        batch = [sft[i] for i in order[cursor : cursor + cfg.warmstart_batch]]
        cursor += cfg.warmstart_batch
        ids, mask, labels = _sft_batch(tokenizer, cfg, batch)
        warm = min(1.0, step / 50)
        for g in opt.param_groups:
            g["lr"] = cfg.warmstart_lr * warm
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % cfg.warmstart_eval_every == 0 or step == cfg.warmstart_max_steps:
            rate, mixed = pass_rate(model, tokenizer, eval_set, cfg, grader, samples=EVAL_SAMPLES, seed=step)
            history.append({"step": step, "loss": loss.item(), "pass_rate": rate, "mixed_groups": mixed})
            log(
                f"warm start: step {step}, loss {loss.item():.3f}, pass rate {rate:.3f} "
                f"(target {cfg.warmstart_target}), prompts with mixed outcomes {mixed:.2f}"
            )
            model.train()
            if rate >= cfg.warmstart_target:
                break
    info = {
        "pass_rate": rate,
        "mixed_groups": mixed,
        "pass_rate_eval": f"{len(eval_set)} train prompts x {EVAL_SAMPLES} samples at T={cfg.temperature}",
        "steps": step,
        "reached_target": rate >= cfg.warmstart_target,
        "seconds": time.perf_counter() - t0,
        "history": history,
    }
    return model, tokenizer, info


DIGESTS = "files_sha256"


def folder_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in ``folder`` except ``warmstart.json``, by name."""
    out = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name != "warmstart.json":
            out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def cache_problem(folder: Path) -> str | None:
    """Why the cached warm start in ``folder`` cannot be used, or None when it is intact."""
    try:
        info = json.loads((folder / "warmstart.json").read_text())
    except FileNotFoundError:
        return "warmstart.json is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"warmstart.json is unreadable ({type(e).__name__})"
    if not isinstance(info, dict) or not isinstance(info.get(DIGESTS), dict):
        return None if isinstance(info, dict) else "warmstart.json is not an object"  # legacy: no digests yet
    got = folder_digests(folder)
    for name, digest in info[DIGESTS].items():
        if name not in got:
            return f"{name} is missing"
        if got[name] != digest:
            return f"{name} does not match the digest recorded when the cache was written"
    extra = sorted(set(got) - set(info[DIGESTS]))
    return f"unexpected file(s) {', '.join(extra)}" if extra else None


def _remove_stale_temporaries(root: Path) -> None:
    """Remove ``.tmp-<key>-<pid>`` folders whose writer is no longer alive."""
    for tmp in root.glob(".tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except (ValueError, IndexError, ProcessLookupError):
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(tmp, ignore_errors=True)


def load_or_train(
    cfg: TrainConfig,
    splits: dict[str, list[Problem]],
    grader: Grader,
    *,
    log: Callable[[str], None] = print,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """The cached warm-start model for ``cfg`` (trained and cached on first use), its tokenizer and info."""
    hf_logging.disable_progress_bar()  # no "Loading weights" bars for a 1 MB model
    key = warmstart_key(cfg)
    root = Path(cfg.cache_dir) / "warmstart"
    final = root / key
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process trains, the others wait and then load
        _remove_stale_temporaries(root)
        model = None
        if final.exists():
            problem = cache_problem(final)
            if problem is None:
                model = _load_cached(final)
                if model is None:
                    problem = "the model files do not load"
            if problem is not None:
                log(f"warm start: the cached checkpoint {final} is damaged ({problem}); rebuilding it")
                shutil.rmtree(final, ignore_errors=True)
        if not (final / "warmstart.json").is_file():
            log(
                f"warm start: no cached checkpoint {final}; training it once (shared by every method and seed)"
            )
            trained, tokenizer, info = train_warmstart(cfg, splits, grader, log=log)
            info["key"] = key
            tmp = root / f".tmp-{key}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            trained.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            info["pass_rate_source"] = "measured when the cache was written"
            info[DIGESTS] = folder_digests(tmp)
            (tmp / "warmstart.json").write_text(json.dumps(info, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            log(
                f"warm start: cached in {final} (pass rate {info['pass_rate']:.3f} after {info['steps']} steps)"
            )
        info = json.loads((final / "warmstart.json").read_text())
        if DIGESTS not in info:  # written before digests were recorded: record them now
            info[DIGESTS] = folder_digests(final)
            info.setdefault("pass_rate_source", "measured when the cache was written")
            atomic_write_json(final / "warmstart.json", info)
            log(f"warm start: recorded the file digests of {final}")
        if model is None:  # just trained (loaded from disk, as every later run loads it)
            model = _load_cached(final)
        if model is None:
            raise RuntimeError(f"the warm start just written to {final} does not load")
    info.pop(DIGESTS, None)
    info["path"] = str(final)
    return model, build_tokenizer(), info


def _load_cached(folder: Path) -> PreTrainedModel | None:
    """The cached model, or None when its files do not load."""
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except Exception:  # transformers raises OSError, ValueError, safetensors errors ... for a damaged folder
        return None
    model.config._attn_implementation = "sdpa"
    return model
