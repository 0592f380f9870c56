r"""Problems with exact answers: SVAG and the SDE of SGD in closed form.

Two problems, each "the SGD run (η, B, λ, x0, T) being simulated" plus its data:

* :class:`SkewedQuadratic` — ``ℓ_i(x) = ½(x−c)ᵀA(x−c) + ξ_iᵀx`` with ``ξ_i`` from a finite, **skewed**
  set of mean zero. The noise is additive, so the SDE is an Ornstein–Uhlenbeck process and every
  moment of SVAG after ``k`` steps follows a linear recursion that has a closed form
  (:func:`ou_moments`, :func:`svag_moments`), including the third central moment.
* :class:`NoisyRegression` — least squares ``ℓ_i(x) = ½(a_iᵀx − y_i)²``: the noise covariance
  ``Σ(x)`` depends on the state, but it is quadratic in ``x``, so the first two moments still close
  (:func:`regression_svag_moments`, :func:`regression_sde_moments`).

**Sampling convention.** A minibatch is ``B`` indices drawn uniformly **with replacement**
(``RunConfig(sampling="replacement")``), so the minibatch noise covariance is exactly ``Σ = Σ_1/B``
(``Σ_1`` the per-sample covariance, population normalization ``1/n``) and its third cumulant is
``κ_1/B²``. SVAG draws two independent minibatches per step. Continuous time after ``k`` SVAG
steps is ``t = k·η/l`` (P1 §4); the problems ask ``l·T/η`` to be an integer so that time ``T`` is hit.
**Gaussian noise.** The Gaussian-noise step of :mod:`svag.gaussian` (P1's NGD; Euler–Maruyama with
``Δt = η/l``) injects noise of mean 0 and covariance ``lΣ_1/B`` given ``x``, with ``Σ_1`` the population
covariance of the ``n`` per-sample gradients: exactly SVAG's covariance under this sampling convention.
Both iterations are affine in ``x`` plus noise, so their mean and covariance recursions coincide step by
step; only the higher cumulants differ (the Gaussian's third is 0): :func:`gaussian_moments`.
Sources: P1 = Li, Malladi & Arora 2021 (arXiv 2102.12470), §2 (SDE), §4 (SVAG, Thm 4.3), NGD (PAPER.md §3).

This module holds the OU problem and :func:`gaussian_moments` (both problems); the regression lives in
:mod:`svag.problems.regression` and :class:`Moments` with its tools in :mod:`svag.problems.moments`.
Every name of both is importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from svag.amplify import coefficients
from svag.clock import check_l
from svag.gaussian import finite_population_factor
from svag.optim import SVAG
from svag.problems.moments import Moments, check_run, expm, gaussian_kernel_mean, geometric_sum, step_count
from svag.problems.regression import (
    NoisyRegression,
    _moment_map,  # noqa: F401  (importable from here, as before the split)
    _regression_iteration_moments,
    noisy_regression,
    regression_sde_moments,
    regression_svag_moments,
)

__all__ = [
    "Moments",
    "NoisyRegression",
    "SkewedQuadratic",
    "expm",
    "gaussian_kernel_mean",
    "gaussian_moments",
    "geometric_sum",
    "noisy_regression",
    "ou_moments",
    "regression_sde_moments",
    "regression_svag_moments",
    "skewed_quadratic",
    "svag_moments",
    "third_cumulant_factor",
]


def third_cumulant_factor(l: float) -> float:
    r"""``a1³ + a2³ = (3l − 1)/2``: by how much SVAG's two-batch gradient multiplies the third cumulant
    of the minibatch noise (derived from P1's ``a_{1,2}``: ``a1 + a2 = 1``, ``a1a2 = (1 − l)/2``).
    Per unit of SDE time (``l/η`` steps of size ``h = η/l``) the injected third cumulant is
    ``(l/η)·h³(3l−1)/2 = O(η²/l)``: it vanishes as ``l → ∞``, the covariance injected (``ηΣ``) does not."""
    a1, a2 = coefficients(l)
    return a1**3 + a2**3


@dataclass(frozen=True, eq=False)
class SkewedQuadratic:
    r"""``ℓ_i(x) = ½(x−c)ᵀA(x−c) + ξ_iᵀx``, ``i = 1..n``, with weight decay λ: an OU process.

    The full-batch gradient is ``A(x−c)``; a minibatch adds ``ξ̄_γ`` (mean of ``B`` draws with
    replacement), with covariance ``Σ = Σ_1/B`` and third cumulant ``κ_1/B²``, where
    ``Σ_1 = (1/n)Σ_i ξ_iξ_iᵀ`` and ``κ_1 = (1/n)Σ_i ξ_i⊗ξ_i⊗ξ_i``. SDE (P1 §2):

    .. math::  dX = -\big(A(X-c) + λX\big)\,dt + (ηΣ)^{1/2}\,dW

    Attributes:
        curvature: ``A``, symmetric ``(d, d)``; ``A + λI`` must be positive definite.
        center: ``c``, ``(d,)``.
        noise: the ``ξ_i``, ``(n, d)``, mean zero.
        batch_size: ``B``, samples per minibatch (each of SVAG's two batches).
        weight_decay: ``λ``, L2 coefficient, not amplified by SVAG.
        lr: ``η`` of the SGD run being simulated.
        horizon: ``T``, SDE time at which moments are compared.
        x0: deterministic start ``(d,)``.
    """

    curvature: np.ndarray
    center: np.ndarray
    noise: np.ndarray
    batch_size: int = 2
    weight_decay: float = 0.05
    lr: float = 0.5
    horizon: float = 5.0
    x0: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_run(self.lr, self.horizon, self.batch_size, self.weight_decay)
        a = np.asarray(self.curvature, dtype=np.float64)
        d = a.shape[0]
        if a.shape != (d, d) or not np.allclose(a, a.T, rtol=0, atol=1e-12):
            raise ValueError(f"curvature must be a symmetric (d, d) matrix, got shape {a.shape}")
        if np.linalg.eigvalsh(a + self.weight_decay * np.eye(d)).min() <= 0:
            raise ValueError("curvature + weight_decay·I must be positive definite (a stable OU process)")
        xi = np.asarray(self.noise, dtype=np.float64)
        if xi.ndim != 2 or xi.shape[1] != d:
            raise ValueError(f"noise must be an (n, {d}) array, got shape {xi.shape}")
        if np.abs(xi.mean(0)).max() > 1e-12 * max(1.0, np.abs(xi).max()):
            raise ValueError(f"noise vectors must have mean zero, got mean {xi.mean(0)}")
        x0 = np.zeros(d) if self.x0 is None else np.asarray(self.x0, dtype=np.float64)
        object.__setattr__(self, "curvature", a)
        object.__setattr__(self, "center", np.asarray(self.center, dtype=np.float64).reshape(d))
        object.__setattr__(self, "noise", xi)
        object.__setattr__(self, "x0", x0.reshape(d))

    @property
    def dim(self) -> int:
        return self.curvature.shape[0]

    @property
    def n_samples(self) -> int:
        return self.noise.shape[0]

    @property
    def drift(self) -> np.ndarray:
        """``D = A + λI``: the SDE drift is ``−(D X − A c)``."""
        return self.curvature + self.weight_decay * np.eye(self.dim)

    @property
    def fixed_point(self) -> np.ndarray:
        """``x* = D⁻¹Ac``, the mean at equilibrium (of both SGD/SVAG and the SDE)."""
        return np.linalg.solve(self.drift, self.curvature @ self.center)

    @property
    def noise_cov(self) -> np.ndarray:
        """``Σ = Σ_1/B = (1/(nB))Σ_i ξ_iξ_iᵀ``: covariance of a minibatch gradient (with replacement)."""
        return self.noise.T @ self.noise / (self.n_samples * self.batch_size)

    @property
    def noise_third(self) -> np.ndarray:
        """``κ_1/B² = (1/(nB²))Σ_i ξ_i⊗ξ_i⊗ξ_i``: third cumulant of a minibatch gradient (with replacement;
        cumulants of a sum of ``B`` i.i.d. terms add, then the mean divides by ``B³``)."""
        xi = self.noise
        return np.einsum("ia,ib,ic->abc", xi, xi, xi) / (self.n_samples * self.batch_size**2)

    def steps(self, l: float) -> int:
        """SVAG steps ``k = l·T/η`` to reach the horizon (:meth:`svag.optim.Clock.steps_to` of :class:`svag.SVAG`)."""
        return SVAG.clock_for(l).steps_to(self.lr, self.horizon)

    def minibatch_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Sum over replicas ``r`` of the **mean** loss of minibatch ``idx[r]`` at ``x[r]``.

        ``x``: ``(R, d)``, one independent chain per row; ``idx``: ``(R, B)`` sample indices. The
        gradient of row ``r`` is that replica's own minibatch gradient ``A(x_r − c) + ξ̄_{idx[r]}``.
        """
        a, c, xi = (torch.as_tensor(v, dtype=x.dtype) for v in (self.curvature, self.center, self.noise))
        z = x - c
        quad = 0.5 * ((z @ a) * z).sum(-1)
        lin = (xi[idx] * x.unsqueeze(1)).sum(-1).mean(-1)
        return (quad + lin).sum()

    def per_sample_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``ℓ_i(x_r)`` for every replica ``r`` and sample ``i ∈ idx``: ``(R, k)`` for ``x`` ``(R, d)`` and
        ``idx`` ``(k,)`` shared by all replicas (the full-data pass of :func:`svag.gaussian.gaussian_step`)."""
        a, c, xi = (torch.as_tensor(v, dtype=x.dtype) for v in (self.curvature, self.center, self.noise))
        z = x - c
        quad = 0.5 * ((z @ a) * z).sum(-1)
        return quad[:, None] + x @ xi[idx].T


def skewed_quadratic(**overrides) -> SkewedQuadratic:
    """The default OU problem of ``svag verify``: ``d = 2``, ``n = 8`` noise vectors whose first
    coordinate is strongly skewed (one value +7, seven values −1: per-sample skewness 2.27), with
    ``B = 2``, ``λ = 0.05``, ``η = 0.5``, ``T = 5`` (10 SGD steps), ``x0 = 0``; ``η·λ_max(A + λI) ≈ 0.6``."""
    noise = np.array(
        [[7.0, 1.0], [-1.0, 2.0], [-1.0, -1.0], [-1.0, 0.0], [-1.0, -2.0], [-1.0, 1.0], [-1.0, -1.0], [-1.0, 0.0]]
    )
    args = {
        "curvature": np.array([[1.0, 0.3], [0.3, 0.5]]),
        "center": np.array([2.0, -1.0]),
        "noise": noise,
    }
    args.update(overrides)
    return SkewedQuadratic(**args)


def ou_moments(problem: SkewedQuadratic, t: float) -> Moments:
    r"""Exact mean, covariance (and zero third central moment) of the OU SDE at time ``t``.

    With ``D = A + λI = QΛQᵀ`` and ``x* = D⁻¹Ac`` (P1 §2, derived):

    .. math::  m(t) = x^* + e^{-Dt}(x_0 - x^*),\qquad
               C(t) = Q\Big[\,(Q^ᵀηΣQ)_{ab}\,\frac{1 - e^{-(λ_a+λ_b)t}}{λ_a+λ_b}\Big]Q^ᵀ

    The noise is Gaussian, so the third central moment is zero for every ``t``.
    """
    lam, q = np.linalg.eigh(problem.drift)
    star = problem.fixed_point
    mean = star + q @ (np.exp(-lam * t) * (q.T @ (problem.x0 - star)))
    rates = lam[:, None] + lam[None, :]
    s = q.T @ (problem.lr * problem.noise_cov) @ q
    cov = q @ (s * -np.expm1(-rates * t) / rates) @ q.T
    return Moments(mean, cov, np.zeros((problem.dim,) * 3))


def svag_moments(problem: SkewedQuadratic, l: float, steps: int | None = None) -> Moments:
    r"""Exact mean, covariance and third central moment of SVAG after ``k`` steps (default ``l·T/η``).

    One step is ``x ← Mx + hAc − hζ`` with ``h = η/l``, ``M = I − hD``, and ``ζ = a1 ξ̄_1 + a2 ξ̄_2``
    of mean 0, covariance ``lΣ`` and third cumulant ``(a1³+a2³)κ_1/B² = ((3l−1)/2)·κ_1/B²``
    (P1 §4; the factor is derived from ``a1+a2 = 1``, ``a1a2 = (1−l)/2``). Hence (derived)

    .. math::  m_k = x^* + M^k(x_0 - x^*),\quad C_{k+1} = MC_kM^ᵀ + h^2 lΣ,\quad
               K_{k+1} = (M⊗M⊗M)K_k - h^3\tfrac{3l-1}{2}κ_1/B^2

    summed in the eigenbasis of ``D`` as geometric series: ``C'_{ab} = h²lΣ'_{ab}Σ_{j<k}(μ_aμ_b)^j``,
    ``K'_{abc} = −h³((3l−1)/2)κ'_{abc}Σ_{j<k}(μ_aμ_bμ_c)^j``, ``μ = 1 − hλ``.
    """
    l = check_l(l)
    return _ou_iteration_moments(problem, l, step_count(problem, l, steps), l, third_cumulant_factor(l))


def _ou_iteration_moments(problem: SkewedQuadratic, l: float, k: int, variance: float, third: float) -> Moments:
    """Moments after ``k`` steps ``x ← Mx + hAc − hζ``, ``h = η/l``, noise ``ζ`` of covariance
    ``variance·Σ`` and third cumulant ``third·κ_1/B²`` (:func:`svag_moments` for the equations)."""
    h = problem.lr / l
    lam, q = np.linalg.eigh(problem.drift)
    mu = 1.0 - h * lam
    star = problem.fixed_point
    mean = star + q @ (mu**k * (q.T @ (problem.x0 - star)))
    s = q.T @ problem.noise_cov @ q
    cov = q @ (h**2 * variance * s * geometric_sum(mu[:, None] * mu[None, :], k)) @ q.T
    if third == 0.0:
        return Moments(mean, cov, np.zeros((problem.dim,) * 3))
    kappa = np.einsum("ia,jb,kc,ijk->abc", q, q, q, problem.noise_third)
    ratio = mu[:, None, None] * mu[None, :, None] * mu[None, None, :]
    third_eig = -(h**3) * third * kappa * geometric_sum(ratio, k)
    return Moments(mean, cov, np.einsum("ai,bj,ck,ijk->abc", q, q, q, third_eig))


def gaussian_moments(
    problem: SkewedQuadratic | NoisyRegression, l: float, steps: int | None = None, *, finite_population: bool = False
) -> Moments:
    r"""Exact moments of the Gaussian-noise iteration (:func:`svag.gaussian.gaussian_step` with
    :class:`svag.SVAG` at ``l``: P1's NGD at ``l = 1``, Euler–Maruyama with ``Δt = η/l``) after ``k`` steps
    (default ``l·T/η``).

    One step is ``x ← x − h(∇L(x) + λx + ζ)``, ``h = η/l``, with ``ζ | x ~ N(0, l·f·Σ_1(x)/B)`` exactly
    (:mod:`svag.gaussian`), ``Σ_1`` the population covariance of the ``n`` per-sample gradients and ``f = 1``
    (``finite_population=False``) or ``(n − B)/(n − 1)``. With ``f = 1`` this is SVAG's conditional
    covariance here (two independent minibatches drawn with replacement, covariance ``lΣ_1/B``), so (derived)
    the mean and covariance are **those of SVAG** (:func:`svag_moments`, :func:`regression_svag_moments`);
    only higher cumulants differ. On :class:`SkewedQuadratic` (additive noise, affine step) the iterate is
    Gaussian: its third central moment is 0 (returned as zeros); on :class:`NoisyRegression` the noise is
    state-dependent, the iterate is not Gaussian, and ``third`` is ``None``.
    """
    l = check_l(l)
    k = step_count(problem, l, steps)
    f = finite_population_factor(problem.n_samples, problem.batch_size) if finite_population else 1.0
    if isinstance(problem, SkewedQuadratic):
        return _ou_iteration_moments(problem, l, k, l * f, 0.0)
    if isinstance(problem, NoisyRegression):
        return _regression_iteration_moments(problem, l, k, l * f)
    raise ValueError(f"problem must be a SkewedQuadratic or a NoisyRegression, got {type(problem).__name__}")
