"""Shared fixtures: random rollout batches with unequal, shuffled prompt groups; one grader pool and one warm
start of the training tests' scaled-down configuration for the whole session."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

_CACHE_DIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """The app's disk cache (``app_lib.metrics_cache``) goes to a folder of this session, removed at its end, not
    to the user's ``~/.cache`` (the app tests' servers inherit the variable)."""
    from app_lib.metrics_cache import ENV_VAR

    global _CACHE_DIR
    if ENV_VAR not in os.environ:
        _CACHE_DIR = tempfile.mkdtemp(prefix="real-workbench-cache-")
        os.environ[ENV_VAR] = _CACHE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    from app_lib.metrics_cache import ENV_VAR

    if _CACHE_DIR is not None:
        os.environ.pop(ENV_VAR, None)
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@dataclass
class Batch:
    logp: torch.Tensor
    old_logp: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    group_ids: torch.Tensor
    ref_logp: torch.Tensor

    def args(self):
        return self.logp, self.old_logp, self.mask, self.rewards, self.group_ids


def random_batch(
    seed: int,
    sizes=(4, 3, 5, 1, 2, 6),
    max_len: int = 11,
    s_scale: float = 0.2,
    dtype=torch.float64,
    shuffle: bool = True,
) -> Batch:
    """Groups of the given sizes, random binary rewards (each group of >= 2 mixes labels where possible),
    response lengths 1..max_len, log-ratios of scale ``s_scale`` and NaN garbage on padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.full((n,), 100 + 7 * i) for i, n in enumerate(sizes)])
    rewards = torch.cat([torch.randint(0, 2, (n,), generator=g) for n in sizes]).to(dtype)
    b = len(ids)
    lengths = torch.randint(1, max_len + 1, (b,), generator=g)
    mask = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)
    old = -torch.rand(b, max_len, generator=g, dtype=dtype) * 4
    logp = old + s_scale * torch.randn(b, max_len, generator=g, dtype=dtype)
    ref = old + 0.1 * torch.randn(b, max_len, generator=g, dtype=dtype)
    nan = torch.tensor(float("nan"), dtype=dtype)
    logp, old, ref = (torch.where(mask, x, nan) for x in (logp, old, ref))
    if shuffle:
        perm = torch.randperm(b, generator=g)
        ids, rewards, mask, old, logp, ref = (x[perm] for x in (ids, rewards, mask, old, logp, ref))
    return Batch(logp.clone().requires_grad_(True), old, mask, rewards, ids, ref)


@pytest.fixture
def batch() -> Batch:
    return random_batch(0)


@pytest.fixture(scope="session")
def grader():
    """One grader pool (one worker) for the session."""
    from training.rewards import Grader

    with Grader(workers=1, timeout=5.0) as g:
        yield g


@pytest.fixture(scope="session")
def ws_cache(tmp_path_factory, grader) -> Path:
    """A cache holding the warm start of the training tests' scaled-down configuration (``tests/training``'s
    ``SMALL``), trained once per session for every test folder (one torch thread, as the trainer; its weights
    depend on the thread count); ``REAL_WARMSTART_CACHE`` names an existing cache to reuse instead."""
    from tests.training.conftest import small_config
    from training.task import make_splits
    from training.warmstart import load_or_train

    cache = Path(os.environ.get("REAL_WARMSTART_CACHE") or tmp_path_factory.mktemp("cache"))
    cfg = small_config("real", cache)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, _, info = load_or_train(cfg, make_splits(cfg.task_spec()), grader, log=lambda _: None)
    finally:
        torch.set_num_threads(before)
    assert info["pass_rate"] > 0.1, info  # the warm start learned the task: groups mix right and wrong
    return cache
