"""The study's tests reuse the training tests' scaled-down configuration and its warm start."""

from tests.training.conftest import grader, ws_cache  # noqa: F401 (fixtures)
from tests.training.pipeline.conftest import one_torch_thread  # noqa: F401 (fixture)
