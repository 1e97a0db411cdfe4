"""Run figures through their CLI on a small synthetic multi-seed set of runs: files, sidecars, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from workbench.figures.__main__ import main
from workbench.figures.fig2 import Fig2Params, fig2_data
from workbench.figures.registry import RUN_FIGURES
from workbench.synthetic_run import PAPER_VARIANTS, write_synthetic_suite


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_synthetic_suite(
        root, seeds=(0, 1), steps=4, prompts=4, group_size=4, minibatches=2, mean_len=6, val_every=2
    )
    return root


@pytest.mark.parametrize("cli", list(RUN_FIGURES))
def test_figure_builds_from_runs(cli, suite, tmp_path, capsys):
    fig = RUN_FIGURES[cli]
    runs = sorted(str(p) for p in suite.iterdir())  # as a shell glob passes them
    assert main([cli, "--runs", *runs, "--out-dir", str(tmp_path)]) == 0
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / f"{fig.name}.{ext}").stat().st_size > 1000 or ext == "json"
    img = mpimg.imread(tmp_path / f"{fig.name}.png")
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert (tmp_path / f"{fig.name}.pdf").read_bytes().startswith(b"%PDF")
    meta = json.loads((tmp_path / f"{fig.name}.json").read_text())
    assert meta["figure"] == fig.name and meta["caption"]
    assert meta["command"].startswith(f"python -m workbench.figures {cli} --runs ")
    labels = [v["label"] for v in meta["variants"]]
    assert labels == [s.label for s in fig.specs]
    for v in meta["variants"]:
        assert v["seeds"] == [0, 1] and len(v["runs"]) == 2
        assert f"{v['label']}: seeds 0, 1" in meta["caption"]
    assert "wrote" in capsys.readouterr().out


def test_table4_files_keep_the_papers_values_apart(suite, tmp_path):
    assert main(["table4", "--runs", str(suite), "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "table4_real_ablations.md").read_text()
    header = md.splitlines()[0]
    assert "This project" in header and "Paper's reported" in header
    assert "| REAL | REAL |" in md and "52.6 |" in md
    csv = (tmp_path / "table4_real_ablations.csv").read_text().splitlines()
    assert csv[0].split(",")[-1] == "paper_reported_pct" and "ours_mean_pct" in csv[0]


def test_missing_variant_is_a_message_not_a_traceback(suite, tmp_path, capsys):
    grpo_only = [str(p) for p in suite.iterdir() if p.name.startswith("grpo-s")]
    assert main(["fig4", "--runs", *grpo_only, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "no runs for 3 needed variant(s)" in err
    for missing in ("DAPO (method dapo", "GSPO (method gspo", "REAL (method real"):
        assert missing in err
    assert "GRPO: grpo-s0, grpo-s1" in err
    assert not (tmp_path / "fig4_training_dynamics.png").exists()


def test_all_builds_what_it_can_and_reports_the_rest(suite, tmp_path, capsys):
    some = [str(p) for p in suite.iterdir() if not p.name.startswith(("real_bce", "dapo"))]
    assert main(["all", "--runs", *some, "--out-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert (
        "fig4: not built" in captured.err
        and "fig5: not built" in captured.err
        and "table4: not built" in captured.err
    )
    assert (tmp_path / "fig2_hard_tokens.png").exists() and (tmp_path / "fig_c_dynamics.png").exists()
    assert (tmp_path / "fig1_gradient_magnitude.png").exists()


def test_bad_paths_and_steps_are_messages(suite, tmp_path, capsys):
    assert main(["fig2", "--runs", str(tmp_path / "nope"), "--out-dir", str(tmp_path)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="step 99 is not logged"):
        fig2_data([suite], Fig2Params(step=99))


@pytest.mark.parametrize("cli", [*RUN_FIGURES, "all"])
def test_help_explains(cli, capsys):
    with pytest.raises(SystemExit) as e:
        main([cli, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--runs" in out and "--out-dir" in out
    if cli != "all":
        assert "Needs runs of" in out


def test_suite_covers_every_needed_variant():
    needed = {s.label for f in RUN_FIGURES.values() for s in f.specs}
    assert len(PAPER_VARIANTS) == 11 and len(needed) >= 11
