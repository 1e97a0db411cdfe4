"""Binary reward for verl runs of the workbench: 1 if the last ``\\boxed{}`` answer equals the gold answer, else 0.

verl loads it by path (``reward.custom_reward_function.path``). The REAL family needs rewards in {0, 1}; verl's
``math_dapo`` scorer gives -1/1, so the launch config points here. The comparison is verl's own
``math_reward.compute_score`` (string normalisation of the MATH benchmark; no timeouts needed, it cannot hang).
"""

from __future__ import annotations

from typing import Any

from verl.utils.reward_score import math_reward


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> float:
    """``1.0`` when the response's last boxed answer matches ``ground_truth``, else ``0.0``."""
    return 1.0 if math_reward.compute_score(solution_str, str(ground_truth)) >= 1.0 else 0.0
