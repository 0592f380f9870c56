r"""Exact moments on ``R^d``, and the tools the closed forms compute them with.

:class:`Moments` (mean, covariance, third central moment) is what every closed form of
:mod:`svag.problems.closed_form` and :mod:`svag.problems.regression` returns. :func:`geometric_sum`
sums their recursions and :func:`expm` solves their linear ODEs, in float64; :func:`check_run` and
:func:`step_count` check the SGD run ``(η, B, λ, T)`` a problem simulates and count SVAG's steps;
:func:`gaussian_kernel_mean` is a bounded test function's exact mean under Gaussian moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Moments", "check_run", "expm", "gaussian_kernel_mean", "geometric_sum", "step_count"]


@dataclass(frozen=True, eq=False)
class Moments:
    """Exact moments of a distribution on ``R^d``.

    Attributes:
        mean: ``E x``, ``(d,)``.
        cov: ``Cov x``, ``(d, d)``.
        third: ``E[(x − Ex)⊗3]``, the third central moment tensor ``(d, d, d)``; ``None`` if not computed.
    """

    mean: np.ndarray
    cov: np.ndarray
    third: np.ndarray | None = None

    @property
    def second(self) -> np.ndarray:
        """``E[xxᵀ] = Cov x + (Ex)(Ex)ᵀ``."""
        return self.cov + np.outer(self.mean, self.mean)

    @property
    def mean_sq_norm(self) -> float:
        """``E‖x‖² = ‖Ex‖² + Tr Cov x``."""
        return float(self.mean @ self.mean + np.trace(self.cov))

    def skewness(self, direction: np.ndarray) -> float:
        """Standardized skewness of ``uᵀx``: ``K[u,u,u] / (uᵀCu)^{3/2}`` (0 for a Gaussian)."""
        if self.third is None:
            raise ValueError("skewness needs the third central moment, got third=None")
        u = np.asarray(direction, dtype=np.float64)
        return float(np.einsum("abc,a,b,c->", self.third, u, u, u) / (u @ self.cov @ u) ** 1.5)


def geometric_sum(ratio: np.ndarray, k: int) -> np.ndarray:
    """``Σ_{j<k} r^j = (1 − r^k)/(1 − r)`` elementwise, and ``k`` where ``r = 1``."""
    r = np.asarray(ratio, dtype=np.float64)
    one = r == 1.0
    den = np.where(one, 1.0, 1.0 - r)
    return np.where(one, float(k), (1.0 - r**k) / den)


def expm(a: np.ndarray) -> np.ndarray:
    """Matrix exponential by scaling and squaring with a degree-20 Taylor polynomial (float64).

    The matrix is scaled to 1-norm ≤ 1/2, where the truncation error is below 1e-25, then squared back.
    """
    a = np.asarray(a, dtype=np.float64)
    norm = np.linalg.norm(a, 1)
    s = max(0, int(np.ceil(np.log2(norm / 0.5)))) if norm > 0.5 else 0
    a = a / 2.0**s
    term = np.eye(a.shape[0])
    result = term.copy()
    for j in range(1, 21):
        term = term @ a / j
        result = result + term
    for _ in range(s):
        result = result @ result
    return result


def check_run(lr: float, horizon: float, batch_size: int, weight_decay: float) -> None:
    """Refuse a simulated SGD run whose ``η``, ``T``, ``B`` or ``λ`` is out of range, naming the value."""
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not (np.isfinite(horizon) and horizon >= 0):
        raise ValueError(f"horizon must be a finite number >= 0, got {horizon!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not (np.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")


def step_count(problem: Any, l: float, steps: int | None) -> int:
    """``steps`` if given (``>= 0``), else the problem's ``l·T/η`` (its ``steps(l)``)."""
    k = problem.steps(l) if steps is None else int(steps)
    if k < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    return k


def gaussian_kernel_mean(moments: Moments) -> float:
    r"""``E exp(−‖x‖²/2)`` for ``x ~ N(m, C)`` (a bounded smooth test function; derived by completing the square):

    .. math::  E\,e^{-‖x‖^2/2} = \det(I + C)^{-1/2}\,\exp\big(-\tfrac12 m^ᵀ(I + C)^{-1}m\big)

    Exact only for a **Gaussian** ``x``: the OU SDE (:func:`~svag.problems.closed_form.ou_moments`) and the
    Gaussian-noise iteration on :class:`~svag.problems.closed_form.SkewedQuadratic`
    (:func:`~svag.problems.closed_form.gaussian_moments`), not SVAG with skewed noise."""
    a = np.eye(moments.mean.shape[0]) + moments.cov
    return float(np.linalg.det(a) ** -0.5 * np.exp(-0.5 * moments.mean @ np.linalg.solve(a, moments.mean)))
