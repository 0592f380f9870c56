"""SVAG as a ``torch.optim`` optimizer: a thin class over a functional core.

Source: P1 (arXiv 2102.12470) §4. For the SGD run (η, B, λ) being simulated, SVAG with
amplification ``l`` takes the step

    x ← x − (η/l)·(g + λx),    g = a1 ∇L_γ1(x) + a2 ∇L_γ2(x)   (see :func:`svag.coefficients`)

where ``g`` (the *amplified* gradient) is what ``p.grad`` holds when :meth:`SVAG.step` runs;
the weight-decay term is not amplified. ``l`` SVAG steps cover the continuous time of one SGD
step, ``η``; after ``k`` steps at constant LR the SDE time is ``t = k·η/l``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from .amplify import check_l

__all__ = ["SVAG", "SVAGOptimizer", "svag_sgd"]


def _check_nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def svag_sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    *,
    lr: float,
    l: float,
    weight_decay: float,
) -> None:
    r"""Functional core of :class:`SVAG`: ``x ← x − (lr/l)·(g + weight_decay·x)`` in place.

    ``grads`` are the amplified gradients ``g``. With ``l == 1`` the operations (and so the
    rounding) are exactly those of ``torch.optim.SGD`` without momentum.
    """
    step_size = lr / l
    for param, grad in zip(params, grads):
        d_p = grad if weight_decay == 0 else grad.add(param, alpha=weight_decay)
        param.add_(d_p, alpha=-step_size)


class SVAGOptimizer(Optimizer):
    """Base of the SVAG optimizers: SDE-time bookkeeping and the amplification contract.

    Subclasses implement :meth:`_update_group` and :meth:`time_increment`, and say through
    :meth:`variance_factor` by how much the two-batch gradient's covariance must be amplified
    (``l`` for SGD, ``l²`` for the adaptive methods). :func:`svag.train_step` reads it, so the
    training step always uses the right coefficients for the optimizer it is given.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self._sde_time = 0.0
        super().__init__(params, defaults)

    # -- the contract -------------------------------------------------------------------------
    def variance_factor(self, group: dict[str, Any]) -> float:
        """Factor by which the covariance of the gradient in ``p.grad`` must exceed Σ."""
        return group["l"]

    def time_increment(self, group: dict[str, Any]) -> float:
        """Continuous time covered by one step of this group."""
        raise NotImplementedError

    def _update_group(self, group: dict[str, Any], params: list, grads: list) -> None:
        raise NotImplementedError

    def _validate_group(self, group: dict[str, Any]) -> None:
        group["l"] = check_l(group["l"])
        group["lr"] = _check_nonneg(group["lr"], "lr")
        group["weight_decay"] = _check_nonneg(group["weight_decay"], "weight_decay")

    # -- torch.optim plumbing -------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._validate_group(self.param_groups[-1])

    @property
    def sde_time(self) -> float:
        """Continuous SDE time elapsed: the sum over steps of the first group's time increment."""
        return self._sde_time

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            if params:
                self._update_group(group, params, grads)
        self._sde_time += self.time_increment(self.param_groups[0])
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["sde_time"] = self._sde_time
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        sde_time = float(state_dict.pop("sde_time", 0.0))
        super().load_state_dict(state_dict)
        self._sde_time = sde_time


class SVAG(SVAGOptimizer):
    r"""SVAG for plain SGD (P1, §4): simulates the SDE of SGD with learning rate ``lr``.

    .. math::  x \leftarrow x - \frac{\eta}{l}\,(g + \lambda x), \qquad
               dX_t = -(\nabla L(X_t) + \lambda X_t)\,dt + (\eta\,\Sigma(X_t))^{1/2}\,dW_t

    Args:
        params: parameters or param groups, as for any ``torch.optim`` optimizer.
        lr: the learning rate η **of the SGD run being simulated** (not η/l).
        l: amplification factor, a real ``>= 1``; may differ per param group. ``l = 1`` is SGD,
            bit for bit equal to ``torch.optim.SGD(params, lr, weight_decay=weight_decay)``.
        weight_decay: L2 coefficient λ, applied as ``λx`` and **not** amplified.

    ``p.grad`` must hold the amplified gradient ``a1 g1 + a2 g2`` (covariance ``l·Σ``): use
    :func:`svag.train_step`, which builds it from two batches. :attr:`sde_time` is the SDE time
    elapsed, ``Σ_k lr/l`` (first group); it is saved by :meth:`state_dict`.

    Momentum is refused: P1's convergence theorem covers plain SGD only. To simulate SGD with
    heavy-ball momentum β at LR η, simulate plain SGD at LR η/(1−β) (Wang et al. 2023,
    arXiv 2307.15196), e.g. ``svag compare --momentum β``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        l: float = 1.0,
        weight_decay: float = 0.0,
        *,
        momentum: float = 0.0,
    ) -> None:
        _refuse_momentum(momentum)
        super().__init__(params, {"lr": lr, "l": l, "weight_decay": weight_decay})

    def _validate_group(self, group: dict[str, Any]) -> None:
        _refuse_momentum(group.get("momentum", 0.0))
        super()._validate_group(group)

    def time_increment(self, group: dict[str, Any]) -> float:
        """One SVAG step covers ``lr/l`` of continuous time (P1: t = k·η/l)."""
        return group["lr"] / group["l"]

    def _update_group(self, group: dict[str, Any], params: list, grads: list) -> None:
        svag_sgd(params, grads, lr=group["lr"], l=group["l"], weight_decay=group["weight_decay"])


def _refuse_momentum(momentum: Any) -> None:
    if momentum not in (0, 0.0, None):
        raise ValueError(
            f"SVAG does not take momentum (got momentum={momentum!r}): its convergence theorem "
            "(P1, Thm 4.3) covers plain SGD only. To simulate SGD with momentum β at lr η, run SVAG "
            "of plain SGD at lr η/(1-β) (Wang et al. 2023), e.g. `svag compare --momentum β`."
        )
