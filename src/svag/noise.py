"""Signal ``G`` and noise ``N`` of the SGD gradient, and the paper's measurement procedure.

Source: P1 (Li, Malladi & Arora 2021, arXiv 2102.12470), its signal-to-noise
condition for the LSR, and its official code (summarized in the project's PAPER.md §4).

* ``G = ‖∇L(x)‖²``: squared norm of the full training-set gradient ("signal");
* ``N = Tr Σ_B(x)``: trace of the covariance of the **minibatch** gradient at the run's batch
  size ``B`` ("noise"), never the per-sample trace. Sampling ``B`` distinct points from ``n``
  gives ``N = (n−B)/(n−1) · Tr Σ_1 / B`` with ``Σ_1`` the per-sample covariance (divisor ``n``);
  sampling with replacement gives ``Tr Σ_1 / B``.

``G/N`` (= ``B / B_simple`` of McCandlish et al.) is the quantity of P1's necessary condition
``G/N ≤ τ`` (see :mod:`svag.lsr`). ``G`` and ``N`` below are unbiased; their ratio is not
(``E[Ĝ/N̂] ≠ G/N``): average numerators and denominators separately before dividing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from svag import per_sample as _ps
from svag.batch_loss import scalar_loss, takes_batch

__all__ = [
    "MinibatchStream",
    "NoiseAccumulator",
    "NoiseResult",
    "default_num_batches",
    "from_minibatch_grads",
    "from_pair",
    "measure_noise",
    "pair_estimates",
    "pool_window",
]

GradLike = torch.Tensor | Sequence[torch.Tensor | None]


@dataclass(frozen=True)
class NoiseResult:
    """A measurement of signal and noise at one parameter point (or averaged over an interval).

    Attributes:
        G: estimate of ``‖∇L‖²`` (unbiased; may come out negative when G ≪ N/m).
        N: estimate of ``Tr Σ_B``, the minibatch-gradient covariance at ``batch_size``.
        ratio: ``G / N`` (consistent, not unbiased).
        G_se, N_se, ratio_se: standard errors (``0.0`` for exact values, ``nan`` if unavailable).
        m: number of minibatch gradients (``measure_noise``), of per-sample gradients
            (``method="per_sample"``) or of averaged estimates (:class:`NoiseAccumulator`).
        batch_size: the batch size ``B`` at which ``N`` is defined (``None`` if not given).
        GN_cov: covariance of the estimates ``G`` and ``N`` (units of ``G_se**2``): for an average of
            ``k`` estimates the sample covariance of ``(Ĝ_j, N̂_j)`` divided by ``k``; the jackknife
            covariance for :class:`MinibatchStream`; ``0.0`` for exact values; ``nan`` if unavailable
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


def _ratio(G: float, N: float) -> float:
    if N > 0:
        return G / N
    return math.nan if G == 0 or math.isnan(G) else math.copysign(math.inf, G)


