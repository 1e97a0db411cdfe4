"""Chunked log-probs and entropies equal the unchunked path, in values and gradients, and never hold more than a
chunk of logits; bf16 autocast keeps float32 master weights; a local model folder loads with its own tokenizer."""

from __future__ import annotations

import pytest
import torch

from training.model import (
    TinyModelSpec,
    autocast,
    build_tiny_model,
    chunkable,
    enable_gradient_checkpointing,
    load_local_model,
    make_scoring_batch,
    response_logprobs,
)

SPEC = TinyModelSpec(hidden=32, layers=2, heads=2, intermediate=64, max_positions=128)


def _batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11]]
    responses = [torch.randint(2, vocab, (n,), generator=g) for n in (9, 4, 1)]
    return make_scoring_batch(prompts, responses, 0, torch.device("cpu"))


def _grads(model, batch, chunk: int, weights: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logp, _ = response_logprobs(model, batch, 0.6, chunk_tokens=chunk)
    (logp * weights).sum().backward()
    return logp.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_chunked_logprobs_equal_the_unchunked_path(chunk):
    model = build_tiny_model(SPEC, 61, 0, 1, seed=3)
    model.train()  # dropout is 0: train mode changes nothing but is where gradients are taken
    batch = _batch(61)
    with torch.no_grad():
        ref_lp, ref_ent = response_logprobs(model, batch, 0.6, with_entropy=True)
        lp, ent = response_logprobs(model, batch, 0.6, with_entropy=True, chunk_tokens=chunk)
    torch.testing.assert_close(lp, ref_lp, rtol=0, atol=1e-5)
    torch.testing.assert_close(ent, ref_ent, rtol=0, atol=1e-5)
    assert (lp[~batch.response_mask] == 0).all() and (ent[~batch.response_mask] == 0).all()
    w = torch.randn(lp.shape, generator=torch.Generator().manual_seed(1))
    lp0, g0 = _grads(model, batch, 0, w)
    lp1, g1 = _grads(model, batch, chunk, w)
    torch.testing.assert_close(lp1, lp0, rtol=0, atol=1e-5)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_chunks_bound_the_logits_held_at_once():
    vocab = 97
    model = build_tiny_model(SPEC, vocab, 0, 1, seed=0)
    batch = _batch(vocab)
    rows, width = batch.response_ids.shape
    seen: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.numel()))
    try:
        logp, _ = response_logprobs(model, batch, 0.6, chunk_tokens=6, with_entropy=True)
        logp.sum().backward()
        assert seen and max(seen) <= rows * 2 * vocab  # 6 tokens over 3 rows: 2 columns per chunk
        assert len(seen) >= 2 * -(-width // 2)  # every chunk recomputed in the backward pass
        seen.clear()
        response_logprobs(model, batch, 0.6)
        assert max(seen) >= rows * width * vocab  # the unchunked path holds them all
    finally:
        hook.remove()


def test_models_with_transformed_logits_take_the_unchunked_path():
    model = build_tiny_model(SPEC, 50, 0, 1, seed=0)
    assert chunkable(model)
    model.config.final_logit_softcapping = 30.0  # as Gemma 2: logits are not the head's output
    assert not chunkable(model)
    batch = _batch(50)
    with torch.no_grad():
        a, _ = response_logprobs(model, batch, 1.0)
        b, _ = response_logprobs(model, batch, 1.0, chunk_tokens=2)
    assert torch.equal(a, b)


def test_bf16_autocast_keeps_float32_master_weights_and_checkpointing_matches():
    model = build_tiny_model(SPEC, 50, 0, 1, seed=0)
    batch = _batch(50)
    with autocast(torch.device("cpu"), "bfloat16"):
        logp, _ = response_logprobs(model, batch, 0.6, chunk_tokens=4)
    assert logp.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())
    logp.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        full, _ = response_logprobs(model, batch, 0.6)
    assert (logp.detach() - full).abs().max() < 0.1  # bf16 compute, float32 reference: close, not equal
    w = torch.randn(full.shape, generator=torch.Generator().manual_seed(2))
    model.train()
    _, plain = _grads(model, batch, 0, w)
    assert enable_gradient_checkpointing(model)
    _, ckpt = _grads(model, batch, 3, w)
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_a_local_folder_loads_with_its_own_tokenizer(chat_model, tmp_path):
    model, tok = load_local_model(chat_model, torch.float32, torch.device("cpu"))
    text = "a b\n\\boxed{3} x"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert (
        tok.decode(ids) == text and tok.chat_template
    )  # the folder's tokenizer.json, not Qwen2's byte rules
    assert model.config.max_position_embeddings == 2048 and next(model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="not a local model folder"):
        load_local_model(tmp_path, torch.float32, torch.device("cpu"))
