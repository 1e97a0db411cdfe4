"""Presentation mode: large type for a projector or a classroom, on every page (``BASE_PX``).

On with the sidebar's toggle or ``?present=1`` in any page's URL; the choice then follows the user from page to
page (it is written back into each page's URL, so a link keeps it). The colours are the theme's, which follows
the system's light or dark setting (``.streamlit/config.toml`` sets no base theme), so nothing here draws colour.
"""

from __future__ import annotations

import streamlit as st

PARAM = "present"
KEY = "present_mode"
BASE_PX = 21  # the root font size in presentation mode (Streamlit's is 16 px): type 1.3 times larger

# Streamlit sizes text, headings, widgets and equations (KaTeX) in rem/em, so a larger root font enlarges them all
# while every element keeps its layout width. (CSS zoom would enlarge the charts too, but Vega measures its
# container unzoomed and the zoomed chart then overflows its column.) Charts keep their own pixel sizes.
_CSS = f"""
<style>
html {{ font-size: {BASE_PX}px !important; }}
[data-testid="stMainBlockContainer"] {{ max-width: 100%; padding-left: 2rem; padding-right: 2rem; }}
</style>
"""


def presentation_toggle() -> bool:
    """The sidebar toggle (opened from ``?present=1``); returns whether presentation mode is on and, if so,
    enlarges the page."""
    if KEY not in st.session_state and st.query_params.get(PARAM) in ("1", "true", "on"):
        st.session_state[KEY] = True
    on = st.sidebar.toggle(
        "Presentation mode",
        key=KEY,
        help="Large type for a projector (or `?present=1` in the URL). Light or dark follows your system's "
        "setting; Streamlit's menu (⋮ → Settings) can also choose one.",
    )
    if on:
        st.query_params[PARAM] = "1"
        st.html(_CSS)
    else:
        st.query_params.pop(PARAM, None)
    return on
