"""Checks of the TRL adapter against TRL's own trainer; run inside .venv-trl by tests/engines/test_trl.py.

A tiny Llama and a character tokenizer are built locally (nothing is downloaded); TRL's GRPOTrainer generates,
shuffles, splits and steps as usual, with the workbench objective as its loss.
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import GRPOConfig
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from training.engines.trl_trainer import WorkbenchGRPOTrainer, pack_groups, unpack_groups
from workbench.objectives import OBJECTIVES
from workbench.runlog import open_run

G = 4


def build_tiny(path: Path) -> Path:
    """A 1-layer Llama and a character-level fast tokenizer, saved under ``path``."""
    chars = list(string.digits + "+=-*x ")
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {c: i + 3 for i, c in enumerate(chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


def reward_has_seven(prompts, completions, **kwargs) -> list[float]:
    """Binary: 1 when the completion contains a 7."""
    return [1.0 if "7" in c else 0.0 for c in completions]


class Probe(WorkbenchGRPOTrainer):
    """Records, for every micro-batch, the trainer's loss next to an independent recomputation."""

    probes: list[dict]

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
        mask = inputs["completion_mask"]
        ids = torch.cat([prompt_ids, completion_ids], 1)
        att = torch.cat([inputs["prompt_mask"], mask], 1)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=att).logits[:, -completion_ids.shape[1] - 1 : -1]
            logp = torch.log_softmax(logits.float() / self.temperature, -1)
            logp = logp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
        old = inputs.get("old_per_token_logps")
        expected = OBJECTIVES[self.wb_method](
            logp,
            logp if old is None else old,
            mask,
            inputs["wb_rewards"],
            inputs["wb_group_ids"],
            ref_logp=inputs.get("ref_per_token_logps"),
            **self.wb_overrides,
        )
        texts = self.processing_class.batch_decode(
            [c[m.bool()].tolist() for c, m in zip(completion_ids, mask, strict=True)],
            skip_special_tokens=True,
        )
        self.probes.append(
            {
                "loss": float(loss.detach()),
                "expected": float(expected.loss) * self.wb_scale(inputs, mask),
                "group_ids": inputs["wb_group_ids"].tolist(),
                "prompt_ids": [
                    tuple(p[a.bool()].tolist())
                    for p, a in zip(prompt_ids, inputs["prompt_mask"], strict=True)
                ],
                "rewards": inputs["wb_rewards"].tolist(),
                "recomputed": reward_has_seven(None, texts),
            }
        )
        return loss


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


def make_trainer(tiny: Path, tmp: Path, method: str, report_to: str | None = None, **hp) -> Probe:
    prompts = [f"{a}+{b}=" for a in range(4) for b in range(4)]
    dataset = Dataset.from_dict({"prompt": prompts, "answer": [str(len(p)) for p in prompts]})
    args = GRPOConfig(
        output_dir=str(tmp / "out"),
        per_device_train_batch_size=8,
        num_generations=G,
        gradient_accumulation_steps=2,
        max_completion_length=6,
        max_steps=3,
        learning_rate=5e-3,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
        temperature=1.0,
        dataloader_num_workers=0,
    )
    trainer = Probe(
        model=str(tiny),
        reward_funcs=reward_has_seven,
        args=args,
        train_dataset=dataset,
        processing_class=PreTrainedTokenizerFast.from_pretrained(tiny),
        method=method,
        hparams=hp or None,
        run_dir=tmp / "run",
        run_report_to=report_to,
    )
    trainer.probes = []
    return trainer


@pytest.mark.parametrize(
    ("method", "hp"),
    [
        ("real", {}),
        ("grpo", {}),
        ("dapo", {}),
        ("real_bce", {"normalize": "prompts"}),
        ("real_no_anchor", {}),
        ("cispo", {}),
        ("dr_grpo", {"max_tokens": 6}),
    ],
)
def test_trains_with_workbench_objective_and_writes_the_run(tiny, tmp_path, method, hp):
    trainer = make_trainer(tiny, tmp_path, method, **hp)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    after = list(trainer.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True)), "no parameter moved"

    probes = trainer.probes
    assert len(probes) == 3 * 2  # 3 optimizer steps x 2 accumulation micro-batches
    for p in probes:
        # the loss TRL backpropagates is the workbench objective on the same rollouts (scaled to the window)
        assert p["loss"] == pytest.approx(p["expected"], rel=1e-5, abs=1e-7)
        # each micro-batch holds whole groups, and the carried ids and rewards stayed with their rows
        assert set(Counter(p["group_ids"]).values()) == {G}
        by_group: dict[int, set] = {}
        for gid, prompt in zip(p["group_ids"], p["prompt_ids"], strict=True):
            by_group.setdefault(gid, set()).add(prompt)
        assert all(len(s) == 1 for s in by_group.values())
        assert p["rewards"] == p["recomputed"]

    run = open_run(tmp_path / "run")
    assert run.method == method and run.config["group_size"] == G
    assert run.steps() == [1, 2, 3]
    assert run.status()["state"] == "finished"
    rollouts = run.rollouts()
    assert len(rollouts) == 3 * 16
    assert set(rollouts.groupby(["step", "group"]).size()) == {G}
    tokens = run.tokens()
    assert len(tokens) == int(rollouts["length"].sum())
    assert (tokens["token"].str.len() > 0).all()  # decoded token texts
    assert tokens["grad"].abs().sum() > 0 or not rollouts["used"].any()
    metrics = run.metrics()
    assert metrics["loss"].notna().all() and metrics["grad_norm"].notna().all()
    for step in (1, 2, 3):
        step_loss = sum(p["loss"] for p in probes[2 * (step - 1) : 2 * step])
        assert float(metrics.loc[metrics["step"] == step, "loss"].iloc[0]) == pytest.approx(
            step_loss, rel=1e-6
        )


