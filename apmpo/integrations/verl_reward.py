"""verl custom reward function backed by ``apmpo.rewards.math_accuracy`` (binary 0/1, as the paper).

verl loads this file by path (``reward.custom_reward_function.path``, ``name=compute_score``)
in its reward workers and calls it once per response. The check runs in apmpo's bounded,
sandboxed worker pool: model output is never executed. It does not import verl.

Departure: verl needs a float, so a completion the reward cannot score (``None``: e.g.
an empty gold answer) gets 0.0 here; the reason stays available through
``math_accuracy.score_items``.
"""

from __future__ import annotations

from typing import Any

from apmpo.rewards import math_accuracy, score_value

__all__ = ["compute_score"]


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **_: Any
) -> float:
    """1.0 when ``solution_str``'s final answer is equivalent to ``ground_truth``, else 0.0.

    ``data_source`` and ``extra_info`` are accepted for verl's signature; every math
    benchmark is scored the same way, so validation reports Pass@1 per data source.
    """
    if not isinstance(solution_str, str):
        raise TypeError(f"solution_str: expected the decoded response text, got {type(solution_str).__name__}")
    score = math_accuracy([solution_str], answer=[str(ground_truth)])[0]
    return score_value(score)
