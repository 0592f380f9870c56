"""SVAG as a ``torch.optim`` optimizer: a thin class over a functional core, and the clock it declares.

Source: P1 (arXiv 2102.12470) §4. For the SGD run (η, B, λ) being simulated, SVAG with
amplification ``l`` takes the step

    x ← x − (η/l)·(g + λx),    g = a1 ∇L_γ1(x) + a2 ∇L_γ2(x)   (see :func:`svag.coefficients`)

where ``g`` (the *amplified* gradient) is what ``p.grad`` holds when :meth:`SVAG.step` runs;
the weight-decay term is not amplified. ``l`` SVAG steps cover the continuous time of one SGD
step, ``η``; after ``k`` steps at constant LR the SDE time is ``t = k·η/l``.

**Time is owned by the optimizer.** Every optimizer class here declares its :class:`Clock`
(:meth:`SVAGOptimizer.clock_for`, usable without an instance): the continuous time of a step,
the steps per step of the simulated run and the variance factor all come from it, and nothing
else in the package re-derives them.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch.optim import Optimizer

from svag.clock import Clock, _check_momentum, check_l, heavy_ball_lr

__all__ = ["SVAG", "Clock", "HeavyBallSGD", "SVAGOptimizer", "heavy_ball_lr", "svag_sgd"]


def _check_nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@functools.cache
def _hyperparameter_names(cls: type) -> frozenset[str]:
    names = inspect.signature(cls.__init__).parameters
    return frozenset(n for n, p in names.items() if n not in ("self", "params") and p.kind is not p.VAR_KEYWORD)


@functools.lru_cache(maxsize=512)
def _cached_clock(cls: type, values: Any) -> Clock:
    """``cls.clock_for(**hyper)`` for the values of ``cls._clock_keys`` (one value, or a tuple of them, as
    ``operator.itemgetter`` gives them), remembered: a step asks for its groups' clocks (~0.5 µs each, not ~20)."""
    keys = cls._clock_keys
    return cls.clock_for(**dict(zip(keys, values if len(keys) > 1 else (values,))))


