"""One actor update of verl 0.9.1's own actor worker, on CPU, with the workbench's REAL loss; run under
``torchrun --nproc_per_node D`` in .venv-verl by verl_checks.py (``test_verl_workers_*``).

Each rank builds verl's ``ActorRolloutRefWorker(role="actor")`` from verl's own hydra config (FSDP2 over gloo, a
1-layer Llama built locally), installs ``verl_real.workbench_actor_loss`` with ``set_loss_fn`` as the workbench
trainer does, and calls ``update_actor`` on its contiguous share of 8 prompt groups x 4 rollouts, one mini-batch
split by verl into micro-batches with ``force_group_size``. Just before the optimizer step the full gradient
(gathered from FSDP's shards) is saved on rank 0, with every micro-batch's group ids of every rank.

verl has no CPU platform: with no accelerator it falls back to its NVIDIA platform, so its process group is
``cpu:gloo,cuda:nccl`` ("Distributed package doesn't have NCCL built in" on a CPU torch) and its device mesh
calls ``torch.cuda.set_device``. This script therefore installs a CPU platform (``verl.plugin.platform.
set_platform``) before verl is used, selects verl's CUDA engine class (``VERL_ENGINE_DEVICE=cuda``, set by the
caller), and runs FSDP2 (FSDP1 takes ``device_id=0`` as an accelerator), SDPA attention (verl defaults to
flash-attention 2) and float32 mixed precision. Everything else is verl's code path.

    torchrun --nproc_per_node 2 tests/training/engines/verl_dp_worker.py OUT_DIR MODEL_DIR
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from verl.plugin.platform import platform_manager
from verl.plugin.platform.platform_base import PlatformBase

N = 4  # rollouts per prompt (rollout.n)
PROMPTS = 8
MICRO_GROUPS = 2  # groups per micro-batch (ppo_micro_batch_size_per_gpu: with force_group_size, in prompts)
SEED = 0


class _CPUDeviceModule:
    """``torch.cpu`` plus zeros for the memory queries verl makes of ``torch.cuda`` (logging and cache clearing) and
    the name "cpu" for its FLOPs counter."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        if name == "mem_get_info":
            return lambda *a, **k: (0, 0)
        if name == "get_device_name":
            return lambda *a, **k: "cpu"
        return lambda *a, **k: 0


class PlatformCPU(PlatformBase):
    """The CPU platform verl 0.9.1 lacks: device ``cpu``, backend ``gloo``, device "index" ``"cpu"`` (verl passes
    ``current_device()`` to ``.to(device=...)``)."""

    device_name = "cpu"
    vendor_name = "cpu"
    device_module = _CPUDeviceModule()

    def is_available(self) -> bool:
        return True

    def current_device(self):
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        pass

    def synchronize(self, device_index=None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0):
        return (None, None)

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    def nvtx_range(self, msg: str):
        return contextlib.nullcontext()

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "CPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def rollouts(vocab: int):
    """8 prompts x 4 rollouts: left-padded prompts, right-padded responses, old log-probs, 0/1 rewards (every
    group but the last mixes labels), as verl's DataProto; the same on every rank."""
    from verl import DataProto

    g = torch.Generator().manual_seed(SEED)
    b, p_max, r_max = PROMPTS * N, 5, 6
    p_len = torch.randint(2, p_max + 1, (PROMPTS,), generator=g).repeat_interleave(N)
    r_len = torch.randint(1, r_max + 1, (b,), generator=g)
    prompt_ids = torch.randint(3, vocab, (PROMPTS, p_max), generator=g).repeat_interleave(N, 0)
    prompts = torch.zeros(b, p_max, dtype=torch.long)
    responses = torch.randint(3, vocab, (b, r_max), generator=g)
    att = torch.zeros(b, p_max + r_max, dtype=torch.long)
    for i in range(b):
        prompts[i, p_max - p_len[i] :] = prompt_ids[i, : p_len[i]]
        att[i, p_max - p_len[i] : p_max + r_len[i]] = 1
    resp_mask = (torch.arange(r_max)[None, :] < r_len[:, None]).long()
    responses = responses * resp_mask
    old = (-torch.rand(b, r_max, generator=g) * 2 - 2) * resp_mask
    rewards = torch.randint(0, 2, (b,), generator=g).float()
    for k in range(PROMPTS - 1):
        rewards[k * N], rewards[k * N + 1] = 1.0, 0.0
    rewards[-N:] = 0.0
    scores = torch.zeros(b, r_max)
    scores[torch.arange(b), r_len - 1] = rewards
    tensors = {
        "prompts": prompts,
        "responses": responses,
        "input_ids": torch.cat([prompts, responses], 1),
        "attention_mask": att,
        "position_ids": (att.cumsum(1) - 1).clamp(min=0),
        "response_mask": resp_mask,
        "old_log_probs": old,
        "advantages": torch.zeros(b, r_max),
        "token_level_scores": scores,
        "row_id": torch.arange(b),
    }
    uids = np.array([f"prompt-{i // N}" for i in range(b)], dtype=object)
    return DataProto.from_dict(tensors=tensors, non_tensors={"uid": uids})


