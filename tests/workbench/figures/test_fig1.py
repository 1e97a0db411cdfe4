"""Fig. 1 command: files written, parameters honoured, bad flags refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from workbench.figures.__main__ import main
from workbench.figures.fig1 import Fig1Params, curves


def test_fig1_writes_png_pdf_and_sidecar(tmp_path):
    assert main(["fig1", "--tau", "1.0", "--c-pos", "2", "--out-dir", str(tmp_path)]) == 0
    png, pdf, meta = (tmp_path / f"fig1_gradient_magnitude.{e}" for e in ("png", "pdf", "json"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert pdf.read_bytes()[:5] == b"%PDF-"
    sidecar = json.loads(meta.read_text())
    assert sidecar["parameters"]["tau"] == 1.0 and sidecar["parameters"]["c_pos"] == 2.0
    assert "--tau 1.0" in sidecar["command"]


def test_fig1_curves_follow_the_parameters():
    c = curves(Fig1Params(tau=0.25))
    assert (
        c["real_pos"].max() <= 4.0 and c["real_pos"].max() > 3.0
    )  # bound 1/tau = 4, nearly reached at s = -2
    assert (np.diff(c["real_pos"]) < 0).all() and (np.diff(c["real_neg"]) > 0).all()
    clipped = c["s"] > np.log(1.2)
    assert (c["grpo_pos"][clipped] == 0).all() and (c["grpo_pos"][~clipped] > 0).all()
    assert c["grpo_neg"][-1] == pytest.approx(np.exp(2.0))


@pytest.mark.parametrize(
    "bad", [["--tau", "0"], ["--s-min", "3"], ["--eps-low", "1.5"], ["--clip-mode", "up"]]
)
def test_fig1_bad_flags_fail_with_a_message(bad, tmp_path):
    out = subprocess.run([sys.executable, "-m", "workbench.figures", "fig1", *bad, "--out-dir", str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2
    assert "error:" in out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())


def test_fig1_help_names_every_flag():
    out = subprocess.run(
        [sys.executable, "-m", "workbench.figures", "fig1", "--help"], capture_output=True, text=True
    )
    for flag in (
        "--eps-low",
        "--eps-high",
        "--advantage",
        "--tau",
        "--c-pos",
        "--c-neg",
        "--clip-mode",
        "--out-dir",
    ):
        assert flag in out.stdout
