r"""Least squares with state-dependent noise: :class:`NoisyRegression` and its exact first two moments.

``ℓ_i(x) = ½(a_iᵀx − y_i)²``: the noise covariance ``Σ(x)`` depends on the state, but it is quadratic
in ``x``, so the first two moments of SVAG and of the SDE still close (:func:`regression_svag_moments`,
:func:`regression_sde_moments`). The sampling convention and the sources are those of
:mod:`svag.problems.closed_form`, which re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from svag.clock import check_l
from svag.optim import SVAG
from svag.problems.moments import Moments, check_run, expm, step_count

__all__ = ["NoisyRegression", "noisy_regression", "regression_sde_moments", "regression_svag_moments"]


@dataclass(frozen=True, eq=False)
class NoisyRegression:
    r"""Least squares ``ℓ_i(x) = ½(a_iᵀx − y_i)²`` on ``n`` points: **state-dependent** noise.

    ``∇L(x) = Hx − b`` with ``H = (1/n)Σ a_ia_iᵀ``, ``b = (1/n)Σ a_iy_i``; the per-sample gradient is
    ``g_i(x) = a_i r_i(x)``, ``r_i = a_iᵀx − y_i``, and a minibatch of ``B`` draws with replacement has
    covariance ``Σ(x) = Σ_1(x)/B``, ``Σ_1(x) = (1/n)Σ_i (g_i − ∇L)(g_i − ∇L)ᵀ``. SDE (P1 §2):

    .. math::  dX = -(∇L(X) + λX)\,dt + (ηΣ(X))^{1/2}\,dW

    ``Σ(x)`` is quadratic in ``x``, so ``E Σ(X)`` is linear in ``(E X, E XXᵀ)`` and the first two
    moments of both SVAG and the SDE follow closed linear equations (derived).

    Attributes:
        features: ``a_i`` as rows, ``(n, d)``.
        targets: ``y_i``, ``(n,)``.
        batch_size, weight_decay, lr, horizon, x0: as in :class:`~svag.problems.closed_form.SkewedQuadratic`.
    """

    features: np.ndarray
    targets: np.ndarray
    batch_size: int = 4
    weight_decay: float = 0.01
    lr: float = 0.5
    horizon: float = 8.0
    x0: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_run(self.lr, self.horizon, self.batch_size, self.weight_decay)
        f = np.asarray(self.features, dtype=np.float64)
        y = np.asarray(self.targets, dtype=np.float64)
        if f.ndim != 2 or y.shape != (f.shape[0],):
            raise ValueError(f"features must be (n, d) and targets (n,), got {f.shape} and {y.shape}")
        x0 = np.zeros(f.shape[1]) if self.x0 is None else np.asarray(self.x0, dtype=np.float64).reshape(f.shape[1])
        object.__setattr__(self, "features", f)
        object.__setattr__(self, "targets", y)
        object.__setattr__(self, "x0", x0)

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def n_samples(self) -> int:
        return self.features.shape[0]

    @property
    def hessian(self) -> np.ndarray:
        """``H = (1/n)Σ a_ia_iᵀ``."""
        return self.features.T @ self.features / self.n_samples

    @property
    def moment(self) -> np.ndarray:
        """``b = (1/n)Σ a_iy_i``, so that ``∇L(x) = Hx − b``."""
        return self.features.T @ self.targets / self.n_samples

    def steps(self, l: float) -> int:
        """SVAG steps ``k = l·T/η`` to reach the horizon (:meth:`svag.optim.Clock.steps_to` of :class:`svag.SVAG`)."""
        return SVAG.clock_for(l).steps_to(self.lr, self.horizon)

    def loss(self, x: np.ndarray) -> float:
        """Full-batch training loss ``L(x) = (1/2n)Σ(a_iᵀx − y_i)²`` (without the weight-decay term)."""
        r = self.features @ x - self.targets
        return float(0.5 * np.mean(r**2))

    def per_sample_grads(self, x: np.ndarray) -> np.ndarray:
        """``g_i(x) = a_i(a_iᵀx − y_i)``, ``(n, d)``."""
        return self.features * (self.features @ x - self.targets)[:, None]

    def noise_cov(self, x: np.ndarray) -> np.ndarray:
        """``Σ(x) = Σ_1(x)/B``: covariance of a minibatch gradient at ``x`` (``B`` draws with replacement)."""
        g = self.per_sample_grads(x)
        g = g - g.mean(0)
        return g.T @ g / (self.n_samples * self.batch_size)

    def expected_noise_cov(self, mean: np.ndarray, second: np.ndarray) -> np.ndarray:
        r"""``E Σ(X)`` for ``E X = m``, ``E XXᵀ = S`` (derived; exact since ``Σ`` is quadratic):

        .. math::  BΣ̄ = \frac1n\sum_i a_ia_i^ᵀ\,(a_i^ᵀSa_i - 2y_ia_i^ᵀm + y_i^2)
                   - (HSH - Hmb^ᵀ - bm^ᵀH + bb^ᵀ)
        """
        f, y, h, b = self.features, self.targets, self.hessian, self.moment
        r2 = np.einsum("ia,ab,ib->i", f, second, f) - 2 * y * (f @ mean) + y**2
        outer = (f * r2[:, None]).T @ f / self.n_samples
        grad_outer = h @ second @ h - np.outer(h @ mean, b) - np.outer(b, h @ mean) + np.outer(b, b)
        return (outer - grad_outer) / self.batch_size

    def expected_loss(self, moments: Moments) -> float:
        """``E L(X) = (1/2n)Σ_i (a_iᵀSa_i − 2y_ia_iᵀm + y_i²)`` from exact moments."""
        f, y = self.features, self.targets
        r2 = np.einsum("ia,ab,ib->i", f, moments.second, f) - 2 * y * (f @ moments.mean) + y**2
        return float(0.5 * np.mean(r2))

    def minibatch_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Sum over replicas ``r`` of the **mean** loss of minibatch ``idx[r]`` (``(R, B)``) at ``x[r]`` (``(R, d)``).

        Row ``r`` of the gradient is replica ``r``'s own minibatch gradient ``(1/B)Σ_j g_{idx[r,j]}(x_r)``."""
        f = torch.as_tensor(self.features, dtype=x.dtype)
        y = torch.as_tensor(self.targets, dtype=x.dtype)
        r = (f[idx] * x.unsqueeze(1)).sum(-1) - y[idx]
        return (0.5 * r**2).mean(-1).sum()

    def per_sample_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``ℓ_i(x_r) = ½(a_iᵀx_r − y_i)²`` for every replica ``r`` and sample ``i ∈ idx``: ``(R, k)`` for
        ``x`` ``(R, d)`` and ``idx`` ``(k,)`` shared by all replicas."""
        f = torch.as_tensor(self.features, dtype=x.dtype)[idx]
        y = torch.as_tensor(self.targets, dtype=x.dtype)[idx]
        return 0.5 * (x @ f.T - y) ** 2


def noisy_regression(seed: int = 2, n: int = 32, d: int = 3, **overrides) -> NoisyRegression:
    """The default regression problem of ``svag verify``: Gaussian features with unequal scales,
    targets ``a_iᵀx_true + 0.5·ε_i`` (``x_true = (1, −2, 0.5)`` for ``d = 3``), start ``x0 = 0``, and
    ``η = 0.5``, ``B = 4``, ``λ = 0.01``, ``T = 8``. A ``numpy`` generator seeded with ``seed`` makes the
    data deterministic; seed 2 gives eigenvalues of ``H`` in [0.35, 1.28], so ``η·λ_max ≈ 0.64``."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, d)) * np.linspace(1.2, 0.6, d)
    x_true = np.resize(np.array([1.0, -2.0, 0.5]), d)
    targets = features @ x_true + 0.5 * rng.standard_normal(n)
    return NoisyRegression(features, targets, **overrides)


