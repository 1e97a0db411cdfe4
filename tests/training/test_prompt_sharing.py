"""Rollouts that share a prompt compute its keys and values once in the scorer (``training.model``): the
log-probs, entropies and every parameter's gradient equal those of a plain forward over whole rows."""

from __future__ import annotations

import pytest
import torch

from training.model import (
    TinyModelSpec,
    _distinct_prompts,
    build_tiny_model,
    enable_gradient_checkpointing,
    make_scoring_batch,
    response_logprobs,
)

SPEC = TinyModelSpec(hidden=32, layers=2, heads=2, intermediate=64, max_positions=128)
VOCAB, PAD, T = 61, 0, 0.6


def _group_batch(seed: int = 0):
    """3 prompts of different lengths (so the prompts are left-padded) x G = 3 responses of 1-9 tokens."""
    g = torch.Generator().manual_seed(seed)
    prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11]]
    lengths = [9, 4, 1, 6, 6, 2, 3, 8, 5]
    responses = [torch.randint(2, VOCAB, (n,), generator=g) for n in lengths]
    return make_scoring_batch([prompts[i // 3] for i in range(9)], responses, PAD, torch.device("cpu"))


def _plain_logprobs(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: the model's own forward over whole rows, log_softmax(z / T) of each response token."""
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions
    ).logits
    t = batch.response_width
    z = logits[:, -(t + 1) : -1].float() / T
    logp = torch.log_softmax(z, -1).gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)
    entropy = -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)
    return torch.where(batch.response_mask, logp, 0.0), torch.where(batch.response_mask, entropy, 0.0)


def _grads(model, fn, weights) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logp = fn()
    (logp * weights).sum().backward()
    return logp.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk", [0, 5])
def test_shared_prompts_give_the_plain_forwards_values_and_gradients(chunk):
    model = build_tiny_model(SPEC, VOCAB, PAD, 1, seed=3).train()
    batch = _group_batch()
    shared = _distinct_prompts(batch)
    assert shared is not None and shared[0].shape[0] == 3  # one prompt forward per group
    by_group = shared[2].view(3, 3)
    assert (by_group == by_group[:, :1]).all() and len(set(by_group[:, 0].tolist())) == 3
    with torch.no_grad():
        lp, ent = response_logprobs(model, batch, T, with_entropy=True, chunk_tokens=chunk)
        want_lp, want_ent = _plain_logprobs(model, batch)
    torch.testing.assert_close(lp, want_lp, rtol=0, atol=1e-5)
    torch.testing.assert_close(ent, want_ent, rtol=0, atol=1e-5)
    assert (lp[~batch.response_mask] == 0).all() and (lp[batch.response_mask] != 0).all()

    w = torch.randn(lp.shape, generator=torch.Generator().manual_seed(1))
    lp0, g0 = _grads(model, lambda: _plain_logprobs(model, batch)[0], w)
    lp1, g1 = _grads(model, lambda: response_logprobs(model, batch, T, chunk_tokens=chunk)[0], w)
    torch.testing.assert_close(lp1, lp0, rtol=0, atol=1e-5)
    emb = model.get_input_embeddings().weight
    for (name, _), a, b in zip(model.named_parameters(), g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")
    # the prompt tokens' embedding rows get gradient only through the shared keys/values: it reached them
    prompt_only = [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert all(float(g1[0][i].abs().sum()) > 0 for i in prompt_only) and g1[0].shape == emb.shape


def test_distinct_prompts_and_checkpointing_take_the_plain_path():
    model = build_tiny_model(SPEC, VOCAB, PAD, 1, seed=3).train()
    g = torch.Generator().manual_seed(0)
    responses = [torch.randint(2, VOCAB, (n,), generator=g) for n in (3, 5)]
    distinct = make_scoring_batch([[3, 4], [3, 5]], responses, PAD, torch.device("cpu"))
    assert _distinct_prompts(distinct) is None
    batch = _group_batch()
    want, _ = _plain_logprobs(model, batch)
    assert enable_gradient_checkpointing(model)
    lp, _ = response_logprobs(model, batch, T)  # checkpointing turns the cache off: whole rows
    torch.testing.assert_close(lp, want, rtol=0, atol=1e-5)
    lp.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
