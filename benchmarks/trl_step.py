"""TRL's side of ``bench_trl.py``: train the tiny preset's task with TRL's own ``GRPOTrainer``, time each RL step.

Run by ``bench_trl.py`` with ``.venv-trl/bin/python`` (TRL pins its own ``transformers``)::

    .venv-trl/bin/python benchmarks/trl_step.py --model cache/warmstart/<key> --steps 11 --out /tmp/x.json

The settings mirror the workbench trainer's ``tiny`` preset step by step (see ``bench_trl.py``): one RL step is one
generation of ``prompts x G`` completions followed by ``updates`` optimizer steps on equal slices of it
(``steps_per_generation = updates``, ``gradient_accumulation_steps = 1``, so TRL also computes the old
log-probs of the whole generation in one no-grad pass). The reward is the exact match of the last ``\\boxed{}``
with the answer, in-process (this environment has no math-verify; the workbench grades with math-verify in a
worker process, so this favours TRL by the workbench's grading time). TRL's default gradient checkpointing is
turned off (it recomputes activations: extra work). Writes JSON: the seconds of each RL step
(the time between the ends of its first and last optimizer steps' predecessors, i.e. generation included), the
mean completion length TRL logged, and the settings used.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def boxed_match(completions: list[str], answer: list[str], **_: object) -> list[float]:
    """1.0 when the last ``\\boxed{...}`` of the completion equals the answer, else 0.0."""
    out = []
    for text, gold in zip(completions, answer, strict=True):
        found = BOXED.findall(text)
        out.append(1.0 if found and found[-1].strip() == gold.strip() else 0.0)
    return out


# Where TRL's RL step spends its time: cumulative seconds of these functions (cProfile), per RL step.
PHASES = {
    "generate_and_score (generation, rewards, old log-probs)": "_generate_and_score_completions",
    "generation (model.generate)": "_generate",
    "rewards": "_calculate_rewards",
    "log-prob forwards (old and loss)": "_get_per_token_logps_and_entropies",
    "loss (forward + objective)": "_compute_loss",
    "backward": "run_backward",
    "optimizer": "step",
}


def phase_seconds(profiler: cProfile.Profile, steps: int) -> dict[str, float]:
    """Seconds per RL step of each of ``PHASES`` (the largest cumulative time among functions of that name;
    the backward: autograd's ``run_backward`` method; the optimizer: ``torch.optim``'s ``step``)."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    out = {}
    for label, name in PHASES.items():
        times = [
            v[3]
            for (file, _, func), v in stats.items()
            if (func == name or (name == "run_backward" and name in func))
            and (name != "step" or "torch/optim" in file)
        ]
        out[label] = round(max(times, default=0.0) / max(steps, 1), 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="save_pretrained folder (model + tokenizer)")
    ap.add_argument("--steps", type=int, required=True, help="RL steps (the first is a warm-up)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--updates", type=int, default=4, help="optimizer steps per RL step")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--out", required=True, help="JSON result file")
    ap.add_argument("--profile", action="store_true", help="cProfile the RL steps after the warm-up one")
    args = ap.parse_args()

    import tempfile

    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from training.config import build_config
    from training.task import make_splits

    torch.set_num_threads(1)
    cfg = build_config("tiny", {"method": "grpo"})
    train = make_splits(cfg.task_spec())["train"]
    dataset = Dataset.from_dict({
        "prompt": [cfg.prompt_template.format(prompt=p.prompt) for p in train],
        "answer": [p.answer for p in train],
    })  # fmt: skip
    rollouts = args.prompts * args.group_size
    if rollouts % args.updates:
        raise SystemExit(f"{rollouts} rollouts do not split into {args.updates} updates")

    ends: list[float] = []
    profiler = cProfile.Profile() if args.profile else None
    cpu_ends: list[float] = []
    lengths: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())
            if profiler is not None and len(ends) == args.updates:  # the warm-up RL step is over
                profiler.enable()

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    with tempfile.TemporaryDirectory(prefix="trl_step_") as tmp:
        config = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=rollouts // args.updates,
            gradient_accumulation_steps=1,
            steps_per_generation=args.updates,
            num_generations=args.group_size,
            max_completion_length=args.max_new_tokens,
            temperature=args.temperature,
            top_p=1.0,
            top_k=0,
            num_iterations=1,
            beta=0.0,
            loss_type="grpo",
            epsilon=0.2,
            learning_rate=args.lr,
            lr_scheduler_type="constant",
            weight_decay=args.weight_decay,
            max_grad_norm=1.0,
            max_steps=args.steps * args.updates,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=False,  # TRL's default is on: recomputing activations is extra work
            seed=0,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = GRPOTrainer(
            model=args.model,
            reward_funcs=boxed_match,
            args=config,
            train_dataset=dataset,
            processing_class=PreTrainedTokenizerFast.from_pretrained(args.model),
            callbacks=[Clock()],
        )
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        if profiler is not None:
            profiler.disable()
    marks = [t0, *ends]
    step_seconds = [marks[(k + 1) * args.updates] - marks[k * args.updates] for k in range(args.steps)]
    cpu_marks = [c0, *cpu_ends]
    step_cpu = [cpu_marks[(k + 1) * args.updates] - cpu_marks[k * args.updates] for k in range(args.steps)]
    profile = phase_seconds(profiler, args.steps - 1) if profiler is not None else {}
    Path(args.out).write_text(json.dumps({
        "profile": profile,
        "step_seconds": step_seconds,
        "step_cpu_seconds": step_cpu,
        "mean_completion_length": lengths,
        "optimizer_steps": len(ends),
        "torch_threads": torch.get_num_threads(),
        "trl": __import__("trl").__version__,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
