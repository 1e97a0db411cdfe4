"""``run.json`` is the run's truth on resume: a missing or mistyped setting is an error naming it, never a silent
default for the method, the objective, the learning rate or the data; a setting added by a newer version gets its
documented default, written into ``run.json`` with an event."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import SMALL, cli_flags
from training.cli import main
from training.config import ConfigError, build_config, check_logged_config, required_on_resume


def _logged(**changes) -> dict:
    cfg = build_config("tiny", {"method": "real"}).to_log()
    for k, v in changes.items():
        if v is KeyError:
            del cfg[k]
        else:
            cfg[k] = v
    return cfg


@pytest.mark.parametrize("key", ["method", "lr", "tau", "train_data", "seed", "rollout_lag"])
def test_a_missing_required_setting_is_an_error_naming_it(key):
    assert key in required_on_resume(_logged())
    with pytest.raises(ConfigError, match=f"lacks '{key}'"):
        check_logged_config(_logged(**{key: KeyError}))


@pytest.mark.parametrize(("key", "value"), [("group_size", 8.0), ("temperature", None), ("lr", "3e-4"),
                                            ("log_tokens", 1), ("epochs", True)])  # fmt: skip
def test_a_mistyped_setting_is_an_error_naming_it(key, value):
    with pytest.raises(ConfigError, match=f"has {key}: "):
        check_logged_config(_logged(**{key: value}))


def test_another_methods_objective_settings_are_not_required():
    """A REAL run logged before CISPO existed lacks ``w_max``: it is not the run's setting, so the resume goes on
    (with the field's default, None); the REAL run's own ``tau`` stays required."""
    assert check_logged_config(_logged(w_max=KeyError, eps_low=KeyError)) == {"w_max": None, "eps_low": None}
    assert "tau" in required_on_resume(_logged()) and "w_max" not in required_on_resume(_logged())


def test_other_missing_settings_get_their_documented_defaults():
    assert check_logged_config(_logged(val_k=KeyError, logit_chunk_tokens=KeyError)) == {
        "val_k": 8, "logit_chunk_tokens": build_config("tiny", {}).logit_chunk_tokens}  # fmt: skip
    assert check_logged_config(_logged(tau=0.1, lr=1)) == {}  # an int lr is a valid float


def test_a_run_logged_before_sampler_logprobs_resumes_with_its_second_scoring_forward():
    """Its default is on, but a run.json without it was made with the scorer's old log-probs: it keeps them, so
    the resumed steps compute their old log-probs as the first ones did."""
    assert build_config("tiny", {}).sampler_logprobs is True
    assert check_logged_config(_logged(sampler_logprobs=KeyError)) == {"sampler_logprobs": False}


def test_resume_refuses_a_run_json_without_method_and_fills_a_newer_setting(ws_cache, tmp_path, capsys):
    out = tmp_path / "run"
    settings = {**SMALL, "steps": 1, "val_every": 0, "cache_dir": str(ws_cache)}
    assert main(["train", "--method", "real", *cli_flags(settings), "--no-progress", "--out", str(out)]) == 0
    meta_path = out / "run.json"
    meta = json.loads(meta_path.read_text())
    good = json.loads(json.dumps(meta))

    del meta["config"]["method"]
    meta_path.write_text(json.dumps(meta))
    assert main(["train", "--out", str(out), "--resume", "--steps", "2", "--no-progress"]) == 2
    assert "lacks 'method'" in capsys.readouterr().err

    good["config"].pop("val_k")
    meta_path.write_text(json.dumps(good))
    assert main(["train", "--out", str(out), "--resume", "--steps", "2", "--no-progress"]) == 0
    assert "lacks val_k" in capsys.readouterr().err
    assert json.loads(meta_path.read_text())["config"]["val_k"] == 8
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {"val_k": 8} in [e.get("settings") for e in events if e["event"] == "config_default"]