def test_pack_survives_trls_shuffle_and_split():
    """pack_groups + TRL's shuffle_sequence_dict + split_tensor_dict + unpack_groups: whole groups, aligned rows."""
    b = 16
    batch = {
        "prompt_ids": torch.arange(b).repeat_interleave(3).view(b, 3) // (3 * G),
        "advantages": torch.randn(b),
        "wb_group_ids": torch.arange(b) // G,
        "texts": [f"row{i}" for i in range(b)],
        "num_items_in_batch": torch.tensor(99),
    }
    packed = pack_groups(batch, b, G)
    torch.manual_seed(3)
    chunks = split_tensor_dict(shuffle_sequence_dict(packed), 2)
    rows = []
    for chunk in chunks:
        out = unpack_groups(chunk)
        assert set(Counter(out["wb_group_ids"].tolist()).values()) == {G}
        assert int(out["num_items_in_batch"]) == 99
        for i, text in enumerate(out["texts"]):
            r = int(text[3:])
            assert out["wb_group_ids"][i] == r // G and out["advantages"][i] == batch["advantages"][r]
            rows.append(r)
    assert sorted(rows) == list(range(b))


def test_refuses_micro_batches_that_would_split_groups(tiny, tmp_path):
    # TRL accepts this (its generation batch, 2 x 2, is one group of 4), but each micro-batch would hold half a group
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        num_generations=4,
        use_cpu=True,
        report_to="none",
    )
    with pytest.raises(ValueError, match="whole prompt groups"):
        WorkbenchGRPOTrainer(model=str(tiny), reward_funcs=reward_has_seven, args=args, method="real")


@pytest.mark.parametrize(
    ("method", "hp"), [("real", {"normalize": "used"}), ("real_bce", {}), ("dr_grpo", {"max_tokens": None})]
)
def test_refuses_normalisers_that_count_over_the_whole_window(tiny, tmp_path, method, hp):
    """``used`` and ``rollouts`` (real_bce's default, the authors' mean) divide by a count of the window, and so
    does Dr. GRPO's padded width without ``max_tokens``."""
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, use_cpu=True,
                      report_to="none")  # fmt: skip
    with pytest.raises(ValueError, match="divides by a count over the whole optimizer window"):
        WorkbenchGRPOTrainer(
            model=str(tiny), reward_funcs=reward_has_seven, args=args, method=method, hparams=hp or None
        )


def test_reward_function_grades_with_the_workbench_grader():
    """``training.rewards.reward_function``: TRL's reward form, the workbench grader's settings (issue 18)."""
    from training.grader_config import GraderConfig
    from training.rewards import reward_function

    paper = reward_function()
    assert paper(prompts=["q"] * 3, completions=["\\boxed{0.5}", "$7$", [{"role": "assistant", "content": "\\boxed{2}"}]],
                 answer=["\\frac{1}{2}", "7", "3"]) == [1.0, 1.0, 0.0]  # fmt: skip
    boxed = reward_function(GraderConfig(extraction="boxed"))
    assert boxed(prompts=["q"], completions=["$7$"], answer=["7"]) == [0.0]
    assert boxed.grader_config["extraction"] == "boxed"


def test_run_report_to_tensorboard_mirrors_the_run_directorys_metrics(tiny, tmp_path):
    """``run_report_to="tensorboard"``: every non-null value of each step's metrics row, same name and step."""
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed here (pip install -e .[trackers])"
    )
    import pyarrow.parquet as pq
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from workbench.runlog import step_file

    trainer = make_trainer(tiny, tmp_path, "real", report_to="tensorboard")
    trainer.train()
    run = tmp_path / "run"
    rows = {s: pq.read_table(step_file(run, "metrics", s)).to_pylist()[0] for s in open_run(run).steps()}
    assert sorted(rows) == [1, 2, 3]
    expected = {(k, s): v for s, row in rows.items() for k, v in row.items() if k != "step" and v is not None}
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    got = {(k, e.step): e.value for k in acc.Tags()["scalars"] for e in acc.Scalars(k)}
    assert set(got) == set(expected) and len(expected) >= 3 * 10
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-30), key  # float32 in the event file


def test_run_report_to_is_checked_at_construction(tiny, tmp_path):
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, use_cpu=True,
                      report_to="none")  # fmt: skip
    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'"):
        WorkbenchGRPOTrainer(model=str(tiny), reward_funcs=reward_has_seven, args=args, run_dir=tmp_path / "r",
                             run_report_to="tensorbord")  # fmt: skip
    with pytest.raises(ValueError, match="pass run_dir too"):
        WorkbenchGRPOTrainer(
            model=str(tiny), reward_funcs=reward_has_seven, args=args, run_report_to="tensorboard"
        )
