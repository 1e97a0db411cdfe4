"""Rollout sampling on the tiny model: the default back end against ``transformers``' ``generate``.

    python benchmarks/bench_sampler.py                  # 16 prompts x G=8, 48 new tokens, T=0.6, 8 rounds
    python benchmarks/bench_sampler.py --rounds 3 --profile

Same model (the tiny preset's warm start, float32, 1 torch thread), same 128 rollouts per call (``--prompts``
training prompts x ``--group-size``), same ``max_new_tokens`` and temperature, plain multinomial sampling
(``generate(do_sample=True, top_k=0, top_p=1.0)``). Each round times one call of every contender with the same
seed, in a rotating order so that load drifts hit each alike; round 0 is a warm-up. Tokens are the responses'
tokens up to and including EOS. Reported: tokens/s (wall) of each, their ratio (target: the default back end
at 2.5x ``generate`` or better), and the same ratio in process CPU time (less sensitive to other jobs). The
generic per-token loop (``TransformersBackend(lean=False)``, the fallback for other architectures) is timed too,
and checked to draw the same tokens as the default for every seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    ROOT,
    bootstrap_interval,
    interval_text,
    load1,
    machine,
    result,
    tiny_policy,
    write_results,
)

TARGET = 2.5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds (plus one warm-up); default 8")
    ap.add_argument("--prompts", type=int, default=16, help="distinct prompts per call (default 16)")
    ap.add_argument("--group-size", type=int, default=8, help="rollouts per prompt (default 8)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--cache-dir", default=str(ROOT / "cache"), help="warm-start cache (default: cache/)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one call of each")
    ap.add_argument("--json", default=None, help="write the result record here")
    args = ap.parse_args(argv)

    import torch

    from training.rollout import TransformersBackend
    from training.task import encode_prompt

    cfg, model, tok, splits, _ = tiny_policy(args.cache_dir, log=lambda m: print(f"  [{m}]", file=sys.stderr))
    pad, eos, g = tok.pad_token_id, tok.eos_token_id, args.group_size
    prompts = [encode_prompt(tok, cfg.prompt_template, p) for p in splits["train"][: args.prompts]]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts]).repeat_interleave(g, 0)
    mask = (ids != pad).long()
    ours = TransformersBackend(model, pad, eos)
    generic = TransformersBackend(model, pad, eos, lean=False)
    kw = {"temperature": args.temperature, "max_new_tokens": args.max_new_tokens}

    def run_ours(seed: int):
        return ours.generate(prompts, g, seed=seed, **kw)

    def run_generic(seed: int):
        return generic.generate(prompts, g, seed=seed, **kw)

    def run_generate(seed: int) -> int:
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(
                ids, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0, pad_token_id=pad, eos_token_id=eos,
                **kw,
            )[:, width:]  # fmt: skip
        ended = out == eos
        first = torch.where(ended.any(1), ended.int().argmax(1) + 1, out.shape[1])
        return int(first.sum())

    contenders = {
        "default back end": run_ours,
        "transformers generate": run_generate,
        "generic loop": run_generic,
    }
    wall = {k: 0.0 for k in contenders}
    cpu = {k: 0.0 for k in contenders}
    tokens = {k: 0 for k in contenders}
    per_round: list[float] = []
    rounds: list[tuple[int, float, int, float]] = []  # (tokens, seconds) of the default back end, of generate
    same = 0
    load0 = load1()
    for r in range(args.rounds + 1):
        names = list(contenders)
        names = names[r % len(names) :] + names[: r % len(names)]
        got = {}
        times = {}
        for name in names:
            c0, t0 = time.process_time(), time.perf_counter()
            got[name] = contenders[name](r)
            times[name] = (time.perf_counter() - t0, time.process_time() - c0)
        if r == 0:
            continue  # warm-up
        a, b = got["default back end"], got["generic loop"]
        same += all(torch.equal(x, y) for x, y in zip(a.responses, b.responses, strict=True))
        n_tok = {
            "default back end": a.n_tokens,
            "generic loop": b.n_tokens,
            "transformers generate": got["transformers generate"],
        }
        for name in contenders:
            wall[name] += times[name][0]
            cpu[name] += times[name][1]
            tokens[name] += n_tok[name]
        rounds.append((n_tok["default back end"], times["default back end"][0],
                       n_tok["transformers generate"], times["transformers generate"][0]))  # fmt: skip
        per_round.append((n_tok["default back end"] / times["default back end"][0])
                         / (n_tok["transformers generate"] / times["transformers generate"][0]))  # fmt: skip
    load_end = load1()
    rate = {k: tokens[k] / wall[k] for k in contenders}
    cpu_rate = {k: tokens[k] / cpu[k] for k in contenders}
    ratio = rate["default back end"] / rate["transformers generate"]
    cpu_ratio = cpu_rate["default back end"] / cpu_rate["transformers generate"]
    spread, interval = "one round: no interval", None
    if len(rounds) >= 2:
        lo, hi = bootstrap_interval(
            lambda nt, st, gt, gs: float((nt.sum() / st.sum()) / (gt.sum() / gs.sum())),
            *zip(*rounds, strict=True),
            paired=True,
        )
        spread, interval = interval_text(lo, hi, TARGET, "the rounds (paired)"), [round(lo, 3), round(hi, 3)]
    rollouts = args.prompts * g
    sizes = (f"{args.prompts} prompts x G={g} = {rollouts} rollouts, max {args.max_new_tokens} new tokens, "
             f"T={args.temperature}, tiny model ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params), "
             f"float32, {torch.get_num_threads()} torch thread(s), {args.rounds} rounds")  # fmt: skip
    m = machine()
    print(
        f"bench_sampler  {m['date']}  {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load {load0} -> {load_end}"
    )
    print(f"  {sizes}")
    print(f"  {'contender':<24}{'tokens/s':>10}{'tok/CPU-s':>11}{'mean len':>10}")
    for k in contenders:
        mean_len = tokens[k] / (rollouts * args.rounds)
        print(f"  {k:<24}{rate[k]:>10,.0f}{cpu_rate[k]:>11,.0f}{mean_len:>10.1f}")
    print(f"  default / generate: {ratio:.2f}x wall (rounds: median {statistics.median(per_round):.2f}, "
          f"min {min(per_round):.2f}, max {max(per_round):.2f}), {cpu_ratio:.2f}x CPU time; target >= {TARGET:g}x: "
          f"{'met' if ratio >= TARGET else 'MISSED'}; {spread}")  # fmt: skip
    print(f"  default and generic loop drew the same tokens in {same}/{args.rounds} rounds")
    if args.profile:
        import cProfile
        import pstats

        for name in contenders:
            print(f"\n--- cProfile of one call: {name}")
            prof = cProfile.Profile()
            prof.runcall(contenders[name], 12345)
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    rec = result(
        "sampler", "rollout sampling, tiny model: tokens/s vs transformers generate", round(ratio, 3), "x",
        TARGET, "higher", ours=(f"{rate['default back end']:,.0f} tokens/s (default transformers back end); CPU-time ratio "
              f"{cpu_ratio:.2f}x; per-round ratios {min(per_round):.2f}-{max(per_round):.2f}; {spread}"),
        baseline=f"{rate['transformers generate']:,.0f} tokens/s (model.generate, same model/batch/lengths/T)",
        sizes=sizes, load=(load0, load_end), cpu_ratio=round(cpu_ratio, 3),
        generic_loop_tokens_per_s=round(rate["generic loop"]), same_tokens_rounds=f"{same}/{args.rounds}",
        round_ratios=[round(x, 3) for x in per_round], interval=interval,
    )  # fmt: skip
    write_results(args.json, [rec])
    return 0 if same == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
