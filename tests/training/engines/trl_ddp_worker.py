"""Run by ``trl_checks.py`` under ``torchrun --nproc_per_node 2`` (DDP over gloo, CPU): one optimizer step of
``WorkbenchGRPOTrainer``. Just before the optimizer step, rank 0 saves the data-parallel gradient (already
averaged by DDP), the parameters it was taken at and every micro-batch of every rank, so the test can compute the
single-process gradient of the objective on the same rollouts.

    torchrun --nproc_per_node 2 tests/training/engines/trl_ddp_worker.py MODEL_DIR OUT_FILE METHOD [FIELD=VALUE ...]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from transformers import PreTrainedTokenizerFast, TrainerCallback

from training.engines.trl_config import WorkbenchGRPOConfig
from training.engines.trl_trainer import WorkbenchGRPOTrainer

KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "wb_rewards", "wb_group_ids")


def reward_has_seven(prompts, completions, **kwargs) -> list[float]:
    return [1.0 if "7" in c else 0.0 for c in completions]


class Recorder(WorkbenchGRPOTrainer):
    """Keeps every training micro-batch this rank computes a loss on."""

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        loss = super()._compute_loss(model, inputs)
        if self.model.training:
            record = {k: inputs[k].detach().cpu() for k in KEYS}
            record["old"] = inputs.get("old_per_token_logps")
            record["loss"] = float(loss.detach())
            self.seen.append(record)
        return loss


class Capture(TrainerCallback):
    def __init__(self, trainer: Recorder, out: Path):
        self.trainer, self.out = trainer, out

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        t = self.trainer
        model = t.accelerator.unwrap_model(t.model)
        seen = gather_object([t.seen])
        if t.accelerator.is_main_process:
            torch.save(
                {
                    "grads": {
                        n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
                    },
                    "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                    "micro_batches": [m for per_rank in seen for m in per_rank],
                    "processes": t.accelerator.num_processes,
                    "temperature": t.temperature,
                },
                self.out,
            )


def main(model_dir: str, out: str, method: str, *fields: str) -> None:
    extra: dict[str, Any] = {}
    for item in fields:
        key, value = item.split("=", 1)
        extra[key] = ast.literal_eval(value)
    prompts = [f"{a}+{b}=" for a in range(4) for b in range(4)]
    args = WorkbenchGRPOConfig(
        output_dir=str(Path(out).parent / "trl"),
        loss_type=method,
        per_device_train_batch_size=8,
        num_generations=4,
        gradient_accumulation_steps=2,
        max_completion_length=6,
        max_steps=1,
        max_grad_norm=0.0,  # the raw gradient, unclipped
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
        temperature=1.0,
        dataloader_num_workers=0,
        **extra,
    )
    trainer = Recorder(
        model=model_dir,
        reward_funcs=reward_has_seven,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=PreTrainedTokenizerFast.from_pretrained(model_dir),
    )
    trainer.seen = []
    trainer.add_callback(Capture(trainer, Path(out)))
    trainer.train()
    # Tear the process group down before the interpreter exits: left to exit handlers, gloo's threads can be
    # destroyed while still joinable on one rank ("terminate called without an active exception", SIGABRT),
    # which failed CI once after a correct run.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
