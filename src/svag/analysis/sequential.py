r"""Seeds added in rounds until the verdict is decided: a group-sequential design whose intervals
stay valid when the number of seeds depends on what the seeds showed.

A fixed-n t-interval read after every round of seeds and acted on ("stop when it decides") is no
longer a 95% interval: the looks give the noise several chances to cross a boundary. This module
replaces it by **repeated confidence intervals** (RCIs, Jennison & Turnbull 1989, "Interim analyses:
the repeated confidence interval approach", J. R. Statist. Soc. B 51, 305–361; Jennison & Turnbull
2000, *Group Sequential Methods with Applications to Clinical Trials*, ch. 9) on **Pocock's constant
boundary** (Pocock 1977, Biometrika 64, 191–199; J&T 2000 ch. 2) at looks planned in advance
(:func:`schedule`: ``n_1 < n_2 < … < n_K`` seeds per ``l``):

.. math::  \hat Δ_k \pm t_{ν_k}^{-1}\bigl(Φ(c_K)\bigr)\, se_k,\qquad
           P\Bigl(\max_{k \le K} Z_k \le c_K\Bigr) = 1 - γ,\quad
           \mathrm{corr}(Z_j, Z_k) = \sqrt{n_j / n_k}\ (j \le k),

with ``Z_k`` the standardized estimate after ``n_k`` seeds (a sum of i.i.d. per-seed gaps, hence the
Brownian correlation) and ``γ`` the error of one side. The interval holds the true gap at **every**
look simultaneously with probability ``≥ 1 − 2γ``, so it stays valid wherever the rounds stop, for
any reason. ``c_K`` is :func:`pocock_constant` (``scipy.stats.multivariate_normal``); the per-seed
spread is estimated, so each look turns ``c_K``'s nominal level ``Φ(c_K)`` into a Student-t quantile
at that look's ``ν_k = n_k − 1`` degrees of freedom (J&T 2000's nominal-level adjustment for
t-statistics).

**The decision** (equivalence-style, J&T 2000 ch. 6 with RCIs): with the gap's ``(1 − 2α)`` RCI
``[lo, hi]`` and the margin δ, *follows* when ``−δ < lo`` and ``hi < δ``; *departs* when ``lo > δ``
or ``hi < −δ`` (the whole interval beyond the margin on one side); otherwise *inconclusive* and the
next round runs. A wrong *follows* (``|Δ| ≥ δ``) or a wrong *departs* (``|Δ| ≤ δ``) needs the
interval to miss Δ on one side at some look: probability ``≤ α`` each. (The fixed-n rule "the
``1 − α`` interval excludes 0 and ``|Δ̂| > δ``" read at every look says *departs* wrongly 17.8% of
the time at Δ = 0.3, δ = 0.5, measured by the team; it is not used here.) A metric keeps the outcome
of the first look that decided it; its interval is the last look's (valid too).

**The extrapolation's bias.** More seeds shrink the interval but not the bias of the ``c/l`` fit on
a ladder with a ``d/l²`` term (``μ_l = μ_∞ + c/l + d/l²``: 91.3% coverage at 20 seeds for
``c = d = 0.5`` on ``l = 1, 2, 4, 8``). :func:`fit_order` guards it: with **4 or more values of l**
the gap uses the second-order Richardson fit ``μ_∞ + c/l + d/l²``
(:func:`svag.analysis.richardson.richardson_coefficients`, ``order=2``: unbiased for that ladder,
its variance 1.4× the first-order one on ``1, 2, 4, 8``); with **3** the first-order fit is kept (the
second-order one would cost 3.3× the seeds on ``1, 2, 4``) and the ladder's order check
(:func:`svag.analysis.richardson.order_check`'s contrast ``q``) is read at each look with the same
RCI constant: where it rejects order 1 the metric is not decided (add an ``l``). That check has
little power against a small ``d``: a 3-value ladder's guard is weaker, and the output says so.
Fewer than 3 values of ``l`` have no guard and are refused.

Statistics only (no files, no torch); :mod:`svag.experiments.compare` runs the rounds.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize as scipy_optimize
from scipy import stats as scipy_stats

from svag.analysis.equivalence import gap
from svag.analysis.richardson import Estimate, _check_alpha, _check_ladder, _check_level, order_check

__all__ = [
    "DESIGN",
    "Design",
    "Look",
    "design",
    "fit_order",
    "look",
    "pocock_constant",
    "pocock_constant_reference",
    "repeated_interval",
    "schedule",
    "sequential_outcome",
    "walk",
]

DESIGN = "Pocock-type repeated confidence intervals (Jennison & Turnbull 1989; 2000, ch. 9)"


# ---------------------------------------------------------------------------------------------- the looks


def schedule(first: int, max_seeds: int) -> tuple[int, ...]:
    """The planned looks, in seeds per ``l``: ``first, 2·first, 4·first, …`` while below
    ``max_seeds``, then ``max_seeds`` (``schedule(3, 48) = (3, 6, 12, 24, 48)``; ``(3, 6, 12, 20)`` for
    20). Doubling keeps the looks few (each look costs width: looks at every seed 3..20 made the 95%
    RCI cover 99%, the doubling looks 3, 6, 12, 24 97.5%, measured by the team)."""
    for value, name in ((first, "the first look"), (max_seeds, "max_seeds")):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
            raise ValueError(f"{name} must be an integer >= 2 (seeds per l), got {value!r}")
    if max_seeds < first:
        raise ValueError(f"max_seeds must be >= the first look's {first} seeds, got {max_seeds}")
    looks = [int(first)]
    while 2 * looks[-1] < max_seeds:
        looks.append(2 * looks[-1])
    if looks[-1] != max_seeds:
        looks.append(int(max_seeds))
    return tuple(looks)


def _check_looks(looks: Sequence[int]) -> np.ndarray:
    n = np.asarray(looks, dtype=np.float64).reshape(-1)
    if n.size < 1 or not np.isfinite(n).all() or (n < 1).any() or (np.diff(n) <= 0).any():
        raise ValueError(f"looks must be increasing numbers of seeds >= 1, got {list(looks)}")
    return n


def _correlation(n: np.ndarray) -> np.ndarray:
    """``corr(Z_j, Z_k) = sqrt(n_j/n_k)`` for ``n_j ≤ n_k``: ``Z_k`` standardizes a sum of ``n_k`` i.i.d. terms."""
    return np.sqrt(np.minimum.outer(n, n) / np.maximum.outer(n, n))


def pocock_constant(looks: Sequence[int], alpha: float, *, sides: int = 1) -> float:
    r"""Pocock's constant boundary ``c_K`` for looks after ``n_1 < … < n_K`` seeds (Pocock 1977; J&T 2000 ch. 2).

    ``sides=1``: ``P(max_k Z_k ≤ c) = 1 − α``; ``sides=2``: ``P(max_k |Z_k| ≤ c) = 1 − α`` (J&T's
    two-sided tests, their Table 2.1 for equal increments), with ``(Z_1, …, Z_K)`` standard normal,
    ``corr(Z_j, Z_k) = \sqrt{n_j/n_k}``. The probability is ``scipy.stats.multivariate_normal.cdf``
    (Genz's quasi-Monte-Carlo integration at a fixed seed, absolute error 1e-5), the root Brent's.
    One look gives ``Φ^{-1}(1 − α)`` (``Φ^{-1}(1 − α/2)`` two-sided). Slow reference:
    :func:`pocock_constant_reference`.
    """
    alpha = _check_alpha(alpha)
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    return _pocock(tuple(float(k) for k in _check_looks(looks)), alpha, sides)


@functools.lru_cache(maxsize=64)
def _pocock(looks: tuple[float, ...], alpha: float, sides: int) -> float:
    n = np.asarray(looks)
    tail = alpha / sides
    if n.size == 1:
        return float(scipy_stats.norm.ppf(1.0 - tail))
    corr = _correlation(n)

    def excess(c: float) -> float:
        # a fresh frozen distribution per call: its integration points come from seed 0 every time
        mvn = scipy_stats.multivariate_normal(np.zeros(n.size), corr, seed=0, abseps=1e-5, releps=0.0)
        p = mvn.cdf(np.full(n.size, c), lower_limit=-np.full(n.size, c) if sides == 2 else None)
        return float(p) - (1.0 - alpha)

    low, high = scipy_stats.norm.ppf(1.0 - tail), scipy_stats.norm.ppf(1.0 - tail / n.size)  # one look; Bonferroni
    return float(scipy_optimize.brentq(excess, low - 1e-9, high + 1e-9, xtol=1e-5))


def pocock_constant_reference(
    looks: Sequence[int], alpha: float, *, sides: int = 1, draws: int = 200_000, seed: int = 0
) -> float:
    """The same constant by brute force: ``draws`` random walks of i.i.d. N(0, 1) seeds, ``Z_k = S_{n_k}/√n_k``,
    and the ``1 − α`` quantile of ``max_k Z_k`` (``max_k |Z_k|``). Monte-Carlo error about
    ``√(α(1−α)/draws)/φ(c)`` in ``c``."""
    alpha = _check_alpha(alpha)
    n = _check_looks(looks).astype(int)
    rng = np.random.default_rng(seed)
    increments = np.diff(np.concatenate([[0], n]))
    sums = np.cumsum(rng.standard_normal((draws, n.size)) * np.sqrt(increments), axis=1)
    z = sums / np.sqrt(n)
    stat = np.abs(z).max(1) if sides == 2 else z.max(1)
    return float(np.quantile(stat, 1.0 - alpha))


# ---------------------------------------------------------------------------------------------- the design


@dataclass(frozen=True)
class Design:
    """A group-sequential design: the planned looks and the two Pocock constants of its RCIs.

    Attributes:
        looks: seeds per ``l`` at each planned look (:func:`schedule`).
        alpha: the error of each decision (a wrong *follows*, a wrong *departs*): the decision
            interval is the ``(1 − 2α)`` RCI.
        level: the level of the interval shown (the 95% RCI).
        decision_constant: ``c_K`` with one-sided error α (:func:`pocock_constant`).
        interval_constant: ``c_K`` with one-sided error ``(1 − level)/2``.
    """

    looks: tuple[int, ...]
    alpha: float
    level: float
    decision_constant: float
    interval_constant: float

    def describe(self) -> str:
        """One line naming the design, its looks and constants, as the output states it."""
        looks = ", ".join(str(n) for n in self.looks)
        return (
            f"{DESIGN}: looks at {looks} seeds per l, Pocock constants c = {self.decision_constant:.3f} (the "
            f"{1 - 2 * self.alpha:.0%} interval that decides) and {self.interval_constant:.3f} (the {self.level:.0%} "
            "interval shown), as t quantiles at each look's n − 1 df"
        )


def design(looks: Sequence[int], alpha: float = 0.05, level: float = 0.95) -> Design:
    """The :class:`Design` of ``looks`` at decision error ``alpha`` and shown level ``level``."""
    n = tuple(int(k) for k in _check_looks(looks))
    alpha, level = _check_alpha(alpha), _check_level(level)
    return Design(n, alpha, level, pocock_constant(n, alpha), pocock_constant(n, (1.0 - level) / 2.0))


def repeated_interval(est: Estimate, constant: float) -> tuple[float, float]:
    r"""The RCI ``θ̂ ± t_ν^{-1}(Φ(c))·se`` of a paired contrast at one look (``ν = est.df``; module docstring)."""
    q = float(scipy_stats.t.ppf(scipy_stats.norm.cdf(constant), est.df))
    return est.estimate - q * est.se, est.estimate + q * est.se


def sequential_outcome(interval: tuple[float, float], delta: float) -> str:
    """The decision from the ``(1 − 2α)`` RCI ``[lo, hi]`` and the margin δ: *follows* inside ``(−δ, δ)``,
    *departs* entirely beyond δ on one side, else *inconclusive* (module docstring)."""
    lo, hi = interval
    if -delta < lo and hi < delta:
        return "follows"
    if lo > delta or hi < -delta:
        return "departs"
    return "inconclusive"


# ---------------------------------------------------------------------------------------------- one look


def fit_order(n_ls: int) -> int:
    """The order of the Richardson fit the sequential verdict uses on a ladder of ``n_ls`` values of
    ``l``: 2 (``c/l + d/l²``) from 4 values, 1 with 3 (guarded by the order check), refused below."""
    if n_ls < 3:
        raise ValueError(
            f"the sequential verdict needs at least 3 values of l (to guard the extrapolation as seeds grow), "
            f"got {n_ls}"
        )
    return 2 if n_ls >= 4 else 1


@dataclass(frozen=True)
class Look:
    """One metric at one look of the design.

    Attributes:
        n_seeds: complete seeds (finite at every ``l``) the gap used.
        estimate, se, df: the gap ``Δ̂ = μ_1 − μ̂_∞`` (paired, per-seed) and its t statistics.
        decision_interval: the ``(1 − 2α)`` RCI.
        interval: the ``level`` RCI (95%).
        delta: the margin δ.
        outcome: ``follows`` / ``departs`` / ``inconclusive`` at this look.
        order: the Richardson fit's order (:func:`fit_order`).
        reason: one line saying why.
    """

    n_seeds: int
    estimate: float
    se: float
    df: float
    decision_interval: tuple[float, float]
    interval: tuple[float, float]
    delta: float
    outcome: str
    order: int
    reason: str


def look(
    ls: Sequence[float] | np.ndarray, values: np.ndarray, delta: float, plan: Design, *, order: int | None = None
) -> Look:
    """The sequential verdict of one metric from ``values[l, seed]`` (paired seeds) at one look.

    The gap uses the fit of :func:`fit_order` (``order``: another, for the tests that show why); with the
    first-order fit on 3 values of ``l``, a look where the order check's contrast ``q``
    (:func:`svag.analysis.richardson.order_check`) has a ``(1 − 2α)`` RCI excluding 0 withholds the
    decision (module docstring)."""
    ls_sorted, v = _check_ladder(ls, values)
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
    order = fit_order(len(ls_sorted)) if order is None else order
    g = gap(ls_sorted, v, paired=True, alpha=plan.alpha, order=order)
    decide = repeated_interval(g, plan.decision_constant)
    shown = repeated_interval(g, plan.interval_constant)
    outcome = sequential_outcome(decide, delta)
    n = int(min(g.n_seeds))
    band = f"the {1 - 2 * plan.alpha:.0%} RCI [{decide[0]:.4g}, {decide[1]:.4g}] at {n} seeds"
    if outcome == "follows":
        reason = f"{band} lies inside ±{delta:.4g}"
    elif outcome == "departs":
        reason = f"{band} lies beyond {'+' if decide[0] > delta else '−'}{delta:.4g}"
    else:
        reason = f"{band} is neither inside ±{delta:.4g} nor beyond it"
    if order == 1 and len(ls_sorted) == 3:
        oc = order_check(ls_sorted, v, paired=True)
        q = Estimate(oc.contrasts[0], oc.contrast_ses[0], oc.contrast_df[0], (n,), True, math.nan, 1.0)
        q_lo, q_hi = repeated_interval(q, plan.decision_constant)
        if (q_lo > 0 or q_hi < 0) and outcome != "inconclusive":
            outcome = "inconclusive"
            reason = (
                f"the ladder's order check rejects weak order 1 (q = {q.estimate:.3g}, RCI [{q_lo:.3g}, {q_hi:.3g}]): "
                f"the c/l extrapolation is biased; add an l (4 values fit c/l + d/l²); {band}"
            )
    return Look(n, g.estimate, g.se, g.df, decide, shown, float(delta), outcome, order, reason)


def walk(
    ls: Sequence[float] | np.ndarray, values: np.ndarray, delta: float, plan: Design, *, order: int | None = None
) -> list[Look]:
    """The looks of one metric over ``values[l, seed]``: at each planned look the first ``n_k`` seeds,
    until a look decides or the seeds or the looks run out (what :mod:`svag.experiments.compare` does
    round by round, for tests and simulations). Returns every look made; the last is where it stopped."""
    v = np.asarray(values, dtype=np.float64)
    made: list[Look] = []
    for n in plan.looks:
        if n > v.shape[1]:
            break
        made.append(look(ls, v[:, :n], delta, plan, order=order))
        if made[-1].outcome != "inconclusive":
            break
    return made
