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


# The address bar always holds the view (every choice is in the query string), so the link is read in the browser
# at the moment of the click: a server-side copy would miss a value the browser changed since the last run.
COPY_LINK_HTML = """
<div class="real-copy-link" style="margin:0.25rem 0 0.5rem 0">
  <button type="button" title="Put the address of this view (page, runs, step, every setting) on the clipboard"
    style="font:inherit;font-size:0.85rem;color:inherit;background:transparent;cursor:pointer;
           border:1px solid rgba(128,128,128,0.55);border-radius:6px;padding:0.2rem 0.6rem">
    Copy link to this view</button>
  <input type="text" readonly aria-label="link to this view" class="real-copy-url"
    style="display:none;width:100%;margin-top:0.35rem;font-size:0.75rem;color:inherit;background:transparent;
           border:1px solid rgba(128,128,128,0.55);border-radius:4px;padding:0.15rem 0.3rem">
  <div class="real-copy-note" style="font-size:0.75rem;opacity:0.75;margin-top:0.2rem"></div>
</div>
<script>
for (const box of document.querySelectorAll(".real-copy-link:not([data-bound])")) {
  box.dataset.bound = "1";
  const button = box.querySelector("button");
  const field = box.querySelector("input");
  const note = box.querySelector(".real-copy-note");
  button.addEventListener("click", async () => {
    const href = window.location.href;
    field.value = href;
    field.style.display = "block";
    field.focus();
    field.select();
    try {
      await navigator.clipboard.writeText(href);
      note.textContent = "Copied. The address bar holds the same link.";
    } catch (err) {
      note.textContent = "Selected: press Ctrl+C (Cmd+C) to copy it.";
    }
  });
}
</script>
"""


def copy_link() -> None:
    """A "Copy link to this view" button: a click puts the page's current address (path and query string) on the
    clipboard and shows it, selected, for copying by hand where the browser allows no clipboard access (a page
    served over plain http from another machine)."""
    st.html(COPY_LINK_HTML, unsafe_allow_javascript=True)
