"""Training on a data file with a local chat model (transformers back end, chat template, bf16 autocast, gradient
checkpointing, chunked log-probs), validation on a benchmark, and the paper presets."""

from __future__ import annotations

import json

import pytest
import torch

from tests.training.conftest import run_main
from training.config import PRESETS, ConfigError, build_config
from training.loop import Trainer
from training.model import load_local_model
from training.rollout import TransformersBackend
from training.task import Problem, encode_prompt
from workbench.methods import METHODS
from workbench.runlog import open_run


def _data(tmp_path):
    rows = [
        {"problem": f"What is {a}+{b}?", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]
    ]
    rows.insert(2, {"problem": "No answer here"})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_training_on_a_data_file_with_a_chat_model(shared_data, chat_model, grader, tmp_path, monkeypatch):
    monkeypatch.setenv("REAL_DATA_DIR", str(shared_data))
    settings = {
        "method": "real", "model": str(chat_model), "train_data": str(_data(tmp_path)), "val_data": "aime",
        "val_prompts": 2, "val_k": 2, "steps": 2, "batch_prompts": 2, "minibatch_prompts": 1, "group_size": 2,
        "max_new_tokens": 8, "val_every": 2, "save_every": 2, "dtype": "bfloat16", "gradient_checkpointing": True,
        "logit_chunk_tokens": 4, "prompt_template": "{prompt}", "progress": False, "grader_workers": 1,
    }  # fmt: skip
    cfg = build_config("tiny", settings)
    cfg.validate()
    trainer = Trainer(cfg, tmp_path / "run", grader=grader, log=lambda _: None)
    trainer.run()
    tok = trainer.tokenizer
    first = trainer.train_set[0]
    assert first.prompt.endswith("within \\boxed{}.") and first.answer == "3"
    ids = trainer.encode(first)
    assert ids[0] == tok.convert_tokens_to_ids("<|user|>") and ids[-1] == tok.convert_tokens_to_ids(
        "<|assistant|>"
    )
    assert [p.source for p in trainer.val_set] == ["aime", "aime"]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights
    assert (
        getattr(trainer.model, "is_activation_checkpointing", None) or trainer.model.is_gradient_checkpointing
    )

    run = open_run(tmp_path / "run")
    assert run.steps() == [1, 2] and run.status()["state"] == "finished"
    data = run.env["data"]
    assert data["train"]["problems"] == 4 and data["train"]["skipped"] == 1
    assert "row 2, field 'answer'" in data["train"]["skipped_rows"][0]
    assert data["val"]["files"][0]["name"] == "aime" and data["val"]["problems"] == 30
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "data_skipped" and e["skipped"] == 1 for e in events)
    metrics = run.read("metrics", columns=["val_pass1", "updates"]).to_pandas()
    assert metrics.val_pass1.notna().iloc[-1] and (metrics.updates == 2).all()
    rollouts = run.read("rollouts", columns=["prompt", "answer"]).to_pandas()
    assert rollouts.prompt.str.endswith("within \\boxed{}.").all()

    saved_config = json.loads((tmp_path / "run" / "final_model" / "config.json").read_text())
    assert (
        saved_config.get("dtype", saved_config.get("torch_dtype")) == "bfloat16"
    )  # says what the weights are
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final_model").dtype == torch.bfloat16
    model, tok2 = load_local_model(tmp_path / "run" / "final_model", torch.float32, torch.device("cpu"))
    assert next(model.parameters()).dtype == torch.float32 and tok2.chat_template == tok.chat_template
    saved = dict(model.named_parameters())
    for name, p in trainer.model.named_parameters():
        assert torch.equal(saved[name], p.detach().to(torch.bfloat16).float())  # saved in bf16


def test_the_transformers_sampler_with_a_chat_template(chat_model):
    model, tok = load_local_model(chat_model, torch.float32, torch.device("cpu"))
    prompts = [encode_prompt(tok, "{prompt}", Problem(i, f"{i}+1=?", str(i + 1))) for i in range(3)]
    backend = TransformersBackend(model, tok.pad_token_id, tok.eos_token_id, dtype="bfloat16")
    gens = backend.generate(prompts, 2, temperature=0.6, max_new_tokens=5, seed=3)
    again = backend.generate(prompts, 2, temperature=0.6, max_new_tokens=5, seed=3)
    assert gens.n_rollouts == 6 and all(1 <= len(r) <= 5 for r in gens.responses)
    assert [r.tolist() for r in gens.responses] == [r.tolist() for r in again.responses]  # seeded
    assert all(len(p) == len("0+1=?") + 3 for p in gens.prompts)


