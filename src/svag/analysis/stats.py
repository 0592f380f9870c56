r"""Small statistical helpers shared by the verification, the studies and the LSR test.

* :func:`fit_loglog_slope`: ordinary least squares of ``log y`` on ``log x`` with the slope's
  standard error (rates of weak errors in ``l``, P1 Thm 4.3; growth of ``G/N`` in ``B``, P1 §4);
* :func:`mean_se`: a sample mean and its standard error;
* :func:`mc_check`: z-scores of Monte-Carlo moments against exact ones;
* :func:`t_interval`, :func:`welch_df`, :func:`seeds_for_half_width`: Student-t intervals of linear
  combinations of sample means (the Richardson extrapolation and the verdicts of :mod:`svag.analysis.richardson`).

Everything is computed in float64, without torch, so the interval helpers (and
:mod:`svag.analysis.richardson`) load without it. The random streams of the studies are
:func:`svag.seeds.study_generator`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "LogLogFit",
    "fit_loglog_slope",
    "mc_check",
    "mean_se",
    "seeds_for_half_width",
    "t_interval",
    "welch_df",
]


@dataclass(frozen=True)
class LogLogFit:
    """Least-squares line ``log y = intercept + slope·log x`` (natural logs) through ``n`` points.

    ``slope_se`` is ``nan`` for ``n = 2`` (no residual degree of freedom); every field but ``n`` is
    ``nan`` when the fit is undefined (see :func:`fit_loglog_slope`).
    """

    slope: float
    slope_se: float
    intercept: float
    n: int


def fit_loglog_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> LogLogFit:
    r"""Ordinary least squares slope of ``log y`` against ``log x``, with its standard error.

    .. math::  u_i = \log x_i,\quad v_i = \log y_i,\quad
               \hat s = \frac{\sum_i (u_i - \bar u)(v_i - \bar v)}{S_{uu}},\quad
               S_{uu} = \sum_i (u_i - \bar u)^2,\quad \hat c = \bar v - \hat s\,\bar u,

    .. math::  se(\hat s) = \sqrt{\frac{RSS/(n-2)}{S_{uu}}},\qquad RSS = \sum_i (v_i - \hat c - \hat s u_i)^2

    (the classical OLS standard error, residuals assumed i.i.d.; ``nan`` for ``n = 2``).
    Uses: a weak error ``C·l^{-p}`` has slope ``−p`` in ``l`` (P1 Thm 4.3: ``p = 1``; pass
    ``|error|``); along the LSR family ``G/N`` has slope 1 in ``B`` until the SDE approximation fails
    (P1 §4).

    Args:
        x: positive abscissae (``l``, ``B``, ``η``); repeated values are allowed.
        y: the values; a fit through ``y_i ≤ 0`` has no logarithm.

    Returns:
        :class:`LogLogFit`. Undefined fits, with fewer than 2 points, a ``y_i ≤ 0`` or all ``x_i``
        equal, give ``nan`` for slope, SE and intercept (``n`` still counts the points).

    Raises:
        ValueError: ``x`` and ``y`` differ in length, an entry is not finite, or an ``x_i ≤ 0``.
    """
    u, v = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if u.shape != v.shape:
        raise ValueError(f"x and y must have the same length, got {u.size} and {v.size}")
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise ValueError(f"x and y must be finite, got x={u.tolist()}, y={v.tolist()}")
    if (u <= 0).any():
        raise ValueError(f"x entries must be > 0, got {float(u[u <= 0][0])!r}")
    n = int(u.size)
    undefined = LogLogFit(math.nan, math.nan, math.nan, n)
    if n < 2 or (v <= 0).any():
        return undefined
    u, v = np.log(u), np.log(v)
    du = u - u.mean()
    suu = float(du @ du)
    if suu == 0.0:
        return undefined
    slope = float(du @ (v - v.mean())) / suu
    intercept = float(v.mean() - slope * u.mean())
    if n < 3:
        return LogLogFit(slope, math.nan, intercept, n)
    resid = v - intercept - slope * u
    return LogLogFit(slope, math.sqrt(float(resid @ resid) / (n - 2) / suu), intercept, n)


def mean_se(values: np.ndarray) -> tuple[float, float]:
    r"""Sample mean and its standard error, ``(\bar v, s/\sqrt R)`` with ``s`` the Bessel-corrected SD.

    .. math::  \bar v = \frac1R \sum_r v_r,\qquad se = \sqrt{\frac{1}{R(R-1)} \sum_r (v_r - \bar v)^2}
    """
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def mc_check(samples: np.ndarray, exact: Any, direction: np.ndarray | None = None) -> dict[str, Any]:
    r"""z-scores of Monte-Carlo moments of ``R`` i.i.d. samples against exact ones.

    With ``y_r = x_r − \bar x`` and ``m_3(u) = E[(uᵀ(x − Ex))^3]``:

    .. math::  z_{mean,i} = \frac{\bar x_i - μ_i}{\sqrt{C_{ii}/R}},\qquad
               z_{cov,ij} = \frac{\frac{R}{R-1}\overline{y_i y_j} - C_{ij}}{sd(y_i y_j)/\sqrt R},\qquad
               z_{sq} = \frac{\overline{‖x‖^2} - E‖x‖^2}{sd(‖x‖^2)/\sqrt R},\qquad
               z_{third} = \frac{\overline{(uᵀy)^3} - m_3(u)}{sd((uᵀy)^3)/\sqrt R}

    The mean uses the exact SE, the others the sample SD (upper triangle of the covariance only).
    Each ``z`` is approximately standard normal for a correct simulation.

    Args:
        samples: ``(R, d)`` i.i.d. draws.
        exact: exact moments with ``mean`` ``(d,)``, ``cov`` ``(d, d)``, ``mean_sq_norm`` and, when
            ``direction`` is given, ``third`` ``(d, d, d)`` (e.g. :class:`svag.problems.Moments`).
        direction: ``u`` for the third central moment along ``uᵀx``; ``None`` skips it.

    Returns:
        ``{"z": {"mean": [...], "cov": [...], "sq_norm": z, "third": z}, "max_abs_z": max |z|}`` and,
        with ``direction``, the sample skewness ``\overline{(uᵀy)^3} / \overline{(uᵀy)^2}^{3/2}`` as
        ``"skewness"`` with its normal-theory SE ``\sqrt{6/R}`` as ``"skewness_se"``.
    """
    R = samples.shape[0]
    z_mean = (samples.mean(0) - exact.mean) / np.sqrt(np.diag(exact.cov) / R)
    y = samples - samples.mean(0)
    iu = np.triu_indices(samples.shape[1])
    prods = y[:, iu[0]] * y[:, iu[1]]
    z_cov = (prods.mean(0) * R / (R - 1) - exact.cov[iu]) / (prods.std(0, ddof=1) / math.sqrt(R))
    sq, sq_se = mean_se((samples**2).sum(1))
    zs: dict[str, Any] = {"mean": z_mean.tolist(), "cov": z_cov.tolist(), "sq_norm": (sq - exact.mean_sq_norm) / sq_se}
    out: dict[str, Any] = {}
    if direction is not None:
        proj = y @ np.asarray(direction, dtype=np.float64)
        cubes = proj**3
        target = float(np.einsum("abc,a,b,c->", exact.third, direction, direction, direction))
        zs["third"] = (cubes.mean() - target) / (cubes.std(ddof=1) / math.sqrt(R))
        out["skewness"] = float(cubes.mean() / (proj**2).mean() ** 1.5)
        out["skewness_se"] = math.sqrt(6.0 / R)
    flat = [abs(v) for v in (*zs["mean"], *zs["cov"], zs["sq_norm"], zs.get("third", 0.0))]
    return {"z": zs, "max_abs_z": max(flat), **out}


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0.0 < level < 1.0:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    return float(level)


def t_interval(estimate: float, se: float, df: float, level: float) -> tuple[float, float]:
    r"""Two-sided Student-t interval ``estimate ± t_{(1+level)/2, df}·se`` (``scipy.stats.t``).

    ``df = inf`` gives the normal interval; ``se = 0`` gives ``(estimate, estimate)`` for any ``df``.
    A ``(1 − 2α)`` interval (``level = 1 − 2α``) is the one whose inclusion in ``(−δ, δ)`` is the
    two one-sided tests (TOST) of equivalence at level α.
    """
    level = _check_level(level)
    if se == 0.0:
        return float(estimate), float(estimate)
    half = float(_scipy_stats.t.ppf(0.5 + level / 2.0, df)) * se
    return float(estimate - half), float(estimate + half)


def welch_df(variances: Sequence[float] | np.ndarray, counts: Sequence[int] | np.ndarray) -> float:
    r"""Welch–Satterthwaite degrees of freedom of a sum of independent variance estimates.

    For ``θ = Σ_i c_i \bar x_i`` from independent samples with sample variances ``s_i²`` and sizes
    ``n_i``, pass ``v_i = c_i² s_i²/n_i`` (the terms of ``Var θ``) and ``n_i``:

    .. math::  ν = \frac{(\sum_i v_i)^2}{\sum_i v_i^2/(n_i - 1)}

    (Welch 1947; Satterthwaite 1946). Terms with ``v_i = 0`` drop out. When every ``v_i`` is 0 the
    interval is a point whatever ``ν`` is; ``min_i n_i − 1`` is returned.

    Raises:
        ValueError: lengths differ, a ``v_i < 0`` or not finite, or an ``n_i < 2`` (no variance).
    """
    v, n = np.asarray(variances, dtype=np.float64).reshape(-1), np.asarray(counts, dtype=np.float64).reshape(-1)
    if v.shape != n.shape:
        raise ValueError(f"variances and counts must have the same length, got {v.size} and {n.size}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"variances must be finite and >= 0, got {v.tolist()}")
    if (n < 2).any():
        raise ValueError(f"counts must be >= 2 (a sample variance needs two values), got {n.astype(int).tolist()}")
    if not (v > 0).any():
        return float(n.min() - 1.0)
    return float(v.sum() ** 2 / (v**2 / (n - 1.0)).sum())


def seeds_for_half_width(
    spread: float, half_width: float, level: float, df_factor: float = 1.0, max_seeds: int = 10**7
) -> int:
    r"""The least ``n ≥ 2`` with ``t_{(1+level)/2, ν(n)}·spread/\sqrt n < half_width``, ``ν(n) = f·(n − 1)``.

    ``spread`` is the per-seed standard deviation of the statistic (its SE at ``n`` seeds is
    ``spread/√n``). ``f = df_factor`` is 1 for a mean over ``n`` seeds (paired runs); for a
    combination ``Σ c_l \bar x_l`` of independent groups of ``n`` seeds each, Welch–Satterthwaite
    gives ``ν(n) = (n − 1)(Σ_l a_l)²/Σ_l a_l²``, ``a_l = c_l² s_l²``. Starts from the normal
    approximation ``(z·spread/half_width)²`` (a lower bound, since ``t > z``) and steps up ``n``.

    Raises:
        ValueError: ``spread < 0``, ``half_width ≤ 0`` or ``df_factor ≤ 0`` (or not finite), or more
            than ``max_seeds`` would be needed.
    """
    level = _check_level(level)
    for name, value, ok in (
        ("spread", spread, spread >= 0),
        ("half_width", half_width, half_width > 0),
        ("df_factor", df_factor, df_factor > 0),
    ):
        if not (math.isfinite(value) and ok):
            raise ValueError(f"{name} must be a finite number {'>= 0' if name == 'spread' else '> 0'}, got {value!r}")
    if spread == 0.0:
        return 2
    q = 0.5 + level / 2.0
    n = max(2, math.floor((float(_scipy_stats.norm.ppf(q)) * spread / half_width) ** 2))
    while float(_scipy_stats.t.ppf(q, df_factor * (n - 1))) * spread / math.sqrt(n) >= half_width:
        n += 1
        if n > max_seeds:
            raise ValueError(f"more than max_seeds={max_seeds} seeds would be needed (spread={spread!r})")
    return n
