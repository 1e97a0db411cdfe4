"""One RL step of the workbench trainer against TRL's ``GRPOTrainer`` at equal work, in one invocation.

    python benchmarks/bench_trl.py                 # 10 measured RL steps each (+1 warm-up), ours-TRL-ours
    python benchmarks/bench_trl.py --steps 3       # quicker

Equal work, step by step (the ``tiny`` preset's settings on both sides):

- the same model: the tiny preset's warm start (``cache/warmstart/<key>``, a ``save_pretrained`` folder that TRL
  loads by path), float32 on the CPU, 1 torch thread;
- per RL step: 16 prompts of the embedded task's train split x G = 8 completions, at most 48 new tokens,
  temperature 0.6, no top-k/top-p; one no-grad pass for the old log-probs of all 128 completions; then 4
  optimizer updates on 4 slices of 32 completions (whole prompt groups here; TRL: ``steps_per_generation=4``,
  ``per_device_train_batch_size=32``, ``gradient_accumulation_steps=1``); AdamW lr 1e-4, weight decay 0.01,
  gradient clip 1.0, constant learning rate; GRPO loss (eps 0.2, per-sequence mean), no KL term and no
  reference model (ours ``--kl-beta 0``, TRL ``beta=0``); no validation, no checkpoints;
- not equal, and said so: the workbench writes every token of every update to its run directory (the full
  per-token logs are part of its step) and grades with math-verify in a worker process; TRL grades by exact
  match of the boxed answer in-process (``.venv-trl`` has no math-verify) and logs its metrics; TRL's default
  gradient checkpointing is off (it would recompute activations). Both sample from the same model at the same
  temperature, so completion lengths match in distribution (their means are printed).

Ours runs in this process (``training.loop.Trainer.step``, ``time_step``), TRL in ``.venv-trl`` through
``benchmarks/trl_step.py`` (seconds between the ends of each RL step's first optimizer step and the previous RL
step's last one, generation included). Order: ours, TRL, ours again, so that load drifts hit both; the first RL
step of each is a warm-up. Reported: median seconds per RL step and ours / TRL (target: 0.5 or less).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    ROOT,
    bootstrap_interval,
    interval_text,
    load1,
    machine,
    result,
    tiny_policy,
    trainer_cpu_seconds,
    write_results,
)

TARGET = 0.5


OUR_PHASES = ("time_sample", "time_grade", "time_logp", "time_update", "time_log")


def ours(cache_dir: str, steps: int, out: Path) -> tuple[list[float], list[float], list[float], list[dict]]:
    """Wall seconds and CPU seconds of each RL step of the workbench trainer (``steps`` steps; CPU: this
    process and its grader workers), mean response lengths, and each step's phase timings."""
    from training.config import build_config
    from training.loop import Trainer

    cfg = build_config("tiny", {"method": "grpo", "kl_beta": 0.0, "steps": steps, "val_every": 0,
                                "save_every": 0, "cache_dir": cache_dir, "progress": False})  # fmt: skip
    cfg.validate()
    trainer = Trainer(cfg, out, log=lambda m: print(f"  [{m}]", file=sys.stderr))
    seconds, cpu, lengths, phases = [], [], [], []

    try:
        trainer.setup()
        for k in range(1, steps + 1):
            c0 = trainer_cpu_seconds(trainer)
            m = trainer.step(k)
            cpu.append(trainer_cpu_seconds(trainer) - c0)
            seconds.append(float(m["time_step"]))
            lengths.append(float(m["response_len_mean"]))
            phases.append({k: float(m[k]) for k in OUR_PHASES})
    finally:
        trainer.close()
    return seconds, cpu, lengths, phases


