"""The vLLM back end's plumbing, without vLLM.

vLLM needs a CUDA GPU and cannot be installed usefully on this project's CPU machines, so these tests drive
``VLLMBackend`` with a minimal stand-in for the vLLM *engine object only* (``vllm.LLM``: ``generate``, ``sleep``,
``wake_up``, ``reset_prefix_cache`` and the engine's model with ``load_weights``) and a plain dict in place of
``vllm.SamplingParams``. They check the call sequence of the weight sync and of sleep mode, the weights pushed
(names and values are the policy's), the arguments of each generation, and how outputs become ``Generations``.
They do not show that vLLM accepts these calls: that needs a GPU run (docs/engines.md).
Everything else here is real (the policy is a transformers model, the CLI runs as a subprocess).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.training.conftest import run_main
from training.model import TinyModelSpec, build_tiny_model
from training.rollout import VLLM_MISSING, BackendUnavailable, VLLMBackend, vllm_available


class StandInEngine:
    """Records what the back end asks of a ``vllm.LLM``; answers ``generate`` with fixed token ids."""

    def __init__(self, eos_id: int):
        self.calls: list[tuple] = []
        self.eos_id = eos_id
        self.loaded: dict[str, torch.Tensor] = {}
        model = SimpleNamespace(load_weights=self._load_weights)
        worker = SimpleNamespace(worker=SimpleNamespace(model_runner=SimpleNamespace(model=model)))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker))

    def _load_weights(self, weights) -> None:
        items = list(weights)  # the back end passes an iterator of (name, tensor)
        self.loaded = {k: v.clone() for k, v in items}
        self.calls.append(("load_weights", len(items)))

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache",))

    def sleep(self, level: int) -> None:
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None) -> None:
        self.calls.append(("wake_up", tuple(tags or ())))

    def generate(self, inputs, params, use_tqdm=True):
        self.calls.append(("generate", len(inputs), dict(params), use_tqdm))
        outs = []
        for i, x in enumerate(inputs):
            completions = []
            for j in range(params["n"]):
                ids = [5 + i, 6 + j]
                if j == 0:
                    completions.append(SimpleNamespace(token_ids=[*ids, self.eos_id], finish_reason="stop"))
                elif j == 1:
                    completions.append(
                        SimpleNamespace(token_ids=ids, finish_reason="stop")
                    )  # EOS not returned
                else:
                    completions.append(SimpleNamespace(token_ids=ids, finish_reason="length"))
            outs.append(SimpleNamespace(prompt_token_ids=x["prompt_token_ids"], outputs=completions))
        return outs


def _policy(seed: int = 0):
    return build_tiny_model(TinyModelSpec(hidden=16, layers=1, heads=2, intermediate=32), 40, 0, 1, seed)


def _names(calls):
    return [c[0] for c in calls]


def test_weight_sync_and_sleep_mode_call_sequence():
    engine = StandInEngine(eos_id=1)
    backend = VLLMBackend("unused", eos_id=1, dtype="bfloat16", llm=engine, sampling_params=dict, sleep=True)
    policy = _policy()
    backend.sync_weights(policy)  # the trainer pushes its weights once at start (awake: no wake_up)
    assert _names(engine.calls) == ["load_weights", "reset_prefix_cache"]
    state = policy.state_dict()
    assert set(engine.loaded) == set(state)
    for k, v in state.items():
        assert engine.loaded[k].dtype == torch.bfloat16 and torch.equal(
            engine.loaded[k], v.to(torch.bfloat16)
        )

    engine.calls.clear()
    gens = backend.generate([[3, 4], [7]], 3, temperature=0.6, max_new_tokens=9, seed=11)
    assert engine.calls == [
        ("generate", 2, {"n": 3, "temperature": 0.6, "max_tokens": 9, "seed": 11}, False),
        ("sleep", 2),  # weights and KV cache freed for training
    ]
    assert gens.n == 3 and gens.n_rollouts == 6 and gens.prompts == [[3, 4], [7]]
    assert [r.tolist() for r in gens.responses[:3]] == [
        [5, 6, 1],
        [5, 7, 1],
        [5, 8],
    ]  # the sampled EOS is kept
    assert gens.finished.tolist() == [True, True, False] * 2

    # after the update: wake the weights, push, clear the prefix cache; then wake the KV cache to sample
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5)
    engine.calls.clear()
    backend.sync_weights(policy)
    backend.generate([[3]], 2, temperature=0.6, max_new_tokens=4, seed=12)
    assert _names(engine.calls) == [
        "wake_up",
        "load_weights",
        "reset_prefix_cache",
        "wake_up",
        "generate",
        "sleep",
    ]
    assert engine.calls[0] == ("wake_up", ("weights",)) and engine.calls[3] == ("wake_up", ("kv_cache",))
    key = "model.embed_tokens.weight"
    assert torch.equal(engine.loaded[key], policy.state_dict()[key].to(torch.bfloat16))

    # a second generation with no push in between (validation after sampling): level 2 discarded the weights,
    # so the last synced policy is pushed again before sampling
    engine.calls.clear()
    backend.generate([[3]], 2, temperature=0.6, max_new_tokens=4, seed=13)
    assert _names(engine.calls) == [
        "wake_up",
        "load_weights",
        "reset_prefix_cache",
        "wake_up",
        "generate",
        "sleep",
    ]


def test_without_sleep_mode_the_engine_stays_awake():
    engine = StandInEngine(eos_id=1)
    backend = VLLMBackend("unused", eos_id=1, dtype="float32", llm=engine, sampling_params=dict, sleep=False)
    policy = _policy()
    backend.generate([[3]], 2, temperature=1.0, max_new_tokens=4, seed=0)
    backend.sync_weights(policy)
    backend.generate([[3]], 2, temperature=1.0, max_new_tokens=4, seed=1)
    assert _names(engine.calls) == ["generate", "load_weights", "reset_prefix_cache", "generate"]
    assert engine.loaded["lm_head.weight"].dtype == torch.float32


def test_a_sleeping_engine_without_a_pushed_policy_is_an_error():
    engine = StandInEngine(eos_id=1)
    backend = VLLMBackend("unused", eos_id=1, llm=engine, sampling_params=dict, sleep=True)
    backend.generate([[3]], 1, temperature=1.0, max_new_tokens=2, seed=0)
    with pytest.raises(RuntimeError, match="call sync_weights first"):
        backend.generate([[3]], 1, temperature=1.0, max_new_tokens=2, seed=0)


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")
def test_missing_vllm_is_one_clear_message(tmp_path, chat_model, capsys):
    with pytest.raises(BackendUnavailable, match="optional vLLM package"):
        VLLMBackend(str(chat_model), eos_id=1)
    r = run_main(["train", "--method", "real", "--backend", "vllm", "--out", str(tmp_path / "r")], capsys)
    assert r.returncode == 2 and VLLM_MISSING in r.stderr and "Traceback" not in r.stderr
    r = run_main(["eval", "--model", str(chat_model), "--backend", "vllm", "--benchmarks", str(tmp_path / "x.json"),
                  "--out", str(tmp_path / "e")], capsys)  # fmt: skip
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
