"""The shared statistical helpers: exact answers on constructed data (float64, tolerance 1e-12).

No statistical test here: every check compares with a closed form or a direct formula.
"""

import math

import numpy as np
import pytest
from scipy import stats

from svag.analysis.stats import (
    LogLogFit,
    fit_loglog_slope,
    mc_check,
    mean_se,
    seeds_for_half_width,
    t_interval,
    welch_df,
)
from svag.problems import Moments

# P1's PreResNet-32 BN row: G/N at each run's own B
BN_B, BN_RATIO = [128, 512, 1024, 2048], [0.078, 0.36, 1.53, 4.5]


def test_loglog_fit_exact_power_law():
    """y = 3·x^(−1.5) exactly: slope −1.5, intercept log 3, SE 0."""
    x = [1, 2, 4, 8, 16]
    fit = fit_loglog_slope(x, [3.0 * v**-1.5 for v in x])
    assert isinstance(fit, LogLogFit) and fit.n == 5
    assert (fit.slope, fit.intercept) == pytest.approx((-1.5, math.log(3.0)), rel=1e-12)
    assert fit.slope_se == pytest.approx(0.0, abs=1e-12)


def test_loglog_fit_se_closed_form():
    """log y = 2 + 0.5·log x + e with residuals e = (1, −1, −1, 1), orthogonal to 1 and to u = log x = (0, 1, 2, 3):
    OLS returns slope 0.5 and intercept 2 exactly; RSS = 4, S_uu = 5, n − 2 = 2, so se = √(4/2/5) = √0.4."""
    u, e = np.arange(4.0), np.array([1.0, -1.0, -1.0, 1.0])
    fit = fit_loglog_slope(np.exp(u), np.exp(2.0 + 0.5 * u + e))
    assert (fit.slope, fit.intercept, fit.n) == pytest.approx((0.5, 2.0, 4), rel=1e-12)
    assert fit.slope_se == pytest.approx(math.sqrt(0.4), rel=1e-12)


def test_loglog_fit_against_polyfit_on_paper_numbers():
    fit = fit_loglog_slope(BN_B, BN_RATIO)
    coef, cov = np.polyfit(np.log(BN_B), np.log(BN_RATIO), 1, cov=True)  # cov scaled by RSS/(n − 2)
    assert (fit.slope, fit.intercept) == pytest.approx(tuple(coef), rel=1e-12)
    assert fit.slope_se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-10)
    assert fit.slope > 1.0  # P1's BN row grows faster than slope 1


def test_loglog_fit_undefined_cases_are_nan():
    two = fit_loglog_slope([128, 512], [0.078, 0.36])  # a line through two points, no residual
    assert two.slope == pytest.approx(math.log(0.36 / 0.078) / math.log(4), rel=1e-12) and math.isnan(two.slope_se)
    undefined = [([1, 2, 4], [1, 0, 1]), ([1, 2], [-1, 1]), ([5, 5, 5], [1, 2, 3]), ([3], [1]), ([], [])]
    for x, y in undefined:  # a zero, a negative value, all x equal, one point, none
        fit = fit_loglog_slope(x, y)
        assert math.isnan(fit.slope) and math.isnan(fit.slope_se) and math.isnan(fit.intercept), (x, y)
        assert fit.n == len(x)
    # |y| is the caller's choice: a signed error gives the slope of its magnitude
    assert fit_loglog_slope([1, 2, 4], np.abs([-1.0, 0.5, -0.25])).slope == pytest.approx(-1.0, rel=1e-12)


