"""The lean decoder (``training.fast_sampler``) against the model's own forward and the generic sampler: the same
logits to float rounding, the same tokens for a seed, the same greedy decode as ``generate``, the scorer's
log-probs, and a fallback for models it does not cover."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from training.fast_sampler import LeanDecoder, lean_decoder_unsupported, sample_lean
from training.model import TinyModelSpec, build_tiny_model, make_scoring_batch, response_logprobs
from training.rollout import TransformersBackend
from training.tokenizer import build_tokenizer

torch.set_num_threads(1)
PAD, EOS = 0, 1


@pytest.fixture(scope="module")
def qwen():
    """The embedded architecture (Qwen2: q/k/v biases, tied head), EOS made likely so rows end at different
    steps and the batch is compacted."""
    tok = build_tokenizer()
    model = build_tiny_model(TinyModelSpec(64, 2, 2, 128), len(tok), PAD, EOS, seed=3).eval()
    with torch.no_grad():
        model.lm_head.weight[EOS] += 0.3 * model.lm_head.weight.mean(0)
    texts = ["1+2=?\n", "17*3-4=?\n", "9=?\n", "12-5*7+3=?\n"]  # unequal lengths: left padding
    return model, [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.fixture(scope="module")
def qwen_unpadded(qwen):
    """Prompts of one length: no padding anywhere (causal prefill without a mask)."""
    model, prompts = qwen
    return model, [p[:5] for p in prompts if len(p) >= 5]


@pytest.fixture(scope="module")
def llama_gqa():
    """A Llama with grouped-query attention (4 query heads on 2 key/value heads), attention and MLP biases, an
    untied head and a scaled rope: the layouts the decoder must read generally."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, attention_bias=True, mlp_bias=True,
        tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=EOS,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # nonzero biases
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    return model, prompts


def reference_logits(model, prompts, n, tokens):
    """Logits of the model's own cached forward (prefill, then one token per step) for ``tokens [rows, T]``
    fed after the left-padded prompts: ``[T + 1, rows, vocab]``."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts]).repeat_interleave(n, 0)
    attn = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    attn = attn.repeat_interleave(n, 0)
    pos = attn.sum(1)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        out = [
            model(
                ids, attention_mask=attn, position_ids=(attn.cumsum(1) - 1).clamp(min=0), cache=cache
            ).logits[:, -1]
        ]
        for t in range(tokens.shape[1]):
            attn = torch.cat([attn, attn.new_ones(len(attn), 1)], 1)
            step = model(
                tokens[:, t : t + 1], attention_mask=attn, position_ids=(pos + t)[:, None], cache=cache
            )
            out.append(step.logits[:, -1])
    return torch.stack(out)


def lean_logits(model, prompts, n, tokens, drop_at=None):
    """The same through ``LeanDecoder`` (its own prefill included); at step ``drop_at`` every other row is dropped (``select``) and the
    rest continue; returns the logits of the kept rows: ``[T + 1, kept rows, vocab]`` and the kept indices."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    attn = (ids != PAD).long()
    dec = LeanDecoder(model, width + tokens.shape[1] + 1)
    with torch.no_grad():
        out = [dec.prefill(ids, attn, n).repeat_interleave(n, 0)]
        pos = attn.sum(1).repeat_interleave(n, 0)
        keep = torch.arange(len(pos))
        for t in range(tokens.shape[1]):
            if t == drop_at:
                sub = torch.arange(0, len(keep), 2)
                dec.select(sub)
                keep, pos = keep[sub], pos[sub]
                out = [o[sub] for o in out]
            out.append(dec.step(tokens[keep, t], pos + t))
    return torch.stack(out), keep


