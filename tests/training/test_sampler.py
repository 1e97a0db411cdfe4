"""The transformers rollout back end and the scorer: padding, KV cache, row dropping, seeds, temperature."""

from __future__ import annotations

import math

import pytest
import torch

from training.model import TinyModelSpec, build_tiny_model, make_scoring_batch, response_logprobs
from training.rollout import BackendUnavailable, TransformersBackend, check_backend, vllm_available
from training.tokenizer import build_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    tok = build_tokenizer()
    model = build_tiny_model(
        TinyModelSpec(64, 2, 2, 128), len(tok), tok.pad_token_id, tok.eos_token_id, seed=3
    )
    # Make EOS likely so rows finish at different times and the sampler drops them from its batch.
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] += 0.3 * model.lm_head.weight.mean(0)
    texts = ["1+2=?\n", "17*3-4=?\n", "9=?\n", "12-5*7+3=?\n"]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    return tok, model.eval(), prompts


def test_same_seed_same_rollouts_other_seed_others(setup):
    tok, model, prompts = setup
    be = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id)
    a = be.generate(prompts, 3, temperature=1.0, max_new_tokens=12, seed=5)
    b = be.generate(prompts, 3, temperature=1.0, max_new_tokens=12, seed=5)
    c = be.generate(prompts, 3, temperature=1.0, max_new_tokens=12, seed=6)
    assert a.n_rollouts == 12 and a.prompt_index().tolist() == [i // 3 for i in range(12)]
    assert all(torch.equal(x, y) for x, y in zip(a.responses, b.responses, strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(a.responses, c.responses, strict=True))
    for r, fin in zip(a.responses, a.finished.tolist(), strict=True):
        assert 1 <= len(r) <= 12
        assert fin == (r[-1].item() == tok.eos_token_id)
        assert tok.eos_token_id not in r[:-1].tolist()


@pytest.fixture(scope="module")
def trained(ws_cache):
    """The warm-started small model: it ends its solutions with EOS, at lengths that differ by prompt."""
    from tests.training.conftest import small_config
    from training.task import make_splits
    from training.warmstart import load_or_train

    cfg = small_config("real", ws_cache)
    model, tok, _ = load_or_train(cfg, make_splits(cfg.task_spec()), None, log=lambda _: None)
    texts = ["1+2=?\n", "17*3=?\n", "9-20=?\n", "12+5=?\n", "20*20=?\n"]
    return tok, model.eval(), [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_near_zero_temperature_matches_greedy_decoding_of_each_prompt_alone(trained):
    """Batched, left-padded, cached decoding with rows dropped as they finish gives, at T -> 0, exactly what
    transformers' greedy ``generate`` gives for each prompt on its own."""
    tok, model, prompts = trained
    be = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id, compact_fraction=0.01)
    gens = be.generate(prompts, 2, temperature=1e-6, max_new_tokens=16, seed=0)
    lengths = {len(r) for r in gens.responses}
    assert len(lengths) > 1 and gens.finished.any()  # rows finished at different steps
    for i, p in enumerate(prompts):
        ref = model.generate(
            torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), do_sample=False,
            max_new_tokens=16, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )[0, len(p):]  # fmt: skip
        if tok.eos_token_id in ref.tolist():
            ref = ref[: ref.tolist().index(tok.eos_token_id) + 1]
        for j in (2 * i, 2 * i + 1):
            assert gens.responses[j].tolist() == ref.tolist()


def test_first_token_frequencies_follow_softmax_at_temperature(setup):
    tok, model, prompts = setup
    be = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id)
    temperature, n = 0.7, 4000
    gens = be.generate([prompts[1]], n, temperature=temperature, max_new_tokens=1, seed=11)
    first = torch.tensor([r[0].item() for r in gens.responses])
    with torch.no_grad():
        logits = model(torch.tensor([prompts[1]])).logits[0, -1]
    p = torch.softmax(logits / temperature, -1)
    top = torch.topk(p, 3).indices
    for v in top.tolist():
        freq = (first == v).float().mean().item()
        sd = math.sqrt(p[v].item() * (1 - p[v].item()) / n)
        assert abs(freq - p[v].item()) < 5 * sd + 1e-3


def test_scorer_handles_padding_like_unpadded_forwards(setup):
    tok, model, prompts = setup
    be = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id)
    gens = be.generate(prompts, 2, temperature=1.0, max_new_tokens=10, seed=2)
    rows = [prompts[i // 2] for i in range(8)]
    sb = make_scoring_batch(rows, gens.responses, tok.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        logp, ent = response_logprobs(model, sb, temperature=0.8, with_entropy=True)
        for i in range(8):
            ids = torch.tensor([rows[i] + gens.responses[i].tolist()])
            logits = model(ids).logits[0, len(rows[i]) - 1 : -1] / 0.8
            lp = torch.log_softmax(logits, -1)
            want = lp.gather(-1, gens.responses[i].unsqueeze(-1)).squeeze(-1)
            n = len(gens.responses[i])
            torch.testing.assert_close(logp[i, :n], want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ent[i, :n], -(lp.exp() * lp).sum(-1), atol=1e-5, rtol=1e-5)
            assert torch.all(logp[i, n:] == 0) and not sb.response_mask[i, n:].any()


def test_vllm_absence_is_a_clear_error():
    if vllm_available():
        pytest.skip("vLLM is installed here")
    with pytest.raises(BackendUnavailable, match=r"pip install 'real-workbench\[vllm\]'"):
        check_backend("vllm")
    with pytest.raises(ValueError, match="unknown rollout back end"):
        check_backend("nope")


MAX_NEW = 24


@pytest.mark.parametrize("lean", [True, False])
def test_on_finished_reports_each_rollout_that_sampled_eos_once_with_its_final_response(trained, lean):
    """The hook the trainer grades from while the others decode: every rollout that ended with EOS, once, with
    exactly its returned response; no rollout cut at max_new_tokens; the same tokens as without the hook."""
    tok, model, prompts = trained
    be = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id, lean=lean)
    reported: dict[int, torch.Tensor] = {}
    calls: list[list[int]] = []

    def hook(rollouts: list[int], responses: list[torch.Tensor]) -> None:
        calls.append(list(rollouts))
        for r, resp in zip(rollouts, responses, strict=True):
            assert r not in reported
            reported[r] = resp

    kw = {"temperature": 1.0, "max_new_tokens": MAX_NEW, "seed": 5}
    gens = be.generate(prompts, 3, **kw, on_finished=hook)
    plain = be.generate(prompts, 3, **kw)
    assert all(torch.equal(x, y) for x, y in zip(gens.responses, plain.responses, strict=True))
    ended = {r for r, fin in enumerate(gens.finished.tolist()) if fin}
    assert set(reported) == ended and 0 < len(ended) < gens.n_rollouts  # some rows are cut at MAX_NEW tokens
    assert len(calls) > 1  # during sampling, not all at the end
    for r, resp in reported.items():
        assert torch.equal(resp, gens.responses[r])
