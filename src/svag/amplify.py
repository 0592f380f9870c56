"""The math of SVAG: the two-batch coefficients and the amplified loss.

Source: Li, Malladi & Arora, "On the Validity of Modeling SGD with SDEs", NeurIPS 2021
(arXiv 2102.12470, P1), §4 "SVAG".
"""

from __future__ import annotations

import math

import torch

from svag.clock import check_l  # what a valid l is belongs to the clock

__all__ = ["amplified_loss", "check_l", "coefficients"]


def coefficients(l: float) -> tuple[float, float]:
    r"""SVAG's mixing coefficients for amplification ``l``.

    .. math::  a_{1,2} = \frac{1 \pm \sqrt{2l - 1}}{2}

    so that ``a1 + a2 = 1`` (the mean gradient is kept) and ``a1² + a2² = l`` (the covariance
    of ``a1 g1 + a2 g2`` is ``l·Σ`` for two independent minibatch gradients g1, g2). ``l = 1``
    gives ``(1, 0)``: plain SGD. Source: P1, eq. for SVAG in §4.

    Args:
        l: amplification factor, any finite real ``>= 1``.

    Returns:
        ``(a1, a2)`` as Python floats.

    Raises:
        ValueError: if ``l`` is not a finite real ``>= 1``.
    """
    l = check_l(l)
    root = math.sqrt(2.0 * l - 1.0)
    return (1.0 + root) / 2.0, (1.0 - root) / 2.0


def amplified_loss(loss1: torch.Tensor, loss2: torch.Tensor | None, l: float) -> torch.Tensor:
    r"""The SVAG loss ``a1·loss1 + a2·loss2`` whose gradient is the amplified gradient.

    ``loss1`` and ``loss2`` are the **mean** losses of two independent minibatches of size B,
    each from its own forward pass. Backpropagating the result gives
    ``g = a1 ∇L_γ1 + a2 ∇L_γ2`` with mean ``∇L`` and covariance ``l·Σ`` (P1, §4).
    With ``l == 1`` it returns ``loss1`` itself and ``loss2`` may be ``None``.

    The coefficients have opposite signs and magnitude ≈ √(l/2): keep the losses in float32
    or wider.
    """
    a1, a2 = coefficients(l)
    if a2 == 0.0:
        return loss1
    if loss2 is None:
        raise ValueError(f"amplified_loss needs loss2 for l > 1, got loss2=None with l={l!r}")
    return a1 * loss1 + a2 * loss2