class _Clocked:
    """What every optimizer of this package shares, SVAG or not: a declared :class:`Clock`, the SDE time
    elapsed (:attr:`sde_time`, saved by ``state_dict`` and kept by ``copy``/``pickle``), names for
    figures, and param groups validated on construction, ``add_param_group`` and ``load_state_dict``."""

    time_power: ClassVar[int]  # p of the clock: 1 for SGD (P1), 2 for Adam/RMSprop (P2)
    simulated_name: ClassVar[str]  # the optimizer being simulated, as figures and tables name it
    svag_name: ClassVar[str]  # its SVAG, as figures and tables name it
    _clock_keys: ClassVar[tuple[str, ...]] = ("l",)  # group keys passed to clock_for
    _clock_values: ClassVar[Callable[[dict[str, Any]], Any]] = operator.itemgetter("l")  # of _clock_keys

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        keys = cls._clock_keys
        cls._clock_values = operator.itemgetter(*keys) if keys else lambda group: ()

    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]
    _sde_time: float

    # -- the clock ------------------------------------------------------------------------------
    @classmethod
    def clock_for(cls, l: float = 1.0, **hyper: Any) -> Clock:
        """The :class:`Clock` of this optimizer at amplification ``l`` and hyperparameters ``hyper``
        (the constructor's keyword names; those that do not affect time are accepted and ignored)."""
        unknown = set(hyper) - _hyperparameter_names(cls)
        if unknown:
            raise TypeError(f"{cls.__name__}.clock_for() got unknown hyperparameters {sorted(unknown)}")
        return Clock(cls.time_power, l, cls._lr_factor(**hyper))

    @classmethod
    def _lr_factor(cls, **hyper: Any) -> float:
        """``c`` of the clock from the hyperparameters (1 unless a subclass says otherwise)."""
        return 1.0

    def names(self) -> dict[str, str]:
        """``{"simulated": ..., "svag": ...}``: how figures and tables name the simulated run and its SVAG."""
        return {"simulated": self.simulated_name, "svag": self.svag_name}

    def clock(self, group: dict[str, Any] | None = None) -> Clock:
        """The :class:`Clock` of param group ``group`` (default: the first, which drives :attr:`sde_time`)."""
        group = self.param_groups[0] if group is None else group
        return _cached_clock(type(self), self._clock_values(group))

    def time_increment(self, group: dict[str, Any]) -> float:
        """Continuous time covered by one step of this group: ``clock(group).step_time(group["lr"])``."""
        return self.clock(group).step_time(group["lr"])

    def variance_factor(self, group: dict[str, Any]) -> float:
        """Factor by which the covariance of the gradient in ``p.grad`` must exceed Σ: ``l^p``."""
        return self.clock(group).variance_factor

    @property
    def sde_time(self) -> float:
        """Continuous SDE time elapsed: the sum over steps of the first group's time increment. A step
        with no gradient at all (every ``p.grad`` is ``None``) moves nothing and adds no time."""
        return self._sde_time

    def _advance_clock(self) -> None:
        self._sde_time += self.time_increment(self.param_groups[0])

    # -- validated param groups -----------------------------------------------------------------
    def _validate_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _check_groups(self, groups: list[dict[str, Any]]) -> None:
        """Checks across param groups (none unless a subclass says otherwise)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)  # type: ignore[misc]
        try:
            self._validate_group(self.param_groups[-1])
            self._check_groups(self.param_groups)
        except Exception:
            self.param_groups.pop()  # a refused group is not kept
            raise

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # type: ignore[misc]
        state["sde_time"] = self._sde_time
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim``'s, plus :attr:`sde_time`; each loaded group passes the constructor's checks
        first, and the optimizer is left unchanged when one does not.

        A state dict without ``"sde_time"`` (one a ``torch.optim`` optimizer saved) is refused: loading it would
        restart the continuous time at 0, and with it every schedule on ``t`` (a warm-up would run again). Say
        the time it reached (``state_dict["sde_time"] = t``: its steps times ``clock().step_time(lr)``), or 0.0
        to restart the clock on purpose; its groups then take this optimizer's ``l`` (a ``torch.optim``
        optimizer's moments were built at ``l = 1``).
        """
        state_dict = dict(state_dict)
        if "sde_time" not in state_dict:
            raise ValueError(self._no_time_message(state_dict))
        sde_time = _check_nonneg(state_dict.pop("sde_time"), "sde_time")
        saved = state_dict.get("param_groups")
        if isinstance(saved, list) and len(saved) == len(self.param_groups):
            candidates = []
            for saved_group, group in zip(saved, self.param_groups):
                candidate = {**self.defaults, **{k: v for k, v in saved_group.items() if k != "params"}}
                candidate["params"] = group["params"]
                self._validate_group(candidate)
                candidates.append(candidate)
            self._check_groups(candidates)
        super().load_state_dict(state_dict)  # type: ignore[misc]
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)  # groups saved before a hyperparameter existed
            self._validate_group(group)
        self._sde_time = sde_time

    def _no_time_message(self, state_dict: dict[str, Any]) -> str:
        name = type(self).__name__
        msg = (
            f"{name}.load_state_dict: the state_dict has no 'sde_time' (it was not saved by a svag optimizer: "
            "torch.optim's, say), so loading it would restart the continuous time at 0 and every schedule on it "
            "(the warm-up) with it; set state_dict['sde_time'] to the time it reached (its steps times "
            "opt.clock().step_time(lr)), or to 0.0 to restart the clock on purpose"
        )
        saved = state_dict.get("param_groups")
        l = self.param_groups[0].get("l", 1.0)
        if l != 1.0 and isinstance(saved, list) and any(isinstance(g, dict) and "l" not in g for g in saved):
            msg += f"; its moments were built at l = 1, this optimizer has l={l:g} (they take this l when loaded)"
        return msg

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state["_sde_time"] = self._sde_time  # torch keeps defaults, state and param_groups only
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.setdefault("_sde_time", 0.0)
        super().__setstate__(state)  # type: ignore[misc]


def svag_sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    *,
    lr: float,
    l: float,
    weight_decay: float,
) -> None:
    r"""Functional core of :class:`SVAG`: ``x ← x − (lr/l)·(g + weight_decay·x)`` in place.

    ``grads`` are the amplified gradients ``g``; ``lr`` is the LR of the plain SGD simulated
    (``heavy_ball_lr(η, β)`` with momentum). With ``l == 1`` the operations (and so the rounding) are
    exactly those of ``torch.optim.SGD`` without momentum.
    """
    step_size = lr / l
    for param, grad in zip(params, grads):
        d_p = grad if weight_decay == 0 else grad.add(param, alpha=weight_decay)
        param.add_(d_p, alpha=-step_size)