def build_tiny(path: Path) -> Path:
    """A 1-layer Llama (vocab 19) and a character-level fast tokenizer, built locally and saved under ``path``."""
    import string

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {c: i + 3 for i, c in enumerate(string.digits + "+=-*x ")}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    ).save_pretrained(path)
    return path


def reference_gradient(model_dir: Path, method: str = "real") -> dict[str, torch.Tensor]:
    """The gradient of ``workbench.objectives[method]`` on all 32 rollouts in one process: a plain
    ``transformers`` forward of the saved model (float32, SDPA), log-probs of the response tokens."""
    from transformers import AutoModelForCausalLM

    from workbench.objectives import OBJECTIVES

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32)
    batch = rollouts(model.config.vocab_size).batch
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    ).logits
    p = batch["prompts"].shape[1]
    logp = torch.log_softmax(logits[:, p - 1 : -1], -1).gather(-1, batch["responses"][..., None]).squeeze(-1)
    rewards = batch["token_level_scores"].sum(-1)
    groups = torch.arange(len(rewards)) // N
    res = OBJECTIVES[method](logp, batch["old_log_probs"], batch["response_mask"].bool(), rewards, groups)
    res.loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def main(out_dir: Path, model_dir: Path) -> None:
    platform_manager.set_platform(PlatformCPU())
    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    torch.manual_seed(SEED)

    import verl
    from hydra import compose, initialize_config_dir
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine_workers import ActorRolloutRefWorker
    from verl.workers.utils.padding import left_right_2_no_padding

    from training.engines import verl_real

    rows = PROMPTS * N
    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False",
        f"actor_rollout_ref.rollout.n={N}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={MICRO_GROUPS}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={MICRO_GROUPS * N}",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
        "actor_rollout_ref.actor.policy_loss.loss_mode=real",
        f"data.train_batch_size={PROMPTS}",
    ]
    with initialize_config_dir(
        config_dir=str(Path(verl.__file__).parent / "trainer/config"), version_base=None
    ):
        cfg = compose("ppo_trainer", overrides=overrides)

    worker = ActorRolloutRefWorker(cfg.actor_rollout_ref, role="actor")
    worker.init_model()
    actor = cfg.actor_rollout_ref.actor
    loss_cfg = SimpleNamespace(
        loss_agg_mode=actor.loss_agg_mode,
        loss_scale_factor=actor.get("loss_scale_factor"),
        entropy_coeff=0.0,
        use_kl_loss=False,
        kl_loss_type=actor.kl_loss_type,
        kl_loss_coef=0.0,
    )
    spec = verl_real.LossSpec(method="real", group_size=N)
    seen: list[list[str]] = []

    def loss_fn(config, model_output, data, dp_group=None):
        seen.append(sorted(set(tu.get(data, "uid"))))
        return verl_real.workbench_actor_loss(config, model_output, data, dp_group, spec=spec)

    worker.set_loss_fn(partial(loss_fn, config=loss_cfg))

    engine = worker.actor.engine
    step = engine.optimizer_step
    grads: dict[str, torch.Tensor] = {}

    def optimizer_step_recording_gradients():
        for name, p in engine.module.named_parameters():
            g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            grads[name] = g.detach().clone()
        return step()

    engine.optimizer_step = optimizer_step_recording_gradients

    vocab = engine.module.config.vocab_size
    data = rollouts(vocab)
    share = rows // world
    data = data[rank * share : (rank + 1) * share]
    td = left_right_2_no_padding(data.to_tensordict())
    tu.assign_non_tensor(
        td,
        calculate_entropy=False,
        distillation_use_topk=False,
        distillation_only=False,
        global_batch_size=rows,
        mini_batch_size=rows,
        epochs=1,
        seed=0,
        dataloader_kwargs={"shuffle": False},
        temperature=1.0,
        force_group_size=N,
    )
    output = worker.update_actor(td)

    all_seen: list = [None] * world
    torch.distributed.all_gather_object(all_seen, seen)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(grads, out_dir / "grads.pt")
        metrics = tu.get(output, "metrics") if output is not None else {}
        (out_dir / "run.json").write_text(
            json.dumps(
                {
                    "world_size": world,
                    "micro_batch_groups": all_seen,
                    "grad_norm": [float(x) for x in np.ravel(metrics.get("grad_norm", []))],
                }
            )
        )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
