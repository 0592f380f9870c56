"""The clock of an optimizer: how its steps map to continuous SDE time. Pure Python (no torch),
so readers of run folders can ask it too.

Owned facts: the continuous time of a step of the simulated run and of an SVAG step, the steps
per original step, the two-batch variance factor (all from ``Clock``), momentum's ``1/(1 − β)``
(:func:`heavy_ball_lr`), and what a valid amplification ``l`` is (:func:`check_l`). Each optimizer
class of :mod:`svag.optim` / :mod:`svag.adaptive` declares its clock; nothing else re-derives it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = ["Clock", "check_l", "heavy_ball_lr", "sgdm_lr"]

TIME_RTOL = 1e-9  # relative rounding allowed in time: sums of lr/l reach t up to it; Clock.steps_to's integer check


def check_l(l: float, name: str = "l") -> float:
    """Return ``l`` as a float, or raise ``ValueError`` unless it is a finite real ``>= 1``."""
    if isinstance(l, bool) or not isinstance(l, numbers.Real):
        raise ValueError(f"{name} must be a real number >= 1, got {l!r}")
    value = float(l)
    if not math.isfinite(value) or value < 1.0:
        raise ValueError(f"{name} must be a finite real number >= 1, got {l!r}")
    return value


def _check_momentum(value: Any, name: str = "momentum") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 <= float(value) < 1.0):
        raise ValueError(f"{name} must be a real number in [0, 1), got {value!r}")
    return float(value)


def heavy_ball_lr(lr: float, momentum: float) -> float:
    r"""The LR of the plain SGD whose SDE SGD with heavy-ball momentum follows: :math:`\eta/(1-\beta)`.

    .. math::  b_{k+1} = \beta b_k + g_k,\quad x_{k+1} = x_k - \eta\, b_{k+1}
               \quad\Longrightarrow\quad dX_t = -\nabla L\,dt + (\eta_{\rm eff}\Sigma)^{1/2}dW_t,\quad
               \eta_{\rm eff} = \frac{\eta}{1-\beta},\ t = k\,\eta_{\rm eff}

    at small LR (Wang, Malladi, Wang, Lyu & Li 2023, arXiv 2307.15196; PAPER.md §2). Computed as
    ``lr · (1/(1 − momentum))`` so that it equals ``lr · Clock.lr_factor`` bit for bit.

    Args:
        lr: the LR η of the SGDM run (``torch.optim.SGD``'s ``lr``, dampening 0).
        momentum: heavy-ball β, a real in [0, 1); ``0`` returns ``lr`` itself.
    """
    return lr * (1.0 / (1.0 - _check_momentum(momentum)))


def sgdm_lr(effective_lr: float, momentum: float) -> float:
    """Inverse of :func:`heavy_ball_lr`: the SGDM LR ``η = (1 − β)·η_eff`` whose small-LR SDE is that of
    plain SGD at ``η_eff`` (Wang et al. 2023)."""
    return (1 - _check_momentum(momentum)) * effective_lr


def _check_power(power: Any) -> int:
    if isinstance(power, bool) or not isinstance(power, int) or power < 1:
        raise ValueError(f"power must be an integer >= 1, got {power!r}")
    return power


@dataclass(frozen=True)
class Clock:
    r"""How the steps of an optimizer map to continuous SDE time (P1 §2: ``t = k·η/l``; P2 §5: ``t = k·η²``).

    One step of the **simulated** run at LR η covers :math:`(c\eta)^p` of continuous time. SVAG
    takes :math:`l^p` steps per original step, each covering :math:`(c\eta/l)^p`, and amplifies the
    covariance of its two-batch gradient by :math:`l^p`:

    .. math::  \Delta t_{\rm step} = (c\,\eta/l)^p, \qquad k(T) = \frac{l^p\,T}{(c\,\eta)^p}

    ``p = 1`` for SGD (P1), ``p = 2`` for Adam/RMSprop (P2, where ℓ is P2's ℓ and the variance factor
    ℓ²); ``c = 1/(1 − β)`` for SGD with heavy-ball momentum β (:func:`heavy_ball_lr`), else 1.
    Optimizers declare theirs: :meth:`SVAGOptimizer.clock_for` / :meth:`SVAGOptimizer.clock`.
    """

    power: int  # p: 1 for SGD (P1), 2 for Adam/RMSprop (P2)
    l: float = 1.0  # amplification (P2's ℓ for the adaptive methods), a real >= 1
    lr_factor: float = 1.0  # c: 1/(1−β) for heavy-ball SGD, else 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "power", _check_power(self.power))
        object.__setattr__(self, "l", check_l(self.l))
        c = self.lr_factor
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) or c <= 0:
            raise ValueError(f"lr_factor must be a finite number > 0, got {c!r}")
        object.__setattr__(self, "lr_factor", float(c))

    def original_step_time(self, lr: float) -> float:
        """Continuous time of one step of the simulated run at LR ``lr``: ``(c·lr)^p``."""
        return (lr * self.lr_factor) ** self.power

    def step_time(self, lr: float) -> float:
        """Continuous time of one step of this optimizer at LR ``lr`` (the simulated run's η): ``(c·lr/l)^p``."""
        return (lr * self.lr_factor / self.l) ** self.power

    @property
    def steps_per_original(self) -> float:
        """Optimizer steps per step of the simulated run: ``l^p`` (effective steps = steps / this)."""
        return self.l**self.power

    @property
    def variance_factor(self) -> float:
        """Factor by which the two-batch gradient's covariance exceeds Σ: ``l^p`` (``coefficients(l^p)``)."""
        return self.l**self.power

    def steps_to(self, lr: float, horizon: float) -> int:
        """Optimizer steps ``k = l^p·T/(c·lr)^p`` that reach time ``T = horizon`` at constant LR ``lr``.

        Raises ``ValueError`` unless ``k`` is an integer up to a relative ``1e-9`` (so that ``T`` is hit).
        """
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, numbers.Real) or not math.isfinite(horizon):
            raise ValueError(f"horizon must be a finite number >= 0, got {horizon!r}")
        if horizon < 0:
            raise ValueError(f"horizon must be a finite number >= 0, got {horizon!r}")
        k = self.steps_per_original * horizon / self.original_step_time(lr)
        if abs(k - round(k)) > TIME_RTOL * max(1.0, k):
            raise ValueError(
                f"{self._formula()} must be an integer number of SVAG steps, got {k:.12g} for l={self.l:g}, "
                f"T={horizon:g}, lr={lr:g}: choose T as a multiple of the step time {self.step_time(lr):g}"
            )
        return round(k)

    def _formula(self) -> str:
        sup = "" if self.power == 1 else "²" if self.power == 2 else f"^{self.power}"
        lr = "lr" if self.lr_factor == 1.0 else f"({self.lr_factor:g}·lr)"
        return f"l{sup}·T/{lr}{sup}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"power": p, "l": l, "lr_factor": c}`` (for run folders)."""
        return {"power": self.power, "l": self.l, "lr_factor": self.lr_factor}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Clock:
        """Inverse of :meth:`to_dict`; ``l`` and ``lr_factor`` default to 1."""
        unknown = set(d) - {"power", "l", "lr_factor"}
        if "power" not in d or unknown:
            raise ValueError(f"a clock needs keys power[, l, lr_factor], got {sorted(d)!r}")
        return cls(d["power"], d.get("l", 1.0), d.get("lr_factor", 1.0))
