"""The plan of ``paper-figures``: runs derived from the figures' specs, whose configs the figures accept."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from training.cli import build_parser
from training.cli_common import UsageError
from training.commands.train import config_from_args
from training.pipeline.cli import parse_train_flags
from training.pipeline.plan import (
    OPEN_VALUES,
    Need,
    PlanError,
    figure_commands,
    figure_needs,
    make_plan,
    plan_variants,
)
from workbench.figures.registry import RUN_FIGURES
from workbench.methods import DEFAULTS
from workbench.runlog import RunWriter
from workbench.stats import POSITIVE, select_variants, spec
from workbench.stats.variants import variant_from
from workbench.synthetic_run import PAPER_VARIANTS


def _plan(tmp_path: Path, **kw):
    return make_plan(preset="tiny", seeds=[0, 1], runs_root=tmp_path / "runs", **kw)


def _write_like_the_trainer(run) -> Path:
    """A run directory whose run.json holds what ``training.loop.Trainer`` writes for this config."""
    cfg = run.config
    config = {**cfg.to_log(), "hparams": asdict(cfg.hparams())}
    RunWriter.create(run.out, name=run.out.name, method=cfg.method, config=config, env={})
    return run.out


def test_the_plan_holds_each_variant_the_figures_declare_once_per_seed(tmp_path):
    plan = _plan(tmp_path)
    keys = [v.variant.key for v in plan.variants]
    assert keys == [
        "grpo",
        "grpo[clip_mode=bidirectional]",
        "dapo",
        "gspo",
        "real",
        "real_bce",
        "real_no_anchor",
        "real[tau=0.1]",
        "real[tau=1]",
        "real[kl_beta=0.001]",
        "real[kl_beta=0.001,kl_target=old]",
    ]
    assert len(plan.runs) == 22 and plan.total_steps == 22 * 100
    assert [r.seed for r in plan.runs] == [0] * 11 + [1] * 11  # seed-major: every variant's seed 0 first
    assert len({r.out for r in plan.runs}) == 22
    for fig in RUN_FIGURES.values():  # every spec of every figure matches exactly one planned variant
        for sp in fig.specs:
            assert sum(sp.matches(v.variant) for v in plan.variants) == 1, (fig.cli, sp.label)


def test_open_specs_train_the_papers_kl_weight(tmp_path):
    plan = _plan(tmp_path)
    kl = [v for v in plan.variants if dict(v.overrides).get("kl_beta")]
    assert OPEN_VALUES["kl_beta"] == DEFAULTS["grpo"].kl_beta == 0.001
    assert {dict(v.overrides)["kl_beta"] for v in kl} == {0.001}
    assert sorted(v.variant.key for v in kl) == ["real[kl_beta=0.001,kl_target=old]", "real[kl_beta=0.001]"]
    grpo = next(r for r in plan.runs if r.name == "grpo__s0")
    assert grpo.config.hparams().kl_beta == 0.001 and grpo.config.hparams().kl_target == "ref"


def test_runs_written_with_the_planned_configs_are_what_every_figure_selects(tmp_path):
    plan = _plan(tmp_path)
    dirs = [_write_like_the_trainer(r) for r in plan.runs]
    for fig in RUN_FIGURES.values():
        selected = select_variants(fig.cli, dirs, fig.specs)
        for sel in selected:
            assert sel.seeds == (0, 1)
            planned = {r.out.resolve() for r in plan.runs if sel.spec.matches(r.variant.variant)}
            assert {r.dir.resolve() for r in sel.runs} == planned


def test_synthetic_suite_lists_the_same_variants_as_the_figures(tmp_path):
    """``workbench.synthetic_run.PAPER_VARIANTS`` is a second list: it must not drift from the specs."""
    plan = _plan(tmp_path)
    assert [variant_from(m, hp) for m, hp in PAPER_VARIANTS] == [v.variant for v in plan.variants]


def test_every_command_parses_back_to_the_planned_config(tmp_path):
    plan = _plan(tmp_path, steps=7, train_settings={"lr": 2e-4, "log_tokens": False, "val_prompts": 16})
    parser = build_parser()
    for run in plan.runs:
        args = parser.parse_args(run.train_args())
        cfg, _ = config_from_args(args)
        assert cfg.to_log() == run.config.to_log(), run.name
        assert cfg.steps == 7 and cfg.lr == 2e-4 and cfg.log_tokens is False and cfg.progress is False


def test_a_new_spec_becomes_a_new_run_and_an_ambiguous_one_is_refused():
    needs = [
        Need("figX", "REAL", spec("REAL", "real")),
        Need("figX", "τ=0.3", spec("τ=0.3", "real", tau=0.3)),
    ]
    planned = plan_variants(needs)
    assert [v.slug for v in planned] == ["real", "real__tau=0.3"]
    assert planned[1].used_by() == "figX (τ=0.3)"
    ambiguous = [
        Need("a", "KL 0.002", spec("KL 0.002", "real", kl_beta=0.002)),
        Need("b", "any KL", spec("any KL", "real", kl_beta=POSITIVE)),
    ]
    with pytest.raises(PlanError, match="matches 2 planned variants"):
        plan_variants(ambiguous)
    with pytest.raises(PlanError, match="no value to train for tau"):
        plan_variants([Need("c", "any tau", spec("any tau", "real", tau=POSITIVE))])


def test_figure_subsets_and_their_build_commands(tmp_path):
    plan = _plan(tmp_path, figures=["fig2"])
    assert [r.name for r in plan.runs] == [
        "grpo__s0",
        "grpo__clip_mode=bidirectional__s0",
        "grpo__s1",
        "grpo__clip_mode=bidirectional__s1",
    ]
    (cmd,) = figure_commands(plan, Path("out"), all_figures=False)
    assert cmd[0] == "fig2" and cmd[-2:] == ["--out-dir", "out"]
    assert cmd[2:-2] == [str(r.out) for r in plan.runs]
    full = _plan(tmp_path)
    (all_cmd,) = figure_commands(full, Path("figures"), all_figures=True)
    assert all_cmd[0] == "all" and len(all_cmd) == 2 + 22 + 2
    table4 = figure_commands(_plan(tmp_path, figures=["table4", "fig2"]), Path("o"), all_figures=False)
    assert [c[0] for c in table4] == ["table4", "fig2"]
    assert all("gspo" not in a for a in table4[0])  # each figure gets only the runs it needs
    with pytest.raises(PlanError, match="unknown figure"):
        figure_needs(["fig9"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tau": 0.3}, "--tau: set by the pipeline"),
        ({"method": "grpo"}, "--method: set by the pipeline"),
        ({"minibatch_prompts": 3}, "does not divide --batch-prompts"),
        ({"ref_model": "none"}, "--ref-model none gives it no reference"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_anything_runs(tmp_path, settings, message):
    with pytest.raises(PlanError, match=message):
        _plan(tmp_path, train_settings=settings)


def test_trainer_flags_after_the_separator():
    assert parse_train_flags(["--lr", "2e-4", "--no-log-tokens", "--tiny-layers", "2"]) == {
        "lr": 2e-4,
        "log_tokens": False,
        "tiny_layers": 2,
    }
    assert parse_train_flags([]) == {}
    with pytest.raises(UsageError, match="--out is set by the pipeline"):
        parse_train_flags(["--out", "x"])
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        parse_train_flags(["--bogus", "1"])
    with pytest.raises(UsageError, match="invalid float value"):
        parse_train_flags(["--lr", "fast"])


def test_a_second_pipeline_on_a_root_is_refused_before_it_looks_at_the_runs(tmp_path, capsys):
    """The root's lock is taken before the runs are inspected: a pipeline started while another holds the root
    says so, instead of planning from runs the other may still be writing (here: a planned run's path is a
    file, which the inspection refuses, and which --dry-run, taking no lock, still reports)."""
    from training.cli import main
    from training.pipeline.cli import lock_root

    root = tmp_path / "runs"
    root.mkdir()
    (root / "grpo__s0").write_text("not a run folder")
    argv = [
        "paper-figures",
        "--preset",
        "tiny",
        "--seeds",
        "1",
        "--runs-root",
        str(root),
        "--figures",
        "fig2",
    ]
    holder = lock_root(root)
    try:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"another paper-figures is running on {root}" in err and "not a folder" not in err
        assert main([*argv, "--dry-run"]) == 2
        assert "exists and is not a folder" in capsys.readouterr().err
    finally:
        holder.close()
    assert main(argv) == 2  # the lock is free: now the inspection speaks
    assert "exists and is not a folder" in capsys.readouterr().err
