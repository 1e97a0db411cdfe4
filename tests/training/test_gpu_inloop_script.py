"""``scripts/gpu_inloop_sampling.py`` (the GPU check of in-loop sampling against the sampler alone) runs end to end
on the CPU with tiny sizes and writes every number its verdict rests on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_inloop_sampling  # noqa: E402


def test_the_in_loop_sampling_check_runs_on_cpu(tmp_path, capsys):
    assert gpu_inloop_sampling.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "gpu_inloop_sampling.json").read_text())
    names = {"standalone, bf16 (generic loop)", "standalone, float32 (lean decoder)", "in trainer, bf16 (as trained)",
             "in trainer, Trainer.step's own sampling", "in trainer, 1 torch thread",
             "in trainer, cpu_count torch threads", "in trainer, gradient checkpointing off",
             "in trainer, float32 (lean decoder)", "in trainer, grader workers closed"}  # fmt: skip
    assert set(rec["ms_per_step"]) == names and all(v > 0 for v in rec["ms_per_step"].values())
    assert all(1 <= r["decode_steps"] <= 6 for r in rec["runs"].values())
    assert rec["trainer_threads"] == 1 and rec["device"] == "cpu"  # the trainer's CPU setting: 1 thread
    step = rec["runs"]["in trainer, Trainer.step's own sampling"]
    assert rec["ratio_in_loop_vs_standalone"] == round(step["ms_per_step"] / rec["ms_per_step"][
        "standalone, bf16 (generic loop)"], 3)  # fmt: skip
    for prof in rec["profiles"].values():
        assert prof["cpu_ms_per_step"] > 0 and prof["ops_per_step"] > 10 and prof["top_self_cpu"]
    assert "helps most" in rec["verdict"] and "profile of one call, in trainer" in capsys.readouterr().out
