"""Rewards by the names configs use: ``reward.functions: {math: 1.0}`` looks ``math`` up here."""

from __future__ import annotations

from typing import Any

from .base import RewardFunction
from .exact import exact_match
from .formatting import format_reward, overlong_penalty
from .math_reward import math_accuracy
from .sql import sql_execution

__all__ = ["REWARDS", "get_reward"]

REWARDS: dict[str, RewardFunction] = {
    "math": math_accuracy,
    "exact": exact_match,
    "format": format_reward,
    "sql": sql_execution,
    "overlong": overlong_penalty,
}
"""Rewards by the names configs use."""


def get_reward(name: str, **options: Any) -> RewardFunction:
    """The reward registered as ``name`` in :data:`REWARDS`, configured with ``options``.

    >>> get_reward("math", timeout_s=2.0).options.timeout_s
    2.0
    """
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; known rewards: {sorted(REWARDS)}")
    return REWARDS[name].configure(**options) if options else REWARDS[name]
