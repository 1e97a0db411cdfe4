"""A lean decoder for the rollout sampler: the same model and distribution, less overhead per token.

Where the time went (``benchmarks/bench_sampler.py --profile``; tiny model, 128 rollouts, CPU, 1 thread): the
``transformers`` per-token forward re-enters a dozen nested modules, rebuilds the attention mask and the rotary
embedding and grows its ``DynamicCache`` with ``torch.cat`` on every layer at every token; its SDPA call is
``torch``'s flash kernel, which for one query per row spends most of its time per (row, head) and, on a
preallocated cache, reads a strided block 2x slower than a contiguous one; and every fresh multi-megabyte
temporary costs page faults. ``LeanDecoder`` runs a Llama-family causal LM (``qwen2``, ``llama``, ``mistral``
without a sliding window; the embedded tiny model is a Qwen2) from the model's own parameters, with:

- q/k/v and gate/up projections as one matmul each (each output is the same dot product as before);
- one rotary table from the model's own rotary module, indexed by position;
- a key/value cache allocated once per ``generate`` call, time-major ``[P + max_new, rows, kv_heads,
  head_dim]``: a token's keys are written in place and the filled columns are one contiguous block;
- float32 attention of the single query as two broadcast products written into one reused scratch block, and
  reductions (other dtypes use SDPA on a view of the same cache);
- the prompts' prefill by the same operations as the model's forward (each distinct prompt once, its keys and
  values then copied to its ``n`` rows);
- finished rows dropped by selecting rows of the cache (as ``DynamicCache.batch_select_indices``).

Equal to the ``transformers`` forward up to float rounding: the prefill is bit-identical here, and in the
decode steps only the attention sums in another order (max |logit difference| 5e-5, logits up to 12, over 40
steps of the warm-started tiny model; ``tests/training/test_fast_sampler.py`` checks the logits, the tokens of a
seed, greedy decoding and the scorer's log-probs). ``lean_decoder_unsupported(model)`` says why a model cannot
take this path (another architecture, a sliding window, a rope that depends on the sequence length, q/k norms,
...); ``training.rollout.TransformersBackend`` then keeps its generic per-token ``forward``.

``sample_lean`` is ``TransformersBackend``'s sampling loop over this decoder: draw ``argmax(p / E)`` with
``E ~ Exp(1)`` from the per-call generator (an exact draw from ``p = softmax(z / T)``) and drop finished rows by
the same rule, hence with the same random stream as the generic loop: for a seed both give the same tokens
(unless two candidates tie to within rounding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedModel

from training.model import _entropy, _token_logp, rope_depends_on_length

SUPPORTED_TYPES = ("qwen2", "llama", "mistral")

# on_finished(rollouts, responses): rollouts that sampled EOS, each with its final response (EOS included)
FinishedHook = Callable[[list[int], list[Tensor]], None]


def lean_decoder_unsupported(model: torch.nn.Module) -> str | None:
    """``None`` if ``LeanDecoder`` computes ``model``'s decode step, else the reason it does not."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_TYPES:
        return f"model type {model_type!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    if getattr(config, "hidden_act", None) != "silu":
        return f"activation {getattr(config, 'hidden_act', None)!r} (only silu)"
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    if any(t != "full_attention" for t in layer_types) or getattr(config, "use_sliding_window", False):
        return "sliding-window attention"
    if model_type == "mistral" and getattr(config, "sliding_window", None):
        return "sliding-window attention"
    if rope_depends_on_length(config):
        return "its rope type depends on the sequence length"
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "not a *ForCausalLM with model.{embed_tokens,layers,norm,rotary_emb}"
    if not hasattr(model, "lm_head") or getattr(config, "final_logit_softcapping", None):
        return "no plain lm_head"
    for layer in inner.layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if attn is None or mlp is None or hasattr(attn, "q_norm") or hasattr(attn, "k_norm"):
            return "a decoder layer is not the Llama layout (or normalises q/k)"
        if not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj", "scaling")):
            return "a decoder layer is not the Llama attention layout"
        if not all(hasattr(mlp, p) for p in ("gate_proj", "up_proj", "down_proj")):
            return "a decoder layer is not the Llama MLP layout"
        norms = (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None))
        if not all(hasattr(n, "variance_epsilon") and hasattr(n, "weight") for n in norms):
            return "a decoder layer's norms are not RMSNorm"
    return None


