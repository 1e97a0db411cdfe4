"""Page 2: the paper's figures as this project builds them (workbench.figures), with PNG, PDF and CSV downloads."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd
import streamlit as st
from matplotlib.figure import Figure

from app_lib import data, figure_runs
from app_lib import urlstate as url
from app_lib.ui import md_code, md_escape, md_literal, render_cards, runs_root_and_cards
from workbench.figures.fig1 import Fig1Params, build_fig1, curves
from workbench.figures.registry import PARAM_CHOICES, PARAM_HELP, RUN_FIGURES
from workbench.figures.table4 import table4_markdown
from workbench.runlog import RunFormatError
from workbench.stats import MissingVariantsError

st.title("Paper figures")
st.markdown(
    "The paper's figures, rebuilt by `workbench.figures`: Fig. 1 from the closed forms; Fig. 2, 4, 5, Table 4 and "
    "two figures the paper does not have (gradient allocation, C+/C- dynamics) from runs you pick. Each comes as "
    "PNG, PDF and the CSV of the numbers drawn. The same figures are written by `python -m workbench.figures NAME`."
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


def _downloads(stem: str, png: bytes, pdf: Callable[[], bytes], csv: Callable[[], bytes], key: str) -> None:
    """PNG, PDF and CSV buttons; PDF and CSV are made on click where Streamlit allows it (each can take ~1 s)."""
    a, b, c, _ = st.columns([1, 1, 1, 7])
    # on_click="ignore": a download does not rerun the page. A rerun redrew every button while the browser was
    # still fetching a deferred file, and the next click could land on a button being replaced (seen in CI: the
    # third download of three never arrived).
    common = {"icon": ":material/download:", "on_click": "ignore"}
    a.download_button("PNG", png, f"{stem}.png", "image/png", key=f"{key}_png", **common)
    b.download_button(
        "PDF", pdf if DEFERRED else pdf(), f"{stem}.pdf", "application/pdf", key=f"{key}_pdf", **common
    )
    c.download_button(
        "CSV", csv if DEFERRED else csv(), f"{stem}.csv", "text/csv", key=f"{key}_csv", **common
    )


TAB_TITLES = {"fig2": "Fig. 2", "fig4": "Fig. 4", "fig5": "Fig. 5", "table4": "Table 4", "allocation": "Gradient allocation",
              "c-dynamics": "C+/C- dynamics"}  # fmt: skip
FIGURES = ["fig1", *RUN_FIGURES]
wanted = st.query_params.get(
    "figure", "fig1"
)  # deep link: /figures?fig_pick=fig4 (or, as before, ?figure=fig4)
choice = url.chooser(
    st.segmented_control, "Figure", FIGURES, default=wanted if wanted in FIGURES else "fig1", key="fig_pick",
    format_func=lambda k: "Fig. 1" if k == "fig1" else TAB_TITLES.get(k, k),
)  # fmt: skip
choice = choice or "fig1"  # a click on the selected segment unselects it

if choice == "fig1":
    st.markdown("Gradient magnitude of GRPO (Eq. 3) against $s_t$ and of REAL (Eq. 9) against $\\bar s$. "
                "Defaults are the paper's.")  # fmt: skip
    with st.expander("Parameters", expanded=False):
        c = st.columns(4)
        eps_low = c[0].number_input(
            "eps_low", 0.0, 0.9, Fig1Params.eps_low, 0.01, key="f1_eps_low", bind="query-params"
        )
        eps_high = c[1].number_input(
            "eps_high", 0.0, 1.0, Fig1Params.eps_high, 0.01, key="f1_eps_high", bind="query-params"
        )
        adv = c[2].number_input("|A|", 0.1, 5.0, 1.0, 0.1, key="f1_adv", bind="query-params")
        mode = c[3].selectbox(
            "clip mode", ["vanilla", "bidirectional", "none"], key="f1_mode", bind="query-params"
        )
        tau = c[0].number_input("tau", 0.05, 5.0, Fig1Params.tau, 0.05, key="f1_tau", bind="query-params")
        c_pos = c[1].number_input("C+", 0.1, 50.0, 4.0, 0.5, key="f1_cpos", bind="query-params")
        c_neg = c[2].number_input("C-", 0.1, 50.0, 4.0, 0.5, key="f1_cneg", bind="query-params")
    p = Fig1Params(
        eps_low=eps_low, eps_high=eps_high, advantage=adv, clip_mode=mode, tau=tau, c_pos=c_pos, c_neg=c_neg
    )
    params = asdict(p)
    png = _fig1(params, "png")
    st.image(png, caption=f"Fig. 1 · {p.clip_mode} clipping, eps [{p.eps_low:g}, {p.eps_high:g}], |A| {p.advantage:g}, "
             f"tau {p.tau:g}, C+ {p.c_pos:g}, C- {p.c_neg:g}")  # fmt: skip
    _downloads("fig1_gradient_magnitude", png, lambda: _fig1(params, "pdf"), lambda: _fig1_csv(params), "f1")
    st.caption(
        "Same as `python -m workbench.figures fig1 "
        f"--eps-low {p.eps_low:g} --eps-high {p.eps_high:g} --advantage {p.advantage:g} --clip-mode {p.clip_mode} "
        f"--tau {p.tau:g} --c-pos {p.c_pos:g} --c-neg {p.c_neg:g}`"
    )

root, cards = runs_root_and_cards()
readable = [c for c in cards if c.ok and c.steps]
by_name = {c.name: c for c in readable}


def _param_widgets(fig_cli: str, params_cls: type) -> object:
    """One widget per field of a run figure's parameter dataclass (help and choices from the registry)."""
    values = {}
    flds = fields(params_cls)
    cols = st.columns(max(1, len(flds)))
    for col, f in zip(cols, flds, strict=True):
        key, label, help_ = f"{fig_cli}_{f.name}", f.name.replace("_", " "), PARAM_HELP.get(f.name)
        default = f.default
        with col:
            if f.name in PARAM_CHOICES:
                choices = list(PARAM_CHOICES[f.name])
                values[f.name] = st.selectbox(
                    label, choices, index=choices.index(default), key=key, bind="query-params", help=help_
                )
            elif isinstance(default, bool):
                values[f.name] = st.checkbox(label, value=default, key=key, bind="query-params", help=help_)
            elif isinstance(default, int) or (default is None and f.name == "step"):
                values[f.name] = st.number_input(
                    label, min_value=0, value=default, step=1, key=key, bind="query-params", help=help_
                )
            elif isinstance(default, float):
                values[f.name] = st.number_input(
                    label, value=default, key=key, bind="query-params", help=help_, format="%g"
                )
            else:
                values[f.name] = st.text_input(
                    label, value=str(default), key=key, bind="query-params", help=help_
                )
    return params_cls(**values)


