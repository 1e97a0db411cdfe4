"""``python -m training study offpolicy``: its plan, and the whole study for real on the scaled-down config."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.training.conftest import SMALL, cli_flags
from training.cli import main
from training.pipeline.plan import PlanError
from training.study.plan import DEFAULT_VARIANTS, make_study_plan, parse_variant
from workbench.runlog import open_run


def test_variants_parse_and_bad_ones_are_named():
    assert parse_variant("real:tau=0.1") == ("real", {"tau": 0.1})
    assert parse_variant("grpo:clip_mode=bidirectional,eps_low=0.1") == (
        "grpo", {"clip_mode": "bidirectional", "eps_low": 0.1})  # fmt: skip
    with pytest.raises(PlanError, match="unknown method 'ppo'"):
        parse_variant("ppo")
    with pytest.raises(PlanError, match="not NAME=VALUE"):
        parse_variant("real:temperature=2")


def test_plan_pairs_every_variant_of_a_level_on_the_same_settings(tmp_path):
    plan = make_study_plan(lags=(0, 4), seeds=(0, 1), runs_root=tmp_path, settings={"val_prompts": 8})
    assert len(plan.runs) == 2 * 2 * len(DEFAULT_VARIANTS)
    names = {r.name for r in plan.runs}
    assert "lag4__real__tau=0.1__s1" in names and "lag0__grpo__s0" in names
    for r in plan.runs:
        assert r.config.rollout_lag == plan.level_of[r.name]
        assert r.config.val_prompts == 8 and r.config.steps == plan.steps
        assert ("--rollout-lag", str(r.config.rollout_lag)) == tuple(
            r.flags[r.flags.index("--rollout-lag") : r.flags.index("--rollout-lag") + 2])  # fmt: skip
    taus = {r.config.tau for r in plan.runs if r.variant.method == "real"}
    assert taus == {None, 0.1}
    with pytest.raises(PlanError, match="set by the study"):
        make_study_plan(seeds=(0,), runs_root=tmp_path, settings={"rollout_lag": 2})
    with pytest.raises(PlanError, match="distinct integers"):
        make_study_plan(lags=(0, 0), seeds=(0,), runs_root=tmp_path)
    with pytest.raises(PlanError, match="same objective"):
        make_study_plan(seeds=(0,), runs_root=tmp_path, variants=("real", "real:tau=0.5"))


def _study_args(ws_cache, root, out, seeds: int) -> list[str]:
    small = {k: v for k, v in SMALL.items() if k not in ("steps", "progress")}
    return ["study", "offpolicy", "--seeds", str(seeds), "--lags", "0", "1", "--variants", "grpo", "real",
            "--steps", "2", "--jobs", "2", "--runs-root", str(root), "--out-dir", str(out),
            "--", *cli_flags({**small, "val_every": 2, "cache_dir": str(ws_cache)})]  # fmt: skip


def _check_outputs(root, out, seeds: int) -> None:
    run = open_run(root / f"lag1__real__s{seeds - 1}")
    assert run.config["rollout_lag"] == 1 and run.config["seed"] == seeds - 1
    assert run.status()["state"] == "finished"
    per_run = pd.read_csv(out / "offpolicy_runs.csv")
    assert len(per_run) == 4 * seeds and set(per_run.level) == {0, 1}
    assert per_run.final_val_pass1.between(0, 1).all()
    paired = pd.read_csv(out / "offpolicy_paired.csv")
    assert set(paired.baseline) == {"grpo"} and (paired.n_pairs == seeds).all() and len(paired) == 2
    report = (out / "offpolicy_report.md").read_text()
    assert "## Regime of each level" in report and "paired by seed" in report and "lag 1" in report
    for name in ("mechanisms", "paired", "anchor", "real_weights"):
        assert (out / f"offpolicy_{name}.png").stat().st_size > 5000
        assert json.loads((out / f"offpolicy_{name}.json").read_text())["command"].startswith(
            "python -m training study offpolicy --report-only")  # fmt: skip


def test_study_trains_reports_and_skips_finished_runs(ws_cache, tmp_path, capsys):
    """Real trainer jobs: 2 levels x 2 variants x 1 seed x 2 steps, then the figures, CSVs and report."""
    root, out = tmp_path / "runs", tmp_path / "figs"
    args = _study_args(ws_cache, root, out, seeds=1)
    assert main([*args[:2], "--dry-run", *args[2:]]) == 0
    assert "4 runs of 2 steps" in capsys.readouterr().err and not root.exists()
    assert main(args) == 0
    assert "all 4 runs finished" in capsys.readouterr().err
    _check_outputs(root, out, seeds=1)
    assert "too few pairs" in (out / "offpolicy_report.md").read_text()  # 1 seed: no interval, said so
    assert main(args) == 0  # again: every run finished, nothing trained
    assert "(0 to train or resume)" in capsys.readouterr().err


@pytest.mark.slow
def test_study_with_three_seeds_gives_intervals(ws_cache, tmp_path):
    root, out = tmp_path / "runs", tmp_path / "figs"
    assert main(_study_args(ws_cache, root, out, seeds=3)) == 0
    _check_outputs(root, out, seeds=3)
    paired = pd.read_csv(out / "offpolicy_paired.csv")
    assert (paired.lo <= paired.mean_diff).all() and (paired.mean_diff <= paired.hi).all()


def test_bad_input_exits_2_naming_the_flag(tmp_path, capsys):
    assert main(["study", "offpolicy", "--seeds", "0", "--runs-root", str(tmp_path)]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert main(["study", "offpolicy", "--variants", "ppo", "--runs-root", str(tmp_path)]) == 2
    assert "unknown method 'ppo'" in capsys.readouterr().err
    assert main(["study", "offpolicy", "--report-only", "--runs-root", str(tmp_path / "none")]) == 2
    assert "not trained yet" in capsys.readouterr().err


def test_tau_check_pairs_tau_01_against_real_per_level():
    from workbench.figures.offpolicy import tau_check_lines

    rows = []
    for level in (0, 8):
        for seed in range(4):
            for variant, ratio, final in (("real", 1.0, 0.4), ("real[tau=0.1]", 0.3 + 0.01 * seed, 0.2)):
                rows.append({"level": level, "variant": variant, "seed": seed, "entropy_ratio": ratio,
                             "final_val_pass1": final + 0.01 * seed, "sbar_tau_q90": 1.0,
                             "entropy_collapsed": ratio < 0.5})  # fmt: skip
    text = "\n".join(tau_check_lines(pd.DataFrame(rows)))
    assert "| lag 8 |" in text and "| lag 0 |" in text
    assert "| -0.685 [-0.69" in text  # entropy ratio 0.3 + 0.01 s against 1.0: mean -0.685, within the range
    assert "8 of 8 tau = 0.1 runs meet the entropy collapse rule" in text
    assert tau_check_lines(pd.DataFrame(rows).query("variant == 'real'")) == []


def test_anchor_lines_pair_no_anchor_against_real():
    from workbench.figures.offpolicy import anchor_lines

    rows = []
    for seed in range(4):
        for variant, shift in (("real", 0.0), ("real_no_anchor", -0.1)):
            rows.append({"level": 4, "variant": variant, "seed": seed,
                         "sbar_correct": -0.1 + shift + 0.001 * seed, "sbar_wrong": -0.2 + 0.01 * (-1) ** seed})  # fmt: skip
    text = "\n".join(anchor_lines(pd.DataFrame(rows)))
    assert "correct rollouts' s̄: lower without the anchor at lag 4 (-0.100)" in text
    assert "wrong rollouts' s̄: no resolved difference" in text
    assert anchor_lines(pd.DataFrame(rows).query("variant == 'real'")) == []
