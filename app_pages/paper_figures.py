"""Page 2: the paper's figures as this project builds them (workbench.figures), with PNG, PDF and CSV downloads."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict

import pandas as pd
import streamlit as st
from matplotlib.figure import Figure

import workbench.figures as wf
from app_lib.ui import render_cards, runs_root_and_cards
from workbench.figures.fig1 import Fig1Params, build_fig1, curves

st.title("Paper figures")
st.markdown(
    "The paper's figures, rebuilt by `workbench.figures`: Fig. 1 from the closed forms, Fig. 2, 4, 5 and Table 4 "
    "from runs you pick. Each comes as PNG, PDF and the CSV of the numbers drawn. The same figures are written "
    "by `python -m workbench.figures NAME`."
)


def _deferred_downloads() -> bool:
    """Whether this Streamlit builds a download's bytes only when it is clicked (a callable ``data``)."""
    try:
        from streamlit.elements.widgets import button
    except ImportError:
        return False
    return "Callable" in str(getattr(button, "DownloadButtonDataType", ""))


DEFERRED = _deferred_downloads()


def _save(fig: Figure, fmt: str) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    if fmt == "png":
        fig.savefig(buf, format="png", dpi=150)
    else:
        fig.savefig(buf, format="pdf", metadata={"CreationDate": None})
    plt.close(fig)
    return buf.getvalue()


@st.cache_data(max_entries=64, show_spinner="Drawing Fig. 1…")
def _fig1(params: dict, fmt: str) -> bytes:
    return _save(build_fig1(Fig1Params(**params)), fmt)


@st.cache_data(max_entries=64, show_spinner=False)
def _fig1_csv(params: dict) -> bytes:
    return pd.DataFrame(curves(Fig1Params(**params))).to_csv(index=False).encode()


def _downloads(stem: str, png: bytes, pdf: Callable[[], bytes], csv: bytes, key: str) -> None:
    """PNG, PDF and CSV buttons; the PDF is drawn on click where Streamlit allows it (it takes ~1 s)."""
    a, b, c, _ = st.columns([1, 1, 1, 7])
    a.download_button("PNG", png, f"{stem}.png", "image/png", key=f"{key}_png", icon=":material/download:")
    b.download_button(
        "PDF", pdf if DEFERRED else pdf(), f"{stem}.pdf", "application/pdf", key=f"{key}_pdf",
        icon=":material/download:",
    )  # fmt: skip
    c.download_button("CSV", csv, f"{stem}.csv", "text/csv", key=f"{key}_csv", icon=":material/download:")


tabs = st.tabs(["Fig. 1", "Fig. 2", "Fig. 4", "Fig. 5", "Table 4"])

with tabs[0]:
    st.markdown("Gradient magnitude of GRPO (Eq. 3) against $s_t$ and of REAL (Eq. 9) against $\\bar s$. "
                "Defaults are the paper's.")  # fmt: skip
    with st.expander("Parameters", expanded=False):
        c = st.columns(4)
        eps_low = c[0].number_input("eps_low", 0.0, 0.9, 0.2, 0.01, key="f1_eps_low")
        eps_high = c[1].number_input("eps_high", 0.0, 1.0, 0.2, 0.01, key="f1_eps_high")
        adv = c[2].number_input("|A|", 0.1, 5.0, 1.0, 0.1, key="f1_adv")
        mode = c[3].selectbox("clip mode", ["vanilla", "bidirectional", "none"], key="f1_mode")
        tau = c[0].number_input("tau", 0.05, 5.0, 0.5, 0.05, key="f1_tau")
        c_pos = c[1].number_input("C+", 0.1, 50.0, 4.0, 0.5, key="f1_cpos")
        c_neg = c[2].number_input("C-", 0.1, 50.0, 4.0, 0.5, key="f1_cneg")
    p = Fig1Params(
        eps_low=eps_low, eps_high=eps_high, advantage=adv, clip_mode=mode, tau=tau, c_pos=c_pos, c_neg=c_neg
    )
    params = asdict(p)
    png = _fig1(params, "png")
    st.image(png, caption=f"Fig. 1 · {p.clip_mode} clipping, eps [{p.eps_low:g}, {p.eps_high:g}], |A| {p.advantage:g}, "
             f"tau {p.tau:g}, C+ {p.c_pos:g}, C- {p.c_neg:g}")  # fmt: skip
    _downloads("fig1_gradient_magnitude", png, lambda: _fig1(params, "pdf"), _fig1_csv(params), "f1")
    st.caption(
        "Same as `python -m workbench.figures fig1 "
        f"--eps-low {p.eps_low:g} --eps-high {p.eps_high:g} --advantage {p.advantage:g} --clip-mode {p.clip_mode} "
        f"--tau {p.tau:g} --c-pos {p.c_pos:g} --c-neg {p.c_neg:g}`"
    )

RUN_FIGURES = [
    ("Fig. 2", "build_fig2", "token shares per ratio interval for GRPO, and validation Pass@1 with vanilla "
     "against bidirectional clipping"),
    ("Fig. 4", "build_fig4", "entropy, validation score, reward and 100% solved ratio over steps for GRPO, DAPO, "
     "GSPO and REAL"),
    ("Fig. 5", "build_fig5", "the same for DAPO, REAL with BCE, REAL without anchor, and REAL"),
    ("Table 4", "build_table4", "final Pass@1 of the REAL ablations, next to the paper's values"),
]  # fmt: skip

root, cards = runs_root_and_cards()
readable = [c for c in cards if c.ok and c.steps]
for tab, (title, builder, what) in zip(tabs[1:], RUN_FIGURES, strict=True):
    with tab:
        st.markdown(f"**{title}**: {what}.")
        build = getattr(wf, builder, None)
        if build is None:
            st.info(
                f"{title} is built from runs by `workbench.figures.{builder}`, which arrives with the studies and is "
                "not in this checkout yet.",
                icon=":material/hourglass_empty:",
            )
        if not readable:
            st.caption(f"No readable runs under `{root}` yet.")
            bad = [c for c in cards if not c.ok]
            if bad:
                render_cards(bad)
            continue
        st.multiselect(
            "Runs", [c.name for c in readable], default=[c.name for c in readable], key=f"pick_{builder}",
            disabled=build is None,
        )  # fmt: skip
