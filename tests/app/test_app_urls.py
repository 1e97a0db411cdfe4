"""Every view has a URL (issue 15): each page's state lives in its query string and is read back when the page is
opened from it (Streamlit AppTest; the browser test opens the same links in Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP


def open_url(root: Path, monkeypatch: pytest.MonkeyPatch, page: str | None, query: dict) -> AppTest:
    """The app opened on ``page`` (None: the root URL) with query string ``query``, as a new session."""
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    if page:  # (AppTest opens the Paper figures page only after a first run)
        at.run()
        at.switch_page(f"app_pages/{page}.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_root_url_opens_the_curves_page_with_its_query_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_url(tmp_path, monkeypatch, None, {"gc_tau": "0.7", "gc_methods": ["dapo", "real_bce"]})
    assert [t.value for t in at.title] == ["Gradient curves"]
    assert at.slider(key="gc_tau").value == pytest.approx(0.7)
    assert at.get("button_group")[0].value == ["dapo", "real_bce"]
    at.get("button_group")[0].set_value(["grpo"]).run()  # (sliders write the URL in the browser itself)
    assert at.query_params["gc_methods"] in ("grpo", ["grpo"])


def test_inspector_view_is_restored_from_its_link_and_written_back(
    good_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = {
        "insp_run": "real-s0",
        "insp_step": "3",
        "insp_group": "2",
        "insp_rollout": "14",
        "insp_colour": "s_t",
    }
    at = open_url(good_root, monkeypatch, "inspector", query)
    assert at.selectbox(key="insp_run").value == "real-s0"
    assert at.select_slider(key="insp_step").value == 3
    assert at.selectbox(key="insp_group").value == 2
    assert at.selectbox(key="insp_rollout").value == 14
    assert at.radio(key="insp_colour").value == "s_t"
    assert "Rollout #14" in [h.value for h in at.subheader]

    at.selectbox(key="insp_rollout").set_value(12).run()
    assert at.query_params["insp_rollout"] == "12" and at.query_params["insp_run"] == "real-s0"


def test_a_link_to_something_gone_opens_the_page_on_its_defaults(
    good_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = {"insp_run": "deleted-run", "insp_step": "999", "insp_group": "x", "insp_colour": "<b>"}
    at = open_url(good_root, monkeypatch, "inspector", query)
    assert at.selectbox(key="insp_run").value == "grpo-s0"  # the first run
    assert at.select_slider(key="insp_step").value == 6  # the last step
    assert at.radio(key="insp_colour").value == "gradient weight"
    assert at.query_params["insp_run"] == "grpo-s0"


def test_runs_and_figures_pages_restore_runs_step_and_parameters(
    suite_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = sorted(p.name for p in suite_root.iterdir() if (p / "run.json").exists())
    at = open_url(suite_root, monkeypatch, "runs", {"runs_pick": names[:2], "runs_step": "2"})
    assert at.multiselect(key="runs_pick").value == names[:2]
    assert at.select_slider(key="runs_step").value == 2
    assert "At step 2" in [h.value for h in at.subheader]

    at = open_url(suite_root, monkeypatch, "paper_figures", {"fig_pick": "fig1", "f1_tau": "0.25"})
    assert at.number_input(key="f1_tau").value == pytest.approx(0.25)
    assert "--tau 0.25" in " ".join(c.value for c in at.caption)  # the figure was drawn with it
    at = open_url(suite_root, monkeypatch, "paper_figures", {"fig_pick": "fig4", "fig4_band": "minmax"})
    assert at.get("button_group")[0].value == "fig4"
    assert at.selectbox(key="fig4_band").value == "minmax"


def test_learn_restores_the_group_and_leaving_a_page_drops_its_choosers(
    good_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_url(good_root, monkeypatch, "learn", {"learn_n": "3", "learn_s1": "1.5", "learn_c1": "false"})
    assert at.slider(key="learn_n").value == 3
    assert at.slider(key="learn_s1").value == pytest.approx(1.5)
    assert at.toggle(key="learn_c1").value is False

    at = open_url(good_root, monkeypatch, "inspector", {"insp_run": "real-s0"})
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    assert "insp_run" not in at.query_params and "runs_pick" in at.query_params
