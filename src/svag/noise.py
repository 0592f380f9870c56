r"""Signal ``G`` and noise ``N`` of the SGD gradient, and the paper's measurement procedure.

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

What a result holds (:class:`NoiseResult`) and how the results of a window pool (:func:`pool_window`)
live in :mod:`svag.noise_window`; both are importable from here.

**The preconditioned ratio (Adam, AdamW, RMSprop; derived for this project from P2 and PAPER §7).**
An adaptive run at batch size ``B`` keeps per coordinate the second moment
``v_i ≈ E[g_i²] = Ĝ_i² + σ_i²/B`` (``Ĝ = ∇L``, ``σ_i²`` the per-sample variance of coordinate ``i``).
P2's SDE, and with it the square-root rule (``η → √κη``, ``1 − β → κ(1 − β)``, ``ε → ε/√κ``), lives
where the noise term dominates: the SDE's second moment tracks ``σ_i²/B`` alone. Writing
``v_i = (σ_i²/B)(1 + r_i)`` with ``r_i = B·Ĝ_i²/σ_i²``, the update's ``1/√v_i`` departs from the SDE's
by the factor ``(1 + r_i)^{−1/2}``; asking it to stay within a factor ``C`` gives ``r_i ≤ C² − 1 =: τ``,
the form of P1's ``G/N ≤ τ`` (P1's figure: ``τ = 2``). One number for all coordinates, averaged with the
update's own weights ``w_i = 1/(√v̂_i + ε)`` (:func:`svag.adaptive.preconditioner_weights`):

.. math::  R(B) = \frac{\sum_i w_i \hat G_i^2}{\sum_i w_i \sigma_i^2/B}
           = \frac{\hat G^\top P^{-1} \hat G}{\operatorname{tr}(P^{-1}\Sigma_B)},
           \qquad P = \operatorname{diag}(\sqrt{\hat v} + \epsilon),

P1's ``G/N`` of the preconditioned gradient ``P^{−1/2}g`` (equivalently the mean of the ``r_i`` weighted
by each coordinate's share ``w_i σ_i²/B`` of the preconditioned noise; a summary, so single coordinates
may exceed it). A uniform factor in ``w`` cancels. Along the square-root rule in the SDE regime ``v``
scales by ``1/κ`` uniformly (``σ²/(κB)``) and ``ε`` by ``1/√κ``, so ``w`` only rescales and
``R(κB) = κ·R(B)``: one run at ``B0`` predicts ``κ* = τ/R(B0)``, ``B* = τ·B0/R(B0) = τ·Σ_i w_i σ_i²/Σ_i w_i Ĝ_i²``
(``τ`` times a preconditioned noise scale). With ``w ≡ 1`` it is P1's ``G/N = B/B_simple``
(``B_simple = tr Σ_1/‖G‖²``, McCandlish et al. 2018, arXiv 1812.06162). Li et al. (NeurIPS 2024,
"Surge phenomenon in optimal learning rate and batch size scaling", arXiv 2405.14578) find, for sign-like
updates, that Adam's optimal LR rises with ``B`` and then falls, peaking near their ``B_noise``, a noise scale
of the same per-coordinate signal-to-noise kind.

*Estimates.* With ``w`` fixed before a step (the state the update reads, built from earlier
gradients only) and two independent batch gradients ``g1, g2`` of size ``B`` at the step's point,
``E[Σ_i w_i g1_i g2_i] = Σ_i w_i Ĝ_i²`` and ``E[Σ_i w_i (g1_i − g2_i)²/2] = Σ_i w_i σ_i²/B``
(:func:`pair_estimates` with ``weights``), pooled over a window as ``G`` and ``N`` are
(:class:`NoiseAccumulator`, :func:`pool_window` with ``suffix="_pre"``). Weights taken after the step
would hold ``(a1 g1 + a2 g2)²`` through ``v``: correlated with the products, biased. Caveats: SVAG at
``ℓ > 1`` keeps ``v ≈ Ĝ² + ℓ²σ²/B`` and ``ε' = εℓ``, so its weights are ``1/ℓ`` times the simulated run's
with the signal term damped by ``ℓ²`` (nearer the SDE's); with coupled L2 decay (Adam, RMSprop
``weight_decay > 0``) ``v`` sees ``Ĝ + λx``, while ``Ĝ`` here is the loss's alone, as P1's ``G`` (AdamW's
decoupled decay does not enter ``v``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from svag import per_sample as _ps
from svag.batch_loss import scalar_loss, takes_batch
from svag.noise_window import NoiseResult, from_moments, gn_ratio, pool_window

__all__ = [
    "MicroBatchSums",
    "MinibatchStream",
    "NoiseAccumulator",
    "NoiseResult",
    "default_num_batches",
    "from_microbatch_sums",
    "from_microbatches",
    "from_minibatch_grads",
    "from_pair",
    "measure_noise",
    "pair_estimates",
    "pool_window",
    "squared_norm",
]

GradLike = torch.Tensor | Sequence[torch.Tensor | None]


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


def from_microbatches(grads: Sequence[GradLike]) -> tuple[float, float]:
    r"""``(Ĝ, N̂)`` at the step's batch ``B = M·b`` from the ``M ≥ 2`` micro-batch gradients a step already has
    (gradient accumulation; the ranks' local gradients before a data-parallel all-reduce): no extra compute.

    .. math::  \hat G = \frac{‖\sum_j g_j‖^2 - \sum_j ‖g_j‖^2}{M(M-1)}, \qquad
               \hat N = \frac1M\Big(\frac1M \sum_j ‖g_j‖^2 - \hat G\Big)

    ``E⟨g_j, g_k⟩ = ‖G‖²`` for ``j ≠ k`` and ``E‖g_j‖² = ‖G‖² + tr Σ/b``, so ``Ĝ`` is unbiased for ``‖G‖²`` and
    ``N̂`` for ``tr Σ/B``, the noise of the **step's** batch (McCandlish et al. 2018, App. A; P1's m-batch
    estimator :func:`from_minibatch_grads` at ``b``, its ``N`` divided by ``M``). At ``M = 2`` it is
    :func:`from_pair` of the two halves with ``N`` at ``2b``: ``(⟨g_1, g_2⟩, ‖g_1 − g_2‖²/4)``. The micro-batches
    of one drawn batch are exchangeable; sampled without replacement from ``n`` samples, ``N̂`` carries the
    finite-population factor ``(n − B)/(n − 1)`` (≈ 1 for ``n ≫ B``). Pool steps as the pair estimates are
    (:class:`NoiseAccumulator`, :func:`pool_window`).

    Args:
        grads: ``M`` gradients of equal-size micro-batches (tensors or per-parameter lists; ``None`` counts as 0),
            each the gradient of that micro-batch's **mean** loss.
    """
    if isinstance(grads, torch.Tensor) or len(grads) < 2:
        raise ValueError(f"from_microbatches needs a sequence of M >= 2 gradients, got {type(grads).__name__}"
                         f"{'' if isinstance(grads, torch.Tensor) else f' of {len(grads)}'}")  # fmt: skip
    flat = torch.stack([_flat(g, grads[0]) for g in grads])
    G, N_b = from_minibatch_grads(flat)
    return G, N_b / len(grads)


def from_microbatch_sums(M: int, sum_sq: Any, mean_sq: Any) -> tuple[Any, Any]:
    r""":func:`from_microbatches` from two sums: ``S = Σ_j ‖g_j‖²`` and ``‖ḡ‖²`` of the mean ``ḡ = Σ_j g_j/M``.

    .. math::  \hat G = \frac{M^2‖\bar g‖^2 - S}{M(M-1)}, \qquad \hat N = \frac1M\Big(\frac SM - \hat G\Big)

    (``‖Σ_j g_j‖² = M²‖ḡ‖²``; McCandlish et al. 2018, App. A; derivation and bias at :func:`from_microbatches`,
    its slow reference, compared in ``tests/test_noise.py``). ``ḡ`` is what gradient accumulation leaves in
    ``.grad`` (the mean-loss gradient of the step's batch ``B = M·b``), so only ``S`` needs the micro-batches:
    one norm per micro-batch, no copy of any gradient (:class:`MicroBatchSums`).

    Args:
        M: number of equal-size micro-batches (``>= 2``).
        sum_sq, mean_sq: floats, or float64 tensors of shape ``(K,)`` (K runs at once, as :func:`pair_estimates`).

    Returns:
        ``(G, N)`` of the type of ``sum_sq``; ``N`` is the noise at the step's batch ``B``.
    """
    if isinstance(M, bool) or not isinstance(M, numbers.Integral) or M < 2:
        raise ValueError(f"from_microbatch_sums needs M >= 2 micro-batches, got {M!r}")
    G = (M * M * mean_sq - sum_sq) / (M * (M - 1))
    return G, (sum_sq / M - G) / M


class MicroBatchSums:
    r"""Streaming :func:`from_microbatches`: keeps ``S = Σ_j ‖g_j‖²`` and ``M``, never a gradient.

    Feed it what each micro-batch's backward added to ``.grad`` (:meth:`add`, with the factor that
    backward was scaled by), or norms computed elsewhere (:meth:`add_sq`: the ranks' local ``‖g_j‖²``,
    all-reduced); :meth:`result` takes the accumulated mean gradient ``ḡ`` (:meth:`result_sq` its ``‖ḡ‖²``)
    and returns :func:`from_microbatch_sums`. With ``stacked=True`` every tensor has a leading axis of ``K`` runs
    (stacked seed replicas, as :func:`pair_estimates`) and the sums are ``(K,)`` float64 tensors.

    The 3-line recipe for a plain accumulation loop (``l = 1``; tested in ``tests/test_open_step.py``)::

        sums = svag.noise.MicroBatchSums()
        for xb, yb in zip(x.chunk(M), y.chunk(M)):  # M equal micro-batches of one batch
            before = [p.grad.clone() if p.grad is not None else None for p in params]
            (loss_fn(model(xb), yb) / M).backward()
            sums.add([p.grad - (0 if b is None else b) for p, b in zip(params, before)], scale=1 / M)
        acc.add(*sums.result([p.grad for p in params]))  # acc: a NoiseAccumulator, pooled as the pairs

    (``svag.amplified_backward(..., micro_batches=M, micro_noise=True)`` does the same without the copies.)
    """

    def __init__(self, stacked: bool = False) -> None:
        self.stacked = bool(stacked)
        self.reset()

    def reset(self) -> None:
        """Start a new step."""
        self.count = 0
        self._sum_sq: Any = 0.0  # what add_sq gave, and the norms below once reduced
        self._norms: list[torch.Tensor] = []  # unstacked add: each tensor's norm, reduced once per step
        self._weights: list[float] = []  # 1/scale² of each norm above

    @property
    def sum_sq(self) -> Any:
        """``S = Σ_j ‖g_j‖²`` so far (a float, or ``(K,)`` float64 when stacked)."""
        if self._norms:  # one reduction for all the step's micro-batches: the per-add cost is one fused norm
            norms = torch.stack(self._norms).to(torch.float64)
            weights = torch.tensor(self._weights, dtype=torch.float64, device=norms.device)
            self._sum_sq = self._sum_sq + float((norms * norms * weights).sum())
            self._norms, self._weights = [], []
        return self._sum_sq

    def add(self, grads: GradLike, scale: float = 1.0) -> None:
        """Add micro-batch ``j``: ``grads`` is ``scale·g_j`` (a tensor or per-parameter list, ``None`` = 0),
        e.g. what a backward of ``scale·loss_j`` added to ``.grad`` (``scale = 1/M`` for a mean over ``M``)."""
        if self.stacked:
            self.add_sq(squared_norm(grads, stacked=True) / (float(scale) ** 2))
            return
        parts = _parts(grads)
        if parts:
            self._norms.extend(torch._foreach_norm(parts))
            self._weights.extend([1.0 / float(scale) ** 2] * len(parts))
        self.count += 1

    def add_sq(self, sq: Any, count: int = 1) -> None:
        """Add ``Σ‖g_j‖²`` of ``count`` micro-batches computed elsewhere (a float, or ``(K,)`` when stacked)."""
        self._sum_sq = self._sum_sq + sq
        self.count += int(count)

    def result(self, mean: GradLike, scale: float = 1.0) -> tuple[Any, Any]:
        """``(Ĝ, N̂)`` at ``B = M·b`` from the accumulated gradient ``scale·ḡ`` (a tensor or per-parameter list)."""
        return self.result_sq(squared_norm(mean, self.stacked) / (float(scale) ** 2))

    def result_sq(self, mean_sq: Any) -> tuple[Any, Any]:
        """``(Ĝ, N̂)`` from ``‖ḡ‖²`` computed elsewhere (e.g. of a data-parallel gradient after its all-reduce)."""
        return from_microbatch_sums(self.count, self.sum_sq, mean_sq)


def squared_norm(grads: GradLike, stacked: bool = False, as_tensor: bool = False) -> Any:
    """``‖g‖²`` of a tensor or per-parameter list (``None`` = 0) in float64: a float (with ``as_tensor``, a 0-d
    float64 tensor on the gradients' device: no synchronization, for a hook that runs per parameter); with
    ``stacked`` every tensor has a leading axis of ``K`` runs and the result is their ``(K,)`` float64 tensor."""
    parts = _parts(grads)
    if not parts:
        return 0.0
    if not stacked:  # one fused norm per tensor in its own dtype, squared and summed in float64
        norms = torch.stack(torch._foreach_norm(parts)).to(torch.float64)
        total = (norms * norms).sum()
        return total if as_tensor else float(total)
    return sum((g.flatten(1).to(torch.float64) ** 2).sum(1) for g in parts)


def _parts(grads: GradLike) -> list[torch.Tensor]:
    """The tensors of ``grads`` (a tensor or a per-parameter list, ``None`` left out), detached."""
    parts = [grads] if isinstance(grads, torch.Tensor) else [g for g in grads if g is not None]
    return [g.detach() if g.requires_grad else g for g in parts]


def from_pair(g1: GradLike, g2: GradLike, weights: GradLike | None = None) -> tuple[float, float]:
    r"""Unbiased one-step estimates from two independent batch gradients (derived from P1).

    .. math::  \hat G = ⟨g_1, g_2⟩,\qquad \hat N = ‖g_1 - g_2‖^2 / 2

    With ``g1, g2`` independent with mean ``∇L`` and covariance ``Σ_B``:
    ``E⟨g1, g2⟩ = ‖∇L‖²`` and ``E‖g1 − g2‖² = 2 Tr Σ_B``. This is the ``m = 2`` case of
    :func:`from_minibatch_grads`. Single-step estimates are very noisy: average ``Ĝ`` and ``N̂``
    separately over many steps (:class:`NoiseAccumulator`) before dividing.

    With ``weights`` ``w`` (fixed independently of ``g1, g2``), the preconditioned estimates of the
    module docstring: ``Ĝ_w = Σ_i w_i g1_i g2_i`` (unbiased for ``Σ_i w_i Ĝ_i²``) and
    ``N̂_w = Σ_i w_i (g1_i − g2_i)²/2`` (for ``Σ_i w_i σ_i²/B``).

    Args:
        g1, g2: flat tensors or per-parameter lists of tensors (``None`` counts as zero), e.g.
            ``StepOutput.grads`` of ``svag.train_step(..., return_grads=True)``.
        weights: ``None`` (``w ≡ 1``), or ``w`` in the same form as ``g1`` (e.g.
            ``opt.preconditioner_weights()`` taken before the step); a ``None`` entry of a list
            leaves that parameter out (weight 0: a parameter the optimizer has not stepped yet).
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
    if weights is not None:
        G, N = pair_estimates(*(_per_parameter(t) for t in (g1, g2, weights)))
        return float(G[0]), float(N[0])
    diff = a - b
    return float(a @ b), float(diff @ diff) / 2.0


def _per_parameter(g: GradLike) -> list[torch.Tensor | None]:
    """A flat tensor or a per-parameter list as :func:`pair_estimates`'s ``(1, ...)`` list."""
    return [g.unsqueeze(0)] if isinstance(g, torch.Tensor) else [None if t is None else t.unsqueeze(0) for t in g]


def pair_estimates(
    g1: list[torch.Tensor | None], g2: list[torch.Tensor | None], weights: list[torch.Tensor | None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`from_pair` for K runs at once: row ``k`` of every tensor belongs to run ``k``.

    .. math::  \hat G_k = ⟨g_{1,k}, g_{2,k}⟩,\qquad \hat N_k = ‖g_{1,k} - g_{2,k}‖^2 / 2

    With ``weights`` ``w`` the preconditioned estimates of the module docstring:

    .. math::  \hat G_{w,k} = \sum_i w_{k,i}\, g_{1,k,i}\, g_{2,k,i},\qquad
               \hat N_{w,k} = \sum_i w_{k,i}\, (g_{1,k,i} - g_{2,k,i})^2 / 2,

    unbiased for ``Σ_i w_i Ĝ_i²`` and ``Σ_i w_i σ_i²/B`` when ``w`` does not depend on ``g1, g2`` (an
    adaptive optimizer's :meth:`~svag.adaptive.SVAGAdam.preconditioner_weights` taken before the step).
    ``tests/test_noise.py`` holds its slow reference, a plain loop over the coordinates.

    Args:
        g1, g2: per-parameter lists of ``(K, ...)`` tensors (``None`` counts as zero), e.g. the
            gradients of a stacked ensemble; a single run's gradients with ``t.unsqueeze(0)``.
        weights: ``None`` (``w ≡ 1``), or a per-parameter list of ``(K, ...)`` tensors of the gradients'
            shapes; a ``None`` entry leaves its parameter out of both sums (weight 0).

    Returns:
        ``(G, N)``: float64 tensors of shape ``(K,)`` (products in the gradients' dtype, sums in
        float64). No finiteness check: a diverged run's
        entries are nan/inf and the caller decides (:func:`from_pair` raises).
    """
    if len(g1) != len(g2):
        raise ValueError(f"g1 and g2 must have the same length, got {len(g1)} and {len(g2)}")
    if weights is not None and len(weights) != len(g1):
        raise ValueError(f"weights must have one entry per gradient, got {len(weights)} for {len(g1)}")
    G = N = None
    for i, (a, b) in enumerate(zip(g1, g2)):
        w = None if weights is None else weights[i]
        if (a is None and b is None) or (weights is not None and w is None):
            continue
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        if w is not None and w.shape != a.shape:
            raise ValueError(f"weights[{i}] has shape {tuple(w.shape)}, expected its gradient's {tuple(a.shape)}")
        a, b = a.detach().flatten(1), b.detach().flatten(1)
        d = a - b
        ab, dd = a * b, d * d
        if w is not None:  # w_i·a_i·b_i and w_i·d_i²
            w = w.detach().flatten(1)
            ab, dd = w * ab, w * dd
        ab, dd = ab.sum(1, dtype=torch.float64), dd.sum(1, dtype=torch.float64)  # float64 sums
        G = ab if G is None else G + ab
        N = dd if N is None else N + dd
    if G is None:
        raise ValueError("pair_estimates needs at least one gradient, got only None")
    return G, N / 2.0


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

    def add_pair(self, g1: GradLike, g2: GradLike, weights: GradLike | None = None) -> tuple[float, float]:
        """Add :func:`from_pair` ``(g1, g2, weights)`` and return it."""
        G, N = from_pair(g1, g2, weights)
        self.add(G, N)
        return G, N

    def result(self) -> NoiseResult:
        """The interval's ``NoiseResult`` (SEs are ``nan`` with fewer than 2 estimates)."""
        if self.count == 0:
            raise ValueError("NoiseAccumulator.result needs at least 1 estimate, got 0")
        return from_moments(self.count, *self._mean, *self._m2, self._c, self.batch_size)


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
        res = dict(G=G, N=N, ratio=gn_ratio(G, N))
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
        return NoiseResult(G, N, gn_ratio(G, N), 0.0, 0.0, 0.0, count, B, 0.0)
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
