"""Why the trainer's in-loop sampling is slower per decode step than the sampler alone: one script, one model.

    python scripts/gpu_inloop_sampling.py                      # CUDA: about 2-4 min on one GPU
    python scripts/gpu_inloop_sampling.py --device cpu --quick # tiny sizes (tests/training/test_gpu_inloop_script.py)

Observed before (docs/engines.md): ``scripts/gpu_check.py``'s training run (a tiny chat model folder, bf16,
gradient checkpointing, ``--threads 0`` = ``torch.set_num_threads(cpu_count)``, 8 grader worker processes,
1,024-token prompts) spent 47-58 ms per decode step sampling, while ``scripts/gpu_sampler_check.py`` on a model of
the same shape decoded in 2-8 ms. This script times, on ONE model folder (``save_tiny_model_folder``, the chat
model of ``gpu_check.py``) and one set of ragged prompts, ``TransformersBackend.generate`` per decode step:

1. ``standalone``: as ``gpu_sampler_check.py`` runs it: a fresh model loaded from the folder, no trainer, no
   grader, torch's default thread count;
2. ``in trainer``: ``Trainer.setup()`` with ``gpu_check.py``'s training settings, then the trainer's own back end
   on the same prompts (the trainer's threads, its grader workers alive, its model in training mode with
   gradient checkpointing on), and one whole ``Trainer.step`` (its ``time_sample`` over its decode steps);
3. one suspect changed at a time in the trainer's setting: threads (1 / cpu_count), gradient checkpointing off,
   no grader workers (grader closed), float32 (the lean decoder) instead of bf16.

Then ``torch.profiler`` records one in-trainer call and one standalone call: CPU and device time per decode step,
kernels per decode step, and the ops with the most self CPU time in each. The verdict names the suspect whose
change closes most of the gap (target: in-trainer within 1.2x of standalone). EOS is made rare (its head row
zeroed) so every call decodes about ``--max-new-tokens`` steps. Writes ``<out>/gpu_inloop_sampling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.model import TinyModelSpec, load_local_model, save_tiny_model_folder  # noqa: E402
from training.rollout import TransformersBackend  # noqa: E402

TARGET = 1.2


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rare_eos(model: torch.nn.Module, eos_id: int) -> None:
    """Zero EOS's output row (tied to its embedding): every call decodes about max_new_tokens steps."""
    with torch.no_grad():
        model.get_output_embeddings().weight[eos_id].zero_()


def time_generate(
    backend: TransformersBackend, prompts: list[list[int]], args, device, seed: int = 1
) -> dict:
    """Seconds, decode steps and ms per decode step of one ``generate`` call (after one warm-up call)."""
    kw = {"temperature": args.temperature, "max_new_tokens": args.max_new_tokens}
    backend.generate(prompts, args.group_size, seed=seed + 100, **kw)
    sync(device)
    t0 = time.perf_counter()
    gens = backend.generate(prompts, args.group_size, seed=seed, **kw)
    sync(device)
    dt = time.perf_counter() - t0
    steps = max(len(r) for r in gens.responses)
    return {"seconds": round(dt, 4), "decode_steps": steps, "ms_per_step": round(1e3 * dt / steps, 3),
            "tokens_per_s": round(gens.n_tokens / dt, 1)}  # fmt: skip


