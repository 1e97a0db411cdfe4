"""The REAL workbench app: explore the gradient curves, learn the derivation, inspect and train runs, make figures.

    streamlit run app.py                         # reads runs from runs/ (or $REAL_RUNS_ROOT)
    streamlit run app.py -- --runs-root DIR      # reads and trains runs under DIR

Every number it shows comes from ``workbench`` (closed forms, objectives, run logs, statistics); the app computes
nothing of its own. It reads only under its runs root.
"""

from __future__ import annotations

import streamlit as st

from app_lib import urlstate as url
from app_lib.config import get_runs_root
from app_lib.data import scan
from app_lib.presentation import presentation_toggle
from app_lib.ui import follow_runs_root, md_code
from workbench.methods import LABELS, METHODS

st.set_page_config(page_title="REAL workbench", page_icon=":material/functions:", layout="wide")

CURVES = st.Page(
    "app_pages/gradient_curves.py", url_path="curves", title="Gradient curves", icon=":material/show_chart:"
)


def _open_curves() -> None:
    """The root URL opens the Gradient curves page at its own path, /curves (a default page has none), with the
    query string it was given."""
    st.switch_page(CURVES, query_params={k: st.query_params.get_all(k) for k in st.query_params})


PAGES = {
    "Theory": [
        st.Page(_open_curves, title="Home", url_path="home", default=True, visibility="hidden"),
        CURVES,
        st.Page("app_pages/learn.py", url_path="learn", title="Learn", icon=":material/school:"),
    ],
    "Runs": [
        st.Page("app_pages/runs.py", url_path="runs", title="Runs", icon=":material/monitoring:"),
        st.Page(
            "app_pages/inspector.py",
            url_path="inspector",
            title="Rollout inspector",
            icon=":material/manage_search:",
        ),
        st.Page("app_pages/train.py", url_path="train", title="Train", icon=":material/play_circle:"),
    ],
    "Figures": [
        st.Page(
            "app_pages/paper_figures.py", url_path="figures", title="Paper figures", icon=":material/image:"
        ),
    ],
}

page = st.navigation(PAGES)
url.opened(page.url_path)

with st.sidebar:
    root = get_runs_root()
    cards = scan(root)
    live = sum(c.ok and c.live for c in cards)
    st.caption(
        f"**Runs root** {md_code(root)}  \n{len(cards)} run folder(s)"
        + (f", {live} training" if live else "")
    )
    if not cards:
        st.page_link(
            "app_pages/runs.py", label="No runs yet: train the tiny demo run", icon=":material/play_arrow:"
        )
    url.copy_link()
    st.caption(f"REAL workbench · *Rewards as Labels* · {len(METHODS)} methods: {', '.join(LABELS.values())}")
    presentation_toggle()
    # runs started elsewhere appear without a reload; run pages also follow each new step
    follow_runs_root(str(root), steps=page.url_path in ("runs", "inspector", "train"))

page.run()
