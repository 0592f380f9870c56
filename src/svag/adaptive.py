"""SVAG for Adam and RMSprop: thin ``torch.optim`` classes over functional cores.

Source: P2 (Malladi et al. 2022, arXiv 2205.10287) and its official code. To simulate the SDE
of an Adam/RMSprop run with LR η, betas β_i and ε, SVAG with parameter ``l`` (P2's ℓ) runs the
same algorithm with the **transformed** hyperparameters (:func:`transformed_hyperparameters`)

    η → η/ℓ,    1 − β_i → (1 − β_i)/ℓ²,    ε → ε·ℓ,

on the two-batch gradient ``g = a1 ∇L_γ1 + a2 ∇L_γ2`` with ``(a1, a2) = coefficients(ℓ²)``,
whose covariance is ``ℓ²·Σ`` (noise scale σ → ℓσ). This leaves P2's SDE constants unchanged:
``σ0 = σ·η``, ``ε0 = ε·η`` and ``c_i = (1 − β_i)/η²`` (:func:`svag.scaling.sde_constants`).

Continuous time (P2): one step of the simulated run covers ``η²``, so after ``k`` SVAG steps
at constant LR the SDE time is ``t = k·(η/ℓ)²``: ``ℓ²`` SVAG steps per original step. Note
the unit differs from SGD's (``t = k·η``, P1). Bias corrections count SVAG steps:
``β_i'^k ≈ exp(−c_i t)``, the bias-correction factor of P2's Adam SDE.

Decoupled weight decay (AdamW, :class:`SVAGAdamW`; derived for this project, not in P2): AdamW
multiplies x by ``1 − ηλ_W`` per step, which covers ``η²`` of time: a decay rate of ``λ_W/η`` per
unit time, i.e. the drift ``−(λ_W/η)·x`` in the SDE. SVAG keeps it with ``λ_W → λ_W/ℓ``
(:func:`svag_decoupled_weight_decay`): a step then multiplies by ``1 − (η/ℓ)(λ_W/ℓ)`` and covers
``(η/ℓ)²``, the same rate ``λ_W/η``. This is the square-root rule's ``λ_W → √κ·λ_W`` (PAPER §5,
:func:`svag.scaling.sqrt_rule`) at ``κ = 1/ℓ²``, as ``η → η/ℓ`` is its ``η → √κ·η``.

The weights ``w = 1/(√v̂ + ε')`` an update divides by (:func:`preconditioner_weights`; each optimizer's
:meth:`~SVAGAdam.preconditioner_weights` for its current state) weigh the preconditioned signal-to-noise
ratio whose growth along the square-root rule says where that rule must fail (:mod:`svag.noise`).
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from svag.clock import check_l
from svag.optim import SVAGOptimizer

__all__ = [
    "SVAGAdam",
    "SVAGAdamW",
    "SVAGRMSprop",
    "preconditioner_weights",
    "svag_adam",
    "svag_beta",
    "svag_decoupled_weight_decay",
    "svag_rmsprop",
    "transformed_hyperparameters",
]


def check_beta(beta: Any, name: str = "beta") -> float:
    """Return ``beta`` as a float, or raise ``ValueError`` unless it is a real in [0, 1)."""
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not (0.0 <= float(beta) < 1.0):
        raise ValueError(f"{name} must be a real number in [0, 1), got {beta!r}")
    return float(beta)


def check_eps(eps: Any, name: str = "eps") -> float:
    """Return ``eps`` as a float, or raise ``ValueError`` unless it is a finite real ``>= 0``."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps!r}")
    return float(eps)


def svag_beta(beta: float, l: float) -> float:
    r"""SVAG's averaging parameter: :math:`1 - \beta' = (1 - \beta)/\ell^2` (P2, SVAG for adaptive methods).

    The averaging time constant ``1/(1 − β)``, counted in steps, grows by the number of SVAG steps per
    step of the simulated run, ``ℓ²`` (:attr:`svag.optim.Clock.steps_per_original` of the adaptive clock).
    ``β = 0`` (no averaging: RMSprop written as Adam with β1 = 0, as in P2's code) has no time
    constant to rescale and stays 0. ``l = 1`` returns ``beta`` itself, bit for bit.
    """
    beta, l = check_beta(beta), check_l(l)
    if beta == 0.0 or l == 1.0:
        return beta
    return 1.0 - (1.0 - beta) / _AdaptiveSVAG.clock_for(l).steps_per_original