def _flat(g: GradLike, like: GradLike | None = None) -> torch.Tensor:
    """Concatenate a tensor or a per-parameter list into one float64 vector (``None`` → zeros)."""
    if isinstance(g, torch.Tensor):
        return g.detach().reshape(-1).to(torch.float64)
    parts = []
    for i, t in enumerate(g):
        if t is None:
            other = None if like is None or isinstance(like, torch.Tensor) else like[i]
            if other is None:
                continue
            t = torch.zeros_like(other)
        parts.append(t.detach().reshape(-1).to(torch.float64))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def from_minibatch_grads(grads: torch.Tensor) -> tuple[float, float]:
    r"""P1's unbiased estimator from ``m`` independent minibatch gradients at batch size ``B``.

    .. math::  S = \frac1m \sum_j ‖g_j‖^2,\quad \bar g = \frac1m \sum_j g_j,\quad
               \hat G = \frac{m‖\bar g‖^2 - S}{m-1},\quad \hat N = S - \hat G

    ``Ĝ`` is unbiased for ``‖∇L‖²`` and ``N̂ = \frac{1}{m-1}\sum_j ‖g_j − \bar g‖²`` (the
    Bessel-corrected trace of the sample covariance) is unbiased for ``Tr Σ_B``: the noise of
    the **minibatch** gradient at the ``B`` the ``g_j`` were computed with. The ratio ``Ĝ/N̂``
    is biased (Jensen). Source: P1 and its official code.

    Args:
        grads: ``(m, d)`` tensor, row ``j`` the flattened mean-loss gradient of batch ``j``;
            the batches must be independent draws (not disjoint batches of one permutation).

    Returns:
        ``(G, N)`` as Python floats (computed in float64).
    """
    if not isinstance(grads, torch.Tensor) or grads.dim() != 2:
        shape = tuple(grads.shape) if isinstance(grads, torch.Tensor) else type(grads).__name__
        raise ValueError(f"grads must be an (m, d) tensor, got {shape}")
    m = grads.shape[0]
    if m < 2:
        raise ValueError(f"from_minibatch_grads needs m >= 2 gradients, got m={m}")
    g = grads.detach().to(torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError("grads must be finite, got a non-finite entry (nan or inf)")
    S = float((g * g).sum(1).mean())
    mean = g.mean(0)
    G = (m * float(mean @ mean) - S) / (m - 1)
    return G, S - G


def from_pair(g1: GradLike, g2: GradLike) -> tuple[float, float]:
    r"""Unbiased one-step estimates from two independent batch gradients (derived from P1).

    .. math::  \hat G = ⟨g_1, g_2⟩,\qquad \hat N = ‖g_1 - g_2‖^2 / 2

    With ``g1, g2`` independent with mean ``∇L`` and covariance ``Σ_B``:
    ``E⟨g1, g2⟩ = ‖∇L‖²`` and ``E‖g1 − g2‖² = 2 Tr Σ_B``. This is the ``m = 2`` case of
    :func:`from_minibatch_grads`. Single-step estimates are very noisy: average ``Ĝ`` and ``N̂``
    separately over many steps (:class:`NoiseAccumulator`) before dividing.

    Args:
        g1, g2: flat tensors or per-parameter lists of tensors (``None`` counts as zero), e.g.
            ``StepOutput.grads`` of ``svag.train_step(..., return_grads=True)``.
    """
    if isinstance(g1, torch.Tensor) != isinstance(g2, torch.Tensor):
        raise ValueError("g1 and g2 must both be tensors or both be lists of tensors")
    if not isinstance(g1, torch.Tensor):
        if len(g1) != len(g2):
            raise ValueError(f"g1 and g2 must have the same length, got {len(g1)} and {len(g2)}")
        for i, (a, b) in enumerate(zip(g1, g2)):
            if a is not None and b is not None and a.shape != b.shape:
                raise ValueError(f"g1[{i}] and g2[{i}] differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = _flat(g1, g2), _flat(g2, g1)
    if a.shape != b.shape:
        raise ValueError(f"g1 and g2 must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("g1 and g2 must be finite, got a non-finite entry (nan or inf)")
    diff = a - b
    return float(a @ b), float(diff @ diff) / 2.0


def pair_estimates(g1: list[torch.Tensor | None], g2: list[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`from_pair` for K runs at once: row ``k`` of every tensor belongs to run ``k``.

    .. math::  \hat G_k = ⟨g_{1,k}, g_{2,k}⟩,\qquad \hat N_k = ‖g_{1,k} - g_{2,k}‖^2 / 2

    Args:
        g1, g2: per-parameter lists of ``(K, ...)`` tensors (``None`` counts as zero), e.g. the
            gradients of a stacked ensemble; a single run's gradients with ``t.unsqueeze(0)``.

    Returns:
        ``(G, N)``: float64 tensors of shape ``(K,)`` (products in the gradients' dtype, sums in
        float64). No finiteness check: a diverged run's
        entries are nan/inf and the caller decides (:func:`from_pair` raises).
    """
    if len(g1) != len(g2):
        raise ValueError(f"g1 and g2 must have the same length, got {len(g1)} and {len(g2)}")
    G = N = None
    for a, b in zip(g1, g2):
        if a is None and b is None:
            continue
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        a, b = a.detach().flatten(1), b.detach().flatten(1)
        d = a - b
        ab, dd = (a * b).sum(1, dtype=torch.float64), (d * d).sum(1, dtype=torch.float64)  # float64 sums
        G = ab if G is None else G + ab
        N = dd if N is None else N + dd
    if G is None:
        raise ValueError("pair_estimates needs at least one gradient, got only None")
    return G, N / 2.0


def _from_moments(
    k: int, G: float, N: float, ss_G: float, ss_N: float, c: float, batch_size: int | None
) -> NoiseResult:
    r"""``NoiseResult`` of ``k`` estimates with means ``G, N``, sums of squared deviations ``SS_G, SS_N`` and
    co-moment ``C = Σ_j (Ĝ_j − G)(N̂_j − N)``: ``se(G)² = SS_G/((k−1)k)``, ``cov = C/((k−1)k)`` and the
    delta-method ``se(G/N)`` of :class:`NoiseAccumulator` (SEs ``nan`` for ``k < 2``)."""
    ratio = _ratio(G, N)
    if k < 2:
        return NoiseResult(G, N, ratio, math.nan, math.nan, math.nan, k, batch_size, math.nan)
    vG, vN, cov = ss_G / (k - 1) / k, ss_N / (k - 1) / k, c / (k - 1) / k
    ratio_var = (vG - 2 * ratio * cov + ratio * ratio * vN) / (N * N) if N > 0 else math.nan
    ratio_se = math.sqrt(max(ratio_var, 0.0)) if math.isfinite(ratio_var) else math.nan
    return NoiseResult(G, N, ratio, math.sqrt(vG), math.sqrt(vN), ratio_se, k, batch_size, cov)


class NoiseAccumulator:
    r"""Averages per-step estimates ``(Ĝ_k, N̂_k)`` over an interval, numerator and denominator apart.

    Reports ``G = mean Ĝ_k``, ``N = mean N̂_k``, ``G/N`` and standard errors: ``se(G) = sd(Ĝ)/√k``
    (likewise ``N``), ``cov(G, N) = c(Ĝ, N̂)/k`` with ``c`` the sample covariance of the estimates
    (``NoiseResult.GN_cov``) and, by the **delta method**,

    .. math::  se(G/N)^2 = \frac{1}{N^2}\Big(se(G)^2 - 2\frac GN\,cov(G,N) + \frac{G^2}{N^2} se(N)^2\Big).

    The SEs treat the ``k`` estimates as independent (true for the estimator noise of
    independent batches; slow drift of ``G_t``, ``N_t`` along the run is counted as noise).
    Streaming (Welford) updates in float64: O(1) memory. Call :meth:`reset` to start an interval.
    """

    def __init__(self, batch_size: int | None = None) -> None:
        if batch_size is not None:
            _check_batch_size(batch_size)
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        """Forget every estimate added so far."""
        self.count = 0
        self._mean = [0.0, 0.0]
        self._m2 = [0.0, 0.0]
        self._c = 0.0

    def add(self, G: float, N: float) -> None:
        """Add one estimate (e.g. from :func:`from_pair` or a :func:`measure_noise` result)."""
        G, N = float(G), float(N)
        if not (math.isfinite(G) and math.isfinite(N)):
            raise ValueError(f"G and N must be finite, got G={G!r}, N={N!r}")
        self.count += 1
        dG, dN = G - self._mean[0], N - self._mean[1]
        self._mean[0] += dG / self.count
        self._mean[1] += dN / self.count
        self._m2[0] += dG * (G - self._mean[0])
        self._m2[1] += dN * (N - self._mean[1])
        self._c += dG * (N - self._mean[1])

    def add_pair(self, g1: GradLike, g2: GradLike) -> tuple[float, float]:
        """Add :func:`from_pair` ``(g1, g2)`` and return it."""
        G, N = from_pair(g1, g2)
        self.add(G, N)
        return G, N

    def result(self) -> NoiseResult:
        """The interval's ``NoiseResult`` (SEs are ``nan`` with fewer than 2 estimates)."""
        if self.count == 0:
            raise ValueError("NoiseAccumulator.result needs at least 1 estimate, got 0")
        return _from_moments(self.count, *self._mean, *self._m2, self._c, self.batch_size)


def pool_window(parts: Iterable[NoiseResult | Mapping[str, Any]]) -> NoiseResult:
    r"""The pooled ``G/N`` of a window: every per-step estimate of several intervals, as one accumulator.

    Part ``i`` is an interval's :class:`NoiseAccumulator` result: ``k_i`` estimates with means
    ``G_i, N_i``, standard errors ``se(G_i), se(N_i)`` and covariance ``c_i`` (``GN_cov``). With
    ``K = Σ_i k_i`` the result is exactly that of one :class:`NoiseAccumulator` fed all ``K`` estimates:

    .. math::  \bar G = \frac1K \sum_i k_i G_i,\qquad \bar N = \frac1K \sum_i k_i N_i,

    .. math::  SS_G = \sum_i (k_i - 1)\,k_i\,se(G_i)^2 + \sum_i k_i (G_i - \bar G)^2 \quad(\text{likewise } SS_N),

    .. math::  C = \sum_i (k_i - 1)\,k_i\,c_i + \sum_i k_i (G_i - \bar G)(N_i - \bar N),

    ``se(Ḡ)² = SS_G/((K−1)K)``, ``se(N̄)² = SS_N/((K−1)K)``, ``cov(Ḡ, N̄) = C/((K−1)K)`` and the
    delta-method ``se(Ḡ/N̄)`` of :class:`NoiseAccumulator`, covariance included (within-interval terms
    first, between-interval terms second). A part with ``k_i = 1`` has no within term (its SEs are
    ``nan``: a single estimate has no spread). The SEs treat all ``K`` estimates as independent draws;
    use this for averages of per-step pair estimates (``noise="pairs"`` records), not to pool
    :func:`measure_noise` results, whose ``m`` counts gradients behind one estimate.

    Args:
        parts: :class:`NoiseResult` objects (``m`` is ``k_i``) or records of ``metrics.jsonl`` (dicts
            with ``"G"``, ``"N"``, ``"G_se"``, ``"N_se"``, ``"noise_count"`` and ``"GN_cov"``). Parts
            with no estimate (``k_i`` 0 or ``None``) are skipped. **Records written before ``GN_cov``
            existed lack it: their within-interval covariance counts as 0** (the between-interval
            covariance is still included), so the ratio SE is approximate for them.

    Returns:
        :class:`NoiseResult` with ``m = K``; ``batch_size`` is that of the ``NoiseResult`` parts
        (``None`` for records).

    Raises:
        ValueError: no part has an estimate, a mean is not finite, a part with ``k_i ≥ 2`` has a
            non-finite SE or covariance, or two parts are at different batch sizes.
    """
    rows, sizes = [], set()
    for i, part in enumerate(parts):
        if isinstance(part, Mapping):  # a metrics.jsonl record
            k, G, N, G_se, N_se, cov = (part.get(key) for key in ("noise_count", "G", "N", "G_se", "N_se", "GN_cov"))
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
    return _from_moments(K, G, N, ss_G, ss_N, c, sizes.pop() if sizes else None)


class MinibatchStream:
    r"""Streaming :func:`from_minibatch_grads` with a delete-a-group jackknife, no ``(m, d)`` matrix.

    Gradient ``j`` goes to group ``j mod K``; each group keeps its running mean (a ``d``-vector,
    float64) and its within-group sum of squares (Welford), so memory is ``K·d`` floats instead
    of ``m·d``. At the end, with overall mean ``M``, ``δ_b = μ_b − M`` and ``SS`` the total sum
    of squares: ``N̂ = SS/(m−1)``, ``Ĝ = ‖M‖² − N̂/m`` (equal to :func:`from_minibatch_grads`),
    and deleting group ``b`` (``c_b`` gradients, ``m' = m − c_b``) gives exactly
    ``M' = M − c_b δ_b/m'`` and ``SS' = SS − M2_b − (c_b m/m')‖δ_b‖²``. The jackknife SE of
    ``θ ∈ {G, N, G/N}`` is ``√((K−1)/K · Σ_b (θ_{−b} − θ̄)²)`` and the covariance of ``G`` and ``N`` is
    ``(K−1)/K · Σ_b (G_{−b} − Ḡ_·)(N_{−b} − N̄_·)``. With ``m ≤ K`` it is the leave-one-out jackknife.
    """

    def __init__(self, n_groups: int = 20) -> None:
        if isinstance(n_groups, bool) or not isinstance(n_groups, numbers.Integral) or n_groups < 2:
            raise ValueError(f"n_groups must be an integer >= 2, got {n_groups!r}")
        self.n_groups = int(n_groups)
        self.m = 0
        self._means: torch.Tensor | None = None
        self._counts = [0] * self.n_groups
        self._m2 = [0.0] * self.n_groups

    def add(self, grad: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Add one minibatch gradient: a flat tensor or a per-parameter list (zeros, not ``None``,
        for parameters without gradient). Non-finite gradients raise ``ValueError``."""
        parts = [grad] if isinstance(grad, torch.Tensor) else list(grad)
        if any(p is None for p in parts):
            raise ValueError("MinibatchStream.add got None in the gradient list; pass zeros instead")
        d = sum(p.numel() for p in parts)
        if self._means is None:
            kw = dict(dtype=torch.float64, device=parts[0].device)
            self._means = torch.zeros(self.n_groups, d, **kw)
            self._buf, self._delta = torch.empty(d, **kw), torch.empty(d, **kw)
        elif d != self._means.shape[1]:
            raise ValueError(f"gradient has {d} entries, expected {self._means.shape[1]}")
        offset = 0
        for p in parts:  # flatten into a reused float64 buffer: no allocation per gradient
            self._buf[offset : offset + p.numel()].copy_(p.detach().reshape(-1))
            offset += p.numel()
        if not math.isfinite(float(self._buf @ self._buf)):
            raise ValueError(f"minibatch gradient {self.m} is not finite (nan or inf)")
        b = self.m % self.n_groups
        self._counts[b] += 1
        c, mean = self._counts[b], self._means[b]
        torch.sub(self._buf, mean, out=self._delta)  # Welford: δ = g − μ_b; μ_b += δ/c
        mean.add_(self._delta, alpha=1.0 / c)
        self._m2[b] += (1.0 - 1.0 / c) * float(self._delta @ self._delta)  # ⟨δ, g − μ_b(new)⟩
        self.m += 1

    def result(self, batch_size: int | None = None) -> NoiseResult:
        """``NoiseResult`` with jackknife SEs and ``GN_cov`` (``nan`` when ``m < 3``)."""
        m = self.m
        if m < 2 or self._means is None:
            raise ValueError(f"MinibatchStream needs m >= 2 gradients, got m={m}")
        k = min(m, self.n_groups)
        means = self._means[:k]
        counts = torch.tensor(self._counts[:k], dtype=torch.float64, device=means.device)
        m2 = torch.tensor(self._m2[:k], dtype=torch.float64, device=means.device)
        M = (counts[:, None] * means).sum(0) / m
        delta = means - M
        sq, h = (delta * delta).sum(1), delta @ M
        ss = float(m2.sum() + (counts * sq).sum())
        MM = float(M @ M)
        N = ss / (m - 1)
        G = MM - N / m
        res = dict(G=G, N=N, ratio=_ratio(G, N))
        ses = dict(G=math.nan, N=math.nan, ratio=math.nan)
        cov = math.nan
        if m >= 3:
            mp = m - counts
            ss_out = ss - m2 - counts * m / mp * sq
            N_out = ss_out / (mp - 1)
            w = counts / mp
            G_out = MM - 2 * w * h + w * w * sq - N_out / mp
            loo = dict(G=G_out, N=N_out, ratio=G_out / N_out)
            for name, theta in loo.items():
                if torch.isfinite(theta).all():
                    ses[name] = math.sqrt((k - 1) / k * float(((theta - theta.mean()) ** 2).sum()))
            if torch.isfinite(G_out).all() and torch.isfinite(N_out).all():
                cov = (k - 1) / k * float(((G_out - G_out.mean()) * (N_out - N_out.mean())).sum())
        return NoiseResult(res["G"], N, res["ratio"], ses["G"], ses["N"], ses["ratio"], m, batch_size, cov)


def default_num_batches(batch_size: int) -> int:
    """P1's number of minibatch gradients per measurement: ``m = max(200, 12800 // B)``."""
    return max(200, 12800 // _check_batch_size(batch_size))


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def _data_len(data: Any) -> int:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        if data[0].shape[0] != data[1].shape[0]:
            raise ValueError(f"inputs and targets differ in length: {data[0].shape[0]} and {data[1].shape[0]}")
        return int(data[0].shape[0])
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return len(data)
    raise ValueError(f"data must be a Dataset or an (inputs, targets) pair of tensors, got {type(data)}")


def _take(data: Any, idx: torch.Tensor, device: torch.device) -> tuple[Any, Any]:
    """The batch ``data[idx]`` as ``(inputs, targets)``, tensors moved to ``device``."""
    if isinstance(data, (tuple, list)):
        inputs, targets = data[0][idx.to(data[0].device)], data[1][idx.to(data[1].device)]
    else:
        inputs, targets = torch.utils.data.default_collate([data[i] for i in idx.tolist()])
    return tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in (inputs, targets))


class _Preserved:
    """Context: train mode during the measurement; every module's mode and every buffer restored."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.modes = [(mod, mod.training) for mod in self.model.modules()]
        self.buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        self.grad_mode = torch.is_grad_enabled()
        torch.set_grad_enabled(True)
        self.model.train()

    def __exit__(self, *exc: object) -> None:
        torch.set_grad_enabled(self.grad_mode)
        with torch.no_grad():
            for buf, saved in self.buffers:
                buf.copy_(saved)
        for mod, mode in self.modes:
            mod.training = mode


def measure_noise(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    data: Any,
    batch_size: int,
    *,
    m: int | None = None,
    method: str = "minibatch",
    generator: torch.Generator | None = None,
    replacement: bool = False,
    n_groups: int = 20,
    chunk_size: int = 32,
) -> NoiseResult:
    r"""P1's measurement of ``G = ‖∇L‖²`` and ``N = Tr Σ_B`` at the model's current parameters.

    The paper's procedure: model in **train mode**, gradient of the **mean loss only** (no weight
    decay), frozen parameters (``requires_grad=False``) excluded. Nothing about the model
    changes: parameters and ``.grad`` are untouched, buffers (BatchNorm running statistics) and
    every module's train/eval mode are restored afterwards.

    ``method="minibatch"`` (any model, BatchNorm included): ``m`` independent batches of ``B``
    points, each drawn afresh (``replacement=False``: ``B`` distinct points, as in the SGD run;
    ``True``: ``B`` i.i.d. points), their gradients fed to :class:`MinibatchStream`: the
    unbiased estimator of :func:`from_minibatch_grads`, with **delete-a-group jackknife** SEs
    over ``n_groups`` groups (leave-one-out when ``m ≤ n_groups``). Memory ``n_groups·d``
    float64. (P1's code uses disjoint consecutive batches of one shuffled epoch, which biases
    ``Ĝ`` by ``−Tr Σ_1/(n−1)`` and ``N̂`` by the factor ``n/(n−B)``, derived; independent
    draws remove both biases.)

    ``method="per_sample"`` (no BatchNorm): exact values from all ``n`` per-sample gradients
    (:mod:`svag.per_sample`): ``G = ‖mean‖²``, ``N = Tr Σ_1/B`` times ``(n−B)/(n−1)`` unless
    ``replacement=True``; the SEs are 0 and ``m`` is ``n``.

    Args:
        model: the network; ``model(inputs)`` gives the outputs.
        loss_fn: the **mean** loss over a batch, in the convention of :func:`svag.train_step`:
            ``loss_fn(batch)`` with ``batch = (inputs, targets)``, returning a scalar, a tuple such
            as ``(logits, loss)`` or an object with ``.loss`` (:mod:`svag.batch_loss`); or
            ``loss_fn(outputs, targets) -> scalar`` with ``outputs = model(inputs)`` (two required
            positional parameters, e.g. ``F.cross_entropy``; the only form ``"per_sample"`` takes).
        data: a ``torch.utils.data.Dataset`` of ``(input, target)`` or an ``(inputs, targets)``
            pair of tensors (the training set); batches are moved to the model's device.
        batch_size: the run's ``B``; ``N`` is the noise of a batch of this size.
        m: number of batches (``minibatch`` only); default ``max(200, 12800 // B)``.
        generator: draws the batch indices (the global RNG when ``None``; random layers such
            as dropout, active in train mode, always draw from the global RNG).
        chunk_size: samples per vectorized call (``per_sample`` only).

    Returns:
        :class:`NoiseResult`.
    """
    B = _check_batch_size(batch_size)
    n = _data_len(data)
    if method not in ("minibatch", "per_sample"):
        raise ValueError(f"method must be 'minibatch' or 'per_sample', got {method!r}")
    if not replacement and B > n:
        raise ValueError(f"batch_size must be <= n = {n} without replacement, got {B}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (all have requires_grad=False)")
    batch_form = takes_batch(loss_fn)
    if method == "per_sample":
        if batch_form:
            raise ValueError(
                "measure_noise: method='per_sample' needs loss_fn(outputs, targets) (it calls the model itself, "
                "per sample); got loss_fn(batch), which method='minibatch' takes"
            )
        if m is not None:
            raise ValueError(f"m is only used by method='minibatch', got m={m!r} with method='per_sample'")
        dev = params[0].device
        chunks = (_take(data, torch.arange(s, min(s + chunk_size, n)), dev) for s in range(0, n, chunk_size))
        with _Preserved(model):
            G, N, count = _ps.per_sample_noise(model, loss_fn, chunks, B, finite_population=not replacement)
        return NoiseResult(G, N, _ratio(G, N), 0.0, 0.0, 0.0, count, B, 0.0)
    m = default_num_batches(B) if m is None else m
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 2:
        raise ValueError(f"m must be an integer >= 2, got {m!r}")
    stream = MinibatchStream(n_groups)
    with _Preserved(model):
        for _ in range(m):
            if replacement:
                idx = torch.randint(0, n, (B,), generator=generator)
            else:
                idx = torch.randperm(n, generator=generator)[:B]
            inputs, targets = _take(data, idx, params[0].device)
            out = loss_fn((inputs, targets)) if batch_form else loss_fn(model(inputs), targets)
            loss = scalar_loss(out, "measure_noise")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            stream.add([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    return stream.result(B)
