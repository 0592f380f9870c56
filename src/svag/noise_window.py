r"""What one measurement of ``G`` and ``N`` is, and how the estimates of a window pool.

:class:`NoiseResult` carries ``G``, ``N``, ``G/N`` and their standard errors, whichever estimator made
them (:mod:`svag.noise`); :func:`from_moments` turns the running moments of ``k`` per-step estimates into
one, with the delta-method SE of ``G/N``; :func:`pool_window` pools the results of several intervals (or
their ``metrics.jsonl`` records, whose field names :func:`record_keys` gives) exactly as one accumulator fed
every estimate. The definitions of ``G`` and ``N`` and the estimators are :mod:`svag.noise`'s, which
re-exports :class:`NoiseResult` and :func:`pool_window`. Source: P1 (Li, Malladi & Arora 2021,
arXiv 2102.12470) and PAPER.md §4.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NoiseResult", "from_moments", "gn_ratio", "pool_window", "record_keys"]

PRECONDITIONED = "_pre"
"""The suffix of the record fields of adaptive runs' preconditioned ratio (:mod:`svag.noise`)."""


def record_keys(suffix: str = "") -> tuple[str, ...]:
    """The names under which a ``metrics.jsonl`` record holds an interval's :class:`NoiseResult`, in the order
    ``G, N, G_se, N_se, GN_cov, gn_ratio, gn_ratio_se, noise_count`` (the count is ``m``).

    ``suffix=""``: P1's ``G/N`` (``"G"``, ..., ``"noise_count"``); ``suffix="_pre"`` (:data:`PRECONDITIONED`):
    the preconditioned ratio of adaptive runs (``"G_pre"``, ``"N_pre"``, ``"G_pre_se"``, ``"N_pre_se"``,
    ``"GN_pre_cov"``, ``"gn_ratio_pre"``, ``"gn_ratio_pre_se"``, ``"noise_count_pre"``)."""
    s = suffix
    return f"G{s}", f"N{s}", f"G{s}_se", f"N{s}_se", f"GN{s}_cov", f"gn_ratio{s}", f"gn_ratio{s}_se", f"noise_count{s}"


@dataclass(frozen=True)
class NoiseResult:
    """A measurement of signal and noise at one parameter point (or averaged over an interval).

    Attributes:
        G: estimate of ``‖∇L‖²`` (unbiased; may come out negative when G ≪ N/m).
        N: estimate of ``Tr Σ_B``, the minibatch-gradient covariance at ``batch_size``.
        ratio: ``G / N`` (consistent, not unbiased).
        G_se, N_se, ratio_se: standard errors (``0.0`` for exact values, ``nan`` if unavailable).
        m: number of minibatch gradients (``measure_noise``), of per-sample gradients
            (``method="per_sample"``) or of averaged estimates (:class:`~svag.noise.NoiseAccumulator`).
        batch_size: the batch size ``B`` at which ``N`` is defined (``None`` if not given).
        GN_cov: covariance of the estimates ``G`` and ``N`` (units of ``G_se**2``): for an average of
            ``k`` estimates the sample covariance of ``(Ĝ_j, N̂_j)`` divided by ``k``; the jackknife
            covariance for :class:`~svag.noise.MinibatchStream`; ``0.0`` for exact values; ``nan`` if unavailable
            (fewer than 2 estimates).
    """

    G: float
    N: float
    ratio: float
    G_se: float
    N_se: float
    ratio_se: float
    m: int
    batch_size: int | None
    GN_cov: float = math.nan


def gn_ratio(G: float, N: float) -> float:
    """``G/N``; where ``N <= 0`` (an estimate, not a trace): nan for ``G`` 0 or nan, else ``±inf`` with ``G``'s sign."""
    if N > 0:
        return G / N
    return math.nan if G == 0 or math.isnan(G) else math.copysign(math.inf, G)


def from_moments(k: int, G: float, N: float, ss_G: float, ss_N: float, c: float, batch_size: int | None) -> NoiseResult:
    r"""``NoiseResult`` of ``k`` estimates with means ``G, N``, sums of squared deviations ``SS_G, SS_N`` and
    co-moment ``C = Σ_j (Ĝ_j − G)(N̂_j − N)``: ``se(G)² = SS_G/((k−1)k)``, ``cov = C/((k−1)k)`` and the
    delta-method ``se(G/N)`` of :class:`~svag.noise.NoiseAccumulator` (SEs ``nan`` for ``k < 2``)."""
    ratio = gn_ratio(G, N)
    if k < 2:
        return NoiseResult(G, N, ratio, math.nan, math.nan, math.nan, k, batch_size, math.nan)
    vG, vN, cov = ss_G / (k - 1) / k, ss_N / (k - 1) / k, c / (k - 1) / k
    ratio_var = (vG - 2 * ratio * cov + ratio * ratio * vN) / (N * N) if N > 0 else math.nan
    ratio_se = math.sqrt(max(ratio_var, 0.0)) if math.isfinite(ratio_var) else math.nan
    return NoiseResult(G, N, ratio, math.sqrt(vG), math.sqrt(vN), ratio_se, k, batch_size, cov)