def test_loglog_fit_bad_inputs_raise():
    with pytest.raises(ValueError, match="x and y must have the same length, got 2 and 3"):
        fit_loglog_slope([1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"x entries must be > 0, got 0\.0"):
        fit_loglog_slope([0, 128], [0.1, 0.2])
    with pytest.raises(ValueError, match="x and y must be finite"):
        fit_loglog_slope([64, 128], [math.nan, 0.2])


def test_mean_se():
    mean, se = mean_se(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (mean, se) == pytest.approx((2.5, math.sqrt((5.0 / 3.0) / 4.0)), rel=1e-12)


def test_mc_check_equals_direct_z_scores():
    """Four 2-d samples against stated exact moments; every z-score recomputed by hand."""
    x = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0], [3.0, 2.0]])
    exact = Moments(np.array([1.0, 0.5]), np.array([[2.0, 0.5], [0.5, 1.0]]), np.zeros((2, 2, 2)))
    out = mc_check(x, exact, direction=np.array([1.0, 0.0]))
    R, mean = 4, x.mean(0)  # (1.5, 0.5)
    assert out["z"]["mean"] == pytest.approx([(1.5 - 1.0) / math.sqrt(2.0 / R), 0.0], abs=1e-12)
    y = x - mean
    z_cov = []
    for i, j in ((0, 0), (0, 1), (1, 1)):
        p = y[:, i] * y[:, j]
        z_cov.append((p.sum() / (R - 1) - exact.cov[i, j]) / (p.std(ddof=1) / math.sqrt(R)))
    assert out["z"]["cov"] == pytest.approx(z_cov, rel=1e-12)
    sq = (x**2).sum(1)
    expected_sq = (sq.mean() - 4.25) / (sq.std(ddof=1) / 2)  # E‖x‖² = ‖μ‖² + Tr C = 1.25 + 3
    assert out["z"]["sq_norm"] == pytest.approx(expected_sq, rel=1e-12)
    cubes = y[:, 0] ** 3  # (−0.125, 0.125, −3.375, 3.375): mean 0, the exact third moment is 0
    assert out["z"]["third"] == pytest.approx(0.0, abs=1e-12) and out["skewness"] == pytest.approx(0.0, abs=1e-12)
    assert cubes.mean() == pytest.approx(0.0, abs=1e-12) and out["skewness_se"] == pytest.approx(math.sqrt(6 / R))
    flat = [abs(v) for v in (*out["z"]["mean"], *z_cov, out["z"]["sq_norm"], 0.0)]
    assert out["max_abs_z"] == pytest.approx(max(flat), rel=1e-12)
    assert "third" not in mc_check(x, exact)["z"]


def test_t_interval_is_scipy_t():
    low, high = t_interval(2.0, 0.5, 7, 0.9)
    half = stats.t.ppf(0.95, 7) * 0.5
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-12)
    assert t_interval(1.0, 0.2, math.inf, 0.95) == pytest.approx((1.0 - 1.959964 * 0.2, 1.0 + 1.959964 * 0.2))
    assert t_interval(3.0, 0.0, 4, 0.95) == (3.0, 3.0)
    with pytest.raises(ValueError, match="level must be a number in"):
        t_interval(0.0, 1.0, 3, 1.5)


def test_welch_df_matches_scipys_welch_test():
    """Two independent samples, θ = x̄ − ȳ: the df of scipy's Welch t-test (``equal_var=False``)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 7), rng.normal(0, 3, 12)
    df = welch_df([x.var(ddof=1) / 7, y.var(ddof=1) / 12], [7, 12])
    assert df == pytest.approx(stats.ttest_ind(x, y, equal_var=False).df, rel=1e-12)
    assert welch_df([0.0, 0.0], [5, 9]) == 4.0  # no variance at all: a point interval, any df
    with pytest.raises(ValueError, match=r"counts must be >= 2 .*got \[1, 5\]"):
        welch_df([0.1, 0.2], [1, 5])
    with pytest.raises(ValueError, match="same length"):
        welch_df([0.1], [3, 4])


@pytest.mark.parametrize(
    ("spread", "half", "level", "factor"), [(1.0, 0.25, 0.9, 1.0), (3.0, 0.1, 0.95, 2.7), (1.0, 5.0, 0.9, 1.0)]
)
def test_seeds_for_half_width_is_least_n(spread, half, level, factor):
    n = seeds_for_half_width(spread, half, level, factor)

    def width(k):
        return stats.t.ppf(0.5 + level / 2, factor * (k - 1)) * spread / math.sqrt(k)

    assert width(n) < half and (n == 2 or width(n - 1) >= half)
    assert seeds_for_half_width(0.0, 0.1, 0.9) == 2
    with pytest.raises(ValueError, match=r"half_width must be a finite number > 0, got 0\.0"):
        seeds_for_half_width(1.0, 0.0, 0.9)
