"""The pipeline's end-to-end test reuses the training tests' scaled-down configuration and the session's warm start
(``ws_cache``, tests/conftest.py)."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The pipeline's in-process work runs at one thread, as the trainer (two threads on these 2 shared cores
    made it several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