def profile_update(cache_dir: str) -> str:
    """torch profiler table of one mini-batch update's forward + backward of the workbench (4 prompts x G=8 of
    the tiny preset, sampled by the default back end): where the update phase's time goes, by operator."""
    import torch
    from torch.profiler import profile

    from training.model import make_scoring_batch, response_logprobs
    from training.rollout import TransformersBackend
    from training.task import encode_prompt

    cfg, model, tok, splits, _ = tiny_policy(cache_dir, log=lambda m: None)
    prompts = [encode_prompt(tok, cfg.prompt_template, p) for p in splits["train"][:4]]
    gens = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id).generate(
        prompts, cfg.group_size, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=1
    )
    rows = [prompts[i // cfg.group_size] for i in range(len(gens.responses))]
    sb = make_scoring_batch(rows, gens.responses, tok.pad_token_id, torch.device("cpu"))
    model.train()

    def fwd_bwd() -> None:
        lp, _ = response_logprobs(model, sb, cfg.temperature, chunk_tokens=cfg.logit_chunk_tokens)
        lp.sum().backward()

    for _ in range(2):
        fwd_bwd()
    with profile() as prof:
        fwd_bwd()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    head = (f"one update's forward+backward, scoring batch {tuple(sb.input_ids.shape)} (rows x positions): "
            f"{total / 1e3:.0f} ms of operator self time, matmuls (mm/addmm/bmm) {mm / total:.0%}")  # fmt: skip
    return head + "\n" + events.table(sort_by="self_cpu_time_total", row_limit=10)


def trl(model_dir: str, steps: int, python: Path, profile: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_trl_") as tmp:
        out = Path(tmp) / "trl.json"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        cmd = [str(python), str(ROOT / "benchmarks" / "trl_step.py"), "--model", model_dir, "--steps", str(steps),
               "--out", str(out), *(["--profile"] if profile else [])]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(
                f"TRL side failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
            )
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="measured RL steps per run (plus one warm-up)")
    ap.add_argument("--cache-dir", default=str(ROOT / "cache"), help="warm-start cache (default: cache/)")
    ap.add_argument("--trl-python", type=Path, default=ROOT / ".venv-trl" / "bin" / "python",
                    help="python of the TRL environment (default: .venv-trl/bin/python)")  # fmt: skip
    ap.add_argument("--profile", action="store_true",
                    help="where each side's step goes: our phase timings and a cProfile of TRL's step (slower)")  # fmt: skip
    ap.add_argument("--json", default=None, help="write the result record here")
    args = ap.parse_args(argv)
    if not args.trl_python.exists():
        print(
            f"error: {args.trl_python} is missing: build it with `bash install.sh engines`", file=sys.stderr
        )
        return 2
    _, _, _, _, info = tiny_policy(args.cache_dir, log=lambda m: print(f"  [{m}]", file=sys.stderr))
    model_dir = info["path"]
    n = args.steps + 1
    load0 = load1()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_trl_ours_") as tmp:
        a, cpu_a, len_a, ph_a = ours(args.cache_dir, n, Path(tmp) / "a")
        load_mid = load1()
        theirs = trl(model_dir, n, args.trl_python, args.profile)
        b, cpu_b, len_b, ph_b = ours(args.cache_dir, n, Path(tmp) / "b")
    wall = time.perf_counter() - t0
    load_end = load1()
    our_steps = a[1:] + b[1:]
    trl_steps = theirs["step_seconds"][1:]
    ours_s, trl_s = statistics.median(our_steps), statistics.median(trl_steps)
    ratio = ours_s / trl_s
    lo, hi = bootstrap_interval(lambda x, y: float(np.median(x) / np.median(y)), our_steps, trl_steps)
    spread = interval_text(lo, hi, TARGET, "the measured steps")
    our_cpu, trl_cpu = (
        statistics.median(cpu_a[1:] + cpu_b[1:]),
        statistics.median(theirs["step_cpu_seconds"][1:]),
    )
    our_len = statistics.mean(len_a + len_b)
    trl_len = statistics.mean(theirs["mean_completion_length"])
    sizes = ("tiny preset: 16 prompts x G=8, max 48 new tokens, T=0.6, old log-probs + 4 updates of 32 rollouts, "
             f"GRPO without KL, float32, 1 torch thread; {args.steps} measured steps each (+1 warm-up); mean "
             f"completion length ours {our_len:.1f}, TRL {trl_len:.1f} tokens")  # fmt: skip
    m = machine()
    print(f"bench_trl  {m['date']}  {m['cpu']}, {m['cores']} cores; torch {m['torch']}, TRL {theirs['trl']} "
          f"(transformers {theirs['transformers']}); load {load0} -> {load_mid} -> {load_end}; {wall:.0f} s")  # fmt: skip
    print(f"  {sizes}")
    print(f"  workbench step: median {ours_s:.3f} s (first run {statistics.median(a[1:]):.3f}, second "
          f"{statistics.median(b[1:]):.3f}; all {[round(x, 2) for x in our_steps]})")  # fmt: skip
    print(f"  TRL GRPOTrainer step: median {trl_s:.3f} s ({[round(x, 2) for x in trl_steps]})")
    print(f"  CPU seconds per step (less sensitive to other jobs): ours {our_cpu:.3f} (with the grader workers), "
          f"TRL {trl_cpu:.3f}; ratio {our_cpu / trl_cpu:.2f}")  # fmt: skip
    our_phases = {k.removeprefix("time_"): round(statistics.mean(p[k] for p in ph_a[1:] + ph_b[1:]), 4)
                  for k in OUR_PHASES}  # fmt: skip
    print(f"  workbench phases, mean s/step: {our_phases}")
    if args.profile:
        print(profile_update(args.cache_dir))
        print(f"  TRL phases (cProfile, cumulative s/step; profiling slows TRL, so ignore the ratio): "
              f"{theirs['profile']}")  # fmt: skip
    print(
        f"  ours / TRL = {ratio:.2f} (target <= {TARGET}): {'met' if ratio <= TARGET else 'MISSED'}; {spread}"
    )
    rec = result(
        "rl_step", "one RL step at equal work vs TRL GRPOTrainer", round(ratio, 3), "x time", TARGET, "lower",
        ours=(f"{ours_s:.3f} s/step, {our_cpu:.3f} CPU s/step incl. grader workers (workbench trainer, full "
              f"per-token logs); CPU-time ratio {our_cpu / trl_cpu:.2f}; ratio {spread}"),
        baseline=f"{trl_s:.3f} s/step, {trl_cpu:.3f} CPU s/step (TRL {theirs['trl']} GRPOTrainer in .venv-trl, a "
                 f"subprocess of the same run, between our two runs)", sizes=sizes,
        load=(load0, load_end), ours_steps=our_steps, trl_steps=trl_steps, cpu_ratio=round(our_cpu / trl_cpu, 3),
        ours_cpu_s=round(our_cpu, 3), trl_cpu_s=round(trl_cpu, 3), our_phases=our_phases,
        interval=[round(lo, 3), round(hi, 3)],
    )  # fmt: skip
    write_results(args.json, [rec])
    return 0


if __name__ == "__main__":
    sys.exit(main())
