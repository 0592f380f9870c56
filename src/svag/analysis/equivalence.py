r"""Does SGD follow its SDE? The gap ``Δ = μ_1 − μ_∞`` between SGD and the extrapolated SDE, its
decomposition with Gaussian-noise runs, and the verdict as an equivalence test.

Statistics only, built on :mod:`svag.analysis.richardson`'s contrasts (values ``[l_index, seed_index]``,
paired or unpaired seeds, t-intervals).

**Verdicts as equivalence tests** (PAPER.md §6). With the gap ``Δ = μ_1 − μ_∞`` and a margin ``δ``:
*follows* when the ``(1 − 2α)`` interval of ``Δ`` lies inside ``(−δ, δ)`` (two one-sided tests at
level α); *departs* when the ``(1 − α)`` interval excludes 0 **and** ``|Δ̂| > δ``; otherwise
*inconclusive*, with the number of seeds at which the ``(1 − 2α)`` interval's half-width would fall
below ``δ/2`` at the observed spread. :func:`decompose` splits the gap with Gaussian-noise (NGD) runs:
SGD − NGD (non-Gaussian noise, both at ``l = 1``) plus NGD − SDE (discretization at step η).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from svag.analysis.richardson import (
    Estimate,
    Extrapolation,
    _check_alpha,
    _check_ladder,
    _complete,
    _extrapolation,
    _fit,
    _fit_rows,
    contrast,
)

__all__ = [
    "DEFAULT_MARGINS",
    "OUTCOMES",
    "Decomposition",
    "Gap",
    "Margin",
    "Verdict",
    "decompose",
    "gap",
    "resolve_margin",
    "verdict",
]

OUTCOMES = ("follows", "departs", "inconclusive")


# ---------------------------------------------------------------------------------------------- gap


@dataclass(frozen=True)
class Gap(Estimate):
    r"""A gap between two of SGD (``l = 1``), NGD and the SDE (``μ̂_∞``), with its two intervals.

    Attributes (besides :class:`Estimate`'s ``estimate`` = the gap, ``se``, ``df``, ``n_seeds``, …):
        label: ``"SGD - SDE"``, ``"SGD - NGD"`` or ``"NGD - SDE"``.
        alpha: the test level α of the intervals.
        interval_2alpha: the ``(1 − 2α)`` t-interval (equivalence: TOST at level α).
        interval_alpha: the ``(1 − α)`` t-interval (difference).
        sgd_mean: mean of the SGD (``l = 1``) runs used, the reference of relative margins.
        sde: the extrapolation ``μ̂_∞`` (``None`` for SGD − NGD).
    """

    label: str = "SGD - SDE"
    alpha: float = 0.05
    interval_2alpha: tuple[float, float] = (math.nan, math.nan)
    interval_alpha: tuple[float, float] = (math.nan, math.nan)
    sgd_mean: float = math.nan
    sde: Extrapolation | None = field(default=None, repr=False)


def _gap(est: Estimate, label: str, alpha: float, sgd_mean: float, sde: Extrapolation | None) -> Gap:
    return Gap(
        **est.__dict__,
        label=label,
        alpha=alpha,
        interval_2alpha=est.interval(1.0 - 2.0 * alpha),
        interval_alpha=est.interval(1.0 - alpha),
        sgd_mean=sgd_mean,
        sde=sde,
    )


def _sgd_row(ls: np.ndarray) -> int:
    if ls[0] != 1.0:
        raise ValueError(f"the gap needs the SGD runs (l = 1) in the ladder, got ls={ls.tolist()}")
    return 0


def gap(
    ls: Sequence[float] | np.ndarray,
    values: np.ndarray | Sequence,
    *,
    paired: bool,
    fit: str = "wls",
    weights: str = "seeds",
    alpha: float = 0.05,
    use: Sequence[float] | None = None,
    order: int = 1,
) -> Gap:
    r"""The SGD-to-SDE gap ``Δ = μ_1 − μ_∞`` with its ``(1 − 2α)`` and ``(1 − α)`` t-intervals.

    ``μ_1`` is the ``l = 1`` row (SGD itself), ``μ̂_∞`` the extrapolation of :func:`extrapolate`
    (same ``fit``/``weights``/``use``). ``Δ̂ = \bar μ_1 − Σ c_l \bar μ_l`` is one linear contrast: paired → per-seed
    gaps (each seed's ``v_{1,s}`` minus its own extrapolation) and a t-interval with ``n − 1`` df, over
    the seeds complete on ``l = 1`` and the fit's ``l``; unpaired → ``Var = Σ w_l² s_l²/n_l`` with
    Welch–Satterthwaite df. ``sde`` carries ``μ̂_∞`` with its ``(1 − α)`` interval on the same seeds.
    ``order=2`` fits ``μ_l = μ_∞ + c/l + d/l²`` (:func:`richardson_coefficients`; ``fit="wls"``, at
    least 3 values of ``l``): no ``1/l²`` bias, a wider interval.
    """
    ls, v = _check_ladder(ls, values)
    alpha = _check_alpha(alpha)
    rows = _fit_rows(ls, use, fit)
    sgd = _sgd_row(ls)
    if paired:
        v = _complete(v, np.union1d(rows, [sgd]))
    c_inf, c_slope = _fit(ls, v, rows, fit, weights, order)
    w = -c_inf
    w[sgd] += 1.0
    sde = _extrapolation(ls, v, rows, (c_inf, c_slope), fit, weights, paired, 1.0 - alpha)
    return _gap(contrast(v, w, paired=paired), "SGD - SDE", alpha, float(np.nanmean(v[sgd])), sde)


@dataclass(frozen=True)
class Decomposition:
    """``SGD − SDE = (SGD − NGD) + (NGD − SDE)`` (PAPER.md §6), each with its intervals, on the same seeds.

    Attributes:
        total: SGD − SDE (:func:`gap`).
        non_gaussian: SGD − NGD, both at ``l = 1``: the effect of SGD's non-Gaussian noise.
        discretization: NGD − SDE: Euler–Maruyama's error at step η (NGD at ``l = 1`` is EM with ``dt = η``).
    """

    total: Gap
    non_gaussian: Gap
    discretization: Gap


def decompose(
    ls: Sequence[float] | np.ndarray,
    values: np.ndarray | Sequence,
    ngd_values: np.ndarray | Sequence,
    *,
    paired: bool,
    fit: str = "wls",
    weights: str = "seeds",
    alpha: float = 0.05,
    use: Sequence[float] | None = None,
) -> Decomposition:
    r"""Split the SGD-to-SDE gap with Gaussian-noise runs (NGD: P1's per-sample weights, ``l = 1``).

    The three gaps are linear contrasts of the rows ``[SVAG ladder…, NGD]``: ``μ_1 − μ̂_∞``,
    ``μ_1 − μ_NGD`` and ``μ_NGD − μ̂_∞``; the estimates add up exactly. ``μ̂_∞`` comes from the SVAG
    ladder (as in :func:`gap`). Paired (NGD seed ``s`` shares its initialization with SVAG seed ``s``,
    as with the runner's seed tree): ``ngd_values[s]`` pairs with column ``s`` of ``values``, every
    contrast is per seed over the seeds complete on all rows used, and a t-interval; unpaired: Welch.

    Args:
        ls, values, paired, fit, weights, alpha, use: as in :func:`gap` (``l = 1`` must be on the ladder).
        ngd_values: the NGD runs' metric per seed, 1-D; paired: one per column of ``values``.
    """
    ls, v = _check_ladder(ls, values)
    alpha = _check_alpha(alpha)
    ngd = np.array(ngd_values, dtype=np.float64)
    if ngd.ndim != 1:
        raise ValueError(f"ngd_values must be 1-D (one value per seed), got shape {ngd.shape}")
    if paired and ngd.size != v.shape[1]:
        raise ValueError(f"paired ngd_values must have one value per seed of values ({v.shape[1]}), got {ngd.size}")
    rows = _fit_rows(ls, use, fit)
    sgd = _sgd_row(ls)
    width = max(v.shape[1], ngd.size)
    stacked = np.full((len(ls) + 1, width), np.nan)
    stacked[:-1, : v.shape[1]], stacked[-1, : ngd.size] = v, ngd
    stacked[~np.isfinite(stacked)] = np.nan
    if paired:
        stacked = _complete(stacked, np.union1d(rows, [sgd, len(ls)]))
    c_inf, c_slope = _fit(ls, stacked[:-1], rows, fit, weights)
    e_sgd, e_ngd, e_sde = np.zeros(len(ls) + 1), np.zeros(len(ls) + 1), np.append(c_inf, 0.0)
    e_sgd[sgd], e_ngd[-1] = 1.0, 1.0
    sde = _extrapolation(ls, stacked[:-1], rows, (c_inf, c_slope), fit, weights, paired, 1.0 - alpha)
    sgd_mean = float(np.nanmean(stacked[sgd]))
    parts = [
        _gap(contrast(stacked, a - b, paired=paired), label, alpha, sgd_mean, s)
        for a, b, label, s in (
            (e_sgd, e_sde, "SGD - SDE", sde),
            (e_sgd, e_ngd, "SGD - NGD", None),
            (e_ngd, e_sde, "NGD - SDE", sde),
        )
    ]
    return Decomposition(*parts)


# ---------------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    """The outcome of the equivalence test of a gap against a margin ``δ`` (PAPER.md §6).

    Attributes:
        outcome: ``"follows"``, ``"departs"`` or ``"inconclusive"``.
        estimate: the gap ``Δ̂``.
        delta: the margin δ.
        alpha: the test level α.
        interval_2alpha, interval_alpha: the gap's ``(1 − 2α)`` and ``(1 − α)`` t-intervals.
        n_seeds: seeds the gap used (per ``l``).
        seeds_needed: inconclusive only: seeds per ``l`` at which the ``(1 − 2α)`` interval's half-width
            would fall below ``δ/2`` at the observed spread (``None`` otherwise). It sizes precision, not
            the outcome: a true gap near δ stays undecided at any size.
        reason: one line saying why.
    """

    outcome: str
    estimate: float
    delta: float
    alpha: float
    interval_2alpha: tuple[float, float]
    interval_alpha: tuple[float, float]
    n_seeds: tuple[int, ...]
    seeds_needed: int | None
    reason: str


def verdict(gap: Gap | Estimate, delta: float, alpha: float | None = None) -> Verdict:
    r"""*follows* / *departs* / *inconclusive* for a gap and a margin δ (PAPER.md §6, "Verdicts").

    * **follows** when the ``(1 − 2α)`` interval lies inside ``(−δ, δ)``: the two one-sided tests
      ``H0: Δ ≤ −δ`` and ``H0: Δ ≥ δ`` both reject at level α (equivalence within δ);
    * **departs** when the ``(1 − α)`` interval excludes 0 **and** ``|Δ̂| > δ``: a significant gap
      larger than the margin;
    * otherwise **inconclusive**, with ``seeds_needed`` (:meth:`Estimate.seeds_needed` at half-width
      ``δ/2`` and level ``1 − 2α``, t quantiles at the projected degrees of freedom).

    The two decided outcomes exclude each other (follows implies ``|Δ̂| < δ``).

    Args:
        gap: from :func:`gap` or :func:`decompose` (any :class:`Estimate` works).
        delta: the margin δ > 0, in the metric's units (:func:`resolve_margin`).
        alpha: the test level in (0, 0.5); default the gap's own α (0.05 unless set there).
    """
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
    alpha = _check_alpha(getattr(gap, "alpha", 0.05) if alpha is None else alpha)
    equiv, diff = gap.interval(1.0 - 2.0 * alpha), gap.interval(1.0 - alpha)
    est, delta = gap.estimate, float(delta)
    needed = None
    if -delta < equiv[0] and equiv[1] < delta:
        outcome = "follows"
        reason = f"the {1 - 2 * alpha:.0%} interval [{equiv[0]:.4g}, {equiv[1]:.4g}] lies inside ±{delta:.4g}"
    elif (diff[0] > 0 or diff[1] < 0) and abs(est) > delta:
        outcome = "departs"
        reason = f"the {1 - alpha:.0%} interval [{diff[0]:.4g}, {diff[1]:.4g}] excludes 0 and |{est:.4g}| > {delta:.4g}"
    else:
        outcome = "inconclusive"
        needed = gap.seeds_needed(delta / 2.0, 1.0 - 2.0 * alpha)
        reason = (
            f"the {1 - 2 * alpha:.0%} interval [{equiv[0]:.4g}, {equiv[1]:.4g}] is not inside ±{delta:.4g} and "
            f"the gap is not shown to exceed it; {needed} seeds per l would bring its half-width below δ/2"
        )
    return Verdict(outcome, est, delta, alpha, equiv, diff, gap.n_seeds, needed, reason)


# ---------------------------------------------------------------------------------------------- margins


@dataclass(frozen=True)
class Margin:
    """An equivalence margin: ``value`` in the metric's units (``relative=False``) or as a fraction of
    the SGD (``l = 1``) mean (``relative=True``)."""

    value: float
    relative: bool
    rationale: str = ""


DEFAULT_MARGINS: Mapping[str, Margin] = {
    # one percentage point: P1 calls the LSR failed at a 20% relative rise of test error (1.6 points at
    # 8% error, §4 table), so 1 point is below any effect the paper counts; CIFAR seed spread ≈ 0.2–0.3 pt.
    "test_acc": Margin(0.01, False, "1 point of accuracy: below P1's 20%-relative error rise (~1.6 pt at 8%)"),
    "train_acc": Margin(0.01, False, "1 point of accuracy, as test_acc"),
    # losses shrink by orders of magnitude over training, so an absolute margin means nothing late in a
    # run; 2% of SGD's value is about the size of a 1-point accuracy change near the end of training.
    "test_loss": Margin(0.02, True, "2% of the SGD value: losses change scale over training"),
    "train_loss": Margin(0.02, True, "2% of the SGD value: losses change scale over training"),
    # ‖x‖² of a scale-invariant net sets its effective LR η/‖x‖²: 2% of ‖x‖² is 2% of the effective LR.
    "weight_norm_sq": Margin(0.02, True, "2% of the SGD value: ‖x‖² sets the effective LR η/‖x‖²"),
    # G = ‖∇L‖² is noisy from evaluation to evaluation and P1's G/N test reads it on a log scale, where
    # the threshold τ = 2 is a factor; 10% is far below that factor and within a few seeds' reach.
    "grad_norm_sq": Margin(0.10, True, "10% of the SGD value: G is read on a log scale (P1 §4, τ = 2)"),
}


def resolve_margin(
    metric: str,
    sgd_mean: float | None = None,
    margin: float | str | Margin | None = None,
    margins: Mapping[str, Margin] = DEFAULT_MARGINS,
) -> float:
    """The margin δ of ``metric`` in its own units.

    Args:
        metric: a metric name (a key of ``margins`` unless ``margin`` is given).
        sgd_mean: the SGD (``l = 1``) mean, the reference of a relative margin (``Gap.sgd_mean``); it
            is treated as fixed (its own noise is not propagated).
        margin: an override: a number (absolute), a string ``"0.01"`` (absolute) or ``"2%"`` (relative),
            or a :class:`Margin`; ``None`` takes ``margins[metric]``.
        margins: the defaults (:data:`DEFAULT_MARGINS`).

    Raises:
        ValueError: unknown metric without an override, a margin ≤ 0, or a relative margin without a
            finite non-zero ``sgd_mean``.
    """
    if margin is None:
        if metric not in margins:
            raise ValueError(f"no default margin for metric {metric!r}; known: {', '.join(sorted(margins))}")
        margin = margins[metric]
    elif isinstance(margin, str):
        text = margin.strip()
        try:
            margin = Margin(float(text[:-1]) / 100.0, True) if text.endswith("%") else Margin(float(text), False)
        except ValueError:
            raise ValueError(f"margin must be a number or a percentage like '2%', got {text!r}") from None
    elif not isinstance(margin, Margin):
        if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
            raise ValueError(f"margin must be a number, a string like '2%' or a Margin, got {margin!r}")
        margin = Margin(float(margin), False)
    if not (math.isfinite(margin.value) and margin.value > 0):
        raise ValueError(f"the margin of {metric!r} must be a finite number > 0, got {margin.value!r}")
    if not margin.relative:
        return float(margin.value)
    if sgd_mean is None or not math.isfinite(sgd_mean) or sgd_mean == 0:
        raise ValueError(f"a relative margin for {metric!r} needs a finite non-zero sgd_mean, got {sgd_mean!r}")
    return float(margin.value * abs(sgd_mean))