@pytest.mark.parametrize(("preset", "lr", "steps"), [("paper-1.5b", 2e-6, 1400), ("paper-7b", 1e-6, 1000)])
def test_paper_presets_are_the_papers_settings(preset, lr, steps, chat_model, tmp_path):
    data = _data(tmp_path)
    for method in METHODS:
        cfg = build_config(preset, {"method": method, "model": str(chat_model), "train_data": str(data)})
        assert (cfg.batch_prompts, cfg.minibatch_prompts, cfg.group_size) == (128, 32, 8)
        assert (cfg.temperature, cfg.lr, cfg.steps, cfg.max_new_tokens) == (0.6, lr, steps, 8192)
        assert cfg.weight_decay == 0.01 and cfg.epochs == 1 and cfg.n_minibatches == 4
        assert cfg.dtype == "bfloat16" and cfg.gradient_checkpointing and cfg.logit_chunk_tokens > 0
        assert cfg.backend == "vllm" and cfg.val_data == "aime" and cfg.val_k == 8
        assert cfg.hparams().kl_beta == (0.001 if method == "grpo" else 0.0)  # no KL for REAL, DAPO, GSPO
    assert "80 GB" in PRESETS["paper-1.5b"].description and "verl" in PRESETS["paper-7b"].description
    with pytest.raises(ConfigError, match="--train-data PATH"):
        build_config(
            preset, {"method": "real", "model": str(chat_model), "device": "cpu", "backend": "transformers"}
        ).validate()


def test_bad_data_flags_stop_before_any_work(shared_data, chat_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REAL_DATA_DIR", str(shared_data))
    base = ["train", "--method", "real", "--model", str(chat_model), "--out", str(tmp_path / "r")]
    for extra, message in [
        (["--train-data", str(tmp_path / "absent.jsonl")], "no such file"),
        (["--train-data", "aime,amc"], "name one file"),
        (["--val-data", "aime24"], "unknown benchmark 'aime24'"),
        (["--train-data", str(_data(tmp_path)), "--bad-rows", "raise"], "row 2, field 'answer'"),
    ]:
        r = run_main([*base, *extra], capsys)
        assert r.returncode == 2 and message in r.stderr, (extra, r.stderr[-2000:])
        assert not (tmp_path / "r" / "run.json").exists()


def test_the_gold_audit_screens_the_training_data(chat_model, grader, tmp_path):
    """Issue 18: a gold that accepts a trivial answer (``3:1`` accepts ``\\boxed{3}``) is left out and counted with
    --bad-rows skip, and refused with --bad-rows raise; --no-gold-audit keeps it."""
    from training.datasets import DataFormatError

    rows = [
        {"problem": f"What is {a}+{b}?", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]
    ]
    rows.append({"problem": "The ratio of boys to girls?", "answer": "3:1"})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {"method": "real", "model": str(chat_model), "train_data": str(path), "batch_prompts": 2,
            "minibatch_prompts": 1, "group_size": 2, "max_new_tokens": 8, "prompt_template": "{prompt}",
            "progress": False, "cache_dir": str(tmp_path / "cache")}  # fmt: skip

    def setup(out: str, **extra) -> Trainer:
        cfg = build_config("tiny", {**base, **extra})
        cfg.validate()
        trainer = Trainer(cfg, tmp_path / out, grader=grader, log=lambda _: None)
        try:
            trainer.setup()
        finally:
            trainer.close()
        return trainer

    kept = setup("skip", bad_rows="skip")
    assert [p.answer for p in kept.train_set] == ["3", "7", "11", "15"]
    audit = kept.data_info["train"]["gold_audit"]
    assert audit["skipped"] == 1 and audit["findings"][0]["gold"] == "3:1"
    with pytest.raises(DataFormatError, match="gold audit flags 1 gold"):
        setup("raise", bad_rows="raise")
    assert len(setup("off", bad_rows="raise", gold_audit=False).train_set) == 5
