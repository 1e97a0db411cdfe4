"""Policy models: the embedded tiny decoder (built from a config, nothing downloaded), local causal-LM folders,
and the one function that scores responses: per-token log-probs and entropies at the sampling temperature.

Sequence layout used everywhere (sampler and scorer alike)::

    [pad ... pad  prompt tokens][response tokens  pad ... pad]
     <------ P columns -------><------- T columns -------->

Prompts are left-padded to a common width P, responses right-padded to T. Position ids count real tokens only
(``cumsum(attention_mask) - 1``), so padding never shifts a position.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)


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


def save_tiny_model_folder(
    path: str | Path, spec: TinyModelSpec | None = None, *, seed: int = 0, chat: bool = True
) -> Path:
    """Write a randomly initialised tiny model and its tokenizer as a ``save_pretrained`` folder that ``--model``
    loads like any downloaded checkpoint (with a chat template when ``chat``). Built locally from a config."""
    from training.tokenizer import build_chat_tokenizer, build_tokenizer

    path = Path(path)
    tokenizer = build_chat_tokenizer() if chat else build_tokenizer()
    spec = spec or TinyModelSpec(hidden=64, layers=2, heads=2, intermediate=128, max_positions=2048)
    model = build_tiny_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


SEQ_DEPENDENT_ROPE = ("dynamic", "longrope")  # inv_freq depends on the sequence length: no fixed table


def rope_depends_on_length(config: Any) -> bool:
    """Whether the model's rotary embedding depends on the sequence length (``dynamic``, ``longrope``): its
    module then rewrites its own ``inv_freq`` during a forward, so two forwards may not run at once."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    # transformers 5 may hold one set of parameters per layer type ({"full_attention": {...}, ...})
    sets = [r for r in rope.values() if isinstance(r, dict)] or [rope]
    return any(r.get("rope_type", r.get("type", "default")) in SEQ_DEPENDENT_ROPE for r in sets)


def load_local_tokenizer(path: str | Path):
    """The tokenizer of a local model folder. A folder that declares the generic fast tokenizer (what
    ``save_pretrained`` writes for a tokenizer built from a ``tokenizers`` object, e.g. ``save_tiny_model_folder``)
    gets exactly its ``tokenizer.json``: ``AutoTokenizer`` in transformers 5 would substitute the model type's
    own tokenizer class (Qwen2's byte-level rules for a Qwen2 config) and change the encoding. Any other folder
    loads through ``AutoTokenizer``."""
    path = Path(path)
    declared = None
    config = path / "tokenizer_config.json"
    if config.is_file():
        try:
            declared = json.loads(config.read_text()).get("tokenizer_class")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            declared = None
    if declared in GENERIC_TOKENIZERS and (path / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


_HUB_MODEL = re.compile(
    r"^(?P<id>[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?)(?::revision=(?P<rev>[^:/\s]+))?$"
)
# What a model download leaves out: other frameworks' weights and the originals some repositories add.
_SKIPPED_FILES = ["*.pth", "*.pt", "*.h5", "*.msgpack", "*.onnx", "*.gguf", "original/*", "*.tflite"]


def model_name(spec: str | Path) -> str:
    """A short name for ``--model``: a folder's name, a Hub id's last part (``owner/name`` -> ``name``)."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve().name
    return str(spec).split(":revision=")[0].rstrip("/").rsplit("/", 1)[-1]


def resolve_model(spec: str | Path) -> Path:
    """``--model`` -> a local ``save_pretrained`` folder: a folder as it is, or a Hugging Face Hub id
    (``owner/name``, ``owner/name:revision=R``) resolved through the Hugging Face cache (``$HF_HUB_CACHE``;
    downloaded once, then read from there, also with ``HF_HUB_OFFLINE=1``). Raises ``ValueError`` with one line:
    a folder without ``config.json``, a Hub id offline and not cached, a repository or revision that does not
    exist."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"--model {spec}: not a local model folder (no config.json there)")
        return path
    if path.exists():
        raise ValueError(f"--model {spec}: not a folder (a model folder holds config.json and the weights)")
    match = _HUB_MODEL.match(str(spec))
    if match is None:
        raise ValueError(
            f"--model {spec}: no such folder (nor a Hugging Face Hub id: owner/name[:revision=R])"
        )
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, revision = match["id"], match["rev"]
    try:
        folder = Path(snapshot_download(repo, revision=revision, ignore_patterns=_SKIPPED_FILES))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise ValueError(f"--model {spec}: {type(e).__name__} on the Hugging Face Hub (no such model or "
                         "revision, or it is private)") from None  # fmt: skip
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        offline = bool(constants.HF_HUB_OFFLINE)
        why = "HF_HUB_OFFLINE is set" if offline else f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        raise ValueError(
            f"--model {spec}: not a local folder, not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the "
            f"Hub cannot be reached ({why}); download it once with network, or pass a local folder"
        ) from None
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"--model {spec}: the Hub repository holds no config.json (not a transformers model)"
        )
    return folder


