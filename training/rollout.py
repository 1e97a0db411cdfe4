"""Rollouts: one interface, two back ends.

``RolloutBackend.generate(prompts, n, temperature=..., max_new_tokens=..., seed=..., on_finished=None)`` draws
``n`` completions per prompt; rollout ``r`` answers prompt ``r // n``. ``on_finished(rollouts, responses)``, if
given, is called during sampling with rollouts that have ended with EOS and their final responses (the trainer
hands them to the grader while the rest decode); a back end may call it late or never, and never calls it for a
rollout cut at ``max_new_tokens``. ``sync_weights(model)`` is called after each step's optimizer
updates (before validation and the next step's sampling, the only times the back end samples), so every
``generate`` samples from the current policy.

- ``transformers`` (default, CPU or GPU): a batched sampler over the policy module itself (so syncing is free).
  It prefills each distinct prompt once, copies the key/value cache ``n`` times, then decodes all rollouts
  together, one token per forward, dropping finished rows from the batch as they accumulate. Sampling is
  ``argmax(p / E)`` with ``E ~ Exp(1)`` drawn from a generator seeded per call, which is an exact draw from
  ``p = softmax(z / T)`` and reproducible for a given seed. Llama-family models (the embedded tiny model
  included) at float32 decode through ``training.fast_sampler`` (the same draws, ~1.5x the generic loop's
  tokens/s on CPU); others, bfloat16 autocast, or ``lean=False`` use the model's own per-token ``forward``.
  With ``logprobs=True`` the lean path also returns each sampled token's log-prob and the entropy at its
  position (``Generations.logp``, ``.entropy``), which the trainer takes as the old log-probs.
- ``vllm`` (optional extra ``real-workbench[vllm]``, GPU): a vLLM engine in the trainer's process on the same GPU
  (TRL's "colocate" mode), imported only when chosen. ``sync_weights`` pushes the policy's weights into the
  engine's model (``load_weights``) and clears its prefix cache; with sleep mode the engine frees its GPU memory
  (``sleep(level=2)``: weights and KV cache) after each ``generate``, so training gets the memory back, and wakes
  the weights before the next push and the KV cache before the next generation.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel

from training.fast_sampler import FinishedHook, lean_decoder_unsupported, report_finished, sample_lean
from training.model import autocast, forward_logits

BACKENDS = ("transformers", "vllm")


class BackendUnavailable(RuntimeError):
    """A rollout back end cannot be used here (e.g. its optional package is missing)."""


@dataclass
class Generations:
    """``n`` completions for each of ``len(prompts)`` prompts.

    ``responses[r]`` holds rollout r's token ids (the end-of-sequence token included when it was sampled);
    ``finished[r]`` says whether it ended with EOS (else it hit ``max_new_tokens``).
    """

    prompts: list[list[int]]
    n: int
    responses: list[Tensor]  # each [len_r] long (cpu)
    finished: Tensor  # [len(prompts) * n] bool
    # each token's log_softmax(z / T) and the entropy there, from the sampling pass itself (see
    # TransformersBackend's ``logprobs``); None when the back end did not compute them
    logp: list[Tensor] | None = None  # each [len_r] float32 (cpu)
    entropy: list[Tensor] | None = None

    @property
    def n_rollouts(self) -> int:
        return len(self.responses)

    def prompt_index(self) -> Tensor:
        return torch.arange(self.n_rollouts) // self.n

    @property
    def n_tokens(self) -> int:
        return int(sum(len(r) for r in self.responses))


class RolloutBackend(Protocol):
    name: str

    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        *,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        on_finished: FinishedHook | None = None,
    ) -> Generations: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...

    def close(self) -> None: ...


class TransformersBackend:
    """Batched KV-cache sampler over a ``transformers`` causal LM (see the module docstring)."""

    name = "transformers"

    def __init__(
        self,
        model: PreTrainedModel,
        pad_id: int,
        eos_id: int,
        *,
        compact_fraction: float = 0.25,
        lean: bool = True,
        dtype: str = "float32",
        logprobs: bool = False,
    ):
        self.model = model
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.compact_fraction = compact_fraction
        self.lean = lean  # use training.fast_sampler where it supports the model (float32 only)
        self.dtype = dtype  # compute precision: "bfloat16" samples under bf16 autocast
        # the lean decoder also returns each sampled token's log-prob and entropy (Generations.logp, .entropy)
        self.logprobs = logprobs

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # samples from the policy module itself: nothing to copy

    def close(self) -> None:
        pass

    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        *,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        on_finished: FinishedHook | None = None,
    ) -> Generations:
        if not prompts or n < 1:
            raise ValueError("generate needs at least one prompt and n >= 1")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("a prompt has no token")
        model = self.model
        was_training = model.training
        model.eval()
        try:
            if self.lean and self.dtype == "float32" and lean_decoder_unsupported(model) is None:
                return self._generate_lean(model, prompts, n, temperature, max_new_tokens, seed, on_finished)
            with autocast(next(model.parameters()).device, self.dtype):
                return self._generate(model, prompts, n, temperature, max_new_tokens, seed, on_finished)
        finally:
            model.train(was_training)

    def _generate_lean(
        self,
        model: PreTrainedModel,
        prompts: list[list[int]],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        on_finished: FinishedHook | None = None,
    ) -> Generations:
        scores = None
        if self.logprobs:
            device = next(model.parameters()).device
            shape = (len(prompts) * n, max_new_tokens)
            scores = (torch.zeros(shape, device=device), torch.zeros(shape, device=device))
        out, lengths, finished = sample_lean(
            model, prompts, n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
            pad_id=self.pad_id, eos_id=self.eos_id, compact_fraction=self.compact_fraction, scores=scores,
            on_finished=on_finished,
        )  # fmt: skip
        out, lengths = out.cpu(), lengths.cpu()
        responses = [out[r, : lengths[r]] for r in range(len(out))]
        gens = Generations([list(p) for p in prompts], n, responses, finished.cpu())
        if scores is not None:
            logp, entropy = scores[0].cpu(), scores[1].cpu()
            gens.logp = [logp[r, : lengths[r]] for r in range(len(out))]
            gens.entropy = [entropy[r, : lengths[r]] for r in range(len(out))]
        return gens

    def _generate(
        self,
        model: PreTrainedModel,
        prompts: list[list[int]],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        on_finished: FinishedHook | None = None,
    ) -> Generations:
        device = next(model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)
        n_prompts = len(prompts)
        width = max(len(p) for p in prompts)
        ids = torch.full((n_prompts, width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n_prompts, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.as_tensor(p, dtype=torch.long)
            attn[i, width - len(p) :] = 1
        ids, attn = ids.to(device), attn.to(device)
        prompt_len = attn.sum(1)

        cache = DynamicCache(config=model.config)
        logits = forward_logits(model, ids, attn, keep_last=1, cache=cache)[:, -1]
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, 0)
            attn = attn.repeat_interleave(n, 0)
            prompt_len = prompt_len.repeat_interleave(n, 0)

        total = n_prompts * n
        out = torch.full((total, max_new_tokens), self.pad_id, dtype=torch.long, device=device)
        lengths = torch.zeros(total, dtype=torch.long, device=device)
        finished = torch.zeros(total, dtype=torch.bool, device=device)
        rows = torch.arange(total, device=device)  # global rollout index of each row in the batch
        alive = torch.ones(total, dtype=torch.bool, device=device)  # rows of the batch still generating
        inv_t = 1.0 / temperature
        for t in range(max_new_tokens):
            probs = torch.softmax(logits.float() * inv_t, dim=-1)
            noise = torch.empty_like(probs).exponential_(generator=gen)
            tok = torch.argmax(probs / noise, dim=-1)
            live_rows = rows[alive]
            out[live_rows, t] = tok[alive]
            lengths[live_rows] = t + 1
            ended = alive & (tok == self.eos_id)
            ended_rows = rows[ended]
            finished[ended_rows] = True
            if on_finished is not None:
                report_finished(on_finished, ended_rows, out, t + 1)
            alive = alive & ~ended
            n_alive = int(alive.sum())
            if n_alive == 0 or t == max_new_tokens - 1:
                break
            # Drop finished rows once they make up a fair share of the batch (each drop copies the cache).
            if len(rows) - n_alive >= max(1, int(self.compact_fraction * len(rows))):
                keep = alive.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, attn, tok, prompt_len = rows[keep], attn[keep], tok[keep], prompt_len[keep]
                alive = torch.ones(len(rows), dtype=torch.bool, device=device)
            attn = torch.cat([attn, attn.new_ones((len(rows), 1))], dim=1)
            pos = (prompt_len + t).unsqueeze(1)
            logits = forward_logits(model, tok.unsqueeze(1), attn, cache=cache, position_ids=pos)[:, -1]

        out, lengths, finished = out.cpu(), lengths.cpu(), finished.cpu()
        responses = [out[r, : lengths[r]] for r in range(total)]
        return Generations(prompts=[list(p) for p in prompts], n=n, responses=responses, finished=finished)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


VLLM_MISSING = (
    "the vllm rollout back end needs the optional vLLM package, which is not installed here: install it with "
    "`pip install 'real-workbench[vllm]'` (GPU machines), or use --backend transformers"
)


class VLLMBackend:
    """A vLLM engine in the trainer's process, colocated on the trainer's GPU; weights pushed at ``sync_weights``.

    Follows vLLM's offline ``LLM`` API and TRL's colocate mode: ``LLM(model, dtype, gpu_memory_utilization,
    enable_sleep_mode, ...)``; a push is ``load_weights(state_dict items)`` on the engine's model followed by
    ``reset_prefix_cache()`` (cached prompt keys/values were computed with the old weights). With ``sleep``, each
    ``generate`` ends with ``sleep(level=2)`` (weights and KV cache freed, the trainer gets the memory), the next
    push starts with ``wake_up(tags=["weights"])``, and the next generation with ``wake_up(tags=["kv_cache"])``;
    a generation with no push since the last sleep first pushes the last synced policy again (level 2 discarded
    the engine's copy).

    ``llm`` and ``sampling_params`` replace the engine object and ``vllm.SamplingParams`` (tests use a stand-in
    engine: vLLM itself needs a GPU). Not yet run on a GPU in this project.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        eos_id: int,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.35,
        seed: int = 0,
        max_model_len: int | None = None,
        sleep: bool = True,
        llm=None,
        sampling_params=None,
    ):
        if llm is None:
            if not vllm_available():
                raise BackendUnavailable(VLLM_MISSING)
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # keep the engine in this process
            import vllm

            kwargs = dict(
                model=model_path,
                dtype=dtype,
                gpu_memory_utilization=gpu_memory_utilization,
                enable_prefix_caching=True,
                enable_sleep_mode=sleep,
                seed=seed,
            )
            if max_model_len:
                kwargs["max_model_len"] = max_model_len
            llm = vllm.LLM(**kwargs)
            sampling_params = vllm.SamplingParams
        if sampling_params is None:
            raise ValueError("VLLMBackend(llm=...) needs sampling_params too")
        self.llm = llm
        self._sampling_params = sampling_params
        self.eos_id = eos_id
        self.sleep = sleep
        self.push_dtype = torch.bfloat16 if dtype == "bfloat16" else None
        self._weights_awake = True
        self._kv_awake = True
        self._source: torch.nn.Module | None = None  # the policy last pushed

    def _engine_model(self):
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        worker = getattr(worker, "worker", worker)  # V1 wraps the worker
        return worker.model_runner.model

    def _push(self, model: torch.nn.Module) -> None:
        """``load_weights`` on the engine's model with the policy's tensors (cast one at a time to the engine's
        dtype: no second full copy of the model), then ``reset_prefix_cache``."""
        cast = self.push_dtype

        def weights():
            for name, tensor in model.state_dict().items():
                t = tensor.detach()
                yield name, (t.to(cast) if cast is not None and t.is_floating_point() else t)

        try:
            engine_model = self._engine_model()
        except AttributeError:
            engine_model = None
        if engine_model is not None:
            engine_model.load_weights(weights())
        else:  # engines that only expose apply_model
            self.llm.apply_model(lambda m: m.load_weights(weights()))
        self.llm.reset_prefix_cache()

    def sync_weights(self, model: torch.nn.Module) -> None:
        if self.sleep and not self._weights_awake:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._weights_awake = True
        self._push(model)
        self._source = model

    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        *,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        on_finished: FinishedHook | None = None,
    ) -> Generations:
        if not prompts or n < 1:
            raise ValueError("generate needs at least one prompt and n >= 1")
        if not self._weights_awake:
            if self._source is None:
                raise RuntimeError(
                    "the vLLM engine slept before any weights were pushed: call sync_weights first"
                )
            self.sync_weights(self._source)
        if self.sleep and not self._kv_awake:
            self.llm.wake_up(tags=["kv_cache"])
            self._kv_awake = True
        del on_finished  # vLLM returns every completion at once: the caller grades them all afterwards
        params = self._sampling_params(n=n, temperature=temperature, max_tokens=max_new_tokens, seed=seed)
        inputs = [{"prompt_token_ids": list(p)} for p in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        if self.sleep:
            self.llm.sleep(level=2)
            self._weights_awake = self._kv_awake = False
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        responses, finished = [], []
        for o in outputs:
            if len(o.outputs) != n:
                raise RuntimeError(f"vLLM returned {len(o.outputs)} completions for a prompt, expected {n}")
            for c in o.outputs:
                ids = list(c.token_ids)
                stopped = c.finish_reason == "stop"
                if stopped and (not ids or ids[-1] != self.eos_id):
                    ids.append(self.eos_id)  # the sampled EOS is part of the response the loss sees
                responses.append(torch.as_tensor(ids, dtype=torch.long))
                finished.append(stopped)
        return Generations(
            [list(p) for p in prompts], n, responses, torch.as_tensor(finished, dtype=torch.bool)
        )

    def close(self) -> None:
        self.llm = None
        self._source = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def check_backend(name: str) -> None:
    """Raise ``BackendUnavailable`` with a one-line reason if back end ``name`` cannot run here."""
    if name not in BACKENDS:
        raise ValueError(f"unknown rollout back end {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "vllm" and not vllm_available():
        raise BackendUnavailable(VLLM_MISSING)
