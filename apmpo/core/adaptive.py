"""The two adaptive controllers of APMPO (arXiv 2605.04066), from batch reward statistics.

PMPO's exponent (spec: "Adaptive exponent")::

    p = exp(-gamma * mu_R)                          schedule "exp" (the paper)
    p = 1 - (1 - exp(-gamma)) * mu_R                schedule "linear" (ablation; our choice of
                                                     form: same end points as "exp")
    p = p_fixed                                      schedule "fixed" (PMPO with a fixed p)

FAC's upper clip bound (spec: "FAC")::

    FSS     = mu_R / (sigma_R + delta)              fss "ratio" (the paper)
            = mu_R                                  fss "mean" (ablation)
            = 1 / (sigma_R + delta)                 fss "inverse_std" (ablation)
    eps_ada = eps_min + (eps_max - eps_min) * tanh(FSS)

mu_R and sigma_R are the rollout batch's reward mean and standard deviation, computed
once before any gradient step (constants). The paper's rewards lie in [0, 1]; other
rewards are accepted only with a declared range, to which they are rescaled
(``normalize_reward_stats``) -- never silently.

Every function accepts python floats (returns a float) or tensors (returns a tensor,
element-wise, e.g. one value per response for the per-group statistics scope).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch

from ._checks import check_range, to_float

__all__ = [
    "FSS_VARIANTS",
    "P_SCHEDULES",
    "FssVariant",
    "PSchedule",
    "adaptive_p",
    "check_reward_range",
    "fac_bound",
    "fac_clip_high",
    "feedback_stability_score",
    "normalize_reward_stats",
]

Num = float | torch.Tensor
"""A statistic: a python float (batch scope) or a tensor, element-wise (e.g. [N], per-group scope)."""

PSchedule = Literal["exp", "linear", "fixed"]
"""How p follows mu_R: "exp" (the paper), "linear" (ablation), "fixed" (PMPO with a fixed p)."""
FssVariant = Literal["ratio", "mean", "inverse_std"]
"""The feedback stability score: "ratio" (the paper), "mean" or "inverse_std" (ablations)."""
P_SCHEDULES: tuple[str, ...] = get_args(PSchedule)
FSS_VARIANTS: tuple[str, ...] = get_args(FssVariant)

_RANGE_TOLERANCE = 1e-6
"""Relative slack of the reward-range check (rewards are float32 sums of weighted scores)."""


def check_reward_range(
    values: float | torch.Tensor, reward_range: Sequence[float] | None = None, name: str = "rewards"
) -> None:
    """Raise ValueError unless every value lies in the declared reward range (default the paper's [0, 1]).

    The one check behind both the per-reward check of a training step and the mean check
    of :func:`normalize_reward_stats`: the adaptive exponent p = exp(-gamma * mu_R) only
    means what the paper says for rewards in [0, 1] (or rescaled from a declared range).
    """
    lo, hi = _range(reward_range)
    tol = _RANGE_TOLERANCE * (hi - lo)
    t = values if isinstance(values, torch.Tensor) else torch.tensor(float(values), dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: must be finite, got {values}")
    low, high = float(t.min()), float(t.max())
    if low < lo - tol or high > hi + tol:
        span = f"{low:.6g}" if t.numel() == 1 else f"values in [{low:.4g}, {high:.4g}]"
        hint = "" if reward_range is not None else "; declare reward_range=(lo, hi) to rescale"
        raise ValueError(
            f"{name}: {span} outside the reward range [{lo:g}, {hi:g}] (the adaptive exponent "
            f"needs rewards in [0, 1]{hint})"
        )


def _range(reward_range: Sequence[float] | None) -> tuple[float, float]:
    if reward_range is None:
        return 0.0, 1.0
    if len(reward_range) != 2:
        raise ValueError(f"reward_range: expected (lo, hi), got {reward_range!r}")
    lo, hi = to_float("reward_range[0]", reward_range[0]), to_float("reward_range[1]", reward_range[1])
    if not hi > lo:
        raise ValueError(f"reward_range: expected lo < hi, got ({lo}, {hi})")
    return lo, hi


def normalize_reward_stats(
    reward_mean: Num,
    reward_std: Num,
    reward_range: Sequence[float] | None = None,
) -> tuple[Num, Num]:
    """Rescale (mu_R, sigma_R) from a declared reward range [lo, hi] to [0, 1].

    ``reward_range=None`` means the paper's [0, 1] (no rescaling). Raises ValueError when
    the mean lies outside the range -- rewards outside [0, 1] with no declared range make
    p = exp(-gamma * mu_R) meaningless -- or when the std is negative.
    """
    lo, hi = _range(reward_range)
    check_reward_range(reward_mean, reward_range, "reward_mean")
    check_range("reward_std", reward_std, 0.0)
    scale = hi - lo
    mean: Num
    if isinstance(reward_mean, torch.Tensor):
        mean = ((reward_mean - lo) / scale).clamp(0.0, 1.0)
    else:
        mean = min(max((float(reward_mean) - lo) / scale, 0.0), 1.0)
    return mean, reward_std / scale


def adaptive_p(
    reward_mean: Num,
    gamma: float = 0.8,
    schedule: PSchedule = "exp",
    p_fixed: float | None = None,
) -> Num:
    """PMPO's power-mean exponent from the batch mean reward mu_R in [0, 1].

    Args:
        reward_mean: mu_R, float or tensor, in [0, 1].
        gamma: decay rate (paper: 0.8), >= 0.
        schedule: "exp" (paper), "linear" (ablation) or "fixed" (returns ``p_fixed``).
        p_fixed: the exponent for schedule "fixed", > 0.

    Returns:
        p in (0, 1] for "exp"/"linear"; ``p_fixed`` for "fixed". Same type as reward_mean.
    """
    if schedule not in P_SCHEDULES:
        raise ValueError(f"p_schedule: unknown schedule {schedule!r}; known: {', '.join(P_SCHEDULES)}")
    check_range("gamma", gamma, 0.0)
    check_range("reward_mean", reward_mean, 0.0, 1.0)
    if schedule == "fixed":
        if p_fixed is None:
            raise ValueError("p: schedule 'fixed' needs a fixed exponent p > 0")
        check_range("p", p_fixed, 0.0, low_inclusive=False)
        return torch.full_like(reward_mean, float(p_fixed)) if isinstance(reward_mean, torch.Tensor) else float(p_fixed)
    if schedule == "exp":
        return (
            torch.exp(-gamma * reward_mean)
            if isinstance(reward_mean, torch.Tensor)
            else math.exp(-gamma * float(reward_mean))
        )
    return 1.0 - (1.0 - math.exp(-gamma)) * reward_mean


def feedback_stability_score(reward_mean: Num, reward_std: Num, delta: float = 1e-6, variant: str = "ratio") -> Num:
    """FSS = mu_R / (sigma_R + delta) ("ratio", paper), mu_R ("mean") or 1 / (sigma_R + delta) ("inverse_std")."""
    if variant not in FSS_VARIANTS:
        raise ValueError(f"fss: unknown variant {variant!r}; known: {', '.join(FSS_VARIANTS)}")
    check_range("delta", delta, 0.0, low_inclusive=False)
    check_range("reward_std", reward_std, 0.0)
    if variant == "mean":
        return reward_mean
    if variant == "inverse_std":
        return 1.0 / (reward_std + delta)
    return reward_mean / (reward_std + delta)


def fac_clip_high(
    reward_mean: Num,
    reward_std: Num,
    eps_min: float = 0.2,
    eps_max: float = 0.4,
    delta: float = 1e-6,
    fss: str = "ratio",
) -> Num:
    """FAC's adaptive upper clip bound eps_ada = eps_min + (eps_max - eps_min) * tanh(FSS).

    Args:
        reward_mean, reward_std: mu_R (in [0, 1]) and sigma_R (>= 0) of the rollout batch.
        eps_min, eps_max: the range of the bound (paper: 0.2, 0.4), 0 <= eps_min <= eps_max.
        delta: stabiliser in FSS (our choice: 1e-6).
        fss: FSS variant, "ratio" (paper), "mean" or "inverse_std" (ablations).
    """
    check_range("eps_min", eps_min, 0.0)
    check_range("eps_max", eps_max, 0.0)
    if eps_max < eps_min:
        raise ValueError(f"eps_max: must be >= eps_min ({eps_min}), got {eps_max}")
    check_range("reward_mean", reward_mean, 0.0)
    return fac_bound(feedback_stability_score(reward_mean, reward_std, delta, fss), eps_min, eps_max)


def fac_bound(score: Num, eps_min: float = 0.2, eps_max: float = 0.4) -> Num:
    """eps_ada = eps_min + (eps_max - eps_min) * tanh(FSS), from an already computed score."""
    squash = torch.tanh(score) if isinstance(score, torch.Tensor) else math.tanh(score)
    return eps_min + (eps_max - eps_min) * squash
