"""Statistics of a multi-seed study: means with Student-t confidence intervals, paired differences.

A study runs every arm (objective) with the same seeds, so arm-vs-baseline comparisons
are *paired*: seed s of arm A and seed s of GRPO start from the same model, see the same
prompts in the same order and sample their first rollout from the same random state.
The difference d_s = metric(A, s) - metric(GRPO, s) removes the between-seed variation
they share, and its mean gets a t-interval over the seeds both arms ran.

- :func:`t_quantile`: the Student-t quantile for an integer number of degrees of
  freedom, from the closed-form CDF for integer df (Abramowitz & Stegun 26.7.3 and
  26.7.4) inverted by bisection; no scipy needed.
- :func:`mean_ci`: mean, sample standard deviation (n - 1) and the two-sided t-interval
  ``mean +- t_{1 - alpha/2, n-1} * sd / sqrt(n)``.
- :func:`paired_difference`: :func:`mean_ci` of the per-seed differences over the seeds
  present in both arms.

With one value there is no spread: the interval is undefined (``half_width`` is None)
and reports say so instead of printing a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["MeanCI", "mean_ci", "paired_difference", "t_cdf", "t_quantile"]


def _check_df(df: int) -> int:
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    return df


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with an integer number of degrees of freedom ``df``.

    Closed form (A&S 26.7.3 odd df, 26.7.4 even df) for A(t) = P(|T| <= |t|), with
    theta = atan(|t| / sqrt(df)); then P(T <= t) = (1 + sign(t) A) / 2.
    """
    df = _check_df(df)
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        total, term = 0.0, c  # cos, (2/3) cos^3, (2*4)/(3*5) cos^5, ... up to cos^(df-2)
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c * c * (2 * k) / (2 * k + 1)
        area = 2.0 / math.pi * (theta + s * total)
    else:
        total, term = 0.0, 1.0  # 1, (1/2) cos^2, (1*3)/(2*4) cos^4, ... up to cos^(df-2)
        for k in range(1, df // 2 + 1):
            total += term
            term *= c * c * (2 * k - 1) / (2 * k)
        area = s * total
    area = min(max(area, 0.0), 1.0)
    return 0.5 + 0.5 * area if t >= 0 else 0.5 - 0.5 * area


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` (integer) degrees of freedom, 0 < q < 1."""
    df = _check_df(df)
    if not (isinstance(q, (int, float)) and 0.0 < q < 1.0):
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    if q == 0.5:
        return 0.0
    target = max(q, 1.0 - q)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < target:
        hi *= 2.0
        if hi > 1e12:
            raise ValueError(f"t quantile {q} with df = {df} is out of range")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    value = 0.5 * (lo + hi)
    return value if q > 0.5 else -value


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values with a two-sided Student-t confidence interval."""

    n: int
    """Number of values."""
    mean: float
    """Their mean."""
    std: float | None
    """Sample standard deviation (ddof = 1); None when n = 1."""
    half_width: float | None
    """t_{1 - alpha/2, n-1} * std / sqrt(n); None when n = 1 (undefined)."""
    level: float = 0.95
    """Confidence level."""

    @property
    def low(self) -> float | None:
        """Lower end of the interval (None when undefined)."""
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        """Upper end of the interval (None when undefined)."""
        return None if self.half_width is None else self.mean + self.half_width

    def excludes_zero(self) -> bool:
        """True when the interval is defined and lies entirely above or below 0."""
        return (
            self.half_width is not None
            and self.low is not None
            and self.high is not None
            and (self.low > 0 or self.high < 0)
        )


def mean_ci(values: Sequence[float], level: float = 0.95) -> MeanCI:
    """Mean and ``level`` t-interval of ``values`` (at least one finite number)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_ci needs at least one value")
    bad = [v for v in xs if not math.isfinite(v)]
    if bad:
        raise ValueError(f"mean_ci: values must be finite, got {bad[0]!r}")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return MeanCI(1, mean, None, None, level)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return MeanCI(n, mean, std, half, level)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> MeanCI | None:
    """Mean of ``a[s] - b[s]`` over the seeds s in both mappings, with its t-interval.

    None when the two share no seed.
    """
    common = sorted(set(a) & set(b))
    if not common:
        return None
    return mean_ci([a[s] - b[s] for s in common], level)
