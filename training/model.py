"""Policy models: the embedded tiny decoder (built from a config, nothing downloaded), local causal-LM folders,
and the one function that scores responses: per-token log-probs and entropies at the sampling temperature.

Sequence layout used everywhere (sampler and scorer alike)::

    [pad ... pad  prompt tokens][response tokens  pad ... pad]
     <------ P columns -------><------- T columns -------->

Prompts are left-padded to a common width P, responses right-padded to T. Position ids count real tokens only
(``cumsum(attention_mask) - 1``), so padding never shifts a position.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the embedded decoder (a Qwen2-architecture model with tied embeddings)."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 384
    max_positions: int = 256


def build_tiny_model(
    spec: TinyModelSpec, vocab_size: int, pad_id: int, eos_id: int, seed: int
) -> PreTrainedModel:
    """A randomly initialised decoder-only model from ``spec`` (deterministic in ``seed``), in float32."""
    if spec.hidden % spec.heads:
        raise ValueError(f"hidden size {spec.hidden} must be a multiple of the number of heads {spec.heads}")
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        intermediate_size=spec.intermediate,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
        attention_dropout=0.0,
        use_cache=True,
    )
    config._attn_implementation = "sdpa"
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    return model


def load_local_model(path: str | Path, dtype: torch.dtype, device: torch.device):
    """Load a causal LM and its tokenizer from a local folder (``local_files_only``: never downloads).

    Raises ``ValueError`` naming the folder when it is not a readable model folder.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"--model {path}: not a local model folder (no config.json there)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as e:
        raise ValueError(f"--model {path}: could not load the model or its tokenizer ({e})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def max_positions(model: PreTrainedModel) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


@functools.cache
def _forward_kwargs_of(cls: type) -> tuple[str, bool]:
    params = inspect.signature(cls.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    return cache_arg, "logits_to_keep" in params


def _forward_kwargs(model: PreTrainedModel) -> tuple[str, bool]:
    """(name of the cache argument, whether ``logits_to_keep`` exists) for this transformers version."""
    return _forward_kwargs_of(type(model))


def forward_logits(
    model: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    keep_last: int = 0,
    cache=None,
    position_ids: Tensor | None = None,
) -> Tensor:
    """Logits ``[B, L', V]`` of the last ``keep_last`` positions (all when 0), with padding-aware positions."""
    cache_arg, has_keep = _forward_kwargs(model)
    if position_ids is None:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    kwargs = {"attention_mask": attention_mask, "position_ids": position_ids, "use_cache": cache is not None}
    if cache is not None:
        kwargs[cache_arg] = cache
    if has_keep and keep_last:
        kwargs["logits_to_keep"] = keep_last
    logits = model(input_ids=input_ids, **kwargs).logits
    if keep_last and logits.shape[1] > keep_last:
        logits = logits[:, -keep_last:]
    return logits


@dataclass
class ScoringBatch:
    """Prompt + response rows laid out for scoring (see the module docstring)."""

    input_ids: Tensor  # [B, P + T] long
    attention_mask: Tensor  # [B, P + T] long
    response_ids: Tensor  # [B, T] long, pad after each response
    response_mask: Tensor  # [B, T] bool

    @property
    def response_width(self) -> int:
        return int(self.response_ids.shape[1])


def make_scoring_batch(
    prompts: list[list[int]], responses: list[Tensor] | list[list[int]], pad_id: int, device: torch.device
) -> ScoringBatch:
    """Left-pad prompts, right-pad responses, concatenate."""
    n = len(prompts)
    p_width = max(len(p) for p in prompts)
    r_lens = [len(r) for r in responses]
    t_width = max(r_lens)
    ids = torch.full((n, p_width + t_width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, p_width + t_width), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids[i, p_width - len(p) : p_width] = torch.as_tensor(p, dtype=torch.long)
        ids[i, p_width : p_width + len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, p_width - len(p) : p_width + len(r)] = 1
    resp_mask = mask[:, p_width:].bool()
    return ScoringBatch(ids.to(device), mask.to(device), ids[:, p_width:].to(device), resp_mask.to(device))


def response_logprobs(
    model: PreTrainedModel, batch: ScoringBatch, temperature: float, *, with_entropy: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs ``[B, T]`` of the responses at the sampling temperature, and optionally entropies.

    ``log pi(o_t) = log_softmax(z_t / T)[o_t]`` with ``z_t`` the logits: the policy that sampled the tokens is the
    temperature-scaled one, so ratios and KL are measured against it (verl and TRL do the same). Entropy is that
    of the same distribution, ``H_t = LSE(z/T) - sum_v p_v z_v/T``. Values on padding are 0. Computed in float32
    whatever the model's dtype.
    """
    t_width = batch.response_width
    logits = forward_logits(model, batch.input_ids, batch.attention_mask, keep_last=t_width + 1)[:, :t_width]
    logits = logits.float() / temperature
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1) - lse
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    logp = torch.where(batch.response_mask, logp, zero)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            probs = torch.softmax(logits, dim=-1)
            entropy = torch.where(batch.response_mask, lse - (probs * logits).sum(-1), zero)
    return logp, entropy
