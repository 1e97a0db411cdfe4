"""TRL with REAL, end to end on CPU: the embedded tiny model, the embedded arithmetic task, the workbench grader.

Everything is built locally (nothing is downloaded). Run inside the TRL environment (``.venv-trl``, made by
``bash install.sh engines``) from the repository root::

    PYTHONPATH=. .venv-trl/bin/python scripts/trl_real_example.py --out runs/trl-real-example --steps 4

The TRL part is what a TRL user writes, with the workbench's config and trainer in place of TRL's::

    args = WorkbenchGRPOConfig(loss_type="real", real_tau=0.5, num_generations=8, ...)
    trainer = WorkbenchGRPOTrainer(model, reward_funcs=reward_function(), args=args, train_dataset=dataset)
    trainer.train()

The run directory (``--out``/run) opens in the app like any other run. Data parallel on CPU (DDP over gloo):
``torchrun --nproc_per_node 2 scripts/trl_real_example.py ...`` or ``accelerate launch --multi_gpu
--num_processes 2 scripts/trl_real_example.py ...`` (``accelerate launch --cpu --num_processes 2`` starts one
process).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from accelerate import PartialState
from datasets import Dataset

from training.engines.trl_config import WorkbenchGRPOConfig
from training.engines.trl_trainer import WorkbenchGRPOTrainer
from training.model import load_local_tokenizer, save_tiny_model_folder
from training.rewards import reward_function
from training.task import ArithmeticSpec, make_splits


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, required=True, help="folder for the tiny model, TRL's output and the run"
    )
    p.add_argument("--steps", type=int, default=4, help="optimizer steps")
    p.add_argument(
        "--loss-type", default="real", help="a workbench method (real, real_bce, real_no_anchor, ...)"
    )
    p.add_argument("--tau", type=float, default=None, help="real_tau (None: the method's default)")
    p.add_argument("--prompts", type=int, default=64, help="training problems taken from the embedded task")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a local model folder (default: a freshly built random tiny model, whose groups are all wrong, so "
        "REAL's loss is 0; the trainer's warm-started tiny model, cache/warmstart/<key>, gives mixed groups)",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (AdamW)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="max_completion_length")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    model_dir = a.model
    if model_dir is None:  # under torchrun every process needs it: the first writes it, the others wait
        model_dir = a.out / "model"
        with PartialState().main_process_first():
            if not (model_dir / "config.json").is_file():
                save_tiny_model_folder(model_dir, chat=False, seed=0)
    problems = make_splits(ArithmeticSpec())["train"][: a.prompts]
    dataset = Dataset.from_dict(
        {
            "prompt": [f"{p.prompt}\n" for p in problems],
            "answer": [p.answer for p in problems],
            "prompt_id": [p.id for p in problems],
        }
    )
    extra = {} if a.tau is None or not a.loss_type.startswith("real") else {"real_tau": a.tau}
    args = WorkbenchGRPOConfig(
        output_dir=str(a.out / "trl"),
        loss_type=a.loss_type,
        num_generations=8,
        per_device_train_batch_size=16,  # two prompt groups per micro-batch
        gradient_accumulation_steps=2,
        max_completion_length=a.max_new_tokens,
        max_steps=a.steps,
        learning_rate=a.lr,
        temperature=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        **(extra | ({"real_normalize": "prompts"} if a.loss_type == "real_bce" else {})),
    )
    trainer = WorkbenchGRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_function(),
        args=args,
        train_dataset=dataset,
        processing_class=load_local_tokenizer(model_dir),
        run_dir=a.out / "run",
        run_name="trl-real-example",
    )
    trainer.train()
    print(f"{a.loss_type}: {a.steps} steps; run directory {a.out / 'run'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
