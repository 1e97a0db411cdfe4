"""``python -m training train``: help, presets, and bad input refused before any work with a useful message."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from tests.training.conftest import run_cli
from training.cli import main
from training.cli_common import EXIT_USAGE
from training.config import PRESETS, TrainConfig, build_config, flag
from training.rollout import vllm_available


def _fails(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI in-process; assert exit code 2 and that stderr names each needle."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    for needle in needles:
        assert needle in err, err
    return err


def test_help_documents_every_flag_and_preset(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in fields(TrainConfig):
        if f.metadata.get("cli") is not False:
            assert flag(f.name) in out, f.name
    for name, preset in PRESETS.items():
        assert f"  {name}: " in out
        for key, value in preset.values.items():
            assert f"{key}={value}" in out
    assert "--resume" in out and "runs/" in out


def test_presets_set_the_paper_values_and_flags_override_them():
    cfg = build_config("paper-1.5b", {"method": "grpo", "model": "/x"})
    assert (cfg.batch_prompts, cfg.minibatch_prompts, cfg.group_size, cfg.temperature) == (128, 32, 8, 0.6)
    assert (cfg.lr, cfg.steps, cfg.max_new_tokens, cfg.n_minibatches) == (2e-6, 1400, 8192, 4)
    assert (
        cfg.hparams().kl_beta == 0.001 and build_config("paper-7b", {"method": "real"}).hparams().kl_beta == 0
    )
    assert build_config("paper-7b", {"method": "dapo"}).lr == 1e-6
    assert build_config("tiny", {"method": "real", "lr": 3e-4, "tau": 0.25}).hparams().tau == 0.25


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--method", "ppo"], ["unknown method 'ppo'", "--method from grpo"]),
        (["--method", "real", "--preset", "huge"], ["unknown preset 'huge'", "tiny, paper-1.5b, paper-7b"]),
        (["--method", "real", "--minibatch-prompts", "5"], ["--minibatch-prompts 5 does not divide", "16"]),
        (
            ["--method", "grpo", "--tau", "0.3"],
            ["--tau only applies to real, real_bce, real_no_anchor, not to --method grpo"],
        ),
        (
            ["--method", "real", "--eps-high", "0.3"],
            ["--eps-high only applies to dapo, dr_grpo, grpo, gspo, not"],
        ),
        (["--method", "cispo", "--tau", "0.3"], ["--tau only applies to real, real_bce, real_no_anchor"]),
        (["--method", "grpo", "--w-max", "2"], ["--w-max only applies to cispo, not to --method grpo"]),
        (["--method", "real", "--grader-float-rounding", "99"], ["grader float_rounding must be in 0..15"]),
        (["--method", "grpo", "--ref-model", "none"], ["no reference", "--kl-beta 0"]),
        (["--method", "real", "--group-size", "1"], ["--group-size 1"]),
        (["--method", "real", "--preset", "paper-1.5b"], ["--preset paper-1.5b", "--model PATH"]),
        (["--method", "real", "--model", "/no/such/folder"], ["--model /no/such/folder", "no such folder"]),
        (["--method", "real", "--tau", "-1"], ["tau must be a finite number > 0"]),
        (["--method", "real", "--steps", "0"], ["--steps must be >= 1"]),
        (["--method", "real", "--temperature", "nan"], ["--temperature must be a finite number > 0"]),
        (["--method", "real", "--val-prompts", "999"], ["--val-prompts 999 exceeds"]),
        (["--method", "gspo", "--clip-mode", "sideways"], ["--clip-mode 'sideways' is not one of"]),
        (["--method", "real", "--steps", "ten"], ["invalid int value: 'ten'"]),
        (["--preset", "tiny"], ["--method is required"]),
    ],
)
def test_bad_settings_fail_before_any_work(capsys, tmp_path, extra, needles):
    out = tmp_path / "run"
    _fails(capsys, ["train", "--out", str(out), *extra], *needles)
    assert not out.exists()


def test_out_holding_a_run_needs_resume_and_resume_needs_a_run(capsys, tmp_path):
    out = tmp_path / "run"
    _fails(capsys, ["train", "--out", str(out), "--resume"], "holds no run", "drop --resume")
    out.mkdir()
    (out / "run.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": "run",
                "method": "real",
                "config": {**build_config("tiny", {"method": "real"}).to_log()},
            }
        )
    )
    _fails(capsys, ["train", "--out", str(out), "--method", "real"], "already holds a run", "--resume")
    _fails(capsys, ["train", "--out", str(out), "--resume", "--lr", "0.1"], "--lr 0.1", "differ")
    _fails(capsys, ["train", "--out", str(out), "--resume", "--method", "grpo"], "--method 'grpo'")
    (out / "run.json").write_text("{not json")
    _fails(capsys, ["train", "--out", str(out), "--resume"], "not valid UTF-8 JSON")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    _fails(capsys, ["train", "--out", str(junk), "--method", "real"], "not empty")


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")
def test_vllm_backend_absent_is_one_clear_line_and_exit_2(tmp_path):
    proc = run_cli(
        ["train", "--method", "real", "--backend", "vllm", "--device", "cpu", "--out", str(tmp_path / "r")]
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'real-workbench[vllm]'" in lines[0], proc.stderr


def test_settings_that_do_not_fit_the_model_fail_before_the_run_exists(capsys, tmp_path, ws_cache):
    from tests.training.conftest import SMALL, cli_flags

    out = tmp_path / "run"
    settings = {**SMALL, "cache_dir": str(ws_cache), "max_new_tokens": 300}
    _fails(
        capsys,
        ["train", "--method", "real", *cli_flags(settings), "--out", str(out)],
        "256 positions",
        "--max-new-tokens",
    )
    assert not out.exists()