def profile_call(fn: Callable[[], object], device: torch.device, steps: int) -> dict:
    """CPU and device time per decode step, kernels per decode step, and the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    events = prof.key_averages()
    cpu_us = sum(e.self_cpu_time_total for e in events)
    dev = [e for e in events if getattr(e.device_type, "name", "") == "CUDA"]
    dev_us = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in dev)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {
        "cpu_ms_per_step": round(cpu_us / 1e3 / steps, 3),
        "device_ms_per_step": round(dev_us / 1e3 / steps, 3),
        "kernels_per_step": round(sum(e.count for e in dev) / steps, 1),
        "ops_per_step": round(sum(e.count for e in events) / steps, 1),
        "top_self_cpu": [[e.key, e.count, round(e.self_cpu_time_total / 1e3, 2)] for e in top],
        "table": events.table(sort_by="self_cpu_time_total", row_limit=12),
    }


def write_problems(path: Path, n: int, prompt_chars: int, seed: int) -> Path:
    """``n`` arithmetic problems padded with filler text to about ``prompt_chars`` characters each (ragged:
    from an eighth of that to all of it), as a JSONL training file."""
    g = torch.Generator().manual_seed(seed)
    with open(path, "w") as f:
        for i in range(n):
            chars = int(torch.randint(max(1, prompt_chars // 8), prompt_chars + 1, (1,), generator=g))
            filler = ("Consider the numbers below carefully. " * (chars // 38 + 1))[:chars]
            f.write(
                json.dumps({"problem": f"{filler}\nWhat is {i} + {i + 7}?", "answer": str(2 * i + 7)}) + "\n"
            )
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the CPU test)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument(
        "--prompt-chars", type=int, default=1500, help="longest prompt's filler text, in characters"
    )
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--grader-workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=ROOT / "evals" / "gpu-inloop-sampling")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)  # fmt: skip
    if args.quick:
        args.prompts, args.group_size, args.max_new_tokens = 2, 2, 6
        args.prompt_chars, args.grader_workers = 60, 1
    spec = (TinyModelSpec(hidden=64, layers=2, heads=2, intermediate=128, max_positions=1024) if args.quick
            else TinyModelSpec(hidden=256, layers=4, heads=4, intermediate=768, max_positions=4096))  # fmt: skip
    from training.config import build_config
    from training.loop import Trainer

    record: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "cpus": os.cpu_count(), "default_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "model": vars(spec),
        "sizes": {"prompts": args.prompts, "group_size": args.group_size, "max_new_tokens": args.max_new_tokens},
        "ms_per_step": {}, "runs": {},
    }  # fmt: skip
    default_threads = torch.get_num_threads()
    t_all = time.perf_counter()

    def note(name: str, r: dict) -> None:
        record["runs"][name] = r
        record["ms_per_step"][name] = r["ms_per_step"]
        print(f"  {name:48s} {r['ms_per_step']:8.2f} ms/decode step ({r['decode_steps']} steps, "
              f"{r['tokens_per_s']:,.0f} tokens/s)", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="gpu_inloop_") as tmp:
        tmp = Path(tmp)
        folder = save_tiny_model_folder(tmp / "model", spec)
        data = write_problems(tmp / "train.jsonl", 64, args.prompt_chars, seed=0)
        settings = {
            "method": "real", "model": str(folder), "train_data": str(data), "val_data": str(data),
            "device": device.type, "dtype": "bfloat16", "gradient_checkpointing": True,
            "logit_chunk_tokens": 1024 if not args.quick else 8, "steps": 1, "batch_prompts": args.prompts,
            "minibatch_prompts": max(1, args.prompts // 4), "group_size": args.group_size,
            "max_new_tokens": args.max_new_tokens, "max_prompt_tokens": 1024, "val_every": 0, "save_every": 0,
            "grader_workers": args.grader_workers, "threads": 0 if device.type == "cuda" else 1,
            "progress": False, "gold_audit": False, "save_final_model": False,
        }  # fmt: skip
        cfg = build_config("tiny", settings)
        cfg.validate()
        trainer = Trainer(cfg, tmp / "run", log=lambda m: print(f"  [{m}]", flush=True))
        trainer.setup()  # sets the trainer's threads, starts its grader, loads the model with checkpointing on
        trainer_threads = torch.get_num_threads()
        record["trainer_threads"] = trainer_threads
        prompts = [trainer.encode(p) for p in trainer.train_set[: args.prompts]]
        record["prompt_tokens"] = [len(p) for p in prompts]
        tok = trainer.tokenizer
        pad, eos = tok.pad_token_id, tok.eos_token_id
        rare_eos(trainer.model, eos)
        print(f"device {record['device']}; model {vars(spec)}; prompts {record['prompt_tokens']}; trainer "
              f"threads {trainer_threads}, default {default_threads}", flush=True)  # fmt: skip

        # 1. standalone, as gpu_sampler_check.py: a fresh model from the folder, default threads, no grader
        torch.set_num_threads(default_threads)
        alone, _ = load_local_model(folder, torch.float32, device)
        rare_eos(alone, eos)
        standalone = {d: TransformersBackend(alone, pad, eos, dtype=d) for d in ("bfloat16", "float32")}
        note("standalone, bf16 (generic loop)", time_generate(standalone["bfloat16"], prompts, args, device))
        note(
            "standalone, float32 (lean decoder)", time_generate(standalone["float32"], prompts, args, device)
        )

        # 2. in the trainer: its back end on the same prompts, then one whole step
        torch.set_num_threads(trainer_threads)
        inside = trainer.backend
        trainer.model.train()  # where the loop leaves it between steps
        note("in trainer, bf16 (as trained)", time_generate(inside, prompts, args, device))
        calls: list[tuple[float, int]] = []
        generate = inside.generate

        def timed(*a, **kw):
            sync(device)
            t0 = time.perf_counter()
            gens = generate(*a, **kw)
            sync(device)
            calls.append((time.perf_counter() - t0, max(len(r) for r in gens.responses)))
            return gens

        inside.generate = timed
        t0 = time.perf_counter()
        metrics = trainer.step(1)
        inside.generate = generate
        dt, steps = calls[0]
        note("in trainer, Trainer.step's own sampling", {"seconds": round(dt, 4), "decode_steps": steps,
             "ms_per_step": round(1e3 * dt / steps, 3), "tokens_per_s": round(metrics["tokens_per_s"], 1)})  # fmt: skip
        record["step_seconds"] = round(time.perf_counter() - t0, 3)

        # 3. one suspect at a time, in the trainer's setting
        torch.set_num_threads(1)
        note("in trainer, 1 torch thread", time_generate(inside, prompts, args, device))
        torch.set_num_threads(os.cpu_count() or 1)
        note("in trainer, cpu_count torch threads", time_generate(inside, prompts, args, device))
        torch.set_num_threads(trainer_threads)
        model = trainer.model
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
        note("in trainer, gradient checkpointing off", time_generate(inside, prompts, args, device))
        note("in trainer, float32 (lean decoder)", time_generate(
            TransformersBackend(trainer.model, pad, eos, dtype="float32"), prompts, args, device))  # fmt: skip
        trainer.grader.close()  # the grader workers gone
        note("in trainer, grader workers closed", time_generate(inside, prompts, args, device))

        # profiles: one in-trainer call (trainer's threads) and one standalone call (default threads)
        kw = {"temperature": args.temperature, "max_new_tokens": args.max_new_tokens, "seed": 3}
        n_steps = record["runs"]["in trainer, bf16 (as trained)"]["decode_steps"]
        profiles = {}
        for name, backend, threads in (("in trainer, bf16", inside, trainer_threads),
                                       ("standalone, bf16", standalone["bfloat16"], default_threads)):  # fmt: skip
            torch.set_num_threads(threads)
            profiles[name] = profile_call(lambda b=backend: b.generate(prompts, args.group_size, **kw), device,
                                          n_steps)  # fmt: skip
        trainer.grader = None  # closed above
        trainer.close()

    ms = record["ms_per_step"]
    base = ms["standalone, bf16 (generic loop)"]
    ratio = ms["in trainer, Trainer.step's own sampling"] / base
    record["ratio_in_loop_vs_standalone"] = round(ratio, 3)
    suspects = {k: v for k, v in ms.items() if k.startswith("in trainer, ") and "as trained" not in k
                and "Trainer.step" not in k and "float32" not in k}  # fmt: skip
    best = min(suspects, key=suspects.get)
    as_trained = ms["in trainer, bf16 (as trained)"]
    gap = as_trained - base
    closed = f"closing {100 * (as_trained - suspects[best]) / gap:.0f}% of the gap" if gap > 0 else "no gap"
    record["verdict"] = (
        f"in-loop {ratio:.2f}x the standalone sampler per decode step (target <= {TARGET}); in the trainer's "
        f"setting the change that helps most: '{best.removeprefix('in trainer, ')}' ({suspects[best]:.2f} "
        f"against {as_trained:.2f} ms/step as trained, {closed})"
    )
    print()
    for name, prof in profiles.items():
        print(f"--- profile of one call, {name}: CPU {prof['cpu_ms_per_step']} ms/step, device "
              f"{prof['device_ms_per_step']} ms/step, {prof['kernels_per_step']} kernels/step, "
              f"{prof['ops_per_step']} ops/step")  # fmt: skip
        print(prof.pop("table"))
    record["profiles"] = profiles
    record["seconds_total"] = round(time.perf_counter() - t_all, 1)
    print(record["verdict"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_inloop_sampling.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out / 'gpu_inloop_sampling.json'} ({record['seconds_total']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
