r"""Is a run at equilibrium over a window? The trend test behind P1's ``G/N`` condition.

P1's necessary condition ``G/N ≤ τ`` (PAPER.md §4) is read at the **equilibrium of the constant-LR
phase**: for a scale-invariant net with weight decay, ‖x‖² and ``G/N`` settle to stationary values
after a transient of a few ``1/(ηλ)`` steps. A window read before that measures a ratio still on its
way, and the slope of ``G/N`` in ``B`` along the LSR family is then not the SDE's 1.

**The test.** For each quantity ``y`` (``G``, ``N``, ``G/N`` per record, ‖x‖²) recorded at times
``t_1 < … < t_n`` inside the window, fit a power law in time by least squares,

.. math::  \log y_i = c + s \log t_i   \qquad (:func:`svag.analysis.stats.fit_loglog_slope`),

and report the **relative change across the window** the fit implies, with its interval,

.. math::  Δ = (t_n/t_1)^{s} - 1,\qquad Δ_{lo,hi} = (t_n/t_1)^{s_{lo,hi}} - 1,\qquad
           [s_{lo}, s_{hi}] = s ± t_{(1+level)/2,\,n-2}\, se(s)  \qquad (:func:`svag.analysis.stats.t_interval`).

At equilibrium ``s = 0``. Verdict per quantity, against a tolerance ``tol`` on ``|Δ|``:

* ``trending``: the interval excludes 0 **and** ``|Δ| ≥ tol`` (a real drift, large enough to matter);
* ``stationary``: the interval lies inside ``(−tol, tol)`` (any drift is smaller than ``tol``);
* ``undetermined``: neither (the window is too noisy to tell), or the fit is undefined (fewer than
  3 records, or a record with ``y ≤ 0``: an unbiased ``Ĝ`` below its noise floor).

A run **passes** unless some quantity is ``trending``. Defaults: ``level = 0.99`` per quantity
(four quantities: at most 4% of stationary windows warn, by the union bound; 2.4% measured on
synthetic windows in ``tests/analysis/test_equilibrium.py``) and ``tol = 0.05`` (a 5% change across the window:
the 0.2.0 default of ``svag lsr``, whose ‖x‖² still rose 5.8% across its window, 2500-step relaxation
against 3000 steps of constant LR, is flagged). Why a slope over the window and not first
half vs second half: ‖x‖² has no per-record standard error, while the residuals of the fit give
one for every quantity alike, and the fit uses the position of every record, not two averages.
The residuals are treated as independent (each record's ``G``, ``N`` averages per-step estimates
of its own interval; consecutive ‖x‖² values are correlated through the trajectory, which makes the
interval of ‖x‖² somewhat optimistic: its drift is smooth and usually far above ``tol`` or far below).

Statistics only: this module reads records (dicts of ``metrics.jsonl``) and returns data;
:mod:`svag.experiments.lsr_sweep` calls it for the baseline and every run of the sweep.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from svag.analysis.stats import fit_loglog_slope, t_interval

__all__ = ["QUANTITIES", "Trend", "equilibrium_check", "summary_line", "trend_across_window", "warning_line"]

#: The quantities checked, by the names shown (read from a record by ``_value``).
QUANTITIES: tuple[str, ...] = ("G", "N", "G/N", "‖x‖²")


@dataclass(frozen=True)
class Trend:
    """The relative change of one quantity across a window (see the module docstring).

    ``change`` is ``Δ``, ``low``/``high`` its interval at ``level``; ``n`` records were fitted;
    ``status`` is ``trending``, ``stationary`` or ``undetermined`` (``reason`` says why when the fit
    is undefined)."""

    quantity: str
    change: float
    low: float
    high: float
    n: int
    status: str
    reason: str = ""


def _check_level_tol(level: Any, tol: Any) -> tuple[float, float]:
    for name, v in (("level", level), ("tol", tol)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if level >= 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level), float(tol)


def trend_across_window(
    quantity: str, times: Sequence[float], values: Sequence[float], *, level: float = 0.99, tol: float = 0.05
) -> Trend:
    r"""``Δ = (t_n/t_1)^s − 1`` of the power law ``y ∝ t^s`` fitted to ``(t_i, y_i)``, with its
    ``level`` t-interval (``n − 2`` degrees of freedom) and the verdict of the module docstring."""
    level, tol = _check_level_tol(level, tol)
    if len(times) != len(values):
        raise ValueError(f"times and values must have the same length, got {len(times)} and {len(values)}")
    n = len(values)
    if any(not math.isfinite(float(t)) or t <= 0 for t in times):
        raise ValueError(f"times must be finite and > 0, got {list(times)!r}")
    if n < 3:
        return Trend(quantity, math.nan, math.nan, math.nan, n, "undetermined", f"{n} record(s) in the window, need 3")
    if any(not math.isfinite(float(v)) for v in values):
        return Trend(quantity, math.nan, math.nan, math.nan, n, "undetermined", "a value is not finite")
    if any(v <= 0 for v in values):
        reason = "a value is <= 0 (below its noise floor)"
        return Trend(quantity, math.nan, math.nan, math.nan, n, "undetermined", reason)
    fit = fit_loglog_slope(times, values)
    span = math.log(max(times) / min(times))
    if not math.isfinite(fit.slope_se):
        return Trend(quantity, math.nan, math.nan, math.nan, n, "undetermined", "the fit is undefined")
    s_lo, s_hi = t_interval(fit.slope, fit.slope_se, n - 2, level)
    change, low, high = (math.expm1(s * span) for s in (fit.slope, s_lo, s_hi))
    if (low > 0 or high < 0) and abs(change) >= tol:
        status = "trending"
    elif -tol < low and high < tol:
        status = "stationary"
    else:
        status = "undetermined"
    return Trend(quantity, change, low, high, n, status)


def _value(record: Mapping[str, Any], quantity: str) -> float | None:
    if quantity == "‖x‖²":
        return record.get("weight_norm_sq")
    G, N = record.get("G"), record.get("N")
    if G is None or N is None:
        return None
    if quantity == "G/N":
        return G / N if N > 0 else math.nan
    return G if quantity == "G" else N


def equilibrium_check(
    records: Iterable[Mapping[str, Any]],
    window: tuple[float, float],
    *,
    level: float = 0.99,
    tol: float = 0.05,
) -> dict[str, Any]:
    """The trend of ``G``, ``N``, ``G/N`` and ‖x‖² across the records with ``sde_time`` in ``window``
    (``(t0, t1]``, the window of :func:`svag.experiments.lsr_sweep.window_ratio`).

    Returns ``{"window", "level", "tol", "at_equilibrium", "trends": {quantity: Trend as dict},
    "warning"}``: ``at_equilibrium`` is False when some quantity is ``trending``, and ``warning`` is
    then :func:`warning_line`'s line (``None`` otherwise). Records without ``G``/``N`` (outside the
    G/N window) count only for ‖x‖².
    """
    t0, t1 = (float(w) for w in window)
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
        raise ValueError(f"window must be (start, end) with end > start, got {window!r}")
    inside = [r for r in records if t0 < r["sde_time"] <= t1 * (1 + 1e-9) and r["sde_time"] > 0]
    trends = {}
    for q in QUANTITIES:
        pts = [(r["sde_time"], _value(r, q)) for r in inside]
        pts = [(t, v) for t, v in pts if v is not None]
        trends[q] = trend_across_window(q, [t for t, _ in pts], [v for _, v in pts], level=level, tol=tol)
    check = {
        "window": [t0, t1],
        "level": level,
        "tol": tol,
        "at_equilibrium": not any(tr.status == "trending" for tr in trends.values()),
        "trends": {q: asdict(tr) for q, tr in trends.items()},
    }
    check["warning"] = warning_line(check)
    return check


def _describe(trend: Mapping[str, Any]) -> str:
    verb = "rose" if trend["change"] > 0 else "fell"
    return f"{trend['quantity']} {verb} {abs(trend['change']):.0%} [{trend['low']:+.0%}, {trend['high']:+.0%}]"


def warning_line(check: Mapping[str, Any], who: str = "the run") -> str | None:
    """One line naming every trending quantity with its change and interval, or ``None``:
    ``"G/N rose 35% [+12%, +61%] across the window t ∈ (500, 600]: the run is not at equilibrium;
    lengthen the constant-LR phase"``."""
    moving = [tr for tr in check["trends"].values() if tr["status"] == "trending"]
    if not moving:
        return None
    t0, t1 = check["window"]
    parts = ", ".join(_describe(tr) for tr in moving)
    return (
        f"{parts} across the window t ∈ ({t0:.4g}, {t1:.4g}]: {who} is not at equilibrium; "
        "lengthen the constant-LR phase (--epochs, --milestones) or raise --weight-decay"
    )


def summary_line(check: Mapping[str, Any]) -> str:
    """One line with every quantity's change across the window and its verdict."""
    parts = []
    for tr in check["trends"].values():
        if math.isnan(tr["change"]):
            parts.append(f"{tr['quantity']} ? ({tr['reason']})")
        else:
            parts.append(f"{tr['quantity']} {tr['change']:+.0%} [{tr['low']:+.0%}, {tr['high']:+.0%}]")
    verdict = "at equilibrium" if check["at_equilibrium"] else "NOT at equilibrium"
    return (
        f"change across the window ({check['level']:.0%} interval, tolerance ±{check['tol']:.0%}): "
        + ", ".join(parts)
        + f": {verdict}"
    )
