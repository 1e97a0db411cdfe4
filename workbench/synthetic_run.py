"""SYNTHETIC run directories for tests and benchmarks: made-up rollouts, real objectives. Not a training result.

``write_synthetic_run(dir, method=..., steps=..., ...)`` writes a run in the documented format
(``docs/run_format.md``, through ``workbench.runlog.RunWriter``) without training anything. The rollouts are
arithmetic word problems with invented responses; rewards, log-probs and entropies are drawn from a seeded
random generator with plausible trends (reward rises, entropy falls, later mini-batches drift ``s_t`` the way the
objective pushes it). Everything derived from them is computed by the real code: each mini-batch's ``loss``,
clip fractions and KL come from ``workbench.objectives``, every logged weight, gradient, advantage and ``log C``
from ``workbench.update_records`` (the closed forms), and the tables from ``workbench.step_tables.build_step``, as
the trainer's are.

The run says what it is: ``config["synthetic"] = True``, ``config["preset"] = "synthetic"`` and
``env["generator"] = "workbench.synthetic_run"``. Readers (the app) label such runs; never present one as a result.

``write_synthetic_suite`` writes one such run per variant the paper's figures need (``PAPER_VARIANTS``) and seed,
each variant with its own trend knobs (from a hash of its name) so that curves differ; the differences mean nothing.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.methods import check_method, resolve_hparams
from workbench.objectives import OBJECTIVES
from workbench.runlog import RunWriter
from workbench.stats.mechanisms import regime_summary, run_tau
from workbench.step_tables import RolloutFacts, StepTables, UpdateRecord, build_step
from workbench.update_records import update_records

GENERATOR = "workbench.synthetic_run"
_SENTENCES = [
    [" By", " the", " order", " of", " operations", ",", " the", " product", " comes", " first", "."],
    [" Let", " me", " double", "-", "check", " the", " multiplication", "."],
    [" Carrying", " the", " tens", " gives", " the", " same", " value", "."],
    [" Now", " add", " the", " remaining", " term", "."],
    [" Hmm", ",", " wait", ".", " Let", " me", " redo", " this", " step", " carefully", "."],
    [" Writing", " it", " out", " digit", " by", " digit", " confirms", " it", "."],
]


def _response(rng: np.random.Generator, a: int, b: int, c: int, answer: int, target_len: int) -> list[str]:
    bc = b * c
    head = ["Let", "'s", " compute", " ", str(b), " *", " ", str(c), " =", " ", str(bc), "."]
    tail = [" Then", " ", str(a), " +", " ", str(bc), " =", " ", str(answer), ".",
            " The", " answer", " is", " \\boxed{", str(answer), "}"]  # fmt: skip
    fill: list[str] = []
    while len(head) + len(fill) + len(tail) < target_len:
        fill += _SENTENCES[int(rng.integers(0, len(_SENTENCES)))]
    return head + fill + tail


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_synthetic_run(
    run_dir: Path | str,
    *,
    method: str = "real",
    steps: int = 12,
    prompts: int = 8,
    group_size: int = 8,
    minibatches: int = 4,
    mean_len: int = 24,
    seed: int = 0,
    val_every: int = 5,
    state: str = "finished",
    hparams: dict[str, Any] | None = None,
    skill_per_step: float = 0.04,
    entropy_decay: float = 0.004,
    progress: bool = False,
) -> Path:
    """Write a SYNTHETIC run of ``steps`` steps x ``prompts`` groups x ``group_size`` rollouts (see module doc).

    Trend knobs (inventions, not results): the logit of each prompt's solve rate rises by ``skill_per_step`` per
    step and the token entropy scales as ``exp(-entropy_decay * step)``. ``state`` is the final ``status.json``
    state (``running`` leaves it as a run still training would). ``progress`` prints a step counter.
    """
    check_method(method)
    if steps < 1 or prompts < 1 or group_size < 2 or minibatches < 1 or mean_len < 4 or val_every < 1:
        raise ValueError(
            "need steps >= 1, prompts >= 1, group_size >= 2, minibatches >= 1, mean_len >= 4, val_every >= 1"
        )
    run_dir = Path(run_dir)
    hp = resolve_hparams(method, hparams)
    rng = np.random.default_rng(seed)
    config = {
        "method": method,
        "seed": seed,
        "hparams": dataclasses.asdict(hp),
        "group_size": group_size,
        "prompts_per_step": prompts,
        "minibatches": minibatches,
        "steps": steps,
        "preset": "synthetic",
        "synthetic": True,
    }
    env = {
        "generator": GENERATOR,
        "note": "SYNTHETIC data for tests and benchmarks, made without training; not a result",
        "torch": torch.__version__,
    }
    writer = RunWriter.create(run_dir, name=run_dir.name, method=method, config=config, env=env)
    vocab: dict[str, int] = {}
    for step in range(1, steps + 1):
        trend = (
            skill_per_step * step,
            math.exp(-entropy_decay * step),
            step % val_every == 0 or step == steps,
        )
        tables = step_tables(rng, step, method, hp, prompts, group_size, minibatches, mean_len, trend, vocab)
        writer.write_step(step, *tables)
        writer.set_status("running", last_step=step, steps=steps)
        if progress:
            print(f"\r  synthetic {run_dir.name}: step {step}/{steps}", end="", flush=True)
    if progress:
        print()
    writer.set_status(state, last_step=steps, steps=steps)
    return run_dir


def step_tables(
    rng: np.random.Generator,
    step: int,
    method: str,
    hp: Any = None,
    prompts: int = 4,
    g: int = 4,
    minibatches: int = 2,
    mean_len: int = 8,
    trend: tuple[float, float, bool] | None = None,
    vocab: dict[str, int] | None = None,
) -> StepTables:
    """One SYNTHETIC step's tables for ``RunWriter.write_step(step, *tables)`` (see the module doc), built like
    the trainer's: one ``update_records`` per mini-batch, joined by ``workbench.step_tables.build_step``.

    ``hp``: the method's resolved hyper-parameters (its defaults when None); ``trend``: ``(skill, entropy scale,
    validate this step)``, by default ``(0.04 * step, 1, False)``; ``vocab`` maps token text to ids across steps.
    """
    hp = resolve_hparams(method, None) if hp is None else hp
    skill, entropy_scale, validate = (0.04 * step, 1.0, False) if trend is None else trend
    vocab = {} if vocab is None else vocab
    n = prompts * g
    group = np.repeat(np.arange(prompts), g)
    difficulty = rng.normal(0.0, 1.2, prompts)
    p_correct = _sigmoid(skill - difficulty)
    rewards = (rng.random(n) < p_correct[group]).astype(float)
    abc = rng.integers(2, 60, size=(prompts, 3))
    answers = abc[:, 0] + abc[:, 1] * abc[:, 2]
    prompt_ids = rng.integers(0, 7474, prompts)

    responses: list[list[str]] = []
    for k in range(n):
        a, b, c = (int(x) for x in abc[group[k]])
        given = int(answers[group[k]]) if rewards[k] else int(answers[group[k]]) + int(rng.integers(1, 9))
        target = max(4, int(rng.gamma(4.0, mean_len / 4.0)))
        responses.append(_response(rng, a, b, c, given, target))
    lengths = np.array([len(r) for r in responses])
    t_max = int(lengths.max())
    mask = np.arange(t_max)[None, :] < lengths[:, None]

    old = -rng.exponential(0.35, (n, t_max))
    hard = rng.random((n, t_max)) < 0.04
    old = np.where(hard, -rng.uniform(2.0, 9.0, (n, t_max)), old)
    minibatch = np.minimum(group * minibatches // prompts, minibatches - 1)
    drift = np.where(rewards > 0.5, 1.0, -1.0)[:, None] * 0.015 * minibatch[:, None]
    noise = rng.normal(0.0, 0.04, (n, t_max)) * minibatch[:, None]
    outlier = (rng.random((n, t_max)) < 0.01) * rng.normal(0.0, 0.6, (n, t_max)) * (minibatch[:, None] > 0)
    s = np.where(mask, drift + noise + outlier, 0.0)
    if method == "gspo":
        s = s * 2e-3  # GSPO's clip range is 1e-4 wide; keep some sequences inside it
    logp = np.where(mask, old + s, 0.0)
    old = np.where(mask, old, 0.0)
    entropy = np.where(mask, rng.gamma(2.0, 0.35, (n, t_max)) * entropy_scale, 0.0)

    token_ids = np.zeros((n, t_max), dtype=np.int64)
    for r, response in enumerate(responses):
        token_ids[r, : len(response)] = [vocab.setdefault(x, len(vocab)) for x in response]

    t = torch.from_numpy
    updates: list[UpdateRecord] = []
    losses, clip_lo, clip_hi, kls = [], [], [], []
    hp_dict = dataclasses.asdict(hp)
    for mb in range(minibatches):
        rows = np.flatnonzero(minibatch == mb)
        if rows.size == 0:
            continue
        args = (t(logp[rows]), t(old[rows]), t(mask[rows]), t(rewards[rows]), t(group[rows]))
        res = OBJECTIVES[method](*args, ref_logp=t(old[rows] - 0.01), **hp_dict)
        losses.append(res.metrics["loss"])
        clip_lo.append(res.metrics.get("clip_frac_low", 0.0))
        clip_hi.append(res.metrics.get("clip_frac_high", 0.0))
        kls.append(res.metrics["approx_kl"])
        cols = update_records(
            method,
            res,
            rollout_index=rows,
            minibatch=mb,
            entropy=t(entropy[rows]),
            token_ids=t(token_ids[rows]),
        )
        updates.append(UpdateRecord(*cols))
    facts = RolloutFacts(
        reward=rewards,
        group=group.tolist(),
        length=lengths,
        prompt=[f"What is {a} + {b} * {c}?" for a, b, c in abc[group]],
        response=["".join(r) for r in responses],
        answer=[str(int(x)) for x in answers[group]],
        prompt_id=prompt_ids[group],
    )
    n_tok = int(lengths.sum())
    t_sample = n_tok / 900.0
    scalars = {
        "entropy_mean": float(entropy[mask].mean()),
        "val_pass1": float(np.clip(_sigmoid(np.array(skill - 0.4)) + rng.normal(0, 0.02), 0, 1))
        if validate
        else float("nan"),
        "loss": float(np.mean(losses)),
        "grad_norm": float(rng.gamma(4.0, 0.05)),
        "clip_frac_low": float(np.mean(clip_lo)),
        "clip_frac_high": float(np.mean(clip_hi)),
        "approx_kl": float(np.mean(kls)),
        "time_sample": t_sample,
        "time_grade": 0.05 * n / 64,
        "time_update": 0.8 * t_sample,
        "time_log": 0.01 * t_sample,
        "time_step": 1.86 * t_sample + 0.05 * n / 64,
        "tokens_per_s": n_tok / t_sample,
        "grader_timeouts": 0,
        "grader_errors": 0,
    }
    # the regime, as the trainer logs it: over every update of the step
    s_all = np.concatenate([u.tokens["s"] for u in updates])
    s_bar_all = np.concatenate([u.rollouts["s_bar"] for u in updates])
    scalars.update(regime_summary(s_all, s_bar_all, run_tau(method, hp_dict)))
    return build_step(step, facts, updates, scalars, token_text=np.asarray(list(vocab), dtype=object))


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


def variant_name(method: str, hparams: dict[str, Any], seed: int) -> str:
    """``method[-keyvalue...]-s{seed}``, e.g. ``real-tau0.1-s0``."""
    return method + "".join(f"-{k}{v}" for k, v in sorted(hparams.items())) + f"-s{seed}"


def write_synthetic_suite(
    root: Path | str,
    seeds: tuple[int, ...] = (0, 1),
    variants: tuple[tuple[str, dict[str, Any]], ...] = PAPER_VARIANTS,
    **sizes: Any,
) -> list[Path]:
    """One SYNTHETIC run per variant and seed under ``root`` (``sizes``: keywords of ``write_synthetic_run``).

    Each variant's ``skill_per_step`` and ``entropy_decay`` come from a hash of its name so that its curves differ
    from the others'; the differences mean nothing.
    """
    steps = int(sizes.get("steps", 12))
    paths = []
    for method, hp in variants:
        h = zlib.crc32(variant_name(method, hp, 0).encode())
        knobs = {
            "skill_per_step": (0.5 + (h % 100) / 50) / steps,
            "entropy_decay": (0.6 - ((h >> 8) % 100) / 100) / steps,
        }
        for seed in seeds:
            run_dir = Path(root) / variant_name(method, hp, seed)
            paths.append(
                write_synthetic_run(run_dir, method=method, seed=seed, hparams=dict(hp), **{**knobs, **sizes})
            )
    return paths
