"""The study's tests reuse the training tests' scaled-down configuration and the session's warm start."""

from tests.training.pipeline.conftest import one_torch_thread  # noqa: F401 (fixture)
