"""Forward+backward time of every objective as a ratio to ``grpo``, and closed-form throughput, in one run.

    python benchmarks/bench_objectives.py                 # paper size: 1,024 rollouts x 8,192 tokens
    python benchmarks/bench_objectives.py --rollouts 256 --tokens 2048 --repeats 5

Each objective gets the same batch (groups of G = 8, response lengths uniform in [T/4, T], float32) and is timed
as ``loss = OBJECTIVES[m](...).loss; loss.backward()`` in ``--repeats`` rounds after a warm-up round, each round
timing every objective once in a rotated order; the ratio is each round's time over grpo's in the same round,
median over the rounds (the machine is shared: load changes between rounds hit every objective alike). Target:
every objective within 1.2x of grpo.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import load1
from workbench.closed_forms import token_gradient
from workbench.methods import METHODS
from workbench.objectives import OBJECTIVES


def make_batch(n: int, t: int, g: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(t // 4, t + 1, (n,), generator=gen)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    old = -torch.rand(n, t, generator=gen) * 3
    logp = old + 0.05 * torch.randn(n, t, generator=gen)
    rewards = torch.randint(0, 2, (n,), generator=gen).float()
    ids = torch.arange(n) // g
    return logp, old, mask, rewards, ids


def _fwd_bwd(method: str, batch) -> None:
    logp, old, mask, rewards, ids = batch
    hp = {"kl_beta": 0.0} if method == "grpo" else {}
    x = logp.clone().requires_grad_(True)
    OBJECTIVES[method](x, old, mask, rewards, ids, **hp).loss.backward()


def _closed_form(method: str, batch) -> None:
    logp, old, mask, rewards, ids = batch
    hp = {"kl_beta": 0.0} if method == "grpo" else {}
    token_gradient(method, logp, old, mask, rewards, ids, **hp)


def interleaved(methods: list[str], fn, batch, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``fn(method, batch)`` per round for every method: ``repeats`` rounds after a warm-up one, each
    timing every method once in an order rotated by one per round, so that a change of load on the shared
    machine hits every method alike (timing one method's repeats after another's does not)."""
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(repeats + 1):
        k = r % len(methods)
        for m in methods[k:] + methods[:k]:
            t0 = time.perf_counter()
            fn(m, batch)
            if r:
                times[m].append(time.perf_counter() - t0)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rollouts", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=8192, help="max response length T")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (plus one warm-up round)")
    ap.add_argument("--json", default=None, help="write the result record here")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared, busy machine a second OpenMP thread that is "
                         "descheduled stalls every parallel op, which makes single timings erratic)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = load1()
    batch = make_batch(args.rollouts, args.tokens, args.group_size)
    n_tok = int(batch[2].sum())
    print(
        f"# objectives forward+backward, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"# batch: {args.rollouts} rollouts x {args.tokens} positions ({n_tok:,} response tokens), float32, G={args.group_size}"
    )
    print(f"{'method':<16}{'fwd+bwd s':>11}{'vs grpo':>9}{'closed form s':>15}{'Mtok/s':>9}")
    methods = list(METHODS)
    fb = interleaved(methods, _fwd_bwd, batch, args.repeats)
    cf_times = interleaved(methods, _closed_form, batch, args.repeats)
    worst = 0.0
    worst_all, worst_name = 0.0, ""
    ratios = {}
    for m in methods:
        t = statistics.median(fb[m])
        cf = statistics.median(cf_times[m])
        # the ratio to grpo's time in the same round (adjacent in time), median over the rounds
        ratio = statistics.median(a / b for a, b in zip(fb[m], fb["grpo"], strict=True))
        ratios[m] = round(ratio, 3)
        if m.startswith("real"):
            worst = max(worst, ratio)
        if m != "grpo" and ratio > worst_all:
            worst_all, worst_name = ratio, m
        print(f"{m:<16}{t:>11.3f}{ratio:>9.2f}{cf:>15.3f}{n_tok / cf / 1e6:>9.1f}")
    print(
        f"# worst REAL-family ratio to grpo: {worst:.2f} (target <= 1.2): {'met' if worst <= 1.2 else 'MISSED'}"
    )
    print(f"# worst of every objective: {worst_name} {worst_all:.2f}")
    if args.json:
        from benchmarks.common import result, write_results

        sizes = (f"{args.rollouts} rollouts x {args.tokens} positions ({n_tok:,} response tokens), float32, "
                 f"G={args.group_size}, {torch.get_num_threads()} threads, median of {args.repeats} interleaved rounds")  # fmt: skip
        write_results(args.json, [result(
            "objectives", f"objective fwd+bwd vs grpo (worst: {worst_name})", round(worst_all, 3), "x", 1.2,
            "lower", ours="each objective's forward+backward", baseline="grpo's, same batch, same process",
            sizes=sizes, load=(load0, load1()), ratios=ratios,
        )])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
