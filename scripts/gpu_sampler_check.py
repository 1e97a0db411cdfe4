"""GPU check of the rollout sampler: tokens/s of each decode path on CUDA, and where a decode step's time goes.

    python scripts/gpu_sampler_check.py                  # 16 prompts x G=8, 512 new tokens, T=0.6
    python scripts/gpu_sampler_check.py --out evals/gpu-sampler

The model is the tiny preset's shape (a Qwen2 decoder built from a config, random weights, nothing downloaded) on
CUDA. Contenders, each called with the same prompts, seed and sizes after one warm-up call: the default back end
(``TransformersBackend``: the lean decoder at float32 where it supports the model, the generic per-token forward
otherwise), the generic loop (``lean=False``) in float32 and under bf16 autocast, and ``transformers``'
``generate`` (multinomial sampling, ``top_k=0``). EOS is an id the model rarely draws, so every call decodes about
``--max-new-tokens`` steps. Then ``torch.profiler`` records one call of the generic bf16 loop and prints the ops
with the most self CPU time and the CUDA kernel count per decode step: a decode step of a model this small is bound
by host-side overhead, and the table says whose. Writes ``<out>/gpu_sampler.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.model import TinyModelSpec, autocast, build_tiny_model  # noqa: E402
from training.rollout import TransformersBackend  # noqa: E402

CONTENDERS = {
    "default": "default back end (float32)",
    "generic32": "generic loop, float32",
    "generic16": "generic loop, bf16 autocast",
    "hf32": "transformers generate, float32",
    "hf16": "transformers generate, bf16 autocast",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument(
        "--prompt-tokens", type=int, default=64, help="prompt length (the longest one with --ragged)"
    )
    p.add_argument(
        "--ragged", action="store_true", help="prompt lengths uniform in [prompt-tokens/8, prompt-tokens]"
    )
    p.add_argument("--only", default="", help="contenders to time, comma-separated: " + ",".join(CONTENDERS))
    p.add_argument("--no-profile", action="store_true", help="skip the profile of the generic bf16 loop")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=ROOT / "evals" / "gpu-sampler")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    spec = TinyModelSpec(max_positions=args.prompt_tokens + args.max_new_tokens + 8)
    pad_id, eos_id = 0, args.vocab - 1
    model = build_tiny_model(spec, args.vocab, pad_id, eos_id, seed=0).to(device)
    with torch.no_grad():  # make EOS rare: every call decodes (about) max_new_tokens steps
        model.lm_head.weight[eos_id].zero_()  # tied to the embedding row; its logit is 0, the others spread
    gen = torch.Generator().manual_seed(0)
    low = max(1, args.prompt_tokens // 8) if args.ragged else args.prompt_tokens
    lens = torch.randint(low, args.prompt_tokens + 1, (args.prompts,), generator=gen).tolist()
    prompts = [torch.randint(1, args.vocab - 1, (n,), generator=gen).tolist() for n in lens]
    kw = {"temperature": args.temperature, "max_new_tokens": args.max_new_tokens}
    g = args.group_size

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def backend(lean: bool, dtype: str):
        b = TransformersBackend(model, pad_id, eos_id, lean=lean, dtype=dtype)
        return lambda seed: sum(len(r) for r in b.generate(prompts, g, seed=seed, **kw).responses)

    def hf_generate(dtype: str):
        width = max(lens)  # left padding, as the back end lays prompts out
        ids = torch.tensor([[pad_id] * (width - len(q)) + q for q in prompts], device=device)
        attn = (ids != pad_id).long()

        def run(seed: int) -> int:
            torch.manual_seed(seed)
            with torch.no_grad(), autocast(device, dtype):
                out = model.generate(
                    ids,
                    attention_mask=attn,
                    do_sample=True,
                    top_k=0,
                    top_p=1.0,
                    temperature=args.temperature,
                    max_new_tokens=args.max_new_tokens,
                    num_return_sequences=g,
                    pad_token_id=pad_id,
                    eos_token_id=eos_id,
                )
            new = out[:, ids.shape[1] :]
            ended = (new == eos_id).int().cumsum(1)
            return int(((ended == 0) | ((ended == 1) & (new == eos_id))).sum())

        return run

    make = {
        "default": lambda: backend(True, "float32"),
        "generic32": lambda: backend(False, "float32"),
        "generic16": lambda: backend(False, "bfloat16"),
        "hf32": lambda: hf_generate("float32"),
        "hf16": lambda: hf_generate("bfloat16"),
    }
    picked = [k.strip() for k in args.only.split(",") if k.strip()] or list(CONTENDERS)
    if set(picked) - set(CONTENDERS):
        p.error(
            f"unknown contender(s) {sorted(set(picked) - set(CONTENDERS))}; choose from {list(CONTENDERS)}"
        )
    contenders = {CONTENDERS[k]: make[k]() for k in picked}
    record: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "sizes": {
            "rollouts": args.prompts * g,
            "prompt_lengths": lens,
            "max_new_tokens": args.max_new_tokens,
            "vocab": args.vocab,
            "model": vars(spec),
        },
        "tokens_per_s": {},
    }
    for name, fn in contenders.items():
        fn(0)  # warm-up
        sync()
        t0 = time.perf_counter()
        n_tok = fn(1)
        sync()
        dt = time.perf_counter() - t0
        record["tokens_per_s"][name] = n_tok / dt
        print(
            f"{name:40s} {n_tok:7d} tokens in {dt:6.2f} s: {n_tok / dt:9.0f} tokens/s, "
            f"{1e3 * dt / args.max_new_tokens:6.2f} ms per decode step",
            flush=True,
        )
    base = record["tokens_per_s"].get(CONTENDERS["hf32"])
    for name, v in record["tokens_per_s"].items() if base else ():
        print(f"  {name:40s} {v / base:5.2f}x transformers generate (float32)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_sampler.json").write_text(json.dumps(record, indent=1))
    if args.no_profile or CONTENDERS["generic16"] not in contenders:
        return 0

    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fn = contenders[CONTENDERS["generic16"]]
    with profile(activities=acts) as prof:
        fn(2)
        sync()
    events = prof.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=15)
    print(table)
    kernels = sum(e.count for e in events if e.device_type.name == "CUDA") if device.type == "cuda" else 0
    record["generic_bf16_profile"] = {
        "cuda_kernels_per_decode_step": kernels / args.max_new_tokens,
        "top_self_cpu": [
            (e.key, e.count, e.self_cpu_time_total / 1e3)
            for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]
        ],
    }
    print(f"CUDA kernels per decode step (generic bf16 loop): {kernels / args.max_new_tokens:.0f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_sampler.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out / 'gpu_sampler.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
