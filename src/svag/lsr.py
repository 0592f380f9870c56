"""When does the linear scaling rule fail? P1's necessary condition ``G/N ≤ τ`` and its tables.

Source: P1 (Li, Malladi & Arora 2021, arXiv 2102.12470), the necessary
condition for the LSR (summarized in the project's PAPER.md §4). For a scale-invariant net with
weight decay at the equilibrium of the constant-LR phase, SGD and its SDE can only be C-close if
``G/N ≤ τ := C² − 1`` (necessary, not sufficient). Along the LSR family ``(κB, κη)`` the ratio
grows linearly, ``G/N(κ) = κ·G/N(1)`` (slope 1 in log–log), so from one baseline run the rule is
predicted to fail beyond ``B* = B0·τ·N0/G0``. P1's figure uses ``τ = 2``.

``G/N`` here is always measured at each run's own batch size (see :mod:`svag.noise`). The pooled
``G/N`` of a window is :func:`svag.noise.pool_window`; the log–log slope of ``G/N`` in ``B`` is
:func:`svag.analysis.stats.fit_loglog_slope`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from svag.noise_window import pool_window

__all__ = [
    "FEW_ESTIMATES",
    "MaxBatchPrediction",
    "check_tau",
    "check_window",
    "envelope_batch",
    "error_rise_batch",
    "max_batch_interval",
    "predict_from_window",
    "predict_max_batch",
    "predict_max_batch_with_se",
    "prediction_line",
    "suggest_batch_sizes",
    "verdicts",
    "window_prediction",
]

FEW_ESTIMATES = 30
"""Below this many pooled estimates :func:`prediction_line` says in words that few back the interval: its ``z``
quantile treats the SEs as known, while from ``m`` estimates they are ``t``-distributed with ``m − 1`` degrees of
freedom; at ``m = 30`` the 95% ``t`` quantile is 2.05 against ``z = 1.96`` (the interval ~4% too narrow), at ``m = 5``
2.78 (~40% too narrow), and the relative SE of an SE is ``1/√(2(m − 1))`` (13% at 30, 35% at 5)."""


def _check_batch(b: Any, name: str = "batch_size") -> int:
    if isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {b!r}")
    return int(b)


def check_tau(tau: Any) -> float:
    """``τ`` of the condition ``G/N ≤ τ`` (P1 §4): a finite number ``> 0``."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    return float(tau)


def check_window(window: Any) -> tuple[float, float] | None:
    """A measurement window ``(start, end)`` in epochs, ``0 <= start < end`` (``None``: the whole run), as the
    training-loop integrations take it."""
    if window is None:
        return None
    ok = len(window) == 2 and all(isinstance(v, numbers.Real) and math.isfinite(v) for v in window)
    if not (ok and 0 <= window[0] < window[1]):
        raise ValueError(f"window must be (start, end) epochs with 0 <= start < end, got {window!r}")
    return float(window[0]), float(window[1])


