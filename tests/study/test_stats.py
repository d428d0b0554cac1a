"""Student-t intervals and paired differences against hand-computed values and printed t tables."""

from __future__ import annotations

import math

import pytest

from apmpo.study.report import verdict
from apmpo.study.stats import MeanCI, mean_ci, paired_difference, t_cdf, t_quantile

# two-sided 95% critical values t_{0.975, df} from a printed table
T_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 9: 2.2622, 10: 2.2281,
           19: 2.0930, 29: 2.0452, 60: 2.0003, 120: 1.9799}


@pytest.mark.parametrize("df,value", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_table(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=5e-5)
    assert t_quantile(0.025, df) == pytest.approx(-value, abs=5e-5)


def test_t_cdf_closed_forms():
    # df = 1 is the Cauchy distribution, df = 2 has F(t) = 1/2 + t / (2 sqrt(t^2 + 2))
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)), abs=1e-12)
    assert t_quantile(0.95, 10) == pytest.approx(1.8125, abs=5e-5)   # one-sided 95%
    assert t_quantile(0.5, 7) == 0.0
    # large df tends to the normal quantile
    assert t_quantile(0.975, 100000) == pytest.approx(1.95996, abs=1e-4)


def test_t_bad_arguments():
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_cdf(1.0, 2.5)
    with pytest.raises(ValueError, match="q must be in"):
        t_quantile(1.0, 3)


def test_mean_ci_by_hand():
    # values 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.290994, se = 0.645497, t(3) = 3.182446 -> 2.054260
    ci = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert ci.n == 4 and ci.mean == pytest.approx(2.5)
    assert ci.std == pytest.approx(math.sqrt(5 / 3))
    assert ci.half_width == pytest.approx(2.054260, abs=1e-6)
    assert (ci.low, ci.high) == (pytest.approx(0.445740, abs=1e-6), pytest.approx(4.554260, abs=1e-6))
    assert ci.excludes_zero()


def test_mean_ci_one_value_and_errors():
    ci = mean_ci([0.3])
    assert ci.n == 1 and ci.mean == 0.3 and ci.std is None and ci.half_width is None
    assert ci.low is None and not ci.excludes_zero()
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([0.1, float("nan")])
    with pytest.raises(ValueError, match="level"):
        mean_ci([0.1, 0.2], level=1.5)


def test_paired_difference_by_hand():
    # differences over the common seeds 0, 1, 2: 0.1, 0.0, 0.2 -> mean 0.1, sd 0.1, hw = 4.302653 * 0.1 / sqrt(3)
    a = {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.9}
    b = {0: 0.4, 1: 0.6, 2: 0.5, 7: 0.1}
    d = paired_difference(a, b)
    assert d.n == 3
    assert d.mean == pytest.approx(0.1)
    assert d.std == pytest.approx(0.1)
    assert d.half_width == pytest.approx(4.302653 * 0.1 / math.sqrt(3), abs=1e-6)
    assert not d.excludes_zero()
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def test_verdicts():
    assert verdict(MeanCI(5, 0.05, 0.01, 0.02)) == "holds"
    assert verdict(MeanCI(5, -0.05, 0.01, 0.02)) == "reversed"
    assert verdict(MeanCI(5, 0.01, 0.05, 0.06)) == "same direction, not significant"
    assert verdict(MeanCI(5, -0.01, 0.05, 0.06)) == "not observed"
    assert verdict(MeanCI(1, 0.2, None, None)) == "not testable"
    assert verdict(MeanCI(3, 0.0, 0.0, 0.0)) == "no difference"
    assert verdict(MeanCI(2, -0.01, 0.0, 0.0)) == "not testable"   # zero spread: no evidence either way
    assert verdict(None) == "not testable"
