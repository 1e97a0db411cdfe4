"""The Learn page as a teacher uses it (issue 15): Eq. 9/10 with a logged rollout's numbers, reached by a link;
the glossary; the worked example with one label; presentation mode; the derivation as a PDF (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from workbench.runlog import open_run

LOGGED = "A logged rollout"


def open_learn(root: Path, monkeypatch: pytest.MonkeyPatch, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("app_pages/learn.py")
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


def _mixed_group(root: Path, step: int) -> tuple[int, int, int]:
    """A group of run real-s0 at ``step`` mixing labels, and one correct and one wrong rollout of it."""
    rows = open_run(root / "real-s0").rollouts(steps=[step])
    for gid, g in rows.groupby("group"):
        pos, neg = g[g["reward"] > 0.5], g[g["reward"] <= 0.5]
        if len(pos) >= 2 and len(neg) >= 2:
            return int(gid), int(pos["rollout"].iloc[-1]), int(neg["rollout"].iloc[0])
    raise AssertionError("the synthetic run has no group with two correct and two wrong rollouts")


def test_a_link_opens_a_logged_rollout_and_its_weight_is_eq_9_10(
    good_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gid, correct, wrong = _mixed_group(good_root, 3)
    query = {"learn_tab": LOGGED, "learn_run": "real-s0", "learn_step": "3", "learn_group": str(gid)}
    at = open_learn(good_root, monkeypatch, query | {"learn_rollout": str(correct)})
    assert at.selectbox(key="learn_run").value == "real-s0"
    assert at.select_slider(key="learn_step").value == 3
    assert at.selectbox(key="learn_group").value == gid
    assert at.selectbox(key="learn_rollout").value == correct

    rows = open_run(good_root / "real-s0").rollouts(steps=[3]).drop_duplicates("rollout")
    grp = rows[rows["group"] == gid].sort_values("rollout")
    row = grp[grp["rollout"] == correct].iloc[0]
    # the weight worked out on screen, the closed form's, and the logged one agree (float32 in the log)
    shown = [float(metric(at, label)) for label in ("W_k worked out", "W_k, closed form", "W_k logged")]
    assert shown == pytest.approx([row["weight"]] * 3, rel=1e-5)
    assert "Eq. 9/10 of these numbers" in at.success[0].value
    # every other correct rollout's s_bar is substituted into C+, and the exponent takes +s_bar/tau
    latex = "\n".join(x.value for x in at.latex)
    others = grp[(grp["reward"] > 0.5) & (grp["rollout"] != correct)]["s_bar"]
    assert all(f"e^{{-({s:.4g})/0.5}}" in latex for s in others), latex[-800:]
    assert f"e^{{+({row['s_bar']:.4g})/0.5}}" in latex
    c_plus = 1 + np.exp(-others.to_numpy(dtype=float) / 0.5).sum()
    assert f"= {c_plus:.6g}" in latex

    at.selectbox(key="learn_rollout").set_value(
        wrong
    ).run()  # a wrong rollout: C- and the exponent -s_bar/tau
    latex = "\n".join(x.value for x in at.latex)
    assert r"C_- &= 1 + \sum_{j\in\mathcal{O}_-" in latex and r"\mathrm{exponent}\ -\bar{s}^k/\tau" in latex
    assert at.query_params["learn_rollout"] == str(wrong)
    wrow = grp[grp["rollout"] == wrong].iloc[0]
    assert float(metric(at, "W_k worked out")) == pytest.approx(wrow["weight"], rel=1e-5)


def test_the_inspector_links_to_the_rollout_on_learn(
    good_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(good_root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("app_pages/inspector.py")
    at.query_params.update({"insp_run": "real-s0", "insp_step": "3", "insp_group": "2", "insp_rollout": "14"})
    at.run()
    links = [e.proto for e in at.get("page_link")]
    learn = [p for p in links if "Eq. 9/10" in p.label]
    assert learn, [p.label for p in links]
    assert "learn_rollout=14" in learn[0].query_string and "learn_group=2" in learn[0].query_string
    assert "learn_tab=A+logged+rollout" in learn[0].query_string


def test_without_runs_the_tab_works_an_example_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_learn(tmp_path, monkeypatch, {"learn_ex_rollout": "1"})
    assert any("example group" in i.value for i in at.info)
    assert at.selectbox(key="learn_ex_rollout").value == 1
    # rollout 1 of the example (correct, s = -0.6; the other correct one has s = 0.3), tau = 0.5
    c = 1 + np.exp(-0.3 / 0.5)
    assert float(metric(at, "W_k worked out")) == pytest.approx(2 / (1 + c * np.exp(-0.6 / 0.5)), rel=1e-5)
    assert metric(at, "W_k logged") == "–"


def test_worked_example_with_one_label_agrees_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: with all labels equal the appendix column was non-zero under a blank chart; now every weight
    is 0, C is not used, the page says REAL leaves the group out, and no empty chart is drawn."""
    at = open_learn(tmp_path, monkeypatch)
    charts = len(at.get("vega_lite_chart"))
    for k in range(5):
        at.toggle(key=f"learn_c{k}").set_value(False)
    at.run()
    df = at.dataframe[0].value
    for col in ("GRPO |W|", "REAL |W| (Eq. 9/10)", "autograd |dL/ds̄|", "appendix Eq. 22-24 as printed"):
        assert (df[col] == 0).all(), col
    assert df["REAL C (C+ or C-)"].isna().all()
    assert any("leaves the group out" in w.value for w in at.warning)
    assert any("No chart" in i.value for i in at.info)
    assert len(at.get("vega_lite_chart")) == charts - 1


