"""Student-t intervals and paired differences against hand-computed values and printed t tables."""

from __future__ import annotations

import math

import pytest

from apmpo.study.report import verdict
from apmpo.study.stats import (
    MeanCI,
    mean_ci,
    minimum_detectable_difference,
    nct_cdf,
    paired_difference,
    paired_t_power,
    seeds_needed,
    t_cdf,
    t_quantile,
)

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


# ---------------------------------------------------------------- power (noncentral t)

# scipy.stats.nct.cdf(t, df, nc), scipy 1.17.1; the df = 1 values checked against scipy.integrate.quad of
# sqrt(2/pi) exp(-x^2/2) Phi(t x - nc) (scipy's own nct is less accurate there)
NCT_CDF = [((1.5, 1, 0.5), 0.6858270289937836), ((12.7, 1, 3.0), 0.813803218007604),
           ((2.0, 4, 2.5), 0.3011482106583971), ((-1.0, 9, 1.0), 0.02725048292834817),
           ((2.262, 9, 3.0), 0.23879985868711998), ((0.3, 30, -0.2), 0.6904549551253671),
           ((3.0, 200, 2.5), 0.68819768384992)]


@pytest.mark.parametrize("args,value", NCT_CDF)
def test_nct_cdf_matches_scipy(args, value):
    assert nct_cdf(*args) == pytest.approx(value, abs=2e-9)


def test_nct_cdf_reduces_to_student_t_and_limits():
    for t, df in ((1.3, 3), (-0.4, 8), (2.5, 1)):
        assert nct_cdf(t, df, 0.0) == pytest.approx(t_cdf(t, df), abs=1e-10)
    assert nct_cdf(math.inf, 3, 1.0) == 1.0 and nct_cdf(-math.inf, 3, 1.0) == 0.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        nct_cdf(1.0, 0, 1.0)


def test_power_known_values():
    # G*Power / Cohen: one-sample (paired) two-tailed t-test, d = 0.5, n = 34 -> power 0.8078; n = 33 -> 0.7954
    assert paired_t_power(0.5, 1.0, 34) == pytest.approx(0.8077775012792737, abs=1e-8)
    assert paired_t_power(0.5, 1.0, 33) == pytest.approx(0.7953658414875042, abs=1e-8)
    assert paired_t_power(2.0, 2.5, 15) == pytest.approx(0.8213105387241096, abs=1e-8)   # d = 0.8 (scipy)
    assert paired_t_power(-1.0, 1.0, 10) == pytest.approx(0.8030968566327219, abs=1e-8)  # sign does not matter
    assert paired_t_power(0.0, 1.0, 10) == pytest.approx(0.05, abs=1e-9)                # no effect: the level


def test_minimum_detectable_difference():
    # lambda* / sqrt(n) for 80% power at alpha 0.05 (scipy bisection); n = 2 by Monte Carlo (4e6 draws: 0.8003)
    for n, per_sd in ((2, 11.549888436), (3, 3.264043550), (5, 1.681996966), (10, 0.996001371), (50, 0.404183002)):
        assert minimum_detectable_difference(1.0, n) == pytest.approx(per_sd, rel=1e-6)
        assert minimum_detectable_difference(4.0, n) == pytest.approx(4 * per_sd, rel=1e-6)
        assert paired_t_power(per_sd, 1.0, n) == pytest.approx(0.8, abs=1e-7)
    # the normal approximation (z_0.975 + z_0.8) / sqrt(n) is smaller at few seeds, close at many
    normal = (1.959963985 + 0.841621234) / math.sqrt(10)
    assert minimum_detectable_difference(1.0, 10) > normal * 1.1
    assert minimum_detectable_difference(1.0, 2000) == pytest.approx((1.959963985 + 0.841621234) / math.sqrt(2000), rel=2e-3)
    assert minimum_detectable_difference(1.0, 10, power=0.9) > minimum_detectable_difference(1.0, 10)


def test_seeds_needed():
    # G*Power's classic sample sizes for d = 0.5, 0.8, 1.0 (two-tailed, 80%): 34, 15, 10
    assert seeds_needed(0.5, 1.0) == 34 and seeds_needed(0.8, 1.0) == 15 and seeds_needed(1.0, 1.0) == 10
    for delta, sd in ((2.0, 5.0), (2.0, 2.59), (1.0, 0.3), (30.0, 1.0)):
        n = seeds_needed(delta, sd)
        assert minimum_detectable_difference(sd, n) <= delta
        assert n == 2 or minimum_detectable_difference(sd, n - 1) > delta
    assert seeds_needed(2.0, 5.0) == 52
    with pytest.raises(ValueError, match="needs more than 100 pairs"):
        seeds_needed(0.01, 5.0, max_n=100)


@pytest.mark.parametrize("call,match", [
    (lambda: minimum_detectable_difference(0.0, 5), "standard deviation must be a finite number > 0"),
    (lambda: minimum_detectable_difference(1.0, 1), "pairs must be an integer >= 2"),
    (lambda: minimum_detectable_difference(1.0, 5, power=0.01), "power must be in"),
    (lambda: paired_t_power(1.0, 1.0, 5, alpha=1.5), "alpha must be in"),
    (lambda: seeds_needed(-1.0, 1.0), "difference to detect must be"),
])
def test_power_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_power_agrees_with_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in (2, 5, 11, 40):
        for nc in (-1.0, 0.7, 2.9):
            for t in (-2.0, 0.5, 3.1):
                assert nct_cdf(t, df, nc) == pytest.approx(float(stats.nct.cdf(t, df, nc)), abs=1e-8)