def load_local_model(path: str | Path, dtype: torch.dtype, device: torch.device):
    """Load a causal LM and its tokenizer from a local folder or a Hub id resolved through the Hugging Face
    cache (``resolve_model``); ``from_pretrained`` then reads only that folder (``local_files_only``).

    Raises ``ValueError`` naming ``--model`` when it is not a readable model folder.
    """
    path = resolve_model(path)
    try:
        tokenizer = load_local_tokenizer(path)
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


def select_rows(batch: ScoringBatch, rows: Tensor | Sequence[int]) -> ScoringBatch:
    """Rows ``rows`` of ``batch``, without the columns that are padding in all of them (prompt columns on the
    left, response columns on the right; at least one response column). Position ids count real tokens, so each
    row's log-probs are those of the whole batch, to float rounding."""
    index = torch.as_tensor(rows, dtype=torch.long, device=batch.input_ids.device)
    mask = batch.attention_mask.index_select(0, index)
    p = batch.input_ids.shape[1] - batch.response_width
    real_prompt = mask[:, :p].bool().any(0)
    lead = int(real_prompt.int().argmax()) if bool(real_prompt.any()) else p
    real_resp = batch.response_mask.index_select(0, index).any(0).nonzero()
    t = int(real_resp.max()) + 1 if len(real_resp) else 1
    return ScoringBatch(
        batch.input_ids.index_select(0, index)[:, lead : p + t],
        mask[:, lead : p + t],
        batch.response_ids.index_select(0, index)[:, :t],
        batch.response_mask.index_select(0, index)[:, :t],
    )


