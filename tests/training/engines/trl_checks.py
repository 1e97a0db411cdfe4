"""Checks of the TRL adapter against TRL's own trainer; run inside .venv-trl by tests/training/engines/test_trl.py.

A tiny Llama and a character tokenizer are built locally (nothing is downloaded); TRL's GRPOTrainer generates,
shuffles, splits and steps as usual, with the workbench objective as its loss.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import socket
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainingArguments
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from training.engines.trl_config import CHECKED, OWN_FIELDS, REFUSED, WorkbenchGRPOConfig, config_field
from training.engines.trl_config import HONOURED as HONOURED_FIELDS
from training.engines.trl_trainer import WorkbenchGRPOTrainer, pack_groups, unpack_groups
from workbench.methods import SPECS
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


def reward_has_three(prompts, completions, **kwargs) -> list[float]:
    """Binary: 1 when the completion contains a 3."""
    return [1.0 if "3" in c else 0.0 for c in completions]


class Probe(WorkbenchGRPOTrainer):
    """Records, for every micro-batch, the trainer's loss next to an independent recomputation: the objective
    with ``expected_hp`` (default: the hyper-parameters the trainer resolved) and rewards from ``label``."""

    probes: list[dict]
    expected_hp: dict | None = None
    label = staticmethod(lambda texts: reward_has_seven(None, texts))

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
            **(self.wb_overrides if self.expected_hp is None else self.expected_hp),
        )
        default = OBJECTIVES[self.wb_method](
            logp,
            logp if old is None else old,
            mask,
            inputs["wb_rewards"],
            inputs["wb_group_ids"],
            ref_logp=inputs.get("ref_per_token_logps"),
        )
        texts = self.processing_class.batch_decode(
            [c[m.bool()].tolist() for c, m in zip(completion_ids, mask, strict=True)],
            skip_special_tokens=True,
        )
        self.probes.append(
            {
                "loss": float(loss.detach()),
                "expected": float(expected.loss) * self.wb_scale(inputs, mask),
                "default": float(default.loss) * self.wb_scale(inputs, mask),
                "group_ids": inputs["wb_group_ids"].tolist(),
                "prompt_ids": [
                    tuple(p[a.bool()].tolist())
                    for p, a in zip(prompt_ids, inputs["prompt_mask"], strict=True)
                ],
                "rewards": inputs["wb_rewards"].tolist(),
                "recomputed": self.label(texts),
                "texts": texts,
            }
        )
        return loss


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


def make_trainer(
    tiny: Path, tmp: Path, method: str, reward_funcs=reward_has_seven, report_to: str | None = None, **fields
) -> Probe:
    prompts = [f"{a}+{b}=" for a in range(4) for b in range(4)]
    dataset = Dataset.from_dict({"prompt": prompts, "answer": [str(len(p)) for p in prompts]})
    settings = dict(
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
    args = WorkbenchGRPOConfig(loss_type=method, **(settings | fields))
    trainer = Probe(
        model=str(tiny),
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=PreTrainedTokenizerFast.from_pretrained(tiny),
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
        ("real_bce", {"real_normalize": "prompts"}),
        ("real_no_anchor", {}),
        ("cispo", {}),
        ("dr_grpo", {}),
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


def config(**fields) -> WorkbenchGRPOConfig:
    base = dict(output_dir="/tmp/wb-trl-config", per_device_train_batch_size=8, num_generations=G, use_cpu=True,
                report_to="none")  # fmt: skip
    return WorkbenchGRPOConfig(**(base | fields))


# (fields, text the error must contain): every GRPOConfig setting a workbench objective cannot honour
REFUSALS = [
    ({"loss_type": "sapo"}, "loss_type='sapo' is TRL's own loss"),
    ({"loss_type": "bnpo"}, "use trl.GRPOConfig"),
    ({"loss_type": "nope"}, "loss_type='nope' is unknown"),
    ({"loss_type": "real", "epsilon": 0.2}, "epsilon/epsilon_high clip a ratio"),
    ({"loss_type": "real_no_anchor", "epsilon_high": 0.28}, "epsilon/epsilon_high clip a ratio"),
    ({"loss_type": "cispo", "epsilon": 0.2}, "epsilon has no meaning for cispo"),
    ({"loss_type": "real", "beta": 0.001}, "beta=0.001: the REAL family's KL term"),
    ({"loss_type": "grpo", "use_bias_correction_kl": True}, "set use_bias_correction_kl=False"),
    ({"loss_type": "real_bce"}, "divides by a count over the whole optimizer window"),
    ({"loss_type": "real", "real_normalize": "used"}, "real_normalize='prompts'"),
    ({"loss_type": "grpo", "importance_sampling_level": "sequence"}, "use loss_type='gspo'"),
    ({"loss_type": "real", "importance_sampling_level": "token"}, "real's ratio is sequence-level"),
    ({"loss_type": "gspo", "importance_sampling_level": "token"}, "gspo's ratio is sequence-level"),
    ({"loss_type": "grpo", "scale_rewards": "none"}, "scale_rewards='none': grpo forms its own advantage"),
    ({"loss_type": "dr_grpo", "scale_rewards": "group"}, "scale_rewards='group'"),
    ({"loss_type": "dapo", "scale_rewards": "batch"}, "no workbench method scales by the batch std"),
    ({"loss_type": "real", "scale_rewards": True}, "scale_rewards=True"),
    ({"loss_type": "real", "use_vllm": True}, "set vllm_importance_sampling_correction=False"),
    ({"loss_type": "dapo", "real_label_threshold": 0.5}, "real_label_threshold turns rewards"),
    ({"loss_type": "dapo", "real_tau": 0.5}, "real_tau is a setting of real, real_bce, real_no_anchor"),
    ({"loss_type": "real", "wb_clip_mode": "none"}, "wb_clip_mode is a setting of grpo"),
    ({"loss_type": "grpo", "wb_w_min": 0.5}, "wb_w_min is a setting of cispo"),
    ({"loss_type": "real", "real_tau": 0.0}, "tau must be a finite number > 0"),
    (
        {"loss_type": "real", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2},
        "per_device_train_batch_size=2 must be a multiple of num_generations=4",
    ),
    ({"loss_type": "grpo", "delta": 1.5}, "delta=1.5"),
    ({"loss_type": "real", "top_entropy_quantile": 0.2}, "top_entropy_quantile=0.2 (entropy masking"),
    ({"loss_type": "real", "off_policy_mask_threshold": 0.5}, "off_policy_mask_threshold=0.5"),
    ({"loss_type": "dapo", "entropy_coef": 0.01}, "entropy_coef=0.01"),
    ({"loss_type": "dapo", "use_adaptive_entropy": True}, "use_adaptive_entropy=True"),
    ({"loss_type": "dapo", "entropy_target": 0.5}, "entropy_target=0.5"),
    ({"loss_type": "real", "mask_truncated_completions": True}, "mask_truncated_completions=True"),
    (
        {"loss_type": "real", "multi_objective_aggregation": "normalize_then_sum"},
        "multi_objective_aggregation",
    ),
    ({"loss_type": "real", "sapo_temperature_neg": 2.0}, "loss_type='sapo' only"),
    ({"loss_type": "real", "vespo_k_pos": 1.0}, "loss_type='vespo' only"),
    (
        {"loss_type": "real", "vllm_importance_sampling_mode": "token_truncate"},
        "vllm_importance_sampling_mode",
    ),
    ({"loss_type": "real", "vllm_importance_sampling_clip_max": 2.0}, "vllm_importance_sampling_clip_max"),
]


@pytest.mark.parametrize(("fields", "message"), REFUSALS, ids=[str(f) for f, _ in REFUSALS])
def test_config_refuses_what_an_objective_cannot_honour(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config(**fields)


# (fields, expected hyper-parameters, expected TRL fields after construction)
HONOURED = [
    (
        {"loss_type": "real"},
        {"tau": 0.5, "normalize": "prompts", "kl_beta": 0.0},
        {"beta": 0.0, "epsilon": None, "importance_sampling_level": "sequence", "scale_rewards": "none"},
    ),
    (
        {
            "loss_type": "real",
            "real_tau": 0.25,
            "real_group_filter": "all",
            "real_normalize": "sum",
            "beta": 0.0,
            "importance_sampling_level": "sequence",
            "scale_rewards": "none",
        },
        {"tau": 0.25, "group_filter": "all", "normalize": "sum"},
        {"real_tau": 0.25},
    ),
    ({"loss_type": "real_bce", "real_normalize": "prompts"}, {"normalize": "prompts"}, {}),
    (
        {"loss_type": "real_no_anchor", "use_vllm": True, "vllm_importance_sampling_correction": False},
        {"tau": 0.5},
        {"use_vllm": True},
    ),
    (
        {"loss_type": "grpo"},
        {"eps_low": 0.2, "eps_high": 0.2, "kl_beta": 0.001, "loss_agg": "seq-mean-token-mean"},
        {
            "beta": 0.001,
            "epsilon": 0.2,
            "epsilon_high": 0.2,
            "importance_sampling_level": "token",
            "scale_rewards": "group",
        },
    ),
    ({"loss_type": "grpo", "epsilon": 0.1}, {"eps_low": 0.1, "eps_high": 0.1}, {"epsilon_high": 0.1}),
    (
        {"loss_type": "dapo"},
        {"eps_low": 0.2, "eps_high": 0.28, "kl_beta": 0.0, "loss_agg": "token-mean"},
        {"epsilon_high": 0.28, "wb_loss_agg": "token-mean"},
    ),
    (
        {
            "loss_type": "dapo",
            "epsilon": 0.1,
            "epsilon_high": 0.3,
            "beta": 0.01,
            "scale_rewards": True,
            "wb_clip_mode": "bidirectional",
            "wb_dual_clip": 3.0,
            "wb_loss_agg": "seq-mean-token-mean",
            "wb_adv_eps": 1e-3,
            "wb_log_ratio_cap": 5.0,
        },
        {
            "eps_low": 0.1,
            "eps_high": 0.3,
            "kl_beta": 0.01,
            "clip_mode": "bidirectional",
            "dual_clip": 3.0,
            "loss_agg": "seq-mean-token-mean",
            "adv_eps": 1e-3,
            "log_ratio_cap": 5.0,
        },
        {"beta": 0.01},
    ),
    (
        {"loss_type": "gspo", "importance_sampling_level": "sequence"},
        {"eps_low": 3e-4, "eps_high": 4e-4},
        {"epsilon": 3e-4},
    ),
    (
        {"loss_type": "cispo", "epsilon_high": 4.0, "wb_w_min": 0.5},
        {"w_max": 4.0, "w_min": 0.5},
        {"epsilon": None, "epsilon_high": 4.0},
    ),
    (
        {"loss_type": "dr_grpo", "max_completion_length": 9, "scale_rewards": "none"},
        {"max_tokens": 9},
        {"scale_rewards": "none"},
    ),
]


@pytest.mark.parametrize(("fields", "hp", "after"), HONOURED, ids=[str(f) for f, _, _ in HONOURED])
def test_config_maps_trl_fields_onto_the_method(fields, hp, after):
    cfg = config(**fields)
    resolved = dataclasses.asdict(cfg.workbench_hparams())
    assert {k: resolved[k] for k in hp} == hp
    assert {k: getattr(cfg, k) for k in after} == after
    # written back: constructing again from the resolved fields gives the same method and settings
    again = config(**{k: getattr(cfg, k) for k in ("loss_type", "epsilon", "epsilon_high", "beta",
                                                   "importance_sampling_level", "scale_rewards", "max_completion_length",
                                                   *OWN_FIELDS) if getattr(cfg, k) is not None})  # fmt: skip
    assert again.workbench_hparams() == cfg.workbench_hparams()


def test_every_grpo_config_field_has_a_decision():
    """A TRL release that adds a field fails here until the field is mapped, checked, refused or honoured."""
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    own = {f.name for f in dataclasses.fields(GRPOConfig)} - base
    decided = set(CHECKED) | set(REFUSED) | set(HONOURED_FIELDS)
    assert own - decided == set()
    assert decided - own == set()
    # the config's own fields are the registry's hyper-parameters TRL has no field for
    derived = {config_field(m, f) for m, s in SPECS.items() for f in s.hparam_names()} - {None, *own}
    assert derived == set(OWN_FIELDS)
    assert {"real_tau", "real_group_filter", "real_normalize"} <= derived


def test_trainer_needs_the_workbench_config(tiny, tmp_path):
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, use_cpu=True,
                      report_to="none")  # fmt: skip
    with pytest.raises(TypeError, match="args must be a WorkbenchGRPOConfig"):
        WorkbenchGRPOTrainer(model=str(tiny), reward_funcs=reward_has_seven, args=args)
    with pytest.raises(TypeError, match="method= is not an argument"):
        WorkbenchGRPOTrainer(model=str(tiny), reward_funcs=reward_has_seven, args=config(), method="real")


def test_refuses_several_reward_functions_without_a_label_rule(tiny):
    with pytest.raises(ValueError, match="pass real_label_threshold=t"):
        WorkbenchGRPOTrainer(
            model=str(tiny), reward_funcs=[reward_has_seven, reward_has_three], args=config()
        )


def test_trl_own_trainer_does_not_run_a_workbench_loss_silently(tiny, tmp_path):
    """Plain ``trl.GRPOTrainer`` with the config: TRL stops at its first loss (it has no ``real``)."""
    dataset = Dataset.from_dict({"prompt": ["1+1=", "2+2="]})
    args = config(output_dir=str(tmp_path), per_device_train_batch_size=4, max_completion_length=3, max_steps=1,
                  save_strategy="no")  # fmt: skip
    trainer = GRPOTrainer(model=str(tiny), reward_funcs=reward_has_seven, args=args, train_dataset=dataset,
                          processing_class=PreTrainedTokenizerFast.from_pretrained(tiny))  # fmt: skip
    with pytest.raises(ValueError, match="Unknown loss type: real"):
        trainer.train()


def test_label_rule_weights_and_trl_fields_reach_the_loss(tiny, tmp_path):
    """REAL with two reward functions, ``reward_weights`` and ``real_label_threshold``, ``real_tau`` and
    ``num_iterations=2`` (off-policy second pass): every micro-batch's loss is REAL with tau 0.25 on the labels
    ``0.5 * has7 + 1.0 * has3 >= 1``, computed here independently."""
    trainer = make_trainer(tiny, tmp_path, "real", reward_funcs=[reward_has_seven, reward_has_three],
                           reward_weights=[0.5, 1.0], real_label_threshold=1.0, real_tau=0.25,
                           num_iterations=2, max_steps=2)  # fmt: skip
    trainer.expected_hp = {"tau": 0.25}
    trainer.label = lambda texts: [1.0 if "3" in t else 0.0 for t in texts]
    trainer.train()
    assert len(trainer.probes) == 2 * 2
    texts = [t for p in trainer.probes for t in p["texts"]]
    # the rule decides: some rollout has a 7 and no 3 (summed reward 0.5, label 0)
    assert any("7" in t and "3" not in t for t in texts)
    for p in trainer.probes:
        assert p["rewards"] == p["recomputed"]
        assert p["loss"] == pytest.approx(p["expected"], rel=1e-5, abs=1e-7)


def test_clip_fields_reach_the_loss(tiny, tmp_path):
    """DAPO with TRL's ``epsilon``, ``epsilon_high``, ``beta`` (reference model loaded by TRL) and
    ``num_iterations=2``: the loss is the objective with eps_low 0.05, eps_high 0.1, kl_beta 0.05."""
    trainer = make_trainer(tiny, tmp_path, "dapo", epsilon=0.05, epsilon_high=0.1, beta=0.05, num_iterations=2,
                           max_steps=2, learning_rate=5e-2)  # fmt: skip
    assert trainer.ref_model is not None
    trainer.expected_hp = {"eps_low": 0.05, "eps_high": 0.1, "kl_beta": 0.05}
    trainer.train()
    assert len(trainer.probes) == 2 * 2
    for p in trainer.probes:
        assert p["loss"] == pytest.approx(p["expected"], rel=1e-5, abs=1e-7)
    # the second pass is off-policy enough that DAPO's default clip range would give another loss
    assert any(p["loss"] != pytest.approx(p["default"], rel=1e-4) for p in trainer.probes)


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
    args = WorkbenchGRPOConfig(loss_type="real", output_dir=str(tmp_path), per_device_train_batch_size=4,
                               num_generations=4, use_cpu=True, report_to="none")  # fmt: skip
    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'"):
        WorkbenchGRPOTrainer(model=str(tiny), reward_funcs=reward_has_seven, args=args, run_dir=tmp_path / "r",
                             run_report_to="tensorbord")  # fmt: skip
    with pytest.raises(ValueError, match="pass run_dir too"):
        WorkbenchGRPOTrainer(
            model=str(tiny), reward_funcs=reward_has_seven, args=args, run_report_to="tensorboard"
        )


def test_example_script_trains_real_with_trl_on_cpu(tmp_path):
    """``scripts/trl_real_example.py`` as a user runs it: the embedded tiny model built locally, the embedded task,
    the workbench grader, TRL's loop with ``loss_type="real"``; the run directory records REAL with its tau."""
    repo = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(repo)}
    cmd = [sys.executable, "scripts/trl_real_example.py", "--out", str(tmp_path), "--steps", "2", "--tau", "0.25",
           "--prompts", "16"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "real: 2 steps" in proc.stdout
    run = open_run(tmp_path / "run")
    assert run.method == "real" and run.config["hparams"]["tau"] == 0.25
    assert run.config["trl"]["loss_type"] == "real" and run.config["trl"]["real_tau"] == 0.25
    assert run.steps() == [1, 2] and run.status()["state"] == "finished"
    rollouts = run.rollouts()
    assert len(rollouts) == 2 * 32 and set(rollouts.groupby(["step", "group"]).size()) == {8}
    assert set(rollouts["reward"].unique()) <= {0.0, 1.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("method", "fields"), [("real", []), ("dapo", []), ("grpo", ["beta=0.0"])])
def test_data_parallel_gradient_equals_the_single_process_gradient(tiny, tmp_path, method, fields):
    """Two processes (torchrun, DDP over gloo on CPU), two accumulation micro-batches each: just before the
    optimizer step, the averaged gradient equals the gradient of the objective on all 32 rollouts of the window,
    computed in one process with TRL's own forward at the same parameters; every micro-batch holds whole groups."""
    repo = Path(__file__).resolve().parents[3]
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()),
           "tests/training/engines/trl_ddp_worker.py", str(tiny), str(out), method, *fields]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    saved = torch.load(out, weights_only=False)
    assert saved["processes"] == 2
    mbs = saved["micro_batches"]
    assert len(mbs) == 2 * 2 and sum(len(m["wb_rewards"]) for m in mbs) == 32
    for m in mbs:
        assert set(Counter(m["wb_group_ids"].tolist()).values()) == {G}

    settings = {k: ast.literal_eval(v) for k, v in (f.split("=", 1) for f in fields)}
    trainer = make_trainer(tiny, tmp_path, method, **settings)
    model = trainer.model
    model.load_state_dict(saved["params"])
    width = max(m["completion_ids"].shape[1] for m in mbs)
    logps, masks = [], []
    for m in mbs:
        t = m["completion_ids"].shape[1]
        ids = torch.cat([m["prompt_ids"], m["completion_ids"]], 1)
        att = torch.cat([m["prompt_mask"], m["completion_mask"]], 1)
        logp, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, att, t)
        logps.append(torch.nn.functional.pad(logp, (0, width - t)))
        masks.append(torch.nn.functional.pad(m["completion_mask"], (0, width - t)))
    logp, mask = torch.cat(logps), torch.cat(masks)
    rewards = torch.cat([m["wb_rewards"] for m in mbs])
    groups = torch.cat([m["wb_group_ids"] for m in mbs])
    assert len(set(groups.tolist())) == 8  # group ids are unique over the two processes
    loss = OBJECTIVES[method](logp, logp.detach(), mask, rewards, groups, **trainer.wb_overrides).loss
    model.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        ddp = saved["grads"][name]
        assert torch.allclose(p.grad, ddp, rtol=1e-4, atol=1e-6 * float(ddp.abs().max()) + 1e-9), name
    assert sum(float(g.abs().sum()) for g in saved["grads"].values()) > 0