def check_kernel_flags(group: dict[str, Any]) -> None:
    """``foreach``/``fused`` of a param group: each ``None`` or a bool, not both ``True`` (as ``torch.optim``).

    They choose torch's multi-tensor (``foreach``) or fused kernels for the update, which is the same
    update as the default single-tensor path (bit for bit at ``l = 1`` against the torch optimizer with
    the same flag). ``fused=True`` needs a device and dtype torch's fused kernel supports (CPU and CUDA
    floating point in torch 2.13); torch's own error says so otherwise.
    """
    group.setdefault("foreach", None)
    group.setdefault("fused", None)
    for name in ("foreach", "fused"):
        if group[name] is not None and not isinstance(group[name], bool):
            raise ValueError(f"{name} must be None, True or False, got {group[name]!r}")
    if group["foreach"] and group["fused"]:
        raise ValueError("foreach and fused cannot both be True (as in torch.optim): choose one kernel")


class SVAGOptimizer(_Clocked, Optimizer):
    """Base of the SVAG optimizers: the clock, SDE-time bookkeeping and the amplification contract.

    A subclass sets :attr:`time_power` (its clock's ``p``), :attr:`simulated_name`/:attr:`svag_name`,
    and implements :meth:`_update_group` (and :meth:`_validate_group` for its own hyperparameters).
    :meth:`time_increment` and :meth:`variance_factor` come from its :class:`Clock`;
    :func:`svag.train_step` reads the latter, so the training step always uses the right
    coefficients for the optimizer it is given.
    """

    check_amplified: bool = True  # refuse a step at l > 1 whose p.grad did not come from amplified_backward

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self._sde_time = 0.0
        self._amplified: dict[int, weakref.ref] | None = None
        super().__init__(params, defaults)

    def mark_amplified(self) -> None:
        """Declare that every ``p.grad`` now holds the amplified gradient (covariance ``l^p·Σ``) for the next
        :meth:`step`.

        :func:`svag.amplified_backward` (and so :func:`svag.train_step`) calls it. A step at ``l > 1``
        refuses gradients that were not declared: a plain ``loss.backward(); opt.step()`` would run SGD
        at ``lr/l`` with SGD's noise, not the SDE of the run being simulated, while :attr:`sde_time`
        advanced as if it did. Call it yourself after building the amplified gradient another way, or
        set ``opt.check_amplified = False`` to turn the check off. In-place changes of ``p.grad``
        (clipping, ``GradScaler.unscale_``, all-reduce) keep the declaration; a new ``p.grad`` tensor
        (a later ``backward`` after ``zero_grad(set_to_none=True)``) drops it. At ``l = 1`` nothing is
        checked: a plain backward is exactly the simulated run's gradient there.
        """
        self._amplified = {
            id(p.grad): weakref.ref(p.grad) for g in self.param_groups for p in g["params"] if p.grad is not None
        }

    def _check_amplified(self, work: list) -> None:
        marked, self._amplified = getattr(self, "_amplified", None), None  # a declaration covers one step
        if not self.check_amplified:
            return
        for group, _, grads in work:
            if self.variance_factor(group) == 1.0:
                continue
            if marked is None or not all((ref := marked.get(id(g))) is not None and ref() is g for g in grads):
                raise RuntimeError(
                    f"{type(self).__name__}.step() at l={group['l']:g}: p.grad did not come from "
                    "svag.amplified_backward or svag.train_step (a plain loss.backward() gives SGD's noise at lr/l, "
                    "not the simulated run's SDE); use them, or call opt.mark_amplified() after building the "
                    "amplified gradient yourself (opt.check_amplified = False turns this check off)"
                )

    def _update_group(self, group: dict[str, Any], params: list, grads: list) -> None:
        raise NotImplementedError

    def _check_groups(self, groups: list[dict[str, Any]]) -> None:
        """One ``l`` for all groups: time is one clock (:attr:`sde_time` and the schedules on it follow group 0's),
        so groups amplified by different ``l`` would each live in a time of their own."""
        first = groups[0]["l"]
        for i, group in enumerate(groups):
            if group["l"] != first:
                raise ValueError(
                    f"param groups must share one l (one clock: sde_time and the schedules on it are group 0's), "
                    f"got l={first:g} in group 0 and l={group['l']:g} in group {i}; amplify every group by the same l"
                )

    def _validate_group(self, group: dict[str, Any]) -> None:
        group["l"] = check_l(group["l"])
        group["lr"] = _check_nonneg(group["lr"], "lr")
        group["weight_decay"] = _check_nonneg(group["weight_decay"], "weight_decay")
        if "fused" in self.defaults:
            check_kernel_flags(group)

    @torch.no_grad()
    def step(self, closure=None):
        groups = self.param_groups
        if len(groups) > 1 and any(g["l"] != groups[0]["l"] for g in groups):
            self._check_groups(groups)  # an l changed in place since the groups were checked
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                grads = [p.grad for p in params]
                self._check_grads(group, grads)  # every group, before any parameter moves
                work.append((group, params, grads))
        if not work:  # no gradient at all: nothing moves and no time passes (torch.optim's contract)
            self._amplified = None
            return loss
        self._check_amplified(work)
        for group, params, grads in work:
            self._update_group(group, params, grads)
        self._advance_clock()
        return loss

    def _check_grads(self, group: dict[str, Any], grads: list[torch.Tensor]) -> None:
        """Refuse gradients this optimizer cannot apply: sparse ones with weight decay (``λx`` is dense)."""
        if group["weight_decay"] and any(g.is_sparse for g in grads):
            raise ValueError(
                f"{type(self).__name__}: a parameter has a sparse gradient (e.g. nn.Embedding(sparse=True)) and its "
                f"group has weight_decay={group['weight_decay']:g}; the decay term λx is dense: use dense gradients "
                "or weight_decay=0 for that group"
            )