@dataclass
class _Layer:
    """One decoder layer's parameters, q/k/v and gate/up concatenated along the output dimension."""

    eps1: float
    eps2: float
    ln1: Tensor
    ln2: Tensor
    w_qkv: Tensor
    b_qkv: Tensor | None
    wo: Tensor
    bo: Tensor | None
    w_gu: Tensor
    b_gu: Tensor | None
    wd: Tensor
    bd: Tensor | None


def _cat_bias(mods: tuple[torch.nn.Linear, ...]) -> Tensor | None:
    if all(m.bias is None for m in mods):
        return None
    return torch.cat([m.bias if m.bias is not None else m.weight.new_zeros(m.out_features) for m in mods])


def _layer(layer: torch.nn.Module) -> _Layer:
    a, m = layer.self_attn, layer.mlp
    qkv, gu = (a.q_proj, a.k_proj, a.v_proj), (m.gate_proj, m.up_proj)
    return _Layer(
        eps1=layer.input_layernorm.variance_epsilon,
        eps2=layer.post_attention_layernorm.variance_epsilon,
        ln1=layer.input_layernorm.weight,
        ln2=layer.post_attention_layernorm.weight,
        w_qkv=torch.cat([p.weight for p in qkv]),
        b_qkv=_cat_bias(qkv),
        wo=a.o_proj.weight,
        bo=a.o_proj.bias,
        w_gu=torch.cat([p.weight for p in gu]),
        b_gu=_cat_bias(gu),
        wd=m.down_proj.weight,
        bd=m.down_proj.bias,
    )


def _rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """``weight * (x / sqrt(mean(x^2) + eps))`` computed in float32 and cast back: the Llama/Qwen2 ``RMSNorm``
    (``torch``'s fused ``rms_norm`` for float32, which gives the same numbers)."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _linear_add(h: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``h + x W^T (+ b)``, the residual added by the matmul itself when there is no bias."""
    if bias is None:
        return torch.addmm(h, x, weight.t())
    return h + F.linear(x, weight, bias)


