"""GPU check: the real-model code paths on CUDA in bf16, in one command, with throughput.

    python scripts/gpu_check.py                    # CUDA if available, else the CPU fallback (smaller sizes)
    python scripts/gpu_check.py --device cpu --quick

Three parts, each through the project's own code (nothing downloaded; the model is built locally):

1. Chunked log-probs at the paper's sizes: one 8,192-token response over a 151,936-token vocabulary (Qwen2's),
   forward and backward under bf16 autocast, unchunked vs ``--logit-chunk-tokens 2048``: peak memory, time, and
   the largest difference in log-probs and gradients.
2. Training: a tiny chat model folder (``save_tiny_model_folder``) trained for a few steps with ``python -m training
   train`` (``--dtype bfloat16 --gradient-checkpointing --logit-chunk-tokens``) on MATH500 problems when the shared
   data is found (``$REAL_DATA_DIR``), else on generated arithmetic problems; per-step times and tokens/s.
3. Evaluation of the trained model's ``final_model`` folder with ``python -m training eval`` (Pass@1 table).

Prints a summary and writes it to ``<out>/gpu_check.json``. Accuracy is not the point (the model is tiny and
random); the point is that every path runs on the device and how fast.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.cli import main as training_main  # noqa: E402
from training.datasets import data_dir  # noqa: E402
from training.model import (  # noqa: E402
    TinyModelSpec,
    autocast,
    build_tiny_model,
    make_scoring_batch,
    response_logprobs,
    save_tiny_model_folder,
)


def log(msg: str) -> None:
    print(msg, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def chunk_check(device: torch.device, vocab: int, response: int, chunk: int, dtype: str) -> dict:
    """Unchunked vs chunked log-probs (forward + backward) of one long response: memory, time, differences."""
    spec = TinyModelSpec(hidden=256, layers=2, heads=4, intermediate=512, max_positions=response + 128)
    model = build_tiny_model(spec, vocab, 0, 1, seed=0).to(device)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(2, vocab, (64,), generator=g).tolist()
    resp = torch.randint(2, vocab, (response,), generator=g)
    batch = make_scoring_batch([prompt], [resp], 0, device)
    weights = torch.randn(1, response, generator=g).to(device)
    out = {}
    for name, c in (("unchunked", 0), ("chunked", chunk)):
        model.zero_grad(set_to_none=True)
        peak_reset(device)
        sync(device)
        t0 = time.perf_counter()
        try:
            with autocast(device, dtype):
                logp, _ = response_logprobs(model, batch, 0.6, chunk_tokens=c)
            (logp * weights).sum().backward()
            sync(device)
        except torch.OutOfMemoryError as e:
            out[name] = {"error": f"out of memory: {e}"[:200]}
            continue
        out[name] = {
            "seconds": time.perf_counter() - t0,
            "peak_gib": peak_gib(device),
            "logp": logp.detach().float().cpu(),
            "grad": torch.cat([p.grad.flatten().float().cpu() for p in model.parameters()]),
        }
    result = {"vocab": vocab, "response_tokens": response, "chunk_tokens": chunk, "dtype": dtype}
    for name in ("unchunked", "chunked"):
        r = out[name]
        result[name] = {k: v for k, v in r.items() if k not in ("logp", "grad")}
    if "logp" in out["unchunked"] and "logp" in out["chunked"]:
        a, b = out["unchunked"], out["chunked"]
        result["max_abs_diff_logp"] = float((a["logp"] - b["logp"]).abs().max())
        result["max_rel_diff_grad"] = float((a["grad"] - b["grad"]).abs().max() / a["grad"].abs().max())
    return result


def write_arith(path: Path, n: int) -> Path:
    from training.task import ArithmeticSpec, make_splits

    splits = make_splits(ArithmeticSpec(n_val=16, n_test=16, n_train=n, n_sft=16))
    with open(path, "w") as f:
        for p in splits["train"]:
            f.write(json.dumps({"problem": p.prompt, "answer": p.answer}) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--out", default="evals/gpu-check", help="work folder (replaced)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU fallback uses them anyway)")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)  # fmt: skip
    quick = args.quick or device.type == "cpu"
    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    t_all = time.perf_counter()
    summary: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    from importlib.metadata import version

    summary["transformers"] = version("transformers")
    log(f"device {summary['device']}, torch {summary['torch']}, transformers {summary['transformers']}")

    # 1. chunked log-probs at the paper's sizes
    vocab, response, chunk = (151_936, 8192, 2048) if not quick else (5000, 256, 64)
    t = time.perf_counter()
    summary["logprob_chunks"] = chunk_check(device, vocab, response, chunk, "bfloat16")
    log(f"1. log-probs of a {response}-token response, vocab {vocab}, bf16 autocast: "
        + json.dumps(summary["logprob_chunks"]) + f" ({time.perf_counter() - t:.1f} s)")  # fmt: skip

    # 2. train a tiny chat model for a few steps
    model_dir = save_tiny_model_folder(
        out / "model",
        TinyModelSpec(hidden=256, layers=4, heads=4, intermediate=768, max_positions=4096)
        if not quick
        else TinyModelSpec(hidden=64, layers=2, heads=2, intermediate=128, max_positions=1024),
    )
    shared = data_dir()
    if (shared / "benchmarks" / "math.json").is_file():
        train_data, val_data, bench = str(shared / "benchmarks" / "math.json"), "aime", "aime,math"
    else:
        train_data = val_data = str(write_arith(out / "arith.jsonl", 256))
        bench = train_data
    new_tokens = 512 if not quick else 16
    batch, group = (16, 8) if not quick else (4, 2)
    train_args = [
        "train", "--method", "real", "--model", str(model_dir), "--out", str(out / "run"),
        "--train-data", train_data, "--val-data", val_data, "--device", device.type,
        "--dtype", "bfloat16", "--gradient-checkpointing", "--logit-chunk-tokens", "1024" if not quick else "8",
        "--steps", str(args.steps), "--batch-prompts", str(batch), "--minibatch-prompts", str(batch // 4),
        "--group-size", str(group), "--max-new-tokens", str(new_tokens), "--max-prompt-tokens", "1024",
        "--val-every", str(args.steps), "--val-prompts", "8", "--val-k", "4" if not quick else "2",
        "--save-every", str(args.steps), "--grader-workers", str(min(8, os.cpu_count() or 1)),
        "--threads", "0" if device.type == "cuda" else "1", "--no-progress",
    ]  # fmt: skip
    peak_reset(device)
    t = time.perf_counter()
    rc = training_main(train_args)
    train_s = time.perf_counter() - t
    if rc != 0:
        log(f"training failed with exit code {rc}")
        return rc
    from workbench.runlog import open_run

    cols = ["time_sample", "time_grade", "time_logp", "time_update", "time_val", "time_step", "tokens_per_s",
            "response_len_mean", "reward_mean", "max_rss_mb"]  # fmt: skip
    metrics = open_run(out / "run").read("metrics", columns=["step", *cols]).to_pandas()
    summary["train"] = {
        "steps": args.steps, "prompts_x_group": f"{batch}x{group}", "max_new_tokens": new_tokens,
        "seconds_total": train_s, "peak_gpu_gib": peak_gib(device),
        "per_step": metrics.round(4).to_dict(orient="records"),
    }  # fmt: skip
    log("2. training steps:\n" + metrics.round(3).to_string(index=False))
    log(f"   {train_s:.1f} s with setup; peak GPU memory {summary['train']['peak_gpu_gib']:.2f} GiB")

    # 3. evaluate the trained model
    eval_args = [
        "eval", "--model", str(out / "run" / "final_model"), "--benchmarks", bench, "--k", "4",
        "--limit", "16" if not quick else "2", "--max-new-tokens", str(new_tokens), "--batch-prompts", "16",
        "--out", str(out / "eval"), "--device", device.type, "--no-progress", "--paper-tables", "1",
    ]  # fmt: skip
    t = time.perf_counter()
    rc = training_main(eval_args)
    eval_s = time.perf_counter() - t
    if rc != 0:
        log(f"evaluation failed with exit code {rc}")
        return rc
    samples = [json.loads(x) for f in sorted((out / "eval" / "samples").glob("*.jsonl")) for x in
               f.read_text().splitlines()]  # fmt: skip
    tokens = sum(sum(r["lengths"]) for r in samples)
    summary["eval"] = {"seconds": eval_s, "questions": len(samples), "response_tokens": tokens,
                       "tokens_per_s": tokens / eval_s}  # fmt: skip
    log(f"3. evaluation: {len(samples)} questions x 4 samples, {tokens} tokens in {eval_s:.1f} s "
        f"({tokens / eval_s:.0f} tokens/s, grading included)")  # fmt: skip
    summary["seconds_total"] = time.perf_counter() - t_all
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=1, default=str))
    log(f"done in {summary['seconds_total']:.1f} s; summary in {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
