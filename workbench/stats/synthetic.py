"""Synthetic run directories in the real schema, for tests, benchmarks and demos. Not training.

``write_synthetic_run`` draws rewards, response lengths and token log-ratios from simple distributions and
logs them through ``workbench.runlog.RunWriter`` exactly as a trainer would: each step's rollouts are split
into ``minibatches`` updates (whole groups each), ``s`` is 0 in the first and heavy-tailed afterwards, and
every gradient quantity (token weight, rollout weight, ``grad``, advantage, ``log_c``, ``used``) comes from
``workbench.closed_forms.token_gradient`` on those numbers, so the logs are internally consistent.

The trends (reward rising at ``skill_rate``, entropy drifting by ``entropy_drift``) are knobs, not results:
figures drawn from these runs show the plumbing, never a finding.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.closed_forms import token_gradient
from workbench.methods import CLIP_METHODS, resolve_hparams
from workbench.runlog import RunWriter

VOCAB = np.array([f"tok{i}" for i in range(512)], dtype=object)


@dataclass(frozen=True)
class SyntheticRun:
    """What to generate. ``hparams`` are overrides of the method's defaults (as a trainer's flags)."""

    method: str
    seed: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    steps: int = 6
    groups: int = 4  # prompts per step
    group_size: int = 4
    minibatches: int = 2
    min_len: int = 3
    max_len: int = 12
    s_scale: float = 0.15  # scale of s in later mini-batches (Student-t, 3 dof)
    val_every: int = 2  # val_pass1 on steps divisible by this (and the last), null elsewhere
    skill_rate: float = 1.5  # logit of the solve rate rises by this over the run
    entropy_drift: float = -0.3  # log entropy moves by this over the run
    name: str | None = None

    def run_name(self) -> str:
        if self.name:
            return self.name
        extra = "".join(f"-{k}{v}" for k, v in sorted(self.hparams.items()))
        return f"{self.method}{extra}-s{self.seed}"


def _step_tables(spec: SyntheticRun, step: int, rng: np.random.Generator) -> tuple[dict, dict, dict]:
    hp = dict(spec.hparams)
    g, n = spec.group_size, spec.groups
    b = g * n
    progress = step / max(spec.steps, 1)
    difficulty = rng.normal(0.0, 1.5, size=n)
    p_solve = 1.0 / (1.0 + np.exp(-(difficulty - 0.5 + spec.skill_rate * progress)))
    rewards = (rng.random((n, g)) < p_solve[:, None]).astype(np.float64).ravel()
    group = np.repeat(np.arange(n), g)
    lengths = rng.integers(spec.min_len, spec.max_len + 1, size=b)
    t = int(lengths.max())
    mask = np.arange(t)[None, :] < lengths[:, None]
    entropy_level = float(np.exp(np.log(0.8) + spec.entropy_drift * progress))
    old_logp = -rng.exponential(entropy_level, size=(b, t))
    ref_logp = old_logp + rng.normal(0.0, 0.05, size=(b, t))
    entropy = rng.gamma(2.0, entropy_level / 2.0, size=(b, t))
    # whole groups per mini-batch, in order
    mb_of_group = np.minimum(np.arange(n) * spec.minibatches // n, spec.minibatches - 1)
    minibatch = mb_of_group[group]
    s = np.zeros((b, t))
    later = minibatch > 0
    s[later] = (
        spec.s_scale
        * rng.standard_t(3, size=(int(later.sum()), t))
        * (minibatch[later, None] / spec.minibatches)
    )
    s = np.clip(s, -5.0, 5.0)
    logp = old_logp + s
    s = logp - old_logp

    weight = np.zeros((b, t))
    grad = np.zeros((b, t))
    rollout_weight = np.zeros(b)
    advantage = np.full(b, np.nan)
    log_c = np.full(b, np.nan)
    used = np.zeros(b, dtype=bool)
    s_bar = np.zeros(b)
    for mb in range(spec.minibatches):
        rows = np.flatnonzero(minibatch == mb)
        if len(rows) == 0:
            continue
        m = torch.from_numpy(mask[rows])
        res = token_gradient(
            spec.method,
            torch.from_numpy(np.where(mask[rows], logp[rows], 0.0)),
            torch.from_numpy(np.where(mask[rows], old_logp[rows], 0.0)),
            m,
            torch.from_numpy(rewards[rows]),
            torch.from_numpy(group[rows]),
            ref_logp=torch.from_numpy(np.where(mask[rows], ref_logp[rows], 0.0)),
            **hp,
        )
        weight[rows] = res.token_weight.numpy()
        grad[rows] = res.grad.numpy()
        rollout_weight[rows] = res.rollout_weight.numpy()
        used[rows] = res.used.numpy()
        s_bar[rows] = res.s_bar.numpy()
        if res.advantage is not None:
            advantage[rows] = res.advantage.numpy()
        if res.log_c is not None:
            lc = res.log_c.numpy()  # REAL w/o anchor: +inf in single-label groups; logged as null
            log_c[rows] = np.where(np.isfinite(lc), lc, np.nan)

    rr, pp = np.nonzero(mask)
    tokens = {
        "step": np.full(len(rr), step),
        "rollout": rr,
        "pos": pp,
        "token_id": (rr * 31 + pp * 7) % len(VOCAB),
        "token": VOCAB[(rr * 31 + pp * 7) % len(VOCAB)],
        "old_logp": old_logp[rr, pp],
        "logp": logp[rr, pp],
        "s": s[rr, pp],
        "ratio": np.exp(s[rr, pp]),
        "entropy": entropy[rr, pp],
        "weight": weight[rr, pp],
        "grad": grad[rr, pp],
    }
    correct = rewards.reshape(n, g).sum(1)
    rollouts = {
        "step": np.full(b, step),
        "minibatch": minibatch,
        "rollout": np.arange(b),
        "group": group,
        "prompt_id": 1000 * step + group,
        "prompt": [f"synthetic prompt {step}.{k}" for k in group],
        "response": [f"synthetic response {i}" for i in range(b)],
        "answer": ["42"] * b,
        "reward": rewards,
        "length": lengths,
        "s_bar": s_bar,
        "advantage": advantage,
        "weight": rollout_weight,
        "log_c": log_c,
        "used": used,
        "group_size": np.full(b, g),
        "group_correct": correct[group],
    }
    val = None
    if step % spec.val_every == 0 or step == spec.steps:
        val = float(np.clip(0.2 + 0.3 * progress * spec.skill_rate / 1.5 + rng.normal(0, 0.02), 0, 1))
    metrics = {
        "reward_mean": float(rewards.mean()),
        "solved_all_ratio": float((correct == g).mean()),
        "solved_none_ratio": float((correct == 0).mean()),
        "entropy_mean": float(entropy[mask].mean()),
        "val_pass1": val if val is not None else float("nan"),
        "loss": 0.0,
        "grad_norm": float(np.abs(grad).sum()),
        "clip_frac_low": 0.0,
        "clip_frac_high": 0.0,
        "approx_kl": float(np.mean(np.exp(-s[mask]) + s[mask] - 1)),
        "response_len_mean": float(lengths.mean()),
        "time_sample": 0.0,
        "time_grade": 0.0,
        "time_update": 0.0,
        "time_log": 0.0,
        "time_step": 0.0,
        "tokens_per_s": 0.0,
        "grader_timeouts": 0,
        "grader_errors": 0,
    }
    return metrics, rollouts, tokens


def write_synthetic_run(root: Path | str, spec: SyntheticRun, progress: bool = False) -> Path:
    """Write ``root/<spec.run_name()>`` (must not exist yet) and mark it finished; returns its path."""
    hp = dataclasses.asdict(resolve_hparams(spec.method, spec.hparams))
    run_dir = Path(root) / spec.run_name()
    config = {
        "method": spec.method,
        "seed": spec.seed,
        "hparams": hp,
        "group_size": spec.group_size,
        "synthetic": dataclasses.asdict(spec),
    }
    env = {"generator": "workbench.stats.synthetic", "clip_family": spec.method in CLIP_METHODS}
    writer = RunWriter.create(run_dir, name=spec.run_name(), method=spec.method, config=config, env=env)
    rng = np.random.default_rng([spec.seed, zlib.crc32(spec.method.encode())])
    for step in range(1, spec.steps + 1):
        writer.write_step(step, *_step_tables(spec, step, rng))
        if progress:
            print(f"\r  synthetic {spec.run_name()}: step {step}/{spec.steps}", end="", flush=True)
    if progress:
        print()
    writer.set_status("finished", last_step=spec.steps)
    return run_dir


# Every variant the figures of workbench.figures need (method, hparams overrides).
PAPER_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("grpo", {}),
    ("grpo", {"clip_mode": "bidirectional"}),
    ("dapo", {}),
    ("gspo", {}),
    ("real", {}),
    ("real_bce", {}),
    ("real_no_anchor", {}),
    ("real", {"tau": 0.1}),
    ("real", {"tau": 1.0}),
    ("real", {"kl_beta": 0.001}),
    ("real", {"kl_beta": 0.001, "kl_target": "old"}),
)


def write_synthetic_suite(
    root: Path | str, seeds: tuple[int, ...] = (0, 1), variants=PAPER_VARIANTS, **sizes: Any
) -> list[Path]:
    """One synthetic run per variant and seed under ``root`` (``sizes``: SyntheticRun fields such as steps).

    Each variant gets its own ``skill_rate`` and ``entropy_drift`` (from a hash of its name) so that curves
    differ; the differences mean nothing.
    """
    paths = []
    for method, hp in variants:
        key = method + "".join(f"{k}{v}" for k, v in sorted(hp.items()))
        h = zlib.crc32(key.encode())
        knobs = {"skill_rate": 0.5 + (h % 100) / 50, "entropy_drift": -0.6 + ((h >> 8) % 100) / 100}
        for seed in seeds:
            paths.append(
                write_synthetic_run(root, SyntheticRun(method, seed, dict(hp), **{**knobs, **sizes}))
            )
    return paths