def _check_finite(x: Any, name: str, positive: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    if positive and x <= 0:
        raise ValueError(f"{name} must be > 0, got {x!r}")
    return float(x)


def _check_runs(batch_sizes: Sequence[Any], *columns: tuple[str, Sequence[Any]]) -> list[int]:
    bs = [_check_batch(b, "batch_sizes entries") for b in batch_sizes]
    if not bs:
        raise ValueError("batch_sizes must not be empty")
    if len(set(bs)) != len(bs):
        raise ValueError(f"batch_sizes must be distinct, got {list(batch_sizes)!r}")
    for name, col in columns:
        if len(col) != len(bs):
            raise ValueError(f"{name} must have one entry per batch size ({len(bs)}), got {len(col)}")
    return bs


def predict_max_batch(batch_size: int, G: float, N: float, tau: float = 2.0) -> float:
    r"""The batch size beyond which the LSR is predicted to fail, from one baseline run.

    .. math::  B^* = B_0 \cdot τ \cdot \frac{N_0}{G_0}

    where ``G0/N0`` is the equilibrium ratio of the baseline run at its own batch size ``B0``
    (P1: the slope-1 line ``G/N(κ) = κ·G0/N0`` crosses ``τ`` at ``κ = τN0/G0``). A ratio of
    ``G/N`` may be passed as ``G`` with ``N = 1``.

    ``G = 0`` gives ``inf`` (no signal: the line never reaches ``τ``). ``G < 0`` gives ``nan``:
    P1's unbiased estimator ``Ĝ`` is negative when the signal is below its noise floor, which
    says ``G`` is small compared with its standard error, not how small, so no ``B*`` follows
    from it (only that it is large): measure over a longer window or with more batches.
    """
    B0 = _check_batch(batch_size)
    tau = check_tau(tau)
    G = _check_finite(G, "G")
    N = _check_finite(N, "N", positive=True)
    if G < 0:
        return math.nan
    if G == 0:
        return math.inf
    return B0 * tau * N / G


@dataclass(frozen=True)
class MaxBatchPrediction:
    """``B*`` and its standard error (delta method)."""

    B_star: float
    B_star_se: float


def predict_max_batch_with_se(
    batch_size: int,
    G: float,
    N: float,
    tau: float = 2.0,
    *,
    G_se: float | None = None,
    N_se: float | None = None,
    cov_GN: float = 0.0,
    ratio_se: float | None = None,
) -> MaxBatchPrediction:
    r""":func:`predict_max_batch` with a delta-method standard error.

    .. math::  \Big(\frac{se(B^*)}{B^*}\Big)^2 = \Big(\frac{se(G)}{G}\Big)^2 + \Big(\frac{se(N)}{N}\Big)^2
               - \frac{2\,cov(G, N)}{GN} \quad\text{or}\quad \frac{se(G/N)}{G/N}

    Give either ``G_se`` and ``N_se`` (with their covariance ``cov_GN``, 0 for independent
    estimates) or ``ratio_se``. First order in the relative errors: when ``se(G)/G`` is not
    small the distribution of ``B*`` is skewed and this SE understates the upper tail.
    """
    B_star = predict_max_batch(batch_size, G, N, tau)
    if ratio_se is not None:
        if G_se is not None or N_se is not None:
            raise ValueError("give either ratio_se or G_se and N_se, not both")
        rel2 = (_check_finite(ratio_se, "ratio_se") / (G / N)) ** 2 if G > 0 else math.nan
    elif G_se is not None and N_se is not None:
        gs, ns = _check_finite(G_se, "G_se"), _check_finite(N_se, "N_se")
        c = _check_finite(cov_GN, "cov_GN")
        rel2 = (gs / G) ** 2 + (ns / N) ** 2 - 2 * c / (G * N) if G > 0 else math.nan
    else:
        raise ValueError("predict_max_batch_with_se needs ratio_se, or both G_se and N_se")
    if not math.isfinite(B_star):
        return MaxBatchPrediction(B_star, math.nan)
    return MaxBatchPrediction(B_star, B_star * math.sqrt(max(rel2, 0.0)))


def predict_from_window(batch_size: int, window: Any, tau: float = 2.0) -> MaxBatchPrediction:
    r"""P1's ``B* = B0·τ·N0/G0`` from the pooled ``G/N`` of a baseline's window, with its SE.

    ``window`` is a :class:`svag.noise.NoiseResult` (``G``, ``N``, their SEs and ``ratio_se``), as
    :func:`svag.noise.pool_window` returns for the records of the window, or a mapping with those
    keys. The SE is the delta-method
    one of the ratio, ``se(B*)/B* = se(G/N)/(G/N)`` (covariance of ``G`` and ``N`` included, see
    :func:`predict_max_batch_with_se`); ``nan`` when the window has fewer than 2 estimates. Used by
    ``svag lsr`` and by the Lightning callback (:mod:`svag.integrations.lightning`), so both predict alike.
    """
    get = window.get if isinstance(window, Mapping) else lambda key: getattr(window, key)
    G, N, G_se, N_se = get("G"), get("N"), get("G_se"), get("N_se")
    if math.isfinite(G_se) and math.isfinite(N_se):
        return predict_max_batch_with_se(batch_size, G, N, tau=tau, ratio_se=get("ratio_se"))
    return MaxBatchPrediction(predict_max_batch(batch_size, G, N, tau), math.nan)


def max_batch_interval(batch_size: int, window: Any, tau: float = 2.0, level: float = 0.95) -> tuple[float, float]:
    r"""Fieller's interval for ``B* = B0·τ·N/G`` from a window's pooled ``G``, ``N``, their SEs and covariance:
    positive and asymmetric, where ``B* ± z·se(B*)`` (the delta method) can reach below 0.

    The ratio ``ρ = G/N`` is in the ``level`` set when ``(Ĝ − ρN̂)² ≤ z²(se_G² − 2ρ·cov + ρ²se_N²)``
    (Fieller 1954; ``z`` the normal quantile), the roots of ``aρ² − 2bρ + c = 0`` with

    .. math::  a = N̂^2 - z^2 se_N^2,\quad b = \hat G\hat N - z^2 cov,\quad c = \hat G^2 - z^2 se_G^2,
               \qquad ρ_{lo,hi} = (b ∓ \sqrt{b^2 - ac})/a,

    and ``B* = B0·τ/ρ`` maps it to ``[B0·τ/ρ_hi, B0·τ/ρ_lo]``. It tends to the delta-method interval of
    :func:`predict_from_window` as the SEs shrink.

    ``window`` as for :func:`predict_from_window` (needs ``G``, ``N``, ``G_se``, ``N_se`` and ``GN_cov``; a missing
    or nan covariance counts as 0). Returns ``(low, high)``:

    * ``high = inf`` when ``ρ_lo ≤ 0``: ``G`` is not distinguishable from 0 at ``level``, so the data bound ``B*``
      only from below;
    * ``(0, inf)`` when ``a ≤ 0``: ``N`` is not distinguishable from 0 (the set of ``ρ`` is unbounded);
    * ``(nan, nan)`` when the SEs are not finite (fewer than 2 estimates pooled) or ``ρ_hi ≤ 0`` (``G``
      significantly negative: no positive ``B*``).
    """
    B0, tau = _check_batch(batch_size), check_tau(tau)
    level = _check_finite(level, "level")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    get = window.get if isinstance(window, Mapping) else lambda key: getattr(window, key, None)
    G, N, G_se, N_se, cov = (get(k) for k in ("G", "N", "G_se", "N_se", "GN_cov"))
    G, N = _check_finite(G, "G"), _check_finite(N, "N")
    if G_se is None or N_se is None or not (math.isfinite(G_se) and math.isfinite(N_se)):
        return math.nan, math.nan
    cov = 0.0 if cov is None or not math.isfinite(cov) else float(cov)
    z2 = NormalDist().inv_cdf((1 + level) / 2) ** 2
    a, b, c = N * N - z2 * N_se * N_se, G * N - z2 * cov, G * G - z2 * G_se * G_se
    if a <= 0:
        return 0.0, math.inf
    root = math.sqrt(max(b * b - a * c, 0.0))  # ≥ 0 whenever the covariance matrix is: ρ = Ĝ/N̂ is in the set
    lo, hi = (b - root) / a, (b + root) / a
    if hi <= 0:
        return math.nan, math.nan
    return B0 * tau / hi, (B0 * tau / lo if lo > 0 else math.inf)


def envelope_batch(
    batch_sizes: Sequence[int], ratios: Sequence[float], tau: float = 2.0, *, among: str = "holding"
) -> float:
    r"""``B*`` from the pessimistic slope-1 line over several runs (P1's figure, red dashes).

    .. math::  B^* = τ \,/\, \max_i \frac{(G/N)_i}{B_i}

    the line ``G/N = c·B`` through the run with the largest ``(G/N)/B`` crosses ``τ``.
    ``among="holding"`` (default) takes the maximum over the runs where the condition still
    holds (``G/N ≤ τ``): past ``τ`` the SDE approximation has failed and the ratio leaves the
    slope-1 regime (on P1's PreResNet-32 BN row this gives ≈1340, the paper's value; falls back
    to all runs if none holds). ``among="all"`` uses every run.
    """
    tau = check_tau(tau)
    bs = _check_runs(batch_sizes, ("ratios", ratios))
    if among not in ("holding", "all"):
        raise ValueError(f"among must be 'holding' or 'all', got {among!r}")
    rs = [_check_finite(r, "ratios entries") for r in ratios]
    runs = list(zip(bs, rs))
    if among == "holding" and any(r <= tau for _, r in runs):
        runs = [(b, r) for b, r in runs if r <= tau]
    c = max(r / b for b, r in runs)
    return math.inf if c <= 0 else tau / c


def suggest_batch_sizes(batch_size: int, B_star: float, *, beyond: float = 1.5, most: int = 8) -> list[int]:
    """The batch sizes of a verification sweep for a prediction ``B*``: ``2B0, 4B0, …`` up to the
    first one ``≥ beyond·B*`` (so the sweep reaches past the predicted failure), at most ``most``.

    Empty when ``B*`` is not finite (no prediction) or ``≤ B0``.
    """
    B0 = _check_batch(batch_size)
    if not (isinstance(B_star, numbers.Real) and math.isfinite(B_star)) or B_star <= B0:
        return []
    beyond = _check_finite(beyond, "beyond", positive=True)
    sizes = [2 * B0]
    while sizes[-1] < beyond * B_star and len(sizes) < most:
        sizes.append(2 * sizes[-1])
    return sizes


def _baseline(bs: list[int], baseline_batch: int | None) -> int:
    if baseline_batch is None:
        return bs.index(min(bs))
    if baseline_batch not in bs:
        raise ValueError(f"baseline_batch must be one of the batch sizes {bs}, got {baseline_batch!r}")
    return bs.index(baseline_batch)


def error_rise_batch(
    batch_sizes: Sequence[int],
    test_errors: Sequence[float],
    *,
    rise: float = 0.2,
    baseline_batch: int | None = None,
) -> int | None:
    """The smallest batch size whose test error is ``≥ (1 + rise)`` × the baseline's, or ``None``.

    The baseline is the run at ``baseline_batch`` (default: the smallest batch size). P1's
    figure shades the region of a ≥ 20% relative rise (``rise = 0.2``).
    """
    bs = _check_runs(batch_sizes, ("test_errors", test_errors))
    errs = [_check_finite(e, "test_errors entries") for e in test_errors]
    rise = _check_finite(rise, "rise", positive=True)
    base = errs[_baseline(bs, baseline_batch)]
    risen = [b for b, e in zip(bs, errs) if e >= (1 + rise) * base]
    return min(risen) if risen else None


def verdicts(
    batch_sizes: Sequence[int],
    lrs: Sequence[float],
    ratios: Sequence[float],
    test_errors: Sequence[float],
    *,
    tau: float = 2.0,
    rise: float = 0.2,
    baseline_batch: int | None = None,
) -> list[dict[str, Any]]:
    """One row per run, sorted by batch size: the condition and the observed error rise.

    Keys: ``batch_size``, ``lr``, ``ratio`` (G/N at that B), ``test_error``,
    ``condition_holds`` (``G/N ≤ τ``), ``relative_error_rise`` (vs the baseline run),
    ``error_rose`` (``≥ rise``, default 20%). P1: the LSR fails where the error rose; the
    condition predicts it where it stops holding.
    """
    tau = check_tau(tau)
    bs = _check_runs(batch_sizes, ("lrs", lrs), ("ratios", ratios), ("test_errors", test_errors))
    rise = _check_finite(rise, "rise", positive=True)
    errs = [_check_finite(e, "test_errors entries") for e in test_errors]
    base = errs[_baseline(bs, baseline_batch)]
    rows = []
    for b, lr, r, e in sorted(zip(bs, lrs, ratios, errs)):
        rel = (e - base) / base if base > 0 else math.nan
        rows.append(
            {
                "batch_size": b,
                "lr": _check_finite(lr, "lrs entries", positive=True),
                "ratio": _check_finite(r, "ratios entries"),
                "test_error": e,
                "condition_holds": bool(r <= tau),
                "relative_error_rise": rel,
                "error_rose": bool(e >= (1 + rise) * base),
            }
        )
    return rows


def window_prediction(
    batch_size: int, records: Sequence[Mapping[str, Any]], tau: float = 2.0, *, window=None, estimator: str = "pairs"
) -> dict[str, Any]:
    """What a training-loop integration states at the end: the records' pooled ``G``, ``N``, ``G/N``
    (:func:`svag.noise.pool_window`), ``B* = B·τ·N/G`` with its SE (:func:`predict_from_window`) and its positive
    95% Fieller interval ``low``, ``high`` (:func:`max_batch_interval`), and where and how they were measured
    (``window`` in epochs or ``None``, ``estimator``: ``"pairs"`` or ``"microbatch"``)."""
    pooled = pool_window(records)
    if pooled.m < 2:  # one estimate: a B* but no spread to put an interval on
        B_star, B_star_se, low, high = (
            predict_max_batch(batch_size, pooled.G, pooled.N, tau),
            math.nan,
            math.nan,
            math.nan,
        )
    else:
        pred = predict_from_window(batch_size, pooled, tau)
        B_star, B_star_se = pred.B_star, pred.B_star_se
        low, high = max_batch_interval(batch_size, pooled, tau)
    return {"B_star": B_star, "B_star_se": B_star_se, "low": low, "high": high, "tau": tau,
            "G": pooled.G, "N": pooled.N, "ratio": pooled.ratio, "ratio_se": pooled.ratio_se, "count": pooled.m,
            "batch_size": batch_size, "estimator": estimator, "window": window}  # fmt: skip


def prediction_line(p: Mapping[str, Any] | None) -> str:
    """:func:`window_prediction` in one line, in words where the data do not support a number (too few estimates,
    ``G`` not above its noise floor, an interval open above; fewer than :data:`FEW_ESTIMATES` behind an interval)."""
    if p is None:
        return "svag: no G/N estimates (no measured step in the window); no B* predicted"
    where = "the whole run" if p["window"] is None else f"epochs [{p['window'][0]:g}, {p['window'][1]:g})"
    kind = "micro-batch" if p["estimator"] == "microbatch" else "pair"
    head = f"svag: G/N = {p['ratio']:.4g} ± {p['ratio_se']:.2g} at B = {p['batch_size']} "
    head += f"({p['count']} {kind} estimates over {where}); "
    if not math.isfinite(p["B_star"]):
        return head + "G is not above its noise floor: no B* predicted (measure over a longer window)"
    pred = f"P1 predicts the linear scaling rule fails beyond B* = B·τ·N/G = {p['B_star']:.4g} (τ = {p['tau']:g})"
    low, high = p["low"], p["high"]
    if p["count"] < 2 or math.isnan(low):
        return head + pred + f"; no interval from {p['count']} estimate(s) pooled: at least 2 are needed"
    few = ""
    if p["count"] < FEW_ESTIMATES:
        few = (f"; only {p['count']} {kind} estimates back it (fewer than {FEW_ESTIMATES}: their SEs are rough and the "
               "interval too narrow; measure at more steps)")  # fmt: skip
    if math.isinf(high):
        return head + pred + f"; 95% interval [{low:.4g}, ∞): G is not distinguishable from 0, only a lower bound" + few
    return head + pred + f"; 95% interval [{low:.4g}, {high:.4g}]" + few