def _moment_map(fn, d: int) -> np.ndarray:
    """The ``(1+d+d², 1+d+d²)`` matrix of an affine map ``(m, S) ↦ (m', S')`` on the vector ``[1, m, vec S]``."""
    size = 1 + d + d * d

    def apply(z: np.ndarray) -> np.ndarray:
        m, s = fn(z[1 : 1 + d], z[1 + d :].reshape(d, d))
        return np.concatenate([[z[0]], m, s.ravel()])

    zero = np.zeros(size)
    zero[0] = 1.0
    base = apply(zero)
    out = np.empty((size, size))
    out[:, 0] = base
    for j in range(1, size):
        e = zero.copy()
        e[j] = 1.0
        out[:, j] = apply(e) - base
    return out


def _moments_from(z: np.ndarray, d: int) -> Moments:
    m = z[1 : 1 + d]
    s = z[1 + d :].reshape(d, d)
    s = 0.5 * (s + s.T)
    return Moments(m, s - np.outer(m, m))


def regression_svag_moments(problem: NoisyRegression, l: float, steps: int | None = None) -> Moments:
    r"""Exact mean and covariance of SVAG on :class:`NoisyRegression` after ``k`` steps (default ``l·T/η``).

    One step ``x ← Mx + hb − hζ``, ``h = η/l``, ``M = I − h(H + λI)``, ``E[ζζᵀ | x] = lΣ(x)`` (P1 §4) gives
    (derived) the exact affine recursion, applied ``k`` times as a matrix power:

    .. math::  m' = Mm + hb,\qquad S' = MSM^ᵀ + h(Mmb^ᵀ + bm^ᵀM^ᵀ) + h^2bb^ᵀ + h^2l\,E Σ(X)
    """
    l = check_l(l)
    return _regression_iteration_moments(problem, l, step_count(problem, l, steps), l)


