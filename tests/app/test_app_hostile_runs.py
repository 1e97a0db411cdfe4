"""Run files are data, never markup (issue 13, item 4): every string the app reads from a run folder (folder and run
names, method, config values, status, errors, skipped-row messages, prompts, answers, tokens) reaches the page as
text. Markdown rendering is checked with markdown-it (CommonMark with raw HTML, tables and strikethrough, every link
allowed: stricter than Streamlit's renderer); the real browser check is in test_app_browser.py."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_lib.ui import _MD_SPECIAL, WORD_JOINER, md_code, md_escape, md_literal
from app_lib.urlstate import COPY_LINK_HTML
from tests.app.conftest import ALL_PAYLOADS, APP, BAD_DIR_PAYLOAD, DIR_PAYLOAD, PAYLOADS, STEP_DIR_PAYLOAD

MORE = {
    "entities": "&lt;iframe id=pwned-entity&gt; &amp; &#60;b&#62;",
    "directive": ":red[coloured] :material/warning: :smile:",
    "math": "$x^2$ and $$\\int f$$",
    "setext": "title\n===\nsub\n---",
    "code": "`code` ``two`` ```fence```",
    "lists": "1. one\n- two\n> quote\n    indented",
    "table": "| a | b |\n|---|---|\n| 1 | 2 |",
    "autolink": "<http://127.0.0.1:9/auto> www.example.invalid _www.x.invalid HTTPS://127.0.0.1:9/a a@b.invalid",
    "script": "<script id=pwned-script>alert(1)</script>",
    "crlf": "a\r\nb\rc",
    "backslash": "\\*not escaped\\* \\\\",
}
CASES = {
    **PAYLOADS, **MORE, "all": ALL_PAYLOADS, "dir": DIR_PAYLOAD, "bad_dir": BAD_DIR_PAYLOAD, "step_dir": STEP_DIR_PAYLOAD,
}  # fmt: skip
# What the app's own Markdown uses (bold names, emphasis, code, bullet lists, the run card's colour span).
ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "span", "ul", "li"}
# What Streamlit's GFM links in a text node after escapes are resolved (mdast-util-gfm-autolink-literal).
GFM_AUTOLINK = re.compile(r"(https?://|www(?=\.))|[-.\w+]+@[-\w]+(\.[-\w]+)+", re.IGNORECASE)


def _markdown():
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True  # show every link and image it would make, javascript: included
    return md


class _Tags(HTMLParser):
    """Tags, their attributes and the text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.prose: list[str] = []  # text outside code spans: what Streamlit's GFM autolinks
        self.open: list[str] = []
        self.marked: list[tuple[str, str]] = []  # (tag, text) of strong, em, h1-h6

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("br", "input", "img"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if "code" not in self.open:
            self.prose.append(data)
        for tag in self.open:
            if tag in ("strong", "em", "h1", "h2", "h3", "h4", "h5", "h6", "del", "a"):
                self.marked.append((tag, data))


def _parse(fragment: str) -> _Tags:
    p = _Tags()
    p.feed(fragment)
    p.close()
    return p


def problems(rendered: str, *, allowed: set[str] = ALLOWED_TAGS) -> list[str]:
    """What a payload made of ``rendered`` HTML: tags outside ``allowed``, ids, links or sources, payload words
    turned into emphasis or a heading, and URLs or addresses in text that Streamlit's GFM would make links."""
    p = _parse(rendered)
    found = [f"<{t}>" for t, _ in p.tags if t not in allowed]
    found += [f"<{t} {k}={v!r}>" for t, a in p.tags for k, v in a.items() if k in ("id", "src", "href")]
    payload_words = {"bold", "it", "heading", "click", "coloured", "title", "sub", "b", "x"}
    found += [f"<{t}>{d}" for t, d in p.marked if d.strip() in payload_words]
    found += [f"autolink {m.group(0)!r}" for m in GFM_AUTOLINK.finditer(" ".join(p.prose))]
    return found


def plain_text(rendered: str) -> str:
    """The text a reader sees (the invisible word joiners md_escape adds left out)."""
    return " ".join("".join(_parse(rendered).text).replace(WORD_JOINER, "").split())


# ----------------------------------------------------------------------------------------------- the helpers


@pytest.mark.parametrize("name", list(CASES))
def test_md_escape_leaves_no_active_character(name: str) -> None:
    """Every Markdown/HTML character comes out backslash-escaped; line breaks become hard breaks."""
    out = md_escape(CASES[name])
    i = 0
    while i < len(out):
        if out[i] == "\\":
            assert i + 1 < len(out) and out[i + 1] in _MD_SPECIAL, (name, out[i : i + 2])
            i += 2
            continue
        assert out[i] not in _MD_SPECIAL and out[i] != "\r", (name, out[i], out)
        i += 1
    assert "\n" not in out.replace("  \n", "")
    assert set("\\`*_[]()<>!#|~$&=:") <= _MD_SPECIAL


@pytest.mark.parametrize("name", list(CASES))
def test_md_escape_renders_as_the_literal_text(name: str) -> None:
    md = _markdown()
    text = CASES[name]
    rendered = md.render(md_escape(text))
    assert not problems(rendered, allowed={"p", "br"}), (name, rendered)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    assert plain_text(rendered) == " ".join(" ".join(lines).split()), (name, rendered)
    # inside the run card's colour span too (st.markdown with unsafe_allow_html)
    card = md.render(f"**{md_escape(text)}** &nbsp; <span style='color:#555'>{md_escape(text)}</span>")
    tags = [(t, a) for t, a in _parse(card).tags if t != "br"]
    # the card's own bold name and colour span, nothing else
    assert tags == [("p", {}), ("strong", {}), ("span", {"style": "color:#555"})], (name, card)


@pytest.mark.parametrize("name", list(CASES))
def test_md_literal_renders_as_the_literal_text(name: str) -> None:
    """Messages (errors naming files, skipped rows, status.json's error): code spans, one per line."""
    md = _markdown()
    text = CASES[name]
    rendered = md.render(f"**run**: {md_literal(text)}")
    assert not problems(rendered, allowed={"p", "br", "strong", "code"}), (name, rendered)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    assert plain_text(rendered) == " ".join(("run: " + " ".join(lines)).split()), (name, rendered)
    for line in lines:  # the message is in the Markdown source verbatim (what a test of the app can look for)
        assert line in md_literal(text)


@pytest.mark.parametrize(
    "text", ["plain", "a`b", "``x``", "`", "run ` ![x](http://127.0.0.1:9/p.png) `", "a\nb"]
)
def test_md_code_cannot_be_closed_from_inside(text: str) -> None:
    md = _markdown()
    rendered = md.render(f"Same as {md_code(text)}.")
    p = _parse(rendered)
    assert [t for t, _ in p.tags] == ["p", "code"], rendered
    assert " ".join(text.split("\n")) in html.unescape(rendered), rendered


# ----------------------------------------------------------------------------------------------- the pages


def open_page(root: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setenv("REAL_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _field(proto: object, name: str) -> str | None:
    fields = getattr(getattr(proto, "DESCRIPTOR", None), "fields", ())
    value = getattr(proto, name, None) if name in [f.name for f in fields] else None
    return value if isinstance(value, str) and value else None


def shown(at: AppTest) -> tuple[list[tuple[str, str]], list[str]]:
    """Every string of the page that Streamlit renders as Markdown (bodies of markdown, captions, alerts, headings;
    labels and help of widgets, metrics, expanders and tabs), as (element type, markdown), and st.html bodies."""
    markdown, raw = [], []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", "?")
        if kind == "html":
            if (
                node.value.strip() != COPY_LINK_HTML.strip()
            ):  # the sidebar's "copy link" button: a constant, no run data in it
                raw.append(node.value)
            continue
        for name in ("body", "label", "help"):
            if (value := _field(proto, name)) is not None:
                markdown.append((kind, value))
        if kind in ("expandable", "tab") and getattr(node, "label", None):
            markdown.append((kind, node.label))
    return markdown, raw


def assert_inert(at: AppTest, must_show: list[str]) -> None:
    md = _markdown()
    markdown, raw = shown(at)
    bad = [(kind, src[:160], found) for kind, src in markdown if (found := problems(md.render(src)))]
    for body in raw:  # st.html: the inspector's tokens and legend, built from html.escape'd text
        p = _parse(body)
        bad += [
            ("html", t, a) for t, a in p.tags if t not in ("div", "span") or {"id", "src", "href"} & set(a)
        ]
    assert not bad, bad
    text = " ".join(plain_text(md.render(src)) for _, src in markdown)
    text += " " + " ".join(plain_text(body) for body in raw)
    missing = [s for s in must_show if " ".join(s.split()) not in text]
    assert not missing, f"not shown literally: {missing}"


def test_runs_page_shows_run_files_as_text(hostile_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(hostile_root, monkeypatch, "runs")
    assert_inert(at, [*PAYLOADS.values(), DIR_PAYLOAD, BAD_DIR_PAYLOAD, STEP_DIR_PAYLOAD])
    card = [m.value for m in at.markdown if m.value.startswith("**unknown\\-method**")]
    assert len(card) == 1 and card[0].endswith("(unknown method)</span>"), card  # named as unknown, in grey
    assert "color:#555" in card[0]


def test_inspector_names_an_unreadable_step_as_text(
    hostile_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(hostile_root, monkeypatch, "inspector")
    assert at.selectbox(key="insp_run").value == STEP_DIR_PAYLOAD
    assert any("cannot be read" in e.value for e in at.error)
    assert_inert(at, [STEP_DIR_PAYLOAD])


@pytest.mark.parametrize("run", [DIR_PAYLOAD, "unknown-method"])
def test_inspector_shows_run_files_as_text(
    run: str, hostile_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(hostile_root, monkeypatch, "inspector")
    at.selectbox(key="insp_run").set_value(run).run()
    assert not at.exception, [e.value for e in at.exception]
    # the prompt and answer (markdown) and the tokens (st.html) are payloads in the first run
    assert_inert(at, [PAYLOADS["image"], PAYLOADS["iframe"]] if run == DIR_PAYLOAD else [])
    if run == DIR_PAYLOAD:
        tokens = " ".join(plain_text(b) for b in shown(at)[1])
        assert PAYLOADS["form"] in tokens and PAYLOADS["div"] in tokens


@pytest.mark.parametrize("figure", ["fig4", "table4"])
def test_paper_figures_show_run_files_as_text(
    figure: str, hostile_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(hostile_root, monkeypatch, "paper_figures")
    at.segmented_control(key="fig_pick").set_value(figure).run()
    assert not at.exception, [e.value for e in at.exception]
    # all runs picked: the unknown method is refused, the message quotes it
    assert_inert(at, [PAYLOADS["div"] + PAYLOADS["iframe"] + PAYLOADS["form"] + PAYLOADS["image"]])
    at.multiselect(key=f"pick_{figure}").set_value([DIR_PAYLOAD]).run()
    assert not at.exception, [e.value for e in at.exception]
    # one REAL run: the figure lacks variants and lists the runs it has by run.json's name
    assert_inert(at, [PAYLOADS["iframe"] + " " + PAYLOADS["emphasis"]])
    at.multiselect(key=f"pick_{figure}").set_value(["unknown-method"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert_inert(at, [])


def test_train_page_shows_job_records_as_text(hostile_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(hostile_root, monkeypatch, "train")
    assert_inert(at, [ALL_PAYLOADS])
