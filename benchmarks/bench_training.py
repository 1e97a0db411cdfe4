"""Benchmark of the tiny preset's RL step on this machine.

    python benchmarks/bench_training.py                 # 100 real steps of `--preset tiny` (method real)
    python benchmarks/bench_training.py --steps 20      # fewer steps; the 100-step time is then extrapolated

Prints, measured in one run: seconds per step split by phase, sampling tokens per second, logging's share of a
step, peak memory (trainer and grader processes), the wall time of the steps (measured, or extrapolated from the
measured mean when --steps < 100, and labelled so), and the transformers back end's sampling speed against
transformers' own ``generate`` on the same model, prompts, lengths and temperature (a ratio measured here).

Targets (issue 3): 100 steps of the tiny preset in <= 600 s on 2 cores; logging <= 5% of a step.
The warm start is taken from ``--cache-dir`` (trained once if missing; its time is reported apart).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import cpu_name, trainer_cpu_seconds
from training.config import build_config
from training.loop import Trainer
from training.rollout import TransformersBackend
from training.task import encode_prompt
from workbench.runlog import open_run

PHASES = ("time_sample", "time_grade", "time_logp", "time_update", "time_val", "time_log")


def sampler_vs_generate(trainer: Trainer, repeats: int) -> tuple[float, float]:
    """Tokens/s of our sampler and of ``model.generate`` (multinomial sampling, same T, no top-k/top-p)."""
    cfg, model, tok = trainer.cfg, trainer.model, trainer.tokenizer
    problems = trainer.train_set[: cfg.batch_prompts]
    prompts = [encode_prompt(tok, cfg.prompt_template, p) for p in problems]
    ours = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    ids = ids.repeat_interleave(cfg.group_size, 0)
    mask = (torch.arange(width)[None, :] >= (width - torch.tensor([len(p) for p in prompts]))[:, None]).long()
    mask = mask.repeat_interleave(cfg.group_size, 0)
    t_ours, n_ours, t_hf, n_hf = 0.0, 0, 0.0, 0
    model.eval()
    for r in range(repeats):
        t = time.perf_counter()
        gens = ours.generate(
            prompts, cfg.group_size, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=r
        )
        t_ours += time.perf_counter() - t
        n_ours += gens.n_tokens
        torch.manual_seed(r)
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                ids, attention_mask=mask, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )  # fmt: skip
        t_hf += time.perf_counter() - t
        new = out[:, width:]
        ended = (new == tok.eos_token_id).float()
        first_eos = torch.where(ended.any(1), ended.argmax(1) + 1, torch.full((len(new),), new.shape[1]))
        n_hf += int(first_eos.sum())
    return n_ours / t_ours, n_hf / t_hf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="RL steps to run (default 100)")
    ap.add_argument("--method", default="real", help="objective (default real)")
    ap.add_argument("--cache-dir", default="cache", help="warm-start cache (default: cache)")
    ap.add_argument("--out", default=None, help="keep the run here (default: a temporary folder)")
    ap.add_argument(
        "--sampler-repeats",
        type=int,
        default=3,
        help="repeats of the sampler comparison (0: skip it; benchmarks/bench_sampler.py is the full one)",
    )
    ap.add_argument("--json", default=None, help="write result records (logging share, 100-step time) here")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]

    cfg = build_config("tiny", {"method": args.method, "steps": args.steps, "cache_dir": args.cache_dir,
                                "progress": False})  # fmt: skip
    cfg.validate()
    tmp = tempfile.TemporaryDirectory(prefix="bench_training_")
    out = Path(args.out) if args.out else Path(tmp.name) / "run"
    trainer = Trainer(cfg, out, log=lambda msg: print(f"  [{msg}]", file=sys.stderr))

    t0 = time.perf_counter()
    trainer.setup()
    t_setup = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), trainer_cpu_seconds(trainer)
    try:
        trainer._train_loop()
        trainer.writer.set_status("finished", last_step=cfg.steps)
        t_loop, c_loop = time.perf_counter() - t1, trainer_cpu_seconds(trainer) - c1
        ours, hf = sampler_vs_generate(trainer, args.sampler_repeats) if args.sampler_repeats else (0.0, 0.0)
    finally:
        trainer.close()

    run = open_run(out)
    m = run.read("metrics", columns=["step", *PHASES, "time_step", "tokens_per_s", "reward_mean",
                                     "val_pass1"]).to_pandas()  # fmt: skip
    ws = run.env.get("warmstart", {})
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    step_mean = float(m.time_step.mean())
    log_share = float(m.time_log.sum() / m.time_step.sum())

    print(f"bench_training  {datetime.date.today()}  {cpu_name()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} thread(s))")  # fmt: skip
    print(f"preset tiny, method {cfg.method}: {cfg.batch_prompts} prompts x G={cfg.group_size}, "
          f"{cfg.n_minibatches} mini-batch updates/step, max {cfg.max_new_tokens} new tokens, "
          f"validation every {cfg.val_every} steps ({cfg.val_prompts} prompts x k={cfg.val_k})")  # fmt: skip
    if ws:
        print(f"warm start: pass rate {ws.get('pass_rate', float('nan')):.3f} at T={cfg.temperature} after "
              f"{ws.get('steps')} SFT steps ({ws.get('seconds', float('nan')):.0f} s when it was trained)")  # fmt: skip
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    t_preval = sum(e["seconds"] for e in events if e["event"] == "validation" and e["step"] == 0)
    t_ckpt = sum(e["seconds"] for e in events if e["event"] == "checkpoint")
    print(f"setup (model and tokenizer, warm start from the cache, grader processes): {t_setup:.1f} s")
    print(f"loop wall time {t_loop:.1f} s = steps {m.time_step.sum():.1f} s + validation before training "
          f"{t_preval:.1f} s (includes waiting for the grader workers to import math-verify) + checkpoints "
          f"{t_ckpt:.2f} s + rest {t_loop - m.time_step.sum() - t_preval - t_ckpt:.2f} s")  # fmt: skip
    print()
    print(f"{'phase':<14}{'s/step':>9}{'share':>8}")
    for col in (*PHASES, "time_step"):
        v = float(m[col].mean())
        print(f"{col.removeprefix('time_'):<14}{v:>9.3f}{v / step_mean:>8.1%}")
    other = step_mean - sum(float(m[c].mean()) for c in PHASES)
    print(f"{'(other)':<14}{other:>9.3f}{other / step_mean:>8.1%}")
    print()
    print(f"sampling tokens/s (mean over steps): {m.tokens_per_s.mean():,.0f}")
    print(f"logging share of a step: {log_share:.2%}  (target <= 5%)")
    print(f"peak memory: trainer {peak_self:,.0f} MiB, largest grader worker {peak_children:,.0f} MiB")
    if args.steps >= 100:
        t100 = t_loop * 100 / args.steps
        label = "measured" if args.steps == 100 else f"measured over {args.steps} steps, scaled to 100"
    else:
        t100 = t_preval + (t_loop - t_preval) * 100 / args.steps
        label = f"extrapolated from {args.steps} measured steps"
    c100 = c_loop * t100 / t_loop  # CPU seconds (trainer + grader workers), scaled as the wall time
    print(
        f"100 steps: {c100:.1f} CPU seconds of the trainer and its grader workers (scaled as the wall time)"
    )
    print(f"100 steps: {t100:.1f} s of loop wall time, {t100 + t_setup:.1f} s with setup ({label}; "
          f"target <= 600 s)")  # fmt: skip
    print(f"reward mean first/last 10 steps: {m.reward_mean.head(10).mean():.3f} / {m.reward_mean.tail(10).mean():.3f}; "
          f"val Pass@1 {np.round(m.val_pass1.dropna().to_numpy(), 3).tolist()}")  # fmt: skip
    if args.sampler_repeats:
        print(f"sampler vs transformers generate (same model, {cfg.batch_prompts}x{cfg.group_size} rollouts, "
              f"T={cfg.temperature}): {ours:,.0f} vs {hf:,.0f} tokens/s = {ours / hf:.2f}x")  # fmt: skip
    if args.json:
        from benchmarks.common import result, write_results

        load = (round(load0, 2), round(os.getloadavg()[0], 2))
        sizes = (f"tiny preset, method {cfg.method}: {cfg.batch_prompts} prompts x G={cfg.group_size}, "
                 f"{cfg.n_minibatches} updates/step, max {cfg.max_new_tokens} new tokens; {args.steps} steps")  # fmt: skip
        phases = {c.removeprefix("time_"): round(float(m[c].mean()), 4) for c in (*PHASES, "time_step")}
        write_results(args.json, [
            result("logging", "logging's share of an RL step, full per-token logs", round(100 * log_share, 2), "%",
                   5.0, "lower", ours=f"{m.time_log.mean():.4f} s/step writing rollouts + tokens + metrics",
                   baseline=f"{step_mean:.3f} s/step (the whole step, same run)", sizes=sizes, load=load,
                   phases=phases),
            result("tiny_run", "100 steps of the tiny preset (loop wall time)", round(t100, 1), "s", 600.0, "lower",
                   ours=label, baseline="-", sizes=sizes, load=load, setup_s=round(t_setup, 1),
                   validation_before_s=round(t_preval, 1), steps_measured=args.steps, cpu_s=round(c100, 1)),
        ])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