class SVAG(SVAGOptimizer):
    r"""SVAG for plain SGD (P1, §4): simulates the SDE of SGD with learning rate ``lr``.

    .. math::  x \leftarrow x - \frac{c\,\eta}{l}\,(g + \lambda x), \qquad
               dX_t = -(\nabla L(X_t) + \lambda X_t)\,dt + (c\,\eta\,\Sigma(X_t))^{1/2}\,dW_t

    with ``c = 1`` (``c = 1/(1 − β)`` with ``heavy_ball=β``).

    Args:
        params: parameters or param groups, as for any ``torch.optim`` optimizer.
        lr: the learning rate η **of the SGD run being simulated** (not η/l); a schedule sets
            ``group["lr"] = η(t)``.
        l: amplification factor, a real ``>= 1``, one for all param groups (they share one clock). ``l = 1``
            is SGD, bit for bit equal to ``torch.optim.SGD(params, lr, weight_decay=weight_decay)``.
        weight_decay: L2 coefficient λ, applied as ``λx`` and **not** amplified.
        heavy_ball: β in [0, 1). The simulated run is SGD with heavy-ball momentum β at LR η, whose
            small-LR SDE is that of plain SGD at ``heavy_ball_lr(η, β) = η/(1−β)`` (Wang et al. 2023,
            arXiv 2307.15196); SVAG simulates that plain SGD, so no momentum buffer is kept. Each step
            is ``x ← x − (heavy_ball_lr(η, β)/l)·(g + λx)`` and covers ``η/((1−β)l)`` of time.
            ``l = 1`` with momentum is real SGDM: :class:`HeavyBallSGD`.
        foreach, fused: torch's multi-tensor or fused kernel for the update (``torch.optim.SGD``'s flags;
            :func:`check_kernel_flags`), run at LR ``lr/l``; ``l = 1`` equals ``torch.optim.SGD`` with
            the same flag bit for bit.

    ``p.grad`` must hold the amplified gradient ``a1 g1 + a2 g2`` (covariance ``l·Σ``): use
    :func:`svag.train_step`, which builds it from two batches. :attr:`sde_time` is the SDE time
    elapsed, ``Σ_k c·lr/l`` (first group); it is saved by :meth:`state_dict`.

    ``momentum=`` is refused: P1's convergence theorem covers plain SGD only; pass ``heavy_ball=β``
    to say which SGDM run the plain SGD stands for.
    """

    time_power = 1  # P1: t = k·η/l
    simulated_name = "SGD"
    svag_name = "SVAG"
    _clock_keys = ("l", "heavy_ball")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        l: float = 1.0,
        weight_decay: float = 0.0,
        *,
        heavy_ball: float = 0.0,
        momentum: float = 0.0,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _refuse_momentum(momentum)
        defaults = {"lr": lr, "l": l, "weight_decay": weight_decay, "heavy_ball": heavy_ball}
        super().__init__(params, {**defaults, "foreach": foreach, "fused": fused})

    @classmethod
    def _lr_factor(cls, heavy_ball: float = 0.0, momentum: float = 0.0, **_: Any) -> float:
        _refuse_momentum(momentum)
        return heavy_ball_lr(1.0, _check_momentum(heavy_ball, "heavy_ball"))

    def names(self) -> dict[str, str]:
        """With ``heavy_ball=β`` the simulated run is SGDM: :class:`HeavyBallSGD`'s names."""
        if self.param_groups[0]["heavy_ball"]:
            return {"simulated": HeavyBallSGD.simulated_name, "svag": HeavyBallSGD.svag_name}
        return super().names()

    def _validate_group(self, group: dict[str, Any]) -> None:
        _refuse_momentum(group.get("momentum", 0.0))
        super()._validate_group(group)
        group["heavy_ball"] = _check_momentum(group["heavy_ball"], "heavy_ball")

    def _update_group(self, group: dict[str, Any], params: list, grads: list) -> None:
        lr = group["lr"] * self.clock(group).lr_factor  # = heavy_ball_lr(η, β), bit for bit
        if group["foreach"] or group["fused"]:  # torch's kernels for the same update, at lr/l
            from torch.optim.sgd import sgd

            sgd(params, grads, [None] * len(params), foreach=group["foreach"], fused=group["fused"],
                weight_decay=group["weight_decay"], momentum=0.0, lr=lr / group["l"], dampening=0.0, nesterov=False,
                maximize=False)  # fmt: skip
            return
        svag_sgd(params, grads, lr=lr, l=group["l"], weight_decay=group["weight_decay"])


