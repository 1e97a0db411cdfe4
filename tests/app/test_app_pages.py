"""Every page of the app under streamlit.testing.v1.AppTest: it runs without an exception, and changing a widget
changes what it shows. Run pages read small SYNTHETIC runs (workbench.synthetic_run) from a temporary runs root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from workbench.runlog import open_run


def open_app(root: Path, monkeypatch: pytest.MonkeyPatch, page: str | None = None) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return found[0]


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


# ----------------------------------------------------------------------------------------------- 1 curves


def test_gradient_curves_overlay_and_autograd_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path, monkeypatch)  # the default page
    assert at.title[0].value == "Gradient curves"
    assert float(metric(at, "max |closed form − autograd|")) < 1e-9
    table = at.dataframe[0].value
    assert list(table["method"]) == ["GRPO", "REAL"]
    n_before = int(metric(at, "autograd points"))

    at.pills(key="gc_methods").set_value(["grpo", "dapo", "gspo", "real", "real_bce", "real_no_anchor"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["method"]) == ["GRPO", "DAPO", "GSPO", "REAL", "REAL w/ BCE", "REAL w/o anchor"]
    assert int(metric(at, "autograd points")) > 2 * n_before
    assert float(metric(at, "max |closed form − autograd|")) < 1e-9

    # A smaller tau raises REAL's bound 1/tau: the largest REAL weight checked grows past the old bound 2.
    real_max = float(table.set_index("method").loc["REAL", "max_weight"])
    at.slider(key="gc_tau").set_value(0.2).run()
    new_max = float(at.dataframe[0].value.set_index("method").loc["REAL", "max_weight"])
    assert real_max <= 2.0 < new_max <= 5.0
    assert float(metric(at, "max |closed form − autograd|")) < 1e-9


def test_gradient_curves_clip_mode_changes_the_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(tmp_path, monkeypatch)
    before = at.dataframe[0].value.set_index("method").loc["GRPO", "max_weight"]
    at.selectbox(key="gc_clip_mode").set_value("bidirectional").run()
    after = at.dataframe[0].value.set_index("method").loc["GRPO", "max_weight"]
    # vanilla never clips wrong tokens above 1 + eps (weight e^2 at s = 2); bidirectional does
    assert before > 7 and after < 1.3


def test_gradient_curves_take_a_new_methods_settings_from_its_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14/15: CISPO, added as one spec, gets its settings on the curves page from that spec: its wrong-rollout
    weight is capped at |A| w_max, and moving w_max moves the cap; autograd still agrees."""
    at = open_app(tmp_path, monkeypatch)
    at.pills(key="gc_methods").set_value(["grpo", "cispo"]).run()
    assert at.number_input(key="gc_hp_cispo_w_max").value == 5.0  # the spec's default
    at.slider(key="gc_range").set_value((-2.0, 2.0)).run()
    capped = float(at.dataframe[0].value.set_index("method").loc["CISPO", "max_weight"])
    at.number_input(key="gc_hp_cispo_w_max").set_value(2.0).run()
    lower = float(at.dataframe[0].value.set_index("method").loc["CISPO", "max_weight"])
    assert capped == pytest.approx(5.0) and lower == pytest.approx(2.0)
    assert float(metric(at, "max |closed form − autograd|")) < 1e-9


# ----------------------------------------------------------------------------------------------- 6 learn


def test_learn_worked_example_follows_the_slider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path, monkeypatch, "learn")
    assert "Erratum" in "".join(h.value for h in at.subheader)
    erratum = "".join(w.value for w in at.warning)
    assert "Eq. 21" in erratum and "1 + (1 + C)" in erratum  # the dropped "1 +" of Eq. 22 is named
    # every variant is bounded by 1/tau; the anchor is what stops weights vanishing
    assert "not the anchor's doing" in texts(at)
    df = at.dataframe[0].value
    w1 = float(df.loc[df["rollout"] == 1, "REAL |W| (Eq. 9/10)"].iloc[0])
    assert float(metric(at, "max |Eq. 9/10 − autograd|")) < 1e-12
    assert float(metric(at, "max |appendix − autograd|")) > 1e-3
    assert "GRPO **clips** rollout 0" in texts(at)  # s̄ = 0.3: ratio 1.35 > 1.2

    at.slider(key="learn_s1").set_value(-1.5).run()  # the hard correct rollout becomes harder
    df2 = at.dataframe[0].value
    w1_new = float(df2.loc[df2["rollout"] == 1, "REAL |W| (Eq. 9/10)"].iloc[0])
    assert w1_new > w1, "REAL pushes a correct rollout harder the less likely it has become"
    assert float(metric(at, "max |Eq. 9/10 − autograd|")) < 1e-12

    for k in range(5):  # all correct: nothing to learn from this group
        at.toggle(key=f"learn_c{k}").set_value(True)
    at.run()
    assert "same label" in texts(at)
    assert (at.dataframe[0].value["REAL |W| (Eq. 9/10)"] == 0).all()