def transformed_hyperparameters(
    lr: float, betas: float | Sequence[float], eps: float, l: float
) -> dict[str, float | tuple[float, ...]]:
    r"""The hyperparameters SVAG runs with, for the run (η, β, ε) being simulated (P2).

    .. math::  \eta' = \eta/\ell, \quad 1 - \beta_i' = (1 - \beta_i)/\ell^2, \quad \epsilon' = \epsilon\,\ell

    Args:
        lr: the LR η of the simulated run.
        betas: ``(β1, β2)`` of Adam, or the single β of RMSprop (returned in the same shape).
        eps: ε of the simulated run.
        l: P2's ℓ ``>= 1``; the gradient must have covariance ``ℓ²Σ`` (``coefficients(l²)``).

    Returns:
        ``{"lr": η/ℓ, "betas": β' (same shape as ``betas``), "eps": ε·ℓ}``; ``l = 1`` returns
        the inputs unchanged (as floats).
    """
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    l = check_l(l)
    if isinstance(betas, numbers.Real):
        new_betas: float | tuple[float, ...] = svag_beta(betas, l)
    else:
        new_betas = tuple(svag_beta(b, l) for b in betas)
    return {"lr": _svag_lr(lr, l), "betas": new_betas, "eps": check_eps(eps) * l}


def _svag_lr(lr: float, l: float) -> float:
    """``η' = η/ℓ`` of :func:`transformed_hyperparameters` (``l`` already checked), refusing an LR that is not finite
    and ``>= 0`` (a schedule sets it between the checks of the param groups)."""
    if not 0 <= lr < math.inf:
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    return float(lr) / l


@functools.lru_cache(maxsize=256)
def _adam_constants(
    beta1: float, beta2: float, eps: float, l: float, weight_decay: float, decoupled: bool
) -> tuple[float, float, float, float]:
    """``(β1', β2', ε', λ')`` of :func:`svag_adam` (:func:`transformed_hyperparameters`, and
    :func:`svag_decoupled_weight_decay` when ``decoupled``), remembered: a group's are the same at every step, so a
    step only divides its LR (which a schedule changes) by ``ℓ``."""
    hp = transformed_hyperparameters(0.0, (beta1, beta2), eps, l)
    wd_ = svag_decoupled_weight_decay(weight_decay, l) if decoupled else weight_decay
    return (*hp["betas"], hp["eps"], wd_)


@functools.lru_cache(maxsize=256)
def _rmsprop_constants(beta: float, eps: float, l: float) -> tuple[float, float]:
    """``(β', ε')`` of :func:`svag_rmsprop` (:func:`transformed_hyperparameters`), remembered as for Adam."""
    hp = transformed_hyperparameters(0.0, beta, eps, l)
    return hp["betas"], hp["eps"]


