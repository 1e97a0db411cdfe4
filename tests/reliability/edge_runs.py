"""Run directories made of numerically awkward steps, logged through the trainer's own logging code.

Each step's mini-batches go through ``workbench.objectives`` (loss and backward),
``workbench.update_records.update_records`` (the closed-form breakdown, flattened), ``workbench.step_tables``
(``UpdateRecord``, ``RolloutFacts``, ``build_step``) and ``workbench.runlog.RunWriter`` exactly as
``training.loop`` does, in float32 as the trainer computes. Only the numbers are chosen:

- ``mixed``: ordinary groups, small log-ratios;
- ``all_correct`` / ``all_wrong``: every group of the step solved by all / none of its rollouts;
- ``singletons``: groups of one rollout;
- ``huge``: ``|s_bar| / tau = 1e4`` in the later mini-batch (with the reference at the current policy, so that
  only the policy ratio is extreme). A KL penalty to the *old* policy sees that ratio itself, and its k3 term
  ``e^{-s} + s - 1`` overflows float32 beyond ``|s| = 88`` (a documented ``ValueError``): with
  ``kl_target="old"`` the step uses ``|s| = 80`` instead;
- ``one_token``: one-token responses.

As in the trainer, the first mini-batch of each step has ``s = 0`` and the second sees the policy moved.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.methods import resolve_hparams
from workbench.objectives import OBJECTIVES
from workbench.runlog import RunWriter
from workbench.step_tables import RolloutFacts, UpdateRecord, build_step
from workbench.update_records import update_records

CASES = ("mixed", "all_correct", "all_wrong", "singletons", "huge", "one_token")
VOCAB = np.array([f"t{i}" for i in range(64)], dtype=object)


KL_OLD_SAFE_S = 80.0  # largest |s| whose k3 term e^{-s} + s - 1 float32 holds (e^88.7 overflows)


def _step_batch(case: str, rng: np.random.Generator, tau: float, kl_old: bool) -> dict[str, np.ndarray]:
    """Rewards, groups, lengths and the later mini-batch's log-ratio of one step of ``case``."""
    groups, g = (8, 1) if case == "singletons" else (4, 4)
    n = groups * g
    if case == "all_correct":
        rewards = np.ones(n)
    elif case == "all_wrong":
        rewards = np.zeros(n)
    elif case == "singletons":
        rewards = (np.arange(n) % 2).astype(float)
    else:  # every group mixes labels
        rewards = np.tile([1.0, 0.0, 1.0, 0.0], groups)
    lengths = np.ones(n, dtype=int) if case == "one_token" else rng.integers(1, 9, size=n)
    if case == "huge":
        size = KL_OLD_SAFE_S if kl_old else 1e4 * tau  # |s_bar| / tau = 1e4
        s = np.where(np.arange(n) % 3 == 0, 1.0, -1.0) * size
    else:
        s = rng.normal(0.0, 0.3, size=n)
    return {"rewards": rewards, "group": np.repeat(np.arange(groups), g), "lengths": lengths, "s": s, "g": g}


def write_edge_run(root: Path, method: str, hparams: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """One run of ``method`` with one step per case in ``CASES``; returns its directory."""
    hparams = dict(hparams or {})
    hp = resolve_hparams(method, hparams)
    tau = getattr(hp, "tau", 0.5)
    name = method + "".join(f"-{k}{v}" for k, v in sorted(hparams.items())) + f"-s{seed}"
    out = Path(root) / name
    config = {
        "method": method,
        "seed": seed,
        "hparams": dataclasses.asdict(hp),
        "group_size": 4,
        "edge": True,
    }
    writer = RunWriter.create(out, name=name, method=method, config=config, env={"generator": "edge_runs"})
    rng = np.random.default_rng(seed)
    for step, case in enumerate(CASES, start=1):
        writer.write_step(step, *_step_tables(method, hparams, case, step, rng, tau))
    writer.set_status("finished", last_step=len(CASES))
    return out


def _step_tables(method: str, hparams: dict, case: str, step: int, rng: np.random.Generator, tau: float):
    hp = resolve_hparams(method, hparams)
    d = _step_batch(case, rng, tau, hp.kl_beta > 0 and hp.kl_target == "old")
    n = len(d["rewards"])
    t = int(d["lengths"].max())
    mask = torch.from_numpy(np.arange(t)[None, :] < d["lengths"][:, None])
    old = torch.from_numpy(-rng.exponential(1.0, size=(n, t))).float()
    token_ids = torch.from_numpy(rng.integers(0, len(VOCAB), size=(n, t)))
    entropy = torch.from_numpy(rng.gamma(2.0, 0.5, size=(n, t))).float()
    rewards = torch.from_numpy(d["rewards"]).float()
    group = torch.from_numpy(d["group"])
    halves = [np.arange(n // 2), np.arange(n // 2, n)]  # whole groups: n/2 is a multiple of g
    records, losses = [], []
    for update, rows in enumerate(halves):
        r = torch.from_numpy(rows)
        s = torch.zeros(len(rows), t) if update == 0 else torch.from_numpy(d["s"][rows]).float()[:, None]
        logp = (old[r] + s.expand(len(rows), t)).requires_grad_(True)
        ref = logp.detach().clone()  # the KL term at zero: only the policy ratio is extreme here
        res = OBJECTIVES[method](logp, old[r], mask[r], rewards[r], group[r], ref_logp=ref, **hparams)
        res.loss.backward()
        assert torch.isfinite(logp.grad).all(), (method, case)
        losses.append(float(res.loss.detach()))
        rollouts, tokens = update_records(
            method, res, rollout_index=rows, minibatch=update, entropy=entropy[r], token_ids=token_ids[r]
        )
        records.append(UpdateRecord(rollouts, tokens))
    facts = RolloutFacts(
        group=d["group"].tolist(),
        prompt_id=(1000 * step + d["group"]).astype(np.int64),
        prompt=[f"edge {case} {k}" for k in d["group"]],
        response=["" if case == "one_token" else f"response {i}" for i in range(n)],
        answer=["1"] * n,
        reward=d["rewards"].astype(np.float32),
        length=d["lengths"].astype(np.int32),
        finished=np.ones(n, dtype=bool),
        grade_status=["ok"] * n,
    )
    metrics = {
        "entropy_mean": float(entropy[mask].mean()),
        "val_pass1": float("nan") if step % 2 else 0.5,
        "loss": float(np.mean(losses)),
        "grad_norm": 1.0,
    }
    return build_step(step, facts, records, metrics, token_text=VOCAB)