def pool_window(parts: Iterable[NoiseResult | Mapping[str, Any]], *, suffix: str = "") -> NoiseResult:
    r"""The pooled ``G/N`` of a window: every per-step estimate of several intervals, as one accumulator.

    Part ``i`` is an interval's :class:`~svag.noise.NoiseAccumulator` result: ``k_i`` estimates with means
    ``G_i, N_i``, standard errors ``se(G_i), se(N_i)`` and covariance ``c_i`` (``GN_cov``). With
    ``K = Σ_i k_i`` the result is exactly that of one :class:`~svag.noise.NoiseAccumulator` fed all ``K`` estimates:

    .. math::  \bar G = \frac1K \sum_i k_i G_i,\qquad \bar N = \frac1K \sum_i k_i N_i,

    .. math::  SS_G = \sum_i (k_i - 1)\,k_i\,se(G_i)^2 + \sum_i k_i (G_i - \bar G)^2 \quad(\text{likewise } SS_N),

    .. math::  C = \sum_i (k_i - 1)\,k_i\,c_i + \sum_i k_i (G_i - \bar G)(N_i - \bar N),

    ``se(Ḡ)² = SS_G/((K−1)K)``, ``se(N̄)² = SS_N/((K−1)K)``, ``cov(Ḡ, N̄) = C/((K−1)K)`` and the
    delta-method ``se(Ḡ/N̄)`` of :class:`~svag.noise.NoiseAccumulator`, covariance included (within-interval terms
    first, between-interval terms second). A part with ``k_i = 1`` has no within term (its SEs are
    ``nan``: a single estimate has no spread). The SEs treat all ``K`` estimates as independent draws;
    use this for averages of per-step pair estimates (``noise="pairs"`` records), not to pool
    :func:`~svag.noise.measure_noise` results, whose ``m`` counts gradients behind one estimate.

    Args:
        parts: :class:`NoiseResult` objects (``m`` is ``k_i``) or records of ``metrics.jsonl`` (dicts
            with ``"G"``, ``"N"``, ``"G_se"``, ``"N_se"``, ``"noise_count"`` and ``"GN_cov"``). Parts
            with no estimate (``k_i`` 0 or ``None``) are skipped. **Records written before ``GN_cov``
            existed lack it: their within-interval covariance counts as 0** (the between-interval
            covariance is still included), so the ratio SE is approximate for them.
        suffix: which fields of a record to read (:func:`record_keys`): ``""`` for P1's ``G/N``, ``"_pre"``
            for the preconditioned ratio of an adaptive run (``"G_pre"``, ..., ``"noise_count_pre"``; records
            without them, e.g. of SGD runs or older folders, have no estimate). Ignored for ``NoiseResult`` parts.

    Returns:
        :class:`NoiseResult` with ``m = K``; ``batch_size`` is that of the ``NoiseResult`` parts
        (``None`` for records).

    Raises:
        ValueError: no part has an estimate, a mean is not finite, a part with ``k_i ≥ 2`` has a
            non-finite SE or covariance, or two parts are at different batch sizes.
    """
    rows, sizes = [], set()
    G_key, N_key, G_se_key, N_se_key, cov_key, _, _, count_key = record_keys(suffix)
    for i, part in enumerate(parts):
        if isinstance(part, Mapping):  # a metrics.jsonl record
            k, G, N, G_se, N_se, cov = (part.get(key) for key in (count_key, G_key, N_key, G_se_key, N_se_key, cov_key))
        else:
            k, G, N, G_se, N_se, cov = part.m, part.G, part.N, part.G_se, part.N_se, part.GN_cov
            sizes.add(part.batch_size)
        if not k:
            continue
        if isinstance(k, bool) or not isinstance(k, numbers.Real) or k != int(k) or k < 0:
            raise ValueError(f"parts[{i}] count must be a non-negative integer, got {k!r}")
        k, G, N = int(k), float(G), float(N)
        if not (math.isfinite(G) and math.isfinite(N)):
            raise ValueError(f"parts[{i}] must have finite G and N, got G={G!r}, N={N!r}")
        within = (0.0, 0.0, 0.0)  # (k_i − 1)·k_i·(se(G_i)², se(N_i)², c_i): 0 for a single estimate
        if k > 1:
            se_G, se_N = (math.nan if v is None else float(v) for v in (G_se, N_se))
            within = ((k - 1) * k * se_G**2, (k - 1) * k * se_N**2, (k - 1) * k * float(cov or 0.0))
            if not all(math.isfinite(v) for v in within):
                raise ValueError(f"parts[{i}] has k = {k} estimates but G_se={G_se!r}, N_se={N_se!r}, GN_cov={cov!r}")
        rows.append((k, G, N, within))
    if not rows:
        raise ValueError("pool_window needs at least one part with estimates, got none")
    sizes.discard(None)
    if len(sizes) > 1:
        raise ValueError(f"pool_window parts must share one batch size, got {sorted(sizes)}")
    K = sum(k for k, *_ in rows)
    G = sum(k * g for k, g, _, _ in rows) / K
    N = sum(k * n for k, _, n, _ in rows) / K
    ss_G = sum(w[0] + k * (g - G) ** 2 for k, g, _, w in rows)
    ss_N = sum(w[1] + k * (n - N) ** 2 for k, _, n, w in rows)
    c = sum(w[2] + k * (g - G) * (n - N) for k, g, n, w in rows)
    return from_moments(K, G, N, ss_G, ss_N, c, sizes.pop() if sizes else None)