def _refuse_momentum(momentum: Any) -> None:
    if momentum not in (0, 0.0, None):
        raise ValueError(
            f"SVAG does not take momentum (got momentum={momentum!r}): its convergence theorem "
            "(P1, Thm 4.3) covers plain SGD only. To simulate SGD with heavy-ball momentum β at lr η, pass "
            "heavy_ball=β: SVAG then runs plain SGD at lr η/(1-β) (Wang et al. 2023)."
        )


class HeavyBallSGD(_Clocked, torch.optim.SGD):
    r"""SGD with heavy-ball momentum (``l = 1``): ``torch.optim.SGD(lr, momentum, weight_decay)``, with a clock.

    .. math::  b \leftarrow \beta b + (g + \lambda x), \qquad x \leftarrow x - \eta\, b

    (dampening 0, not Nesterov), bit for bit equal to ``torch.optim.SGD(params, lr, momentum=β,
    weight_decay=λ)``. At small LR it follows the SDE of plain SGD at ``heavy_ball_lr(η, β) = η/(1−β)``
    (Wang et al. 2023), so one step covers ``η/(1−β)`` of continuous time: :attr:`sde_time`
    advances by that (first group). Its SVAG (``l > 1``) is ``SVAG(lr=η, l=l, heavy_ball=β)``.
    """

    time_power = 1
    simulated_name = "SGDM"
    svag_name = "SVAG of SGD at η/(1-β)"
    _clock_keys = ("momentum",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        self._sde_time = 0.0
        lr, weight_decay = _check_nonneg(lr, "lr"), _check_nonneg(weight_decay, "weight_decay")
        momentum = _check_momentum(momentum)
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=foreach)

    @classmethod
    def clock_for(cls, l: float = 1.0, **hyper: Any) -> Clock:
        if check_l(l) != 1.0:
            raise ValueError(f"HeavyBallSGD is real SGDM (l = 1), got l={l!r}; for l > 1 use SVAG(heavy_ball=β)")
        return super().clock_for(l, **hyper)

    @classmethod
    def _lr_factor(cls, momentum: float = 0.0, **_: Any) -> float:
        return heavy_ball_lr(1.0, momentum)

    def _validate_group(self, group: dict[str, Any]) -> None:
        group["lr"] = _check_nonneg(group["lr"], "lr")
        group["weight_decay"] = _check_nonneg(group["weight_decay"], "weight_decay")
        group["momentum"] = _check_momentum(group["momentum"])
        if group.get("dampening", 0) != 0 or group.get("nesterov", False) or group.get("maximize", False):
            raise ValueError(
                "HeavyBallSGD is heavy-ball momentum with dampening 0, not Nesterov, not maximize; got "
                f"dampening={group.get('dampening')!r}, nesterov={group.get('nesterov')!r}, "
                f"maximize={group.get('maximize')!r}"
            )

    def step(self, closure=None):
        loss = super().step(closure)
        if any(p.grad is not None for g in self.param_groups for p in g["params"]):
            self._advance_clock()  # no gradient at all: nothing moved (torch's SGD) and no time passes
        return loss
