"""The equilibrium check of the LSR test (svag.analysis.equilibrium): a window at equilibrium passes, one cut
short warns.

Synthetic windows: 8 records over t ∈ (500, 600] (the default baseline's window holds 8), G = 0.2
with 20% noise per record, N = 2 with 3%, ‖x‖² = 50 with 0.3% (the per-record spreads seen in the
default's window), normal noise from ``numpy.random.default_rng(seed)``. Statistical tests state
seed, number of windows R and tolerance; the check's level is 99% per quantity, so at most 4% of
stationary windows may warn (union bound over the 4 quantities).
"""

import json
import math

import numpy as np
import pytest
from scipy import stats

from svag.analysis.equilibrium import QUANTITIES, equilibrium_check, summary_line, trend_across_window, warning_line

WINDOW = (500.0, 600.0)


def _records(rng, n=8, ratio_trend=0.0, norm_trend=0.0, sd_g=0.2, sd_n=0.03, sd_x=0.003):
    """n records in WINDOW; G/N and ‖x‖² change linearly by the given fractions across it."""
    out = []
    for i in range(n):
        f = (i + 1) / n
        out.append(
            {"sde_time": WINDOW[0] + (WINDOW[1] - WINDOW[0]) * f,
             "G": 0.2 * (1 + ratio_trend * f) * (1 + sd_g * rng.standard_normal()),
             "N": 2.0 * (1 + sd_n * rng.standard_normal()),
             "weight_norm_sq": 50.0 * (1 + norm_trend * f) * (1 + sd_x * rng.standard_normal())}
        )  # fmt: skip
    return out


def test_a_window_at_equilibrium_passes():
    check = equilibrium_check(_records(np.random.default_rng(0)), WINDOW)
    assert check["at_equilibrium"] and check["warning"] is None
    assert set(check["trends"]) == set(QUANTITIES)
    assert check["trends"]["‖x‖²"]["status"] == "stationary"  # ±0.3% noise: the interval is inside ±5%
    assert all(tr["n"] == 8 for tr in check["trends"].values())
    json.dumps(check)  # goes into lsr.json as it is
    assert summary_line(check).endswith(": at equilibrium")


def test_a_window_cut_short_warns():
    """G/N still rising 35% and ‖x‖² 15% across the window (16 records, G with 10% noise)."""
    check = equilibrium_check(_records(np.random.default_rng(0), n=16, ratio_trend=0.35, norm_trend=0.15, sd_g=0.1),
                              WINDOW)  # fmt: skip
    assert not check["at_equilibrium"]
    assert check["trends"]["G/N"]["status"] == "trending" and check["trends"]["‖x‖²"]["status"] == "trending"
    line = check["warning"]
    assert "\n" not in line and "G/N rose" in line and "‖x‖² rose" in line
    assert "across the window t ∈ (500, 600]: the run is not at equilibrium; lengthen the constant-LR phase" in line
    assert "NOT at equilibrium" in summary_line(check)
    assert warning_line(check, who="the baseline").count("the baseline is not at equilibrium") == 1


def test_false_alarms_and_power():
    """Seed 0, R = 1000 windows each. Stationary: ≤ 4% warn (union bound of four 1% tests; measured
    2.4%), tolerance +1.5 points for the Monte-Carlo error (SE 0.6 points). ‖x‖² drifting 15%: ≥ 99% warn."""
    rng = np.random.default_rng(0)
    R = 1000
    false = sum(not equilibrium_check(_records(rng), WINDOW)["at_equilibrium"] for _ in range(R))
    assert false / R <= 0.055
    hits = sum(not equilibrium_check(_records(rng, norm_trend=0.15), WINDOW)["at_equilibrium"] for _ in range(R))
    assert hits / R >= 0.99


def test_trend_is_the_fitted_power_law_change():
    """Against a slow reference: numpy's polyfit on the logs and scipy's t quantile."""
    rng = np.random.default_rng(1)
    t = np.linspace(510.0, 600.0, 10)
    y = 3.0 * (t / 510.0) ** 0.8 * np.exp(0.02 * rng.standard_normal(10))
    trend = trend_across_window("G", t.tolist(), y.tolist(), level=0.9, tol=0.05)
    s, c = np.polyfit(np.log(t), np.log(y), 1)
    resid = np.log(y) - c - s * np.log(t)
    se = math.sqrt(resid @ resid / 8 / ((np.log(t) - np.log(t).mean()) ** 2).sum())
    half = stats.t.ppf(0.95, 8) * se
    span = math.log(600.0 / 510.0)
    assert trend.change == pytest.approx(math.expm1(s * span), rel=1e-10)
    assert (trend.low, trend.high) == pytest.approx((math.expm1((s - half) * span), math.expm1((s + half) * span)))
    assert trend.status == "trending" and trend.n == 10
    # noise-free power law: the change is exact and the interval a point
    exact = trend_across_window("N", [100.0, 200.0, 400.0], [1.0, 2.0, 4.0])
    assert (exact.change, exact.low, exact.high) == pytest.approx((3.0, 3.0, 3.0))
    flat = trend_across_window("N", [100.0, 200.0, 400.0], [2.0, 2.0, 2.0])
    assert flat.status == "stationary" and flat.change == 0.0


def test_undetermined_windows_do_not_warn():
    few = trend_across_window("G", [1.0, 2.0], [1.0, 2.0])
    assert few.status == "undetermined" and "2 record(s) in the window, need 3" in few.reason
    negative = trend_across_window("G", [1.0, 2.0, 3.0], [0.1, -0.05, 0.2])
    assert negative.status == "undetermined" and "below its noise floor" in negative.reason
    # records outside the window and records without G/N are left out; no G/N at all: only ‖x‖² is judged
    recs = [{"sde_time": t, "G": None, "N": None, "weight_norm_sq": 10.0} for t in (100.0, 550.0, 560.0, 570.0)]
    check = equilibrium_check(recs, WINDOW)
    assert check["at_equilibrium"] and check["trends"]["‖x‖²"]["n"] == 3 and check["trends"]["G"]["n"] == 0
    assert "G ? (0 record(s) in the window, need 3)" in summary_line(check)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 1\.5"):
        trend_across_window("G", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], level=1.5)
    with pytest.raises(ValueError, match="tol must be a finite number > 0, got 0"):
        trend_across_window("G", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], tol=0)
    with pytest.raises(ValueError, match="times and values must have the same length, got 3 and 2"):
        trend_across_window("G", [1.0, 2.0, 3.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="times must be finite and > 0"):
        trend_across_window("G", [0.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"window must be \(start, end\) with end > start"):
        equilibrium_check([], (5.0, 5.0))
