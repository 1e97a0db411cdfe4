"""Binary reward for verl runs of the workbench: 1 if the response's answer equals the gold answer, else 0.

verl loads it by path (``reward.custom_reward_function.path``). The REAL family needs rewards in {0, 1}; verl's
``math_dapo`` scorer gives -1/1, so the launch config points here. With ``grader`` (a ``GraderConfig.to_dict()``,
``{}`` for the paper's grader; passed through ``reward.custom_reward_function.reward_kwargs.grader``) the verdict
is the workbench's own grader (``training.rewards.grade``: math-verify, the same settings as ``train``, ``eval``
and ``check-data``); without it, verl's ``math_reward.compute_score`` (string normalisation of the MATH benchmark).
"""

from __future__ import annotations

from typing import Any

from verl.utils.reward_score import math_reward


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    grader: dict[str, Any] | None = None,
    **kwargs: Any,
) -> float:
    """``1.0`` when the response's answer matches ``ground_truth`` (the workbench grader with settings ``grader``,
    or verl's ``math_reward`` when ``grader`` is None), else ``0.0``."""
    if grader is not None:
        from training.grader_config import GraderConfig
        from training.rewards import grade

        return grade([solution_str], [str(ground_truth)], config=GraderConfig.from_dict(dict(grader)))[0]
    return 1.0 if math_reward.compute_score(solution_str, str(ground_truth)) >= 1.0 else 0.0
