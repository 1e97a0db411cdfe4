"""The pipeline's end-to-end test reuses the training tests' scaled-down configuration and its warm start."""

import pytest
import torch

from tests.training.conftest import grader, ws_cache  # noqa: F401 (fixtures)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The warm start of ``ws_cache`` runs in this process: one thread, as the trainer (two threads on these
    2 shared cores made it several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
