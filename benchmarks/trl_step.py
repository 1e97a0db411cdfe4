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
import json
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
    lengths: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            ends.append(time.perf_counter())

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
        t0 = time.perf_counter()
        trainer.train()
    marks = [t0, *ends]
    step_seconds = [marks[(k + 1) * args.updates] - marks[k * args.updates] for k in range(args.steps)]
    Path(args.out).write_text(json.dumps({
        "step_seconds": step_seconds,
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
