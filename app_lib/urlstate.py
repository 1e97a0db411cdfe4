"""A page's view in its URL, for the choosers whose options are shown through a label.

Most widgets of the app keep their value in the query string with Streamlit's own ``bind="query-params"`` (the
widget's key is the parameter). Streamlit writes a chooser with a ``format_func`` by its label, e.g. a prompt
group as "group 2 · 3/6 correct · in the loss · What is ...": a link would break as soon as a label changes. The
run, group, rollout, method and figure choosers therefore go through ``chooser``: the query parameter ``key``
holds the option itself (``?insp_run=real-s0&insp_group=2``), is read when the page opens, and is written back
on every run.

A value that does not parse or is not an option is ignored (the chooser opens on its default), so a link to a
run that is gone still opens the page. ``opened`` drops these parameters when the user moves to another page
(Streamlit drops the bound ones itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

_RESTORED = "_url_restored"  # session state: chooser keys already restored since the page was opened
_PAGE = "_url_page"  # session state: the page of the last run
_WRITTEN = "_url_written"  # session state: the parameters ``chooser`` wrote


def opened(page: str) -> None:
    """Call on every run with the page shown. On a move from another page, the choosers' parameters of that page
    are dropped and the new page's choosers may be restored from the URL again."""
    last = st.session_state.get(_PAGE)
    if last == page:
        return
    if last:  # "" is the root URL, which hands its query string on to /curves
        for param in st.session_state.get(_WRITTEN, ()):
            st.query_params.pop(param, None)
    st.session_state[_PAGE] = page
    st.session_state[_RESTORED] = set()
    st.session_state[_WRITTEN] = set()


def _restore(key: str, options: Sequence[Any], parse: Callable[[str], Any], many: bool) -> bool:
    """Whether the chooser's value was taken from the URL."""
    done = set(st.session_state.get(_RESTORED, ()))
    if key in done:
        return False
    # once per page opening: later the chooser's state is the user's (a reset by the page means its default)
    st.session_state[_RESTORED] = done | {key}
    if key in st.session_state or key not in st.query_params:
        return False
    try:
        if many:
            value: Any = [parse(v) for v in st.query_params.get_all(key)]
            ok = all(v in options for v in value)
        else:
            value = parse(st.query_params[key])
            ok = value in options
    except (ValueError, TypeError):
        return False
    if ok:
        st.session_state[key] = value
    return ok


def chooser(
    widget: Callable[..., Any],
    label: str,
    options: Sequence[Any],
    *,
    key: str,
    parse: Callable[[str], Any] = str,
    many: bool = False,
    **kwargs: Any,
) -> Any:
    """``widget(label, options, key=key, **kwargs)`` (a selectbox, radio, multiselect, pills or segmented
    control; ``many``: a multiple choice) whose choice is kept in query parameter ``key``; returns the choice."""
    options = list(options)
    if _restore(key, options, parse, many):  # the URL's value, not the default
        kwargs.pop("default", None)
        kwargs.pop("index", None)
    value = widget(label, options, key=key, **kwargs)
    if value is None or (many and not value):
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = [str(v) for v in value] if many else str(value)
    st.session_state[_WRITTEN] = set(st.session_state.get(_WRITTEN, ())) | {key}
    return value
