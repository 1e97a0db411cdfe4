"""``--model`` takes a Hugging Face Hub id, resolved through the Hugging Face cache; offline it reads the cache.

The cache is laid out as ``huggingface_hub`` leaves a download (``models--<owner>--<name>/blobs``, ``refs/main``,
``snapshots/<commit>/`` linking to the blobs), holding a tiny model built from a config: no network anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import ROOT
from training.model import model_name, resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root: Path, repo: str, model_dir: Path) -> Path:
    """``root`` as a Hugging Face cache holding ``model_dir``'s files as revision ``COMMIT`` of ``repo``."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    for f in model_dir.iterdir():
        blob = repo_dir / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(f.read_bytes())
        (snapshot / f.name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    return root


@pytest.fixture(scope="module")
def hub_cache(chat_model, tmp_path_factory) -> Path:
    return _hub_cache(tmp_path_factory.mktemp("hf_hub"), "me/tinychat", chat_model)


def _offline(args: list[str], hub_cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_folders_resolve_as_they_are_and_bad_names_fail_with_one_line(chat_model, tmp_path):
    assert resolve_model(chat_model) == chat_model and model_name(chat_model) == "tinychat"
    assert (
        model_name("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B:revision=main")
        == "DeepSeek-R1-Distill-Qwen-1.5B"
    )
    with pytest.raises(ValueError, match=r"not a local model folder \(no config\.json there\)"):
        resolve_model(tmp_path)
    with pytest.raises(ValueError, match=r"no such folder \(nor a Hugging Face Hub id"):
        resolve_model("runs/x/checkpoints/step_000010")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        resolve_model(tmp_path / "file.txt")


def test_eval_takes_a_hub_id_offline_from_the_cache(hub_cache, tmp_path):
    out = tmp_path / "ev"
    r = _offline(["-m", "training", "eval", "--model", "me/tinychat", "--benchmarks", "aime",
                  "--limit", "2", "--k", "1", "--max-new-tokens", "3", "--out", str(out), "--no-progress",
                  "--paper-tables", "none"], hub_cache, tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "| tinychat |" in (out / "results.md").read_text()  # the row is named after the Hub id
    settings = json.loads((out / "eval.json").read_text())
    assert settings["model"].endswith(f"models--me--tinychat/snapshots/{COMMIT}")  # the cached revision

    r = _offline(["-m", "training", "eval", "--model", "me/absent", "--out", str(tmp_path / "o")],
                 hub_cache, tmp_path)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: --model me/absent: not a local folder, not in the Hugging Face cache ({hub_cache}) and the Hub "
        "cannot be reached (HF_HUB_OFFLINE is set); download it once with network, or pass a local folder"
    ]


def test_the_cached_model_is_the_saved_one(hub_cache, chat_model, tmp_path):
    script = f"""
import torch
from training.model import load_local_model
ids = torch.tensor([[5, 9, 11, 3, 7]])
a, _ = load_local_model({str(chat_model)!r}, torch.float32, torch.device("cpu"))
b, tok = load_local_model("me/tinychat:revision={COMMIT}", torch.float32, torch.device("cpu"))
print("SAME", torch.equal(a(ids).logits, b(ids).logits), len(tok))
"""
    r = _offline(["-c", script], hub_cache, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "SAME True" in r.stdout, r.stdout
