"""The warm-start cache is verified on load: a damaged cache (noise weights, a truncated or missing file, an
unreadable record) is named in one line and rebuilt; temporary folders of dead writers are removed."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from tests.training.conftest import small_config
from training.task import make_splits
from training.warmstart import DIGESTS, cache_problem, load_or_train, warmstart_key


@pytest.fixture
def cache(ws_cache, tmp_path):
    """A private copy of the session's warm-start cache (intact, with its digests recorded)."""
    dst = tmp_path / "cache"
    shutil.copytree(ws_cache, dst)
    return dst


def _folder(cache):
    return cache / "warmstart" / warmstart_key(small_config("real", cache))


def _noise(path):
    import torch

    state = load_file(path)
    save_file({k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}, path)


def test_damage_is_named(cache):
    folder = _folder(cache)
    assert cache_problem(folder) is None
    assert DIGESTS in json.loads((folder / "warmstart.json").read_text())
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    _noise(weights)  # finite noise of the same shapes: loads fine, trains to nothing
    assert "model.safetensors does not match the digest" in cache_problem(folder)
    weights.write_bytes(original[: len(original) // 2])
    assert "does not match" in cache_problem(folder)
    weights.unlink()
    assert cache_problem(folder) == "model.safetensors is missing"
    (folder / "warmstart.json").write_text("{not json")
    assert "warmstart.json is unreadable" in cache_problem(folder)


@pytest.mark.slow  # retrains the warm start (about a minute)
def test_noise_weights_are_rebuilt_and_stale_temporaries_removed(cache, grader):
    cfg = small_config("real", cache)
    folder = _folder(cache)
    _noise(folder / "model.safetensors")
    stale = folder.parent / f".tmp-{folder.name}-999999999"  # no such pid
    stale.mkdir()
    lines: list[str] = []
    _, _, info = load_or_train(cfg, make_splits(cfg.task_spec()), grader, log=lines.append)
    assert any("is damaged (model.safetensors does not match" in line for line in lines), lines
    assert not stale.exists()
    assert cache_problem(folder) is None and info["pass_rate"] > 0.1
    assert info["pass_rate_source"] == "measured when the cache was written"


def test_a_cache_written_before_digests_gets_them(cache, grader):
    cfg = small_config("real", cache)
    folder = _folder(cache)
    record = json.loads((folder / "warmstart.json").read_text())
    del record[DIGESTS]
    (folder / "warmstart.json").write_text(json.dumps(record))
    lines: list[str] = []
    load_or_train(cfg, make_splits(cfg.task_spec()), grader, log=lines.append)
    assert any("recorded the file digests" in line for line in lines) and cache_problem(folder) is None
    assert DIGESTS in json.loads((folder / "warmstart.json").read_text())
