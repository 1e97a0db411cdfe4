"""``python -m training export``: a run's checkpoint as a ``save_pretrained`` folder, without training.

The run directory is made the way the trainer makes it (``RunWriter.create`` with the config it logs, and
``save_checkpoint`` of the policy and its AdamW state), with weights moved away from their initial values so that
only the checkpoint's weights can give the logits compared here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.training.conftest import small_config
from training.checkpoint import save_checkpoint
from training.cli import main as data_main
from training.model import build_tiny_model, load_local_model, load_local_tokenizer
from training.tokenizer import build_tokenizer
from workbench.runlog import RunWriter

IDS = torch.tensor([[3, 8, 5, 12, 7, 9], [4, 4, 10, 2, 6, 1]])


def _perturb(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def _make_run(
    run_dir: Path, config: dict, model: torch.nn.Module, steps: list[int]
) -> dict[int, torch.Tensor]:
    """A run directory holding ``config`` and a checkpoint of ``model`` at each step (weights changed between
    steps, as training changes them); returns each step's logits on ``IDS``."""
    RunWriter.create(run_dir, name=run_dir.name, method=config["method"], config={**config, "hparams": {}},
                     env={})  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logits = {}
    for step in steps:
        _perturb(model, step)
        model.zero_grad()
        model(IDS).logits.sum().backward()
        opt.step()
        save_checkpoint(run_dir, step, model, opt, keep=2)
        with torch.no_grad():
            logits[step] = model(IDS).logits
    return logits


def test_an_embedded_runs_checkpoint_exports_and_loads_with_transformers(tmp_path, chat_model, capsys):
    cfg = small_config("real", tmp_path / "cache")  # no warm start is trained or needed for the export
    tok = build_tokenizer()
    model = build_tiny_model(
        cfg.tiny_spec(), len(tok), tok.pad_token_id, tok.eos_token_id, cfg.warmstart_seed
    )
    run = tmp_path / "runs" / "real-tiny"
    logits = _make_run(run, cfg.to_log(), model, [2, 4])

    out = tmp_path / "exports" / "step2"
    assert data_main(["export", str(run), "--step", "2", "--out", str(out)]) == 0, capsys.readouterr().err
    assert f"eval --model {out}" in capsys.readouterr().err
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert loaded.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(loaded(IDS).logits, logits[2])
        assert not torch.equal(loaded(IDS).logits, logits[4])
    text = "12+7=?"
    assert load_local_tokenizer(out)(text)["input_ids"] == tok(text)["input_ids"]
    info = json.loads((out / "export.json").read_text())
    assert (info["step"], info["method"], info["base_model"], info["dtype"]) == (
        2,
        "real",
        "embedded",
        "float32",
    )

    newest = tmp_path / "exports" / "newest"  # no --step: the newest checkpoint; bf16 weights on request
    assert data_main(["export", str(run), "--out", str(newest), "--dtype", "bfloat16"]) == 0
    half = AutoModelForCausalLM.from_pretrained(newest, local_files_only=True)
    assert half.dtype == torch.bfloat16 and json.loads((newest / "export.json").read_text())["step"] == 4
    with torch.no_grad():
        assert torch.allclose(half.float()(IDS).logits, logits[4], atol=0.1)

    ev = tmp_path / "ev"  # the export is an eval --model folder
    code = data_main(["eval", "--model", str(out), "--benchmarks", "aime", "--limit", "1", "--k", "1",
                      "--max-new-tokens", "2", "--out", str(ev), "--no-progress", "--paper-tables", "none"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "| step2 |" in (ev / "results.md").read_text()


def test_a_model_runs_checkpoint_exports_with_that_models_tokenizer(tmp_path, chat_model, capsys):
    base, tokenizer = load_local_model(chat_model, torch.float32, torch.device("cpu"))
    config = {**small_config("real", tmp_path / "cache").to_log(), "model": str(chat_model)}
    run = tmp_path / "run"
    logits = _make_run(run, config, base, [3])
    out = tmp_path / "exp"
    assert data_main(["export", str(run), "--out", str(out)]) == 0, capsys.readouterr().err
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    with torch.no_grad():
        assert torch.equal(loaded(IDS).logits, logits[3])
    exported = load_local_tokenizer(out)
    assert exported.chat_template == tokenizer.chat_template and exported.chat_template
    assert json.loads((out / "export.json").read_text())["base_model"] == str(chat_model)


def test_export_refuses_bad_input_with_one_line(tmp_path, capsys):
    cfg = small_config("real", tmp_path / "cache")
    tok = build_tokenizer()
    model = build_tiny_model(cfg.tiny_spec(), len(tok), tok.pad_token_id, tok.eos_token_id, 0)
    run = tmp_path / "run"
    _make_run(run, cfg.to_log(), model, [2, 4])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for args, code, message in [
        (
            [str(run), "--step", "3", "--out", str(tmp_path / "a")],
            2,
            "no checkpoint of step 3; the run has steps 2, 4",
        ),
        ([str(run), "--out", str(tmp_path / "full")], 2, "exists and is not an empty folder"),
        ([str(tmp_path), "--out", str(tmp_path / "b")], 2, "not a run directory (no run.json)"),
    ]:
        assert data_main(["export", *args]) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (args, err)
    (run / "checkpoints" / "step_000004" / "model.pt").write_bytes(b"damaged")
    assert data_main(["export", str(run), "--step", "4", "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "step_000004/model.pt: not a readable checkpoint file" in err
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.tmp"))


@pytest.mark.parametrize("flag", ["--help"])
def test_eval_help_examples_name_paths_that_export_and_train_write(flag, capsys):
    with pytest.raises(SystemExit):
        data_main(["eval", flag])
    text = capsys.readouterr().out
    assert "export runs/real-tiny --step 90 --out exports/real-tiny-step90" in text
    assert "eval --model exports/real-tiny-step90" in text and "checkpoints/step_001400/model" not in text
