"""``scripts/gpu_check.py`` runs end to end on its CPU fallback (the GPU run itself needs a CUDA machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.training.conftest import ROOT


def test_gpu_check_cpu_fallback(shared_data, tmp_path):
    out = tmp_path / "gc"
    env = {**os.environ, "REAL_DATA_DIR": str(shared_data), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", "--device", "cpu", "--steps", "2", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    chunks = summary["logprob_chunks"]
    assert chunks["max_abs_diff_logp"] < 1e-3 and chunks["max_rel_diff_grad"] < 1e-2
    assert [s["step"] for s in summary["train"]["per_step"]] == [1, 2]
    assert all(s["tokens_per_s"] > 0 for s in summary["train"]["per_step"])
    assert summary["eval"]["questions"] == 4 and (out / "eval" / "results.md").is_file()
    assert "1. log-probs" in r.stdout and "2. training steps" in r.stdout and "3. evaluation" in r.stdout