class LeanDecoder:
    """Decode steps of one ``generate`` call over a preallocated key/value cache (see the module docstring).

    ``load_prefill`` takes the prompts' ``DynamicCache``; each ``step(tokens, positions)`` feeds one token per row
    and returns the next logits; ``select(rows)`` keeps only some rows.
    """

    def __init__(self, model: PreTrainedModel, max_len: int):
        reason = lean_decoder_unsupported(model)
        if reason is not None:
            raise ValueError(f"LeanDecoder does not support this model: {reason}")
        cfg, inner = model.config, model.model
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.groups = self.n_heads // self.n_kv
        self.scaling = float(inner.layers[0].self_attn.scaling)
        self.inter = inner.layers[0].mlp.gate_proj.out_features
        self.embed = inner.embed_tokens.weight
        self.norm_w, self.norm_eps = inner.norm.weight, inner.norm.variance_epsilon
        self.lm_head, self.lm_bias = model.lm_head.weight, model.lm_head.bias
        self.layers = [_layer(layer) for layer in inner.layers]
        positions = torch.arange(max_len, device=self.embed.device).unsqueeze(0)
        cos, sin = inner.rotary_emb(self.embed[:1].unsqueeze(0), positions)  # the model's own rotary module
        half = self.head_dim // 2
        self.cos = cos[0]  # [max_len, head_dim]
        # rotate_half(x) * sin == roll(x, half) * sin_signed, exactly (a sign flip does not round)
        self.sin_signed = torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1)
        self.max_len = max_len
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.masked: Tensor | None = None  # [max_len, rows] bool, True at left padding; None without padding
        self.length = 0  # cache columns filled
        self._scratch: Tensor | None = None  # the attention's products, reused by every layer and step

    def prefill(self, input_ids: Tensor, attention_mask: Tensor, repeats: int) -> Tensor:
        """Run the left-padded prompts ``[prompts, P]`` through the model, store their keys/values with each
        prompt's row repeated ``repeats`` times (rollout ``r`` answers prompt ``r // repeats``), and return the
        logits after each prompt's last token ``[prompts, vocab]``.

        The same operations as the model's forward on the whole prompt (positions count real tokens only; causal
        attention over the prompt's own tokens, by SDPA); a padding query attends to itself only (its output is
        never read, but stays finite)."""
        n_prompts, width = input_ids.shape
        nq, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        valid = attention_mask.bool()
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        cos = self.cos[positions].unsqueeze(2)  # [prompts, P, 1, head_dim]
        sin = self.sin_signed[positions].unsqueeze(2)
        mask, causal = None, True
        if not bool(valid.all()):
            causal = False
            eye = torch.eye(width, dtype=torch.bool, device=valid.device)
            mask = (torch.ones_like(eye).tril() & valid[:, None, None, :]) | eye  # [prompts, 1, P, P]
        rows = n_prompts * repeats
        self.keys = [self.embed.new_empty((self.max_len, rows, nkv, hd)) for _ in self.layers]
        self.values = [self.embed.new_empty((self.max_len, rows, nkv, hd)) for _ in self.layers]
        h = F.embedding(input_ids, self.embed)  # [prompts, P, hidden]
        for i, w in enumerate(self.layers):
            qkv = F.linear(_rms_norm(h, w.ln1, w.eps1), w.w_qkv, w.b_qkv).view(n_prompts, width, -1, hd)
            qk = qkv[:, :, : nq + nkv]
            qk = qk * cos + qk.roll(hd // 2, -1) * sin
            k, v = qk[:, :, nq:], qkv[:, :, nq + nkv :]  # [prompts, P, kv_heads, head_dim]
            self.keys[i][:width] = k.transpose(0, 1).repeat_interleave(repeats, 1)
            self.values[i][:width] = v.transpose(0, 1).repeat_interleave(repeats, 1)
            a = F.scaled_dot_product_attention(
                qk[:, :, :nq].transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                is_causal=causal, scale=self.scaling, enable_gqa=self.groups > 1,
            )  # fmt: skip
            h = h + F.linear(a.transpose(1, 2).reshape(n_prompts, width, -1), w.wo, w.bo)
            gu = F.linear(_rms_norm(h, w.ln2, w.eps2), w.w_gu, w.b_gu)
            h = h + F.linear(F.silu(gu[..., : self.inter]) * gu[..., self.inter :], w.wd, w.bd)
        self.length = width
        self.masked = None
        if mask is not None:
            masked = torch.zeros((self.max_len, rows), dtype=torch.bool, device=valid.device)
            masked[:width] = (~valid).T.repeat_interleave(repeats, 1)
            self.masked = masked
        return F.linear(_rms_norm(h[:, -1], self.norm_w, self.norm_eps), self.lm_head, self.lm_bias)

    def select(self, keep: Tensor) -> None:
        """Keep only rows ``keep`` (the filled columns of the cache are copied)."""
        n = self.length
        for bufs in (self.keys, self.values):
            for i, buf in enumerate(bufs):
                new = buf.new_empty((buf.shape[0], len(keep), *buf.shape[2:]))
                torch.index_select(buf[:n], 1, keep, out=new[:n])
                bufs[i] = new
        if self.masked is not None:
            self.masked = self.masked[:, keep]
            if not bool(self.masked[:n].any()):
                self.masked = None

    def step(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """Logits ``[rows, vocab]`` after feeding ``tokens[r]`` at position ``positions[r]`` to each row."""
        rows, col = tokens.shape[0], self.length
        kv_len = col + 1
        nq, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        half = hd // 2
        cos = self.cos[positions].unsqueeze(1)  # [rows, 1, head_dim]
        sin = self.sin_signed[positions].unsqueeze(1)
        masked = None if self.masked is None else self.masked[:kv_len, :, None, None]
        h = F.embedding(tokens, self.embed)  # [rows, hidden]
        for i, w in enumerate(self.layers):
            qkv = F.linear(_rms_norm(h, w.ln1, w.eps1), w.w_qkv, w.b_qkv).view(rows, nq + 2 * nkv, hd)
            qk = qkv[:, : nq + nkv]  # the rotary embedding of q and k together
            qk = qk * cos + qk.roll(half, -1) * sin
            keys, values = self.keys[i], self.values[i]
            keys[col] = qk[:, nq:]
            values[col] = qkv[:, nq + nkv :]
            a = self._attend(qk[:, :nq], keys[:kv_len], values[:kv_len], masked)
            h = _linear_add(h, a, w.wo, w.bo)
            gu = F.linear(_rms_norm(h, w.ln2, w.eps2), w.w_gu, w.b_gu)
            act = F.silu(gu[:, : self.inter]).mul_(gu[:, self.inter :])
            h = _linear_add(h, act, w.wd, w.bd)
        self.length = kv_len
        return F.linear(_rms_norm(h, self.norm_w, self.norm_eps), self.lm_head, self.lm_bias)

    def _attend(self, q: Tensor, keys: Tensor, values: Tensor, masked: Tensor | None) -> Tensor:
        """``softmax_s(scale * q . k_s) . v_s`` for one query per row: ``q [rows, heads, head_dim]``, ``keys,
        values [S, rows, kv_heads, head_dim]`` -> ``[rows, heads * head_dim]``; query head ``j`` reads key/value
        head ``j // groups``; ``masked [S, rows, 1, 1]`` marks left padding."""
        rows, n_kv, groups, hd = q.shape[0], self.n_kv, self.groups, self.head_dim
        s_len = keys.shape[0]
        if q.dtype != torch.float32:  # low precision: let SDPA accumulate in float32
            k, v = keys.permute(1, 2, 0, 3), values.permute(1, 2, 0, 3)  # [rows, kv_heads, S, head_dim]
            mask = None if masked is None else ~masked[:, :, 0, 0].T[:, None, None, :]
            q4 = q.view(rows, n_kv, groups, hd)
            out = F.scaled_dot_product_attention(q4, k, v, attn_mask=mask, scale=self.scaling)
            return out.reshape(rows, -1)
        size = s_len * rows * n_kv * groups * hd
        if self._scratch is None or self._scratch.numel() < size:
            self._scratch = q.new_empty(self.max_len * rows * n_kv * groups * hd)
        tmp = self._scratch[:size].view(s_len, rows, n_kv, groups, hd)
        q = (q * self.scaling).view(1, rows, n_kv, groups, hd)
        scores = torch.mul(keys.unsqueeze(3), q, out=tmp).sum(-1)  # [S, rows, kv_heads, groups]
        if masked is not None:
            scores.masked_fill_(masked, float("-inf"))
        p = torch.softmax(scores, dim=0).unsqueeze(-1)
        return torch.mul(values.unsqueeze(3), p, out=tmp).sum(0).reshape(rows, -1)


def report_finished(on_finished: FinishedHook, ended: Tensor, out: Tensor, length: int) -> None:
    """Call ``on_finished(rollouts, responses)`` with the rollouts ``ended`` (indices into ``out``'s rows) that
    sampled EOS as their ``length``-th token, and their responses ``out[r, :length]`` on the CPU (nothing if
    ``ended`` is empty)."""
    if len(ended) == 0:
        return
    tokens = out[ended, :length].cpu()
    on_finished(ended.tolist(), list(tokens.unbind(0)))


def sample_lean(
    model: PreTrainedModel,
    prompts: list[list[int]],
    n: int,
    *,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    pad_id: int,
    eos_id: int,
    compact_fraction: float,
    scores: tuple[Tensor, Tensor] | None = None,
    on_finished: FinishedHook | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(out [rows, max_new_tokens], lengths [rows], finished [rows])`` on the model's device; rollout ``r``
    answers prompt ``r // n``; ``out`` holds ``pad_id`` after each response (see the module docstring).
    The returned tensors are ordinary ones (the decoding itself runs under ``torch.inference_mode``).

    ``scores = (logp, entropy)``, two float32 ``[rows, max_new_tokens]`` tensors on the model's device, also
    receive each sampled token's ``log_softmax(z / T)`` and the entropy of ``softmax(z / T)`` at its position,
    by the scorer's formulas (``training.model.response_logprobs``) on the decoder's logits; 0 after each
    response. The sampled tokens are the same with or without them.

    ``on_finished(rollouts, responses)``, if given, is called after each decode step in which some rollouts
    sampled EOS, with those rollouts and their final responses (CPU tensors, EOS included)."""
    device = next(model.parameters()).device
    total = len(prompts) * n
    out = torch.full((total, max_new_tokens), pad_id, dtype=torch.long, device=device)
    with torch.inference_mode():
        steps = _decode(
            model, prompts, n, out, temperature, seed, pad_id, eos_id, compact_fraction, scores, on_finished
        )
    with torch.no_grad():
        is_eos = out[:, :steps] == eos_id
        finished = is_eos.any(1)
        lengths = torch.where(finished, is_eos.int().argmax(1) + 1, steps)
        after = torch.arange(max_new_tokens, device=device) >= lengths.unsqueeze(1)
        out.masked_fill_(after, pad_id)
        for score in scores or ():
            score.masked_fill_(after, 0.0)
    return out, lengths, finished


def _decode(
    model: PreTrainedModel,
    prompts: list[list[int]],
    n: int,
    out: Tensor,
    temperature: float,
    seed: int,
    pad_id: int,
    eos_id: int,
    compact_fraction: float,
    scores: tuple[Tensor, Tensor] | None = None,
    on_finished: FinishedHook | None = None,
) -> int:
    """Write each row's tokens into ``out`` (rows that ended keep writing past their EOS until dropped), and
    their log-probs and entropies into ``scores`` if given; returns the number of steps taken."""
    device = out.device
    max_new_tokens = out.shape[1]
    gen = torch.Generator(device=device).manual_seed(seed)
    n_prompts = len(prompts)
    width = max(len(p) for p in prompts)
    ids = torch.full((n_prompts, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n_prompts, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.as_tensor(p, dtype=torch.long)
        attn[i, width - len(p) :] = 1
    ids, attn = ids.to(device), attn.to(device)

    decoder = LeanDecoder(model, width + max_new_tokens)
    logits = decoder.prefill(ids, attn, n).repeat_interleave(n, 0)
    pos = attn.sum(1).repeat_interleave(n, 0)  # position of each row's first new token

    rows = torch.arange(out.shape[0], device=device)  # rollout of each row of the batch
    alive = torch.ones(len(rows), dtype=torch.bool, device=device)  # rows that have not sampled EOS
    n_before = len(rows)  # rows alive before this step
    inv_t = 1.0 / temperature
    for t in range(max_new_tokens):
        probs = torch.softmax(logits.float() * inv_t, dim=-1)
        noise = torch.empty_like(probs).exponential_(generator=gen)
        tok = torch.argmax(probs.div_(noise), dim=-1)
        out[rows, t] = tok
        if scores is not None:  # the scorer's own functions, so the two cannot drift apart
            scores[0][rows, t], z, lse = _token_logp(logits, tok, temperature)
            scores[1][rows, t] = _entropy(z, lse)
        ended = alive & (tok == eos_id)
        alive &= ~ended
        n_alive = int(alive.sum())  # the loop's one host sync a step
        if on_finished is not None and n_alive < n_before:  # else nothing ended: no second sync to find out
            report_finished(on_finished, rows[ended], out, t + 1)
        n_before = n_alive
        if n_alive == 0 or t == max_new_tokens - 1:
            return t + 1
        if len(rows) - n_alive >= max(1, int(compact_fraction * len(rows))):
            keep = alive.nonzero().squeeze(1)
            decoder.select(keep)
            rows, tok, pos = rows[keep], tok[keep], pos[keep]
            alive = torch.ones(len(rows), dtype=torch.bool, device=device)
        logits = decoder.step(tok, pos + t)
    return max_new_tokens
