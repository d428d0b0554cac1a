"""Weighted composition of rewards, keeping every part's score and reason.

``combine(math_accuracy, (format_reward, 0.1), ("overlong", 1.0), name="reward")``
returns a :class:`RewardFunction` whose score is ``sum_k w_k * s_k`` over the parts
that apply to the item (a part scoring None is skipped, as TRL's ``nansum`` does; the
total is None only when no part applies). ``score_items`` gives, per item, a
:class:`RewardResult` whose ``components`` map each part's name to its own result, so
a trainer can log every part. A part may be a :class:`RewardFunction`, a name from the
:data:`REWARDS` registry, or any TRL-style callable ``f(completions, **kw) -> list``
(its reasons are then empty); each may be paired with a weight (default 1.0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .base import RewardFunction, RewardResult
from .registry import REWARDS

__all__ = ["combine"]


class _RawReward(RewardFunction):
    """A :class:`RewardFunction` whose scorer needs the raw completions (under ``__completions__``)."""

    def score_items(self, completions: Any, *columns: Any, **kwargs: Any) -> list[RewardResult]:
        if columns:
            raise TypeError(f"{self.__name__}: pass dataset columns by keyword to this reward")
        kwargs["__completions__"] = completions
        return super().score_items(completions, **kwargs)


def _as_reward(part: Any, registry: Mapping[str, RewardFunction], where: str) -> RewardFunction:
    if isinstance(part, RewardFunction):
        return part
    if isinstance(part, str):
        if part not in registry:
            raise KeyError(f"{where}: unknown reward name {part!r}; known: {sorted(registry)}")
        return registry[part]
    if callable(part):
        name = getattr(part, "__name__", None) or type(part).__name__

        def score_plain(
            texts: list[str], kwargs: Mapping[str, Any], options: Any, _fn: Callable = part
        ) -> list[RewardResult]:
            scores = _fn(kwargs["__completions__"], **{k: v for k, v in kwargs.items() if k != "__completions__"})
            if len(scores) != len(texts):
                raise ValueError(f"reward {name!r} returned {len(scores)} scores for {len(texts)} completions")
            values = [None if s is None else float(s) for s in scores]
            return [RewardResult(None if v is None or math.isnan(v) else v, "") for v in values]

        return _RawReward(name, score_plain, None)
    raise TypeError(
        f"{where}: expected a reward function, a reward name or (reward, weight), got {type(part).__name__}"
    )


def _parse_term(term: Any, registry: Mapping[str, RewardFunction], where: str) -> tuple[RewardFunction, float]:
    weight: Any = 1.0
    if isinstance(term, tuple):
        if len(term) != 2:
            raise ValueError(f"{where}: expected (reward, weight), got a tuple of {len(term)} items")
        term, weight = term
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"{where}: weight must be a finite number, got {weight!r}")
    return _as_reward(term, registry, where), float(weight)


def combine(
    *terms: Any, name: str = "combined_reward", registry: Mapping[str, RewardFunction] | None = None
) -> RewardFunction:
    """Weighted sum of rewards (see the module docstring). Part names must be distinct.

    ``registry`` resolves string names; it defaults to :data:`apmpo.rewards.REWARDS`.
    """
    if registry is None:
        registry = REWARDS
    if not terms:
        raise ValueError("combine: needs at least one reward")
    parts = [_parse_term(term, registry, f"combine: term {k}") for k, term in enumerate(terms)]
    names = [fn.__name__ for fn, _ in parts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"combine: several parts are named {duplicates}; give them distinct names with fn.configure(name=...)"
        )

    def score_combined(texts: list[str], kwargs: Mapping[str, Any], options: Any) -> list[RewardResult]:
        completions = kwargs["__completions__"]
        columns = {k: v for k, v in kwargs.items() if k != "__completions__"}
        per_part = [fn.score_items(completions, **columns) for fn, _ in parts]
        results = []
        for i in range(len(texts)):
            components = {fn.__name__: part_results[i] for (fn, _), part_results in zip(parts, per_part)}
            applicable = [(w, r.score) for (fn, w), r in zip(parts, components.values()) if r.score is not None]
            total = sum(w * s for w, s in applicable) if applicable else None
            reason = "; ".join(f"{n}={'n/a' if r.score is None else f'{r.score:g}'}" for n, r in components.items())
            results.append(RewardResult(total, reason, components=components))
        return results

    return _RawReward(name, score_combined, None)
