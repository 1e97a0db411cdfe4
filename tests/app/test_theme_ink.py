"""Text drawn inside a chart keeps WCAG AA contrast (4.5:1) on the page's theme, light or dark."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import app_lib.ui as ui

BACKGROUNDS = {"light": "#ffffff", "dark": "#0e1117"}  # Streamlit's two base themes


def contrast(a: str, b: str) -> float:
    def lum(h: str) -> float:
        c = [int(h[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        c = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("theme", ["light", "dark", None])
def test_on_theme_picks_the_colour_of_the_reported_theme(theme, monkeypatch):
    monkeypatch.setattr(ui.st, "context", SimpleNamespace(theme=SimpleNamespace(type=theme)))
    assert ui.on_theme("#111111", "#eeeeee") == ("#eeeeee" if theme == "dark" else "#111111")


def test_the_real_bound_label_is_readable_on_both_themes():
    light, dark = ui.BOUND_INK
    assert contrast(light, BACKGROUNDS["light"]) >= 4.5
    assert contrast(dark, BACKGROUNDS["dark"]) >= 4.5
    assert (
        contrast(light, BACKGROUNDS["dark"]) < 4.5
    )  # why one colour does not do: the old label in dark mode