@pytest.mark.parametrize("fixture", ["qwen", "qwen_unpadded", "llama_gqa"])
def test_decode_step_logits_equal_the_models_forward(fixture, request):
    model, prompts = request.getfixturevalue(fixture)
    assert lean_decoder_unsupported(model) is None
    n, steps = 3, 9
    tokens = torch.randint(
        2, model.config.vocab_size, (len(prompts) * n, steps), generator=torch.Generator().manual_seed(1)
    )
    want = reference_logits(model, prompts, n, tokens)
    got, keep = lean_logits(model, prompts, n, tokens)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    got, keep = lean_logits(model, prompts, n, tokens, drop_at=4)  # after dropping rows
    torch.testing.assert_close(got, want[:, keep], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_same_seed_same_tokens_as_the_generic_sampler(qwen, temperature):
    """The lean and generic loops draw the same noise for the same rows: identical rollouts for a seed."""
    model, prompts = qwen
    lean = TransformersBackend(model, PAD, EOS)
    generic = TransformersBackend(model, PAD, EOS, lean=False)
    for seed in range(4):
        a = lean.generate(prompts, 5, temperature=temperature, max_new_tokens=20, seed=seed)
        b = generic.generate(prompts, 5, temperature=temperature, max_new_tokens=20, seed=seed)
        assert [r.tolist() for r in a.responses] == [r.tolist() for r in b.responses]
        assert torch.equal(a.finished, b.finished)
    lengths = {len(r) for r in a.responses}
    assert len(lengths) > 3 and a.finished.any() and not a.finished.all()  # rows ended at different steps


def test_near_zero_temperature_is_greedy_generate(llama_gqa):
    """At T -> 0 the draw is the argmax: the same tokens as ``generate(do_sample=False)`` on the padded batch."""
    model, prompts = llama_gqa
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    with torch.no_grad():
        ref = model.generate(
            ids, attention_mask=(ids != PAD).long(), do_sample=False, max_new_tokens=12, pad_token_id=PAD,
            eos_token_id=EOS,
        )[:, width:]  # fmt: skip
    out, lengths, _ = sample_lean(
        model, prompts, 1, temperature=1e-6, max_new_tokens=12, seed=0, pad_id=PAD, eos_id=EOS,
        compact_fraction=0.25,
    )  # fmt: skip
    for r in range(len(prompts)):
        want = ref[r].tolist()
        if EOS in want:
            want = want[: want.index(EOS) + 1]
        assert out[r, : lengths[r]].tolist() == want


def test_sampled_tokens_log_probs_equal_the_scorers(qwen):
    """log softmax(z / T) of each sampled token, from the decoder's logits, equals the trainer's scorer."""
    model, prompts = qwen
    n, temperature = 2, 0.8
    out, lengths, finished = sample_lean(
        model, prompts, n, temperature=temperature, max_new_tokens=16, seed=7, pad_id=PAD, eos_id=EOS,
        compact_fraction=0.25,
    )  # fmt: skip
    assert not out.is_inference() and finished.any()
    responses = [out[r, : lengths[r]] for r in range(len(out))]
    rows = [prompts[r // n] for r in range(len(out))]
    sb = make_scoring_batch(rows, responses, PAD, torch.device("cpu"))
    with torch.no_grad():
        want, _ = response_logprobs(model, sb, temperature)
    tokens = sb.response_ids.clone()
    logits, _ = lean_logits(model, prompts, n, tokens[:, :-1])
    logp = torch.log_softmax(logits.transpose(0, 1) / temperature, -1).gather(-1, tokens.unsqueeze(-1))[
        ..., 0
    ]
    logp = torch.where(sb.response_mask, logp, 0.0)
    torch.testing.assert_close(logp, want, atol=1e-5, rtol=1e-5)
    assert torch.all(out[torch.arange(16)[None] >= lengths[:, None]] == PAD)


def test_other_architectures_fall_back_to_the_generic_forward():
    config = GPT2Config(vocab_size=40, n_embd=32, n_layer=1, n_head=2, n_positions=64, eos_token_id=EOS,
                        pad_token_id=PAD)  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    assert "gpt2" in lean_decoder_unsupported(model)
    with pytest.raises(ValueError, match="does not support"):
        LeanDecoder(model, 16)
    gens = TransformersBackend(model, PAD, EOS).generate(
        [[3, 4], [5]], 2, temperature=1.0, max_new_tokens=5, seed=0
    )
    assert gens.n_rollouts == 4 and all(1 <= len(r) <= 5 for r in gens.responses)
    sliding = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, layer_types=["sliding_attention"], sliding_window=4)  # fmt: skip
    assert lean_decoder_unsupported(LlamaForCausalLM(sliding)) is not None


def test_bfloat16_model_decodes_close_to_its_forward(qwen):
    model, prompts = qwen
    model16 = build_tiny_model(TinyModelSpec(64, 2, 2, 128), model.config.vocab_size, PAD, EOS, seed=3)
    model16.load_state_dict(model.state_dict())
    model16 = model16.to(torch.bfloat16).eval()
    tokens = torch.randint(2, 90, (len(prompts) * 2, 6), generator=torch.Generator().manual_seed(2))
    want = reference_logits(model16, prompts, 2, tokens).float()
    got, _ = lean_logits(model16, prompts, 2, tokens)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("fixture", ["qwen", "llama_gqa"])
def test_log_probs_and_entropies_from_the_sampling_pass_equal_the_scorers(fixture, request):
    """``TransformersBackend(logprobs=True)``: the same tokens as without, and each token's log-prob and entropy
    as the trainer's scorer computes them (what the trainer then takes as the old log-probs)."""
    model, prompts = request.getfixturevalue(fixture)
    n, temperature = 3, 0.7
    kw = {"temperature": temperature, "max_new_tokens": 12, "seed": 11}
    plain = TransformersBackend(model, PAD, EOS).generate(prompts, n, **kw)
    gens = TransformersBackend(model, PAD, EOS, logprobs=True).generate(prompts, n, **kw)
    assert plain.logp is None and gens.logp is not None
    assert [r.tolist() for r in gens.responses] == [r.tolist() for r in plain.responses]
    assert len({len(r) for r in gens.responses}) > 1  # rows ended at different steps
    rows = [prompts[r // n] for r in range(gens.n_rollouts)]
    sb = make_scoring_batch(rows, gens.responses, PAD, torch.device("cpu"))
    with torch.no_grad():
        want_lp, want_ent = response_logprobs(model, sb, temperature, with_entropy=True)
    for r, (lp, ent) in enumerate(zip(gens.logp, gens.entropy, strict=True)):
        n_tok = len(gens.responses[r])
        assert lp.shape == ent.shape == (n_tok,) and lp.dtype == torch.float32
        torch.testing.assert_close(lp, want_lp[r, :n_tok], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(ent, want_ent[r, :n_tok], atol=2e-5, rtol=1e-5)
    assert all((lp < 0).all() for lp in gens.logp)  # T < 1 on random weights: no token is certain