@st.cache_resource(max_entries=32, show_spinner="Reading the runs…")
def _run_figure_data(cli: str, dirs: tuple[str, ...], sigs: tuple[int, ...], params: object) -> object:
    """``RUN_FIGURES[cli].data(runs, params)``, cached until a run's steps change (``sigs``)."""
    return RUN_FIGURES[cli].data(list(dirs), params)


@st.cache_resource(max_entries=8, show_spinner="Drawing…")
def _run_figure_drawn(
    cli: str, dirs: tuple[str, ...], sigs: tuple[int, ...], params_key: str, _params: object
) -> tuple[Figure, threading.Lock]:
    """The figure, built once for its PNG and its PDF (a build places legends with full redraws: seconds for
    Fig. 2), closed to pyplot, with the lock its saves take (sessions share it)."""
    import matplotlib.pyplot as plt

    fig = RUN_FIGURES[cli].build(_run_figure_data(cli, dirs, sigs, _params), _params)
    plt.close(fig)  # a closed figure still saves
    return fig, threading.Lock()


@st.cache_data(max_entries=64, show_spinner="Drawing…")
def _run_figure_bytes(
    cli: str, dirs: tuple[str, ...], sigs: tuple[int, ...], params_key: str, _params: object, fmt: str
) -> bytes:
    fig, lock = _run_figure_drawn(cli, dirs, sigs, params_key, _params)
    with lock:
        return _save(fig, fmt)


@st.cache_data(max_entries=16, show_spinner=False)
def _frames_csv(
    cli: str, dirs: tuple[str, ...], sigs: tuple[int, ...], params_key: str, _params: object
) -> bytes:
    """The CSV that ``python -m workbench.figures CLI`` writes for the same runs and parameters."""
    return data.figure_csv(cli, _run_figure_data(cli, dirs, sigs, _params))


def _run_figure_page(cli: str) -> None:
    fig = RUN_FIGURES[cli]
    st.markdown(fig.description)
    if not readable:
        st.info(
            f"No readable runs under {md_code(root)} yet; train the ones this figure needs below, or any run on "
            "the **Train** page.",
            icon=":material/info:",
        )
        bad = [c for c in cards if not c.ok]
        if bad:
            render_cards(bad)
        return
    picked = url.chooser(
        st.multiselect, "Runs (the figure picks the ones it needs by method and hyper-parameters)", by_name,
        default=list(by_name), key=f"pick_{cli}", many=True,
        format_func=lambda n: f"{n} ({by_name[n].label}{', SYNTHETIC' if by_name[n].synthetic else ''})",
    )  # fmt: skip
    if any(by_name[n].synthetic for n in picked):
        st.warning(
            "Some picked runs are SYNTHETIC (workbench.synthetic_run): the figure shows test data, not results."
        )
    with st.expander("Parameters"):
        params = _param_widgets(cli, fig.params)
    if not picked:
        st.caption("Pick runs to draw the figure.")
        return
    dirs = tuple(str(by_name[n].path) for n in picked)
    sigs = tuple(data.run_signature(by_name[n]) for n in picked)
    pkey = repr(params)
    try:
        fdata = _run_figure_data(cli, dirs, sigs, params)
        png = _run_figure_bytes(cli, dirs, sigs, pkey, params, "png")
    except MissingVariantsError as e:
        st.info(
            f"Not enough runs for this figure yet. {md_escape(e)}\n\nTrain them below (**Train the missing runs**).",
            icon=":material/hourglass_empty:",
        )
        return
    except RunFormatError as e:
        st.error(f"A picked run cannot be read: {md_literal(e)}", icon=":material/error:")
        return
    except ValueError as e:
        st.warning(md_escape(e), icon=":material/warning:")
        return
    if cli == "table4":
        st.markdown(table4_markdown(fdata))  # type: ignore[arg-type]  # the table itself; the PNG downloads
    else:
        st.image(png)  # the caption is drawn under the figure
    _downloads(
        fig.name,
        png,
        lambda: _run_figure_bytes(cli, dirs, sigs, pkey, params, "pdf"),
        lambda: _frames_csv(cli, dirs, sigs, pkey, params),
        cli,
    )
    runs_arg = root if len(picked) == len(by_name) else " ".join(dirs)
    st.caption(f"Same as {md_code(f'python -m workbench.figures {cli} --runs {runs_arg}')}")


if choice != "fig1":
    _run_figure_page(choice)
    figure_runs.render(choice, Path(root))  # the pipeline's plan for this figure, and a button that trains it