def test_learn_compares_every_registered_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: a method added as one spec (CISPO, Dr. GRPO) appears in the Learn page's comparison."""
    from workbench.methods import LABELS

    at = open_app(tmp_path, monkeypatch, "learn")
    assert "Every method the workbench knows" in [h.value for h in at.subheader]
    table = next(d.value for d in at.dataframe if "family" in d.value.columns)
    assert list(table["method"]) == list(LABELS.values())
    assert {"CISPO", "Dr. GRPO"} <= set(table["method"])


# ----------------------------------------------------------------------------------------------- 3 runs


def test_runs_page_compares_and_follows_the_step(good_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(good_root, monkeypatch, "runs")
    table = at.dataframe[0].value
    assert sorted(table.index) == ["grpo-s0", "real-s0"]
    assert "At step 6" in [h.value for h in at.subheader]

    at.select_slider(key="runs_step").set_value(3).run()
    assert "At step 3" in [h.value for h in at.subheader]
    assert "Median C by group composition" not in texts(at)  # only the open tab (Dynamics) is computed
    at.session_state["runs_tab"] = "C+ and C-"  # a click on the tab (AppTest has no tab clicks)
    at.run()
    assert "Median C by group composition, at step 3" in texts(at) or "all steps pooled" in texts(at)
    reward = open_run(good_root / "real-s0").metrics().set_index("step").loc[3, "reward_mean"]
    assert at.dataframe[0].value.loc["real-s0", "reward_mean"] == pytest.approx(reward)

    at.multiselect(key="runs_pick").set_value(["grpo-s0"]).run()
    assert list(at.dataframe[0].value.index) == ["grpo-s0"]
    # a GRPO run: C+/C- are REAL's recomputed on its logged s_bar (workbench.stats.real_weights)
    assert "Median C by group composition" in texts(at)
    at.session_state["runs_tab"] = "Gradient allocation"
    at.run()
    assert any("top 1% of tokens" in m.value for m in at.markdown)


def test_runs_page_shows_each_bad_folder_on_its_own_card(
    mixed_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(mixed_root, monkeypatch, "runs")
    errors = "\n".join(e.value for e in at.error)
    assert "not a run directory" in errors  # empty/
    assert "not valid UTF-8 JSON" in errors  # corrupt/
    assert "refused" in errors and "escape" in errors  # a link out of the root
    # the partial run's step 2 metrics are not Parquet: selecting it reports that, the good runs still draw
    at.multiselect(key="runs_pick").set_value(["partial", "real-s0"]).run()
    assert not at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "partial" in errors and "not a readable Parquet file" in errors
    assert list(at.dataframe[0].value.index) == ["real-s0"]


def test_runs_page_without_runs_offers_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path / "nothing", monkeypatch, "runs")
    assert "train the tiny demo run" in texts(at)


# ----------------------------------------------------------------------------------------------- 4 inspector


def test_inspector_colours_tokens_and_replays_methods(
    good_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(good_root, monkeypatch, "inspector")
    at.selectbox(key="insp_run").set_value("real-s0").run()
    assert not at.exception
    assert float(metric(at, "logged vs replayed weight")) < 1e-5
    assert metric(at, "C+ (logged)") != "–"
    table = at.dataframe[0].value
    for col in ("GRPO", "DAPO", "GSPO", "REAL (run)", "REAL w/ BCE", "REAL w/o anchor"):
        assert col in table.columns
    prompt = next(m.value for m in at.markdown if m.value.startswith("**Prompt**"))
    assert " \\* " in prompt  # "What is a + b * c?": shown literally, not as emphasis
    html_weight = at.get("html")[0].value
    assert "|W| per token (REAL)" in html_weight

    at.radio(key="insp_colour").set_value("s_t").run()
    html_s = at.get("html")[0].value
    assert html_s != html_weight and "s_t = log" in html_s

    # the ratio's legend: log-symmetric around 1 (ends e^-h and e^+h), never a negative ratio
    at.select_slider(key="insp_step").set_value(at.select_slider(key="insp_step").options[-1]).run()
    at.radio(key="insp_colour").set_value("ratio").run()
    html_r = at.get("html")[0].value
    lo, hi = (float(x) for x in re.findall(r"<span>([-+0-9.e]+)</span>", html_r)[:2])
    assert 0 < lo < 1 < hi and lo * hi == pytest.approx(1, rel=1e-2), (lo, hi)

    at.radio(key="insp_colour").set_value("gradient weight").run()
    at.selectbox(key="insp_under").set_value("grpo").run()
    assert "|W| per token (GRPO)" in at.get("html")[0].value

    last = int(at.dataframe[0].value["rollout"].iloc[-1])
    at.selectbox(key="insp_rollout").set_value(last).run()
    assert f"Rollout #{last}" in [h.value for h in at.subheader]
    assert at.get("html")[0].value != html_weight

    at.select_slider(key="insp_step").set_value(1).run()
    assert not at.exception
    assert "C+ (logged)" in [m.label for m in at.metric]
    assert next(h.value for h in at.subheader) == "The group"


# ----------------------------------------------------------------------------------------------- 5 train


def test_train_page_refuses_a_name_that_leaves_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(tmp_path, monkeypatch, "train")
    at.text_input[0].set_value("../outside")
    at.button[0].click().run()
    assert not at.exception
    assert "Refused" in texts(at)
    assert not (tmp_path.parent / "outside").exists()


# ----------------------------------------------------------------------------------------------- 2 figures


def test_paper_figures_fig1_follows_its_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path, monkeypatch, "paper_figures")
    img = at.image[0]
    assert "tau 0.5" in img.captions[0]
    assert len(at.get("download_button")) == 3
    at.number_input(key="f1_tau").set_value(0.25).run()
    img2 = at.image[0]
    assert "tau 0.25" in img2.captions[0]
    assert img2.value != img.value


def test_paper_figures_says_which_runs_a_figure_lacks(
    good_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(good_root, monkeypatch, "paper_figures")
    at.segmented_control(key="fig_pick").set_value("fig4").run()
    assert not at.exception
    picks = at.multiselect(key="pick_fig4")
    assert sorted(picks.value) == ["grpo-s0", "real-s0"]
    assert any("Not enough runs" in i.value and "GSPO" in i.value for i in at.info)
    assert not at.image


def test_paper_figures_draws_run_figures(suite_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(suite_root, monkeypatch, "paper_figures")
    for cli in ("fig2", "fig4", "fig5", "table4", "allocation", "c-dynamics"):
        at.segmented_control(key="fig_pick").set_value(cli).run()
        assert not at.exception, cli
        drawn = (
            len(at.image) == 1 if cli != "table4" else any("Paper's reported" in m.value for m in at.markdown)
        )
        assert drawn, f"{cli}: {[i.value for i in at.info]} {[w.value for w in at.warning]}"
        assert len(at.get("download_button")) == 3
    at.segmented_control(key="fig_pick").set_value("table4").run()
    assert any("Paper's reported" in m.value for m in at.markdown)
    # fewer runs: the figure says what it now lacks instead of drawing
    real_only = [n for n in at.multiselect(key="pick_table4").options if "real" not in n.lower()]
    at.multiselect(key="pick_table4").set_value([o.split(" (")[0] for o in real_only]).run()
    assert not any("Paper's reported" in m.value for m in at.markdown)
    assert any("Not enough runs" in i.value for i in at.info)


# ----------------------------------------------------------------------------------------------- live runs


def _copy_step(src: Path, dst: Path, step: int) -> None:
    """Land one more step in a run being 'trained': tokens and rollouts first, metrics (completion) last."""
    for table in ("tokens", "rollouts", "metrics"):
        name = f"step_{step:06d}.parquet"
        (dst / table / name).write_bytes((src / table / name).read_bytes())


def test_a_run_being_trained_shows_its_complete_steps_and_refreshes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.synthetic_run import write_synthetic_run

    root = tmp_path / "runs"
    kw = {"method": "real", "prompts": 3, "group_size": 4, "mean_len": 8, "seed": 5}
    write_synthetic_run(root / "live", steps=2, state="running", **kw)  # status pid: this (alive) process
    later = write_synthetic_run(tmp_path / "later", steps=3, **kw)
    (root / "live" / "tokens" / "step_000003.parquet").write_bytes(b"")  # step 3 in flight: no metrics yet

    at = open_app(root, monkeypatch, "runs")
    assert "At step 2" in [h.value for h in at.subheader]
    assert "still training" in texts(at)
    at = open_app(root, monkeypatch, "inspector")
    assert at.select_slider(key="insp_step").options[-1] == "2"

    _copy_step(later, root / "live", 3)
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    assert "At step 3" in [h.value for h in at.subheader]  # cached reads were keyed on the folder's mtime


def test_inspector_measures_label_noise(good_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: the run's label noise on the page equals ``training.label_noise`` on the same sample."""
    from training.label_noise import label_noise
    from training.rewards import Grader
    from workbench.runlog import open_run

    at = open_app(good_root, monkeypatch, "inspector")
    at.selectbox(key="insp_run").set_value("real-s0").run()
    at.number_input(key="insp_noise_n").set_value(40).run()
    at.button(key="insp_noise_go").click().run()
    assert not at.exception
    run = open_run(good_root / "real-s0")
    with Grader(workers=1) as grader:
        expected = label_noise(run, grader, sample=40, steps=run.steps()[-20:])
    assert expected.sampled == 40
    assert metric(at, "Disagreement") == f"{expected.rate:.1%}"
    assert int(metric(at, "Logged 1, plain math-verify 0")) == expected.logged_only


def test_inspector_reports_a_step_whose_files_are_missing(
    mixed_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(mixed_root, monkeypatch, "inspector")
    at.selectbox(key="insp_run").set_value("partial").run()
    at.select_slider(key="insp_step").set_value(2).run()
    assert not at.exception
    assert any("missing" in e.value for e in at.error)


def test_a_run_without_a_complete_step_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.runlog import RunWriter

    root = tmp_path / "runs"
    RunWriter.create(root / "starting", name="starting", method="real", config={"method": "real"}, env={})
    at = open_app(root, monkeypatch, "runs")
    assert "Waiting for the first step of starting" in texts(at)
    assert "No run has a complete step yet" in texts(at)
    assert "running · step 0" in texts(at)