# Config attributes of architectures whose logits are not ``lm_head(hidden)`` (soft-capping, scaling): the chunked
# path cannot reproduce them from the decoder's output, so those models take the full-logits path.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def chunkable(model: PreTrainedModel) -> bool:
    """Whether ``model``'s logits are exactly ``get_output_embeddings()(get_decoder()(...).last_hidden_state)``
    (Qwen2, Llama, Mistral, ...): then log-probs can be computed a few positions at a time."""
    cfg = model.config
    if any(getattr(cfg, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return False
    try:
        return model.get_decoder() is not None and model.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


def _token_logp(logits: Tensor, targets: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(log_softmax(z/T)[target], z/T, LSE(z/T))`` in float32 for logits ``[..., V]``. The scorer's and the
    sampler's (``training.fast_sampler``, ``--sampler-logprobs``) one formula."""
    z = logits.float() / temperature
    lse = torch.logsumexp(z, dim=-1)
    return z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse, z, lse


def _entropy(z: Tensor, lse: Tensor | None = None) -> Tensor:
    """``H = LSE(z) - sum_v softmax(z)_v z_v`` of temperature-scaled logits ``z`` (``lse``: ``LSE(z)`` if known)."""
    lse = torch.logsumexp(z, dim=-1) if lse is None else lse
    return lse - (torch.softmax(z, dim=-1) * z).sum(-1)


def _chunk_logp(head: torch.nn.Module, temperature: float, h: Tensor, targets: Tensor) -> Tensor:
    return _token_logp(head(h), targets, temperature)[0]


SHARE_PROMPTS = True  # False: every row runs its prompt through the decoder (the tests compare both)


def _can_share_prompts(model: PreTrainedModel) -> bool:
    """Whether the decoder can take its prompts' keys and values from a cache computed once per distinct prompt
    (``_decoder_hidden``): a chunkable model without sliding windows whose decoder takes a cache argument, and
    no activation checkpointing with gradient (which turns the cache off)."""
    cfg = model.config
    if not SHARE_PROMPTS or not chunkable(model):
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or ["full_attention"])):
        return False
    if torch.is_grad_enabled() and _checkpointing(model):
        return False
    return _cache_arg(type(model.get_decoder())) is not None


@functools.cache
def _cache_arg(cls: type) -> str | None:
    """The name of ``cls.forward``'s key/value cache argument (it depends on the transformers version)."""
    params = inspect.signature(cls.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _checkpointing(model: PreTrainedModel) -> bool:
    """Whether activation checkpointing is on (the attribute's name depends on the transformers version)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


def _distinct_prompts(batch: ScoringBatch) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(prompt ids [U, P], their attention mask [U, P], each row's prompt [B])`` over the distinct prompts of
    ``batch``, or ``None`` when no two rows share a prompt."""
    p = batch.input_ids.shape[1] - batch.response_width
    if p == 0:
        return None
    key = torch.cat([batch.input_ids[:, :p], batch.attention_mask[:, :p].long()], 1)
    distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
    if len(distinct) == len(key):
        return None
    return distinct[:, :p], distinct[:, p:], inverse


def _decoder_hidden(model: PreTrainedModel, batch: ScoringBatch) -> Tensor:
    """The decoder's output ``[B, T, H]`` at the positions whose next token is a response token (the last
    prompt column and all response columns but the last, which predicts nothing and is not computed).

    Rollouts that share a prompt (a group's G rollouts) share its keys and values: each distinct prompt runs
    through the decoder once, and its cache, indexed by row, is the past of the responses' forward. The same
    function of the weights as the forward over whole rows (causal attention: a prompt position sees only the
    prompt), so values and gradients agree with it to float rounding (``tests/training/test_prompt_sharing.py``);
    the gradient reaches the prompt's parameters through the indexed cache."""
    decoder = model.get_decoder()
    t_width = batch.response_width
    shared = _distinct_prompts(batch) if _can_share_prompts(model) else None
    ids, mask = batch.input_ids[:, :-1], batch.attention_mask[:, :-1]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    if shared is None:
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
        return out.last_hidden_state[:, -t_width:]
    p_ids, p_mask, row_prompt = shared
    p_positions = (p_mask.cumsum(-1) - 1).clamp(min=0)
    prompt = decoder(input_ids=p_ids, attention_mask=p_mask, position_ids=p_positions, use_cache=True)
    last = prompt.last_hidden_state[row_prompt, -1:]  # predicts each response's first token
    if t_width == 1:
        return last
    cache = getattr(prompt, "cache", None)
    cache = prompt.past_key_values if cache is None else cache
    cache.batch_select_indices(row_prompt)  # [U, ...] -> [B, ...] by indexing: differentiable
    p = p_ids.shape[1]
    rest = decoder(
        input_ids=ids[:, p:], attention_mask=mask, position_ids=positions[:, p:], use_cache=True,
        **{_cache_arg(type(decoder)): cache},
    ).last_hidden_state  # fmt: skip
    return torch.cat([last, rest], 1)


def response_logprobs(
    model: PreTrainedModel,
    batch: ScoringBatch,
    temperature: float,
    *,
    with_entropy: bool = False,
    chunk_tokens: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs ``[B, T]`` of the responses at the sampling temperature, and optionally entropies.

    ``log pi(o_t) = log_softmax(z_t / T)[o_t]`` with ``z_t`` the logits: the policy that sampled the tokens is the
    temperature-scaled one, so ratios and KL are measured against it (verl and TRL do the same). Entropy is that
    of the same distribution, ``H_t = LSE(z/T) - sum_v p_v z_v/T``. Values on padding are 0. Computed in float32
    whatever the model's dtype.

    Rows that share a prompt compute its keys and values once (``_decoder_hidden``), for models whose logits are
    the output head applied to the decoder's output (``chunkable``); the others run ``model(...)`` over whole
    rows.

    ``chunk_tokens > 0`` bounds memory: the decoder runs once, then the output head, the float32 log-softmax and
    the entropy take about ``chunk_tokens`` response positions (rows x columns) at a time, and with gradient each
    chunk is recomputed in the backward pass (activation checkpointing) instead of keeping its logits. So an
    8,192-token response over a 152K vocabulary never holds its 5 GB of float32 logits, only one chunk's. The
    values are those of the unchunked path (``chunk_tokens=0``; ``tests/training/test_model_chunks.py``). Models
    whose logits are not the head applied to the decoder's output (``chunkable``) use the unchunked path.
    """
    t_width = batch.response_width
    zero_like = None
    if not chunkable(model):
        logits = forward_logits(
            model, batch.input_ids[:, :-1], batch.attention_mask[:, :-1], keep_last=t_width
        )
        logp, z, lse = _token_logp(logits, batch.response_ids, temperature)
        zero_like = torch.zeros((), dtype=logp.dtype, device=logp.device)
        logp = torch.where(batch.response_mask, logp, zero_like)
        entropy = None
        if with_entropy:
            with torch.no_grad():
                entropy = torch.where(batch.response_mask, _entropy(z, lse), zero_like)
        return logp, entropy

    hidden = _decoder_hidden(model, batch)
    head = model.get_output_embeddings()
    rows = hidden.shape[0]
    cols = t_width if chunk_tokens <= 0 else max(1, chunk_tokens // max(rows, 1))
    logps, entropies = [], []
    for c in range(0, t_width, cols):
        h, targets = hidden[:, c : c + cols], batch.response_ids[:, c : c + cols]
        if chunk_tokens > 0 and torch.is_grad_enabled() and h.requires_grad:
            logps.append(
                torch.utils.checkpoint.checkpoint(
                    _chunk_logp, head, temperature, h, targets, use_reentrant=False
                )
            )
            if with_entropy:
                with torch.no_grad():
                    entropies.append(_entropy(*_token_logp(head(h), targets, temperature)[1:]))
        else:
            lp, z, lse = _token_logp(head(h), targets, temperature)
            logps.append(lp)
            if with_entropy:
                with torch.no_grad():
                    entropies.append(_entropy(z, lse))
            del z
    logp = torch.cat(logps, dim=1)
    zero_like = torch.zeros((), dtype=logp.dtype, device=logp.device)
    logp = torch.where(batch.response_mask, logp, zero_like)
    entropy = (
        torch.where(batch.response_mask, torch.cat(entropies, dim=1), zero_like) if with_entropy else None
    )
    return logp, entropy


def autocast(device: torch.device, dtype: str):
    """The compute-precision context: bfloat16 autocast over float32 (master) weights for ``dtype ==
    "bfloat16"``; nothing for float32. The optimizer always steps float32 weights."""
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enable_gradient_checkpointing(model: PreTrainedModel) -> bool:
    """Recompute each decoder layer's activations in the backward pass (non-reentrant); False if the model
    does not support it."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        return False
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x: the new name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return True