def _regression_iteration_moments(problem: NoisyRegression, l: float, k: int, variance: float) -> Moments:
    """Moments after ``k`` steps ``x ← Mx + hb − hζ``, ``h = η/l``, ``E[ζζᵀ|x] = variance·Σ(x)``
    (:func:`regression_svag_moments` for the equations)."""
    h = problem.lr / l
    mat = np.eye(problem.dim) - h * (problem.hessian + problem.weight_decay * np.eye(problem.dim))
    b = problem.moment

    def step(m, s):
        mb = np.outer(mat @ m, b)
        s_new = mat @ s @ mat.T + h * (mb + mb.T) + h**2 * np.outer(b, b)
        return mat @ m + h * b, s_new + h**2 * variance * problem.expected_noise_cov(m, s)

    z0 = np.concatenate([[1.0], problem.x0, np.outer(problem.x0, problem.x0).ravel()])
    return _moments_from(np.linalg.matrix_power(_moment_map(step, problem.dim), k) @ z0, problem.dim)


def regression_sde_moments(problem: NoisyRegression, t: float | None = None) -> Moments:
    r"""Exact mean and covariance of the SDE of :class:`NoisyRegression` at time ``t`` (default ``T``).

    With ``D = H + λI``, Itô's formula gives the closed linear ODE (derived)

    .. math::  \dot m = -Dm + b,\qquad \dot S = -DS - SD + mb^ᵀ + bm^ᵀ + η\,EΣ(X)

    solved as ``exp(tF)`` of its ``(1+d+d²)``-square generator ``F`` (:func:`~svag.problems.moments.expm`).
    """
    t = problem.horizon if t is None else float(t)
    drift = problem.hessian + problem.weight_decay * np.eye(problem.dim)
    b = problem.moment

    def rate(m, s):
        mb = np.outer(m, b)
        return -drift @ m + b, -drift @ s - s @ drift + mb + mb.T + problem.lr * problem.expected_noise_cov(m, s)

    gen = _moment_map(rate, problem.dim)
    gen[0, 0] = 0.0  # the constant coordinate does not move
    z0 = np.concatenate([[1.0], problem.x0, np.outer(problem.x0, problem.x0).ravel()])
    return _moments_from(expm(t * gen) @ z0, problem.dim)