def svag_decoupled_weight_decay(weight_decay: float, l: float) -> float:
    r"""SVAG's decoupled (AdamW) weight decay: :math:`\lambda_W' = \lambda_W/\ell` (derived, module docstring).

    AdamW multiplies x by ``1 − ηλ_W`` per step of ``η²`` continuous time (P2's ``t = k·η²``): rate
    ``λ_W/η`` per unit time. With LR ``η' = η/ℓ`` a SVAG step covers ``(η/ℓ)²``, so the same rate needs
    ``η'λ_W' = (η/ℓ)²·λ_W/η = ηλ_W/ℓ²``, i.e. ``λ_W' = λ_W/ℓ``; over the ``ℓ²`` SVAG steps of one
    original step, ``(1 − ηλ_W/ℓ²)^{ℓ²} = 1 − ηλ_W + O((ηλ_W)²)``. ``λ_W/η`` is what the square-root
    rule keeps too (PAPER §5: ``λ_W → √κ·λ_W``). Coupled L2 decay is **not** rescaled (see
    :class:`SVAGAdam`). ``l = 1`` returns ``weight_decay`` itself, bit for bit.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not math.isfinite(weight_decay):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return float(weight_decay) / check_l(l)


def _init_state(state: dict[str, Any], param: torch.Tensor, keys: tuple[str, ...]) -> None:
    if not state:
        state["step"] = 0
        for key in keys:
            state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)


def svag_adam(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    l: float,
    decoupled_weight_decay: bool = False,
    foreach: bool | None = None,
    fused: bool | None = None,
    step_tensors: list[torch.Tensor] | None = None,
) -> None:
    r"""Functional core of :class:`SVAGAdam` and :class:`SVAGAdamW`: one Adam step with the transformed
    hyperparameters.

    With ``(η', β1', β2', ε') = transformed_hyperparameters(lr, (beta1, beta2), eps, l)``, ``g``
    the amplified gradient and ``k`` the SVAG step count (this step included), in place:

    .. math::  d = g + \lambda x, \quad m \leftarrow \beta_1' m + (1-\beta_1') d, \quad
               v \leftarrow \beta_2' v + (1-\beta_2') d^2, \quad
               x \leftarrow x - \frac{\eta'}{1-\beta_1'^k}\,\frac{m}{\sqrt{v/(1-\beta_2'^k)} + \epsilon'}

    The operations (and so the rounding) are those of ``torch.optim.Adam``'s single-tensor path,
    so ``l = 1`` equals ``torch.optim.Adam(params, lr, (beta1, beta2), eps, weight_decay)`` bit for bit.

    ``decoupled_weight_decay=True`` (AdamW): instead of ``d = g + λx``, first
    ``x ← (1 − η'λ_W')·x`` with ``λ_W' = svag_decoupled_weight_decay(weight_decay, l) = λ_W/ℓ``, then
    the Adam step on ``d = g``, in ``torch.optim.AdamW``'s order, so ``l = 1`` equals
    ``torch.optim.AdamW(params, lr, (beta1, beta2), eps, weight_decay)`` bit for bit.

    ``foreach``/``fused``: the same update on torch's multi-tensor or fused Adam kernels
    (``torch.optim.adam.adam``) with the transformed hyperparameters; ``l = 1`` is
    ``torch.optim.Adam``/``AdamW`` with the same flag. Those kernels count steps in scalar tensors they
    increment themselves: ``step_tensors`` (holding ``k − 1``; :func:`kernel_step_tensors`) are used when
    given, else made from ``steps``.
    """
    b1, b2, eps_, wd_ = _adam_constants(beta1, beta2, eps, l, weight_decay, decoupled_weight_decay)
    lr_ = _svag_lr(lr, l)
    if foreach or fused:
        from torch.optim.adam import adam

        if step_tensors is None:
            step_tensors = kernel_step_tensors(params, steps, bool(fused))
        adam(params, grads, exp_avgs, exp_avg_sqs, [], step_tensors, foreach=foreach, fused=fused,
             decoupled_weight_decay=decoupled_weight_decay, amsgrad=False, beta1=b1, beta2=b2, lr=lr_,
             weight_decay=wd_, eps=eps_, maximize=False)  # fmt: skip
        return
    for param, grad, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        if wd_ != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr_ * wd_)
            else:
                grad = grad.add(param, alpha=wd_)
        exp_avg.lerp_(grad, 1 - b1)
        exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        bias_correction1 = 1 - b1**step
        bias_correction2 = 1 - b2**step
        step_size = lr_ / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps_)
        param.addcdiv_(exp_avg, denom, value=-step_size)


def svag_rmsprop(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[int],
    *,
    lr: float,
    beta: float,
    eps: float,
    weight_decay: float,
    l: float,
    bias_correction: bool = True,
    foreach: bool | None = None,
    step_tensors: list[torch.Tensor] | None = None,
) -> None:
    r"""Functional core of :class:`SVAGRMSprop` (transformed hyperparameters as in :func:`svag_adam`):

    .. math::  d = g + \lambda x, \quad v \leftarrow \beta' v + (1-\beta') d^2, \quad
               x \leftarrow x - \eta'\,\frac{d}{\sqrt{v/(1-\beta'^k)} + \epsilon'}

    (without the factor ``1/(1 − β'^k)`` when ``bias_correction=False``). The operations are those
    of ``torch.optim.Adam(betas=(0, β))`` (resp. ``torch.optim.RMSprop(alpha=β)``), single-tensor path.

    ``foreach`` (``bias_correction=False`` only): the same update on torch's ``foreach`` RMSprop kernel
    (``torch.optim.rmsprop.rmsprop``, no centering, no momentum); ``l = 1`` is
    ``torch.optim.RMSprop(alpha=beta, foreach=True)``. With bias correction the kernels are Adam's with
    ``β1 = 0``, which keep a first moment: :func:`svag_adam`, as :class:`SVAGRMSprop` does. ``step_tensors``:
    as for :func:`svag_adam`.
    """
    b, eps_ = _rmsprop_constants(beta, eps, l)
    lr_ = _svag_lr(lr, l)
    if foreach:
        if bias_correction:
            raise ValueError(
                "svag_rmsprop(foreach=True) runs torch's RMSprop kernel, which has no bias correction; pass "
                "bias_correction=False, or use svag_adam(beta1=0.0, foreach=True) with a first-moment buffer"
            )
        from torch.optim.rmsprop import rmsprop

        if step_tensors is None:
            step_tensors = kernel_step_tensors(params, steps, False)
        rmsprop(params, grads, exp_avg_sqs, [], [], step_tensors, foreach=True, lr=lr_, alpha=b, eps=eps_,
                weight_decay=weight_decay, momentum=0.0, centered=False)  # fmt: skip
        return
    for param, grad, exp_avg_sq, step in zip(params, grads, exp_avg_sqs, steps):
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        exp_avg_sq.mul_(b).addcmul_(grad, grad, value=1 - b)
        if bias_correction:
            denom = (exp_avg_sq.sqrt() / (1 - b**step) ** 0.5).add_(eps_)
        else:
            denom = exp_avg_sq.sqrt().add_(eps_)
        param.addcdiv_(grad, denom, value=-lr_)


def preconditioner_weights(
    exp_avg_sq: torch.Tensor, step: int, beta2: float, eps: float, l: float = 1.0, *, bias_correction: bool = True
) -> torch.Tensor:
    r"""The weights of an adaptive update's diagonal preconditioner: :math:`w = 1/(\sqrt{\hat v} + \epsilon')`.

    .. math::  \hat v = \frac{v}{1 - \beta_2'^{\,k}}, \qquad w_i = \frac{1}{\sqrt{\hat v_i} + \epsilon'},
               \qquad (\beta_2', \epsilon') = \text{transformed\_hyperparameters}(\cdot, \beta_2, \epsilon, \ell)

    ``v`` is the optimizer's second moment ``exp_avg_sq`` after ``k`` steps (``step``), ``β2'`` and ``ε'``
    SVAG's transformed ones (P2: ``1 − β2' = (1 − β2)/ℓ²``, ``ε' = ε·ℓ``): the update
    ``x ← x − η'·m̂·w`` of :func:`svag_adam` (RMSprop: ``d·w``, :func:`svag_rmsprop`; without the
    factor ``1/(1 − β2'^k)`` when ``bias_correction=False``) divides by exactly this ``√v̂ + ε'``, computed
    with the kernels' operations. These ``w_i`` weigh the coordinates of the **preconditioned
    signal-to-noise ratio** ``R(B) = Σ_i w_i Ĝ_i² / Σ_i w_i σ_i²/B`` (:mod:`svag.noise`, "The preconditioned
    ratio"): a uniform factor in ``w`` cancels there, so SVAG's ``w`` (``v ≈ Ĝ² + ℓ²σ²/B``, ``ε' = εℓ``) is
    ``1/ℓ`` times the simulated run's with the signal term damped by ``ℓ²``. A coordinate with ``v̂_i = 0``
    and ``ε = 0`` has ``w_i = inf`` (and the update itself divides ``0/0``).

    Args:
        exp_avg_sq: the second moment ``v`` (any shape, e.g. a stacked ensemble's ``(K, ...)``).
        step: the number ``k >= 1`` of steps that built ``v`` (the bias correction's count).
        beta2, eps, l: ``β2``, ``ε`` and ℓ of the **simulated** run (as the optimizer's groups hold them).
        bias_correction: ``False`` for ``torch.optim.RMSprop``'s update (``v̂ = v``).

    Returns:
        ``w``, a new tensor of ``exp_avg_sq``'s shape and dtype.
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step must be an integer >= 1 (the steps that built exp_avg_sq), got {step!r}")
    hp = transformed_hyperparameters(0.0, beta2, eps, l)
    b2, eps_ = hp["betas"], hp["eps"]
    denom = exp_avg_sq.detach().sqrt()
    if bias_correction:
        denom = denom / (1 - b2**step) ** 0.5  # as svag_adam: (v.sqrt() / bias_correction2**0.5) + eps
    return denom.add_(eps_).reciprocal_()


def kernel_step_tensors(params: list[torch.Tensor], steps: list[int], fused: bool) -> list[torch.Tensor]:
    """The step tensors torch's kernels take: torch counts steps in scalar tensors and increments them
    itself, so they are made from the SVAG step count ``k − 1`` (the optimizer's state keeps the int)."""
    from torch.optim.optimizer import _get_scalar_dtype

    dtype = _get_scalar_dtype(is_fused=fused)
    return [torch.tensor(float(k - 1), dtype=dtype, device=p.device if fused else None) for p, k in zip(params, steps)]


class _AdaptiveSVAG(SVAGOptimizer):
    """Shared contract of the adaptive SVAG optimizers (P2): their :class:`~svag.optim.Clock` has ``p = 2``, so
    the variance factor is ``l²`` (:func:`svag.train_step` uses ``coefficients(l²)``), a step covers
    ``(lr/l)²`` of continuous time (P2: ``t = k·η²``) and ``l²`` SVAG steps make one original step."""

    time_power = 2  # P2: t = k·η²
    _state_keys: tuple[str, ...] = ()

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["eps"] = check_eps(group["eps"])
        for p in group["params"]:
            if torch.is_complex(p):
                raise ValueError(f"{type(self).__name__} takes real parameters only, got one of dtype {p.dtype}")

    def _check_grads(self, group: dict[str, Any], grads: list[torch.Tensor]) -> None:
        if any(g.is_sparse for g in grads):  # as torch.optim.Adam: checked before any parameter moves
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")

    def _second_moment(self, group: dict[str, Any]) -> tuple[float, bool]:
        """``(β2, bias_correction)`` of ``group``'s second moment (those of the simulated run)."""
        raise NotImplementedError

    @torch.no_grad()
    def preconditioner_weights(self, params: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor | None] | None:
        r"""Per parameter, the weights ``w = 1/(√v̂ + ε')`` of the current state (:func:`preconditioner_weights`).

        They are the weights the **next** update divides by, and depend only on the gradients of earlier
        steps: taken before a step, they are independent of that step's batches, as the unbiased pair
        estimates of the preconditioned ratio need (:func:`svag.noise.pair_estimates` with ``weights``;
        the state after the step holds the step's own gradient). A stacked ensemble's ``(K, ...)``
        parameter gets ``(K, ...)`` weights, one slice per replica.

        Args:
            params: the parameters to return weights for, in this order (default: every parameter of
                ``param_groups``, in order); each must be one of the optimizer's.

        Returns:
            a list with one tensor per parameter, ``None`` for a parameter not stepped yet (no state);
            ``None`` instead of the list while no parameter has been stepped (before the first step).
        """
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        if params is None:
            params = [p for g in self.param_groups for p in g["params"]]
        out: list[torch.Tensor | None] = []
        for i, p in enumerate(params):
            group = group_of.get(id(p))
            if group is None:
                raise ValueError(f"params[{i}] is not a parameter of this {type(self).__name__}")
            state = self.state.get(p)
            if not state or int(state["step"]) < 1:
                out.append(None)
                continue
            beta2, bias_correction = self._second_moment(group)
            out.append(preconditioner_weights(state["exp_avg_sq"], int(state["step"]), beta2, group["eps"],
                                              group["l"], bias_correction=bias_correction))  # fmt: skip
        return out if any(w is not None for w in out) else None

    def _step_tensors(self, group: dict[str, Any], params: list, steps: list[int], fused: bool) -> list[torch.Tensor]:
        """The kernels' step tensors for this step of ``group`` (:func:`kernel_step_tensors`), reused from its last
        kernel step while they hold ``k − 1`` of the same parameters (the int count of the state is the owner; these
        are a cache of it, rebuilt after a load, a change of flags or of the parameters with gradients), so a step
        makes no tensor: what torch's own optimizers save by keeping the tensors in their state."""
        last = self._counters.get(id(group))
        if (
            last is not None
            and last[3] == fused
            and last[2] == steps
            and len(last[0]) == len(params)
            and all(map(operator.is_, last[0], params))
        ):
            return last[1]
        return kernel_step_tensors(params, steps, fused)

    def _stepped_kernel(self, group: dict[str, Any], params: list, steps: list[int], tensors: list, fused: bool):
        """Remember the step tensors a kernel step of ``group`` incremented to ``steps`` (used by the next step)."""
        self._counters[id(group)] = (params, tensors, [k + 1 for k in steps], fused)

    @property
    def _counters(self) -> dict[int, tuple]:
        counters = self.__dict__.get("_kernel_counters")  # not pickled, copied or saved: rebuilt from the ints
        if counters is None:
            counters = self.__dict__["_kernel_counters"] = {}
        return counters

    def _states(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> tuple[list[dict[str, Any]], list[int]]:
        states, steps, every = [], [], self.state
        for p in params:
            state = every[p]
            if not state:
                _init_state(state, p, self._state_keys)
            k = state["step"] = int(state["step"]) + 1  # the SVAG step count k of the bias corrections
            states.append(state)
            steps.append(k)
        return states, steps


class SVAGAdam(_AdaptiveSVAG):
    r"""SVAG for Adam (P2): simulates the SDE of Adam with LR ``lr``, ``betas`` and ``eps``.

    Each step is Adam (coupled L2 decay, as ``torch.optim.Adam``) with the transformed
    hyperparameters ``lr/l``, ``1 − (1 − β_i)/l²``, ``eps·l`` (:func:`transformed_hyperparameters`),
    applied to ``p.grad``, which must hold the amplified gradient with covariance ``l²·Σ``:
    :func:`svag.train_step` builds it with ``coefficients(l²)`` because :meth:`variance_factor`
    returns ``l²``.

    Args:
        params: parameters or param groups, as for any ``torch.optim`` optimizer.
        lr: the LR η **of the Adam run being simulated** (not η/l).
        betas: ``(β1, β2)`` of the simulated run, each in [0, 1). ``β1 = 0`` stays 0 for every ``l``.
        eps: ε of the simulated run (ε outside the square root, as in ``torch.optim.Adam``).
        weight_decay: coupled L2 coefficient λ, **not amplified and not rescaled**. Derivation:
            the simulated run follows the minibatch gradient of ``L + (λ/2)‖x‖²``, i.e.
            ``∇L_γ + λx``: mean ``∇L + λx``, covariance Σ (λx is deterministic). SVAG needs mean
            ``∇L + λx`` and covariance ``l²Σ``; since ``a1 + a2 = 1``,
            ``a1(∇L_γ1 + λx) + a2(∇L_γ2 + λx) = g + λx``: λx is added once, after the amplification,
            with the same λ, and then goes through the moments and the LR ``lr/l`` like the gradient.
            In the SDE λ only changes the loss, so no SDE constant involves it (P2 §5: coupled L2
            decay is also unchanged by the square-root rule).
        l: P2's ℓ, a real ``>= 1`` (papers: 1, 2, 4, 8), one for all param groups. ``l = 1`` is
            Adam, bit for bit equal to ``torch.optim.Adam(params, lr, betas, eps, weight_decay)``
            (its single-tensor path, the default on CPU).
        foreach, fused: torch's multi-tensor or fused Adam kernel with the transformed hyperparameters
            (``torch.optim.Adam``'s flags; :func:`svag.optim.check_kernel_flags`); ``l = 1`` equals
            ``torch.optim.Adam``/``AdamW`` with the same flag bit for bit.

    Continuous time: :attr:`sde_time` advances by ``(lr/l)²`` per step (first group): P2 measures
    time as ``t = k·η²`` for the simulated run, so ``l²`` SVAG steps, each covering ``(η/l)²``,
    make up one step of the simulated run. Bias corrections count SVAG steps. Cost per unit of
    time: ``2l²`` times the simulated run (two batches per step). State per parameter: ``step``,
    ``exp_avg``, ``exp_avg_sq``.
    """

    simulated_name = "Adam"
    svag_name = "SVAG-Adam"
    _state_keys = ("exp_avg", "exp_avg_sq")
    _decoupled = False  # the weight decay's kind: coupled L2 here, decoupled in SVAGAdamW

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        l: float = 1.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "l": l}
        defaults.update(foreach=foreach, fused=fused)
        if self._decoupled:
            defaults["decoupled_weight_decay"] = True  # as torch.optim.AdamW's groups say
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        betas = group["betas"]
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2) of reals in [0, 1), got {betas!r}")
        group["betas"] = (check_beta(betas[0], "betas[0]"), check_beta(betas[1], "betas[1]"))
        decoupled = group.get("decoupled_weight_decay", False)
        if decoupled is not self._decoupled:  # e.g. the state_dict of the other kind
            kind, other = ("decoupled", "SVAGAdam") if self._decoupled else ("coupled L2", "SVAGAdamW")
            raise ValueError(
                f"{type(self).__name__}'s weight decay is {kind}, got decoupled_weight_decay={decoupled!r}; "
                f"for {'coupled L2' if self._decoupled else 'decoupled (AdamW)'} decay use {other}"
            )

    def _second_moment(self, group: dict[str, Any]) -> tuple[float, bool]:
        return group["betas"][1], True

    def _update_group(self, group: dict[str, Any], params: list, grads: list) -> None:
        states, steps = self._states(params, grads)
        beta1, beta2 = group["betas"]
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        hyper = {"lr": group["lr"], "beta1": beta1, "beta2": beta2, "eps": group["eps"], "l": group["l"]}
        hyper.update(weight_decay=group["weight_decay"], decoupled_weight_decay=self._decoupled)
        foreach, fused = group["foreach"], group["fused"]
        if not (foreach or fused):
            svag_adam(params, grads, exp_avgs, exp_avg_sqs, steps, **hyper)
            return
        tensors = self._step_tensors(group, params, steps, bool(fused))
        svag_adam(params, grads, exp_avgs, exp_avg_sqs, steps, foreach=foreach, fused=fused, step_tensors=tensors,
                  **hyper)  # fmt: skip
        self._stepped_kernel(group, params, steps, tensors, bool(fused))


class SVAGAdamW(SVAGAdam):
    r"""SVAG for AdamW (decoupled weight decay): simulates the SDE of ``torch.optim.AdamW``.

    As :class:`SVAGAdam` (transformed ``lr/l``, betas, ``eps·l``; amplified gradient with covariance
    ``l²·Σ``; clock ``p = 2``, ``(lr/l)²`` of continuous time per step), but each step first
    multiplies the parameters by ``1 − (lr/l)(weight_decay/l)`` and the moments see the gradient
    alone, in ``torch.optim.AdamW``'s order.

    Args:
        params, lr, betas, eps, l: as for :class:`SVAGAdam` (those of the simulated AdamW run).
        weight_decay: decoupled λ_W **of the simulated run** (default ``1e-2``, as
            ``torch.optim.AdamW``); SVAG steps use ``λ_W/l`` (:func:`svag_decoupled_weight_decay`).
            Derivation: AdamW decays x by ``1 − ηλ_W`` per step of ``η²`` time, a rate ``λ_W/η``;
            a SVAG step covers ``(η/l)²``, so it must decay by ``(η/l)²·λ_W/η = (η/l)(λ_W/l)``. Unlike
            coupled L2 (:class:`SVAGAdam`), the decay term enters the SDE as the drift ``−(λ_W/η)x``,
            which the square-root rule keeps with ``λ_W → √κ·λ_W`` (PAPER §5).

    ``l = 1`` equals ``torch.optim.AdamW(params, lr, betas, eps, weight_decay)`` bit for bit (its
    single-tensor path, the default on CPU). Param groups carry ``decoupled_weight_decay=True``, as
    ``torch.optim.AdamW``'s do (and :func:`svag.scaling.sqrt_rule` reads it). State per parameter:
    ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    simulated_name = "AdamW"
    svag_name = "SVAG-AdamW"
    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,  # torch.optim.AdamW's default
        l: float = 1.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, l, foreach=foreach, fused=fused)


class SVAGRMSprop(_AdaptiveSVAG):
    r"""SVAG for RMSprop (P2): simulates the SDE of RMSprop with LR ``lr``, ``beta`` and ``eps``.

    **Which RMSprop.** By default the RMSprop of P2's official code, which is Adam with β1 = 0
    (``torch.optim.Adam(lr, betas=(0, beta), eps)``): no momentum, the bias-corrected second
    moment ``v/(1 − β^k)``, and ε outside the root, ``x ← x − η·d/(√(v/(1 − β^k)) + ε)``. Only β
    (P2's β2) is transformed, to ``1 − (1 − β)/l²``; β1 stays 0 (the official code does the same:
    RMSprop's SDE has no momentum variable to keep invariant). ``l = 1`` equals
    ``torch.optim.Adam(params, lr, (0, beta), eps, weight_decay)`` bit for bit.

    ``bias_correction=False`` gives ``torch.optim.RMSprop(params, lr, alpha=beta, eps,
    weight_decay)`` (no centering, no momentum) instead, equal to it bit for bit at ``l = 1``. Its
    SDE (derived) is P2's RMSprop SDE with the second-moment variable started at ``u(0) = 0``
    (as ``v_0 = 0``), where the default's bias correction divides ``u`` by ``1 − exp(−c t)``,
    ``c = (1 − β)/η²``. The SVAG transformation is the same for both, since it does not involve
    the bias correction; the two differ only early in training (``t ≲ 1/c``).

    Weight decay (coupled, not amplified), ``l``, continuous time (``(lr/l)²`` per step) and cost: as
    for :class:`SVAGAdam`.

    Args:
        params, lr, eps, weight_decay, l: as for :class:`SVAGAdam` (those of the simulated run).
        beta: β of the simulated run (P2's β2), in [0, 1).
        bias_correction: ``True`` (default): P2's RMSprop, ``torch.optim.Adam(betas=(0, beta))``;
            ``False``: ``torch.optim.RMSprop(alpha=beta)``.
        foreach, fused: torch's multi-tensor or fused kernel with the transformed hyperparameters
            (:func:`svag.optim.check_kernel_flags`): by default torch's Adam kernels with β1 = 0, so
            ``l = 1`` equals ``torch.optim.Adam(params, lr, (0, beta), eps, weight_decay)`` with the same
            flag bit for bit; with ``bias_correction=False`` torch's ``foreach`` RMSprop kernel (``l = 1``:
            ``torch.optim.RMSprop(alpha=beta, foreach=True)`` bit for bit). torch has no fused RMSprop,
            so ``fused=True`` with ``bias_correction=False`` is refused.

    State per parameter: ``step``, ``exp_avg_sq``; on torch's Adam kernels also ``exp_avg``, which
    those kernels need as their first moment: with β1 = 0 it holds the last step's ``d``, and no
    update reads its old value (``0·m + d``), so a ``state_dict`` saved under any flags continues under
    any others (``exp_avg`` is created at the first Adam-kernel step and dropped at the first step on
    another path). Loading a ``state_dict`` restores the saved groups' flags too, as in
    ``torch.optim``.
    """

    simulated_name = "RMSprop"
    svag_name = "SVAG-RMSprop"
    _state_keys = ("exp_avg_sq",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        beta: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        l: float = 1.0,
        *,
        bias_correction: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "beta": beta, "eps": eps, "weight_decay": weight_decay, "l": l}
        defaults.update(foreach=foreach, fused=fused)
        defaults["bias_correction"] = bias_correction
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["beta"] = check_beta(group["beta"], "beta")
        if not isinstance(group["bias_correction"], bool):
            raise ValueError(f"bias_correction must be True or False, got {group['bias_correction']!r}")
        if group["fused"] and not group["bias_correction"]:
            raise ValueError(
                "SVAGRMSprop(bias_correction=False) is torch.optim.RMSprop, which has no fused kernel in torch, got "
                "fused=True; use foreach=True, or bias_correction=True (torch's fused Adam with beta1 = 0)"
            )

    def _second_moment(self, group: dict[str, Any]) -> tuple[float, bool]:
        return group["beta"], group["bias_correction"]

    def _update_group(self, group: dict[str, Any], params: list, grads: list) -> None:
        states, steps = self._states(params, grads)
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        beta = group["beta"]
        hyper = {"lr": group["lr"], "eps": group["eps"], "weight_decay": group["weight_decay"], "l": group["l"]}
        if group["bias_correction"] and (group["foreach"] or group["fused"]):
            for state, p in zip(states, params):  # torch's Adam kernels need a first moment; with β1 = 0 it is d
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs = [s["exp_avg"] for s in states]
            fused = bool(group["fused"])
            tensors = self._step_tensors(group, params, steps, fused)
            svag_adam(params, grads, exp_avgs, exp_avg_sqs, steps, beta1=0.0, beta2=beta, foreach=group["foreach"],
                      fused=group["fused"], step_tensors=tensors, **hyper)  # fmt: skip
            self._stepped_kernel(group, params, steps, tensors, fused)
            return
        for state in states:  # the Adam kernels' scratch first moment, when this group was on them before
            state.pop("exp_avg", None)
        correction = group["bias_correction"]
        if not group["foreach"]:
            svag_rmsprop(params, grads, exp_avg_sqs, steps, beta=beta, bias_correction=correction, **hyper)
            return
        tensors = self._step_tensors(group, params, steps, False)
        svag_rmsprop(params, grads, exp_avg_sqs, steps, beta=beta, bias_correction=correction, foreach=True,
                     step_tensors=tensors, **hyper)  # fmt: skip
        self._stepped_kernel(group, params, steps, tensors, False)