def test_one_form_ties_the_sign_to_the_label_and_glossary_defines_the_symbols(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_learn(tmp_path, monkeypatch)
    form = next(x for x in at.latex if r"\pm = \begin{cases}" in x.value)
    assert r"+ & r = 1" in form.value and r"- & r = 0" in form.value
    assert "e^{+s̄/τ}" in form.proto.help and "correct" in form.proto.help  # hover help of the equation
    text = "\n".join(m.value for m in at.markdown)
    assert "**The sign follows the label.** A correct rollout (r = 1) takes $e^{+" in text
    for sym in ("**s_t**", "**s̄**", "**A**", "**C+**", "**C−**"):
        assert sym in text, sym
    # the derivation's equations carry hover help naming their symbols
    eq9 = next(x for x in at.latex if r"r = 0:\quad" in x.value)
    assert "**C−**" in eq9.proto.help and "**τ**" in eq9.proto.help


def test_presentation_mode_from_the_url_follows_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["present"] = "1"  # a new session opened from a link with ?present=1
    at.run()
    assert at.toggle(key="present_mode").value is True
    at.switch_page("app_pages/learn.py").run()
    assert at.toggle(key="present_mode").value is True
    assert any("font-size: 21px" in h.proto.body for h in at.get("html"))
    at.switch_page("app_pages/gradient_curves.py").run()
    assert at.toggle(key="present_mode").value is True and at.query_params["present"] == "1"
    at.toggle(key="present_mode").set_value(False).run()
    assert "present" not in at.query_params
    assert not any("font-size: 21px" in h.proto.body for h in at.get("html"))


def test_derivation_pdf_holds_the_learn_derivation() -> None:
    """The PDF is drawn from the blocks the Learn tab shows (one source); every equation parses in mathtext
    (a formula it cannot read raises), and the pages are the layout's."""
    import matplotlib

    from app_lib.derivation import BLOCKS, RC, pages, pdf_bytes

    pdf = pdf_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    with matplotlib.rc_context(RC):
        drawn = pages()
    assert f"/Count {len(drawn)}".encode() in pdf and len(drawn) >= 2
    texts = [t.get_text() for fig in drawn for t in fig.texts]
    for kind, text in BLOCKS:
        if kind == "eq":
            assert "$" + text.replace(r"\frac", r"\dfrac") + "$" in texts, text
        elif kind == "h":
            assert text in texts


def test_learn_reads_hostile_runs_as_text(hostile_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A REAL run whose folder name, prompts and tokens are HTML/Markdown payloads (tests.app.conftest): the
    Learn tab names it only in plain-text choosers; the unreadable last step of another run (opened first) is an
    error naming it, and the page's other tabs still draw."""
    from tests.app.conftest import STEP_DIR_PAYLOAD

    at = open_learn(hostile_root, monkeypatch, {"learn_tab": LOGGED})
    runs = at.selectbox(key="learn_run")
    assert len(runs.options) == 2  # the two REAL runs; the GRPO one and the unreadable folder are not listed
    assert runs.value == STEP_DIR_PAYLOAD
    assert "cannot be read" in at.error[0].value and "pwned" in at.error[0].value  # escaped, as text
    assert "Glossary" in [h.value for h in at.subheader]
    html = [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown if "<abbr" in m.value]
    assert not any("pwned" in h for h in html)
