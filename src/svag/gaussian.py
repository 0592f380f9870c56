r"""The Gaussian-noise step: P1's NGD, which is Euler–Maruyama of the SDE of SGD.

Sources: P1 (Li, Malladi & Arora 2021, arXiv 2102.12470), its NGD experiment (PAPER.md §3); PAPER.md §6
(derived there and checked here). Notation: ``n`` training samples, per-sample losses ``ℓ_i``, their
gradients ``g_i`` at the current parameters, ``ḡ = (1/n)Σ_i g_i = ∇L``, and the **per-sample
covariance with population normalization**

.. math::  Σ_1 = \frac1n \sum_i (g_i - ḡ)(g_i - ḡ)^ᵀ .

**The weights.** With ``z_i ~ N(0, 1)`` i.i.d., redrawn every step, ``z̄ = (1/n)Σ_i z_i`` and

.. math::  w_i = 1 + c\,(z_i - z̄),\qquad c = \sqrt{v\,n\,f/B}

(``v`` the optimizer's variance factor, ``f`` = 1 or the finite-population factor below), one
weighted backward of ``(1/n)Σ_i w_i ℓ_i`` gives, since ``Σ_i (z_i − z̄) = 0`` (so ``Σ_i w_i = n``)
and ``Σ_i (z_i − z̄) g_i = Σ_i z_i (g_i − ḡ)``,

.. math::  ∇\Big[\frac1n\sum_i w_iℓ_i\Big] = ḡ + \frac cn \sum_i z_i (g_i - ḡ)
           = ḡ + \sqrt{\frac{v f}{nB}} \sum_i z_i (g_i - ḡ).

The noise is linear in the i.i.d. ``z``, so it is **exactly Gaussian** (given the parameters) with
mean 0 and covariance ``(vf/(nB))·Σ_i (g_i − ḡ)(g_i − ḡ)ᵀ = v·f·Σ_1/B``: **no** ``(n−1)/n`` factor,
because subtracting ``z̄`` centres the gradients instead of shrinking the noise (without it, the
weights ``1 + c z_i`` would give covariance ``v(Σ_1 + ḡḡᵀ)/B``: the signal would leak into the noise).

**Which covariance a run matches.** ``finite_population=False`` (``f = 1``, P1's NGD weights
``1 + √(n/B)(z_i − z̄)`` at ``v = 1``): ``v·Σ_1/B``, the covariance of the mean gradient of ``B`` samples
drawn **with replacement** (``RunConfig(sampling="replacement")``; :mod:`svag.problems` uses this).
``finite_population=True``: ``f = (n − B)/(n − 1)``, ``v·Σ_1(n − B)/(B(n − 1))``, the covariance of a
minibatch of ``B`` **distinct** samples (without replacement, as SGD's shuffled epochs and P1's CIFAR
runs). Only the per-step covariance is matched: correlations between the steps of one epoch are not.

**Euler–Maruyama.** With ``v = l`` (:class:`svag.SVAG`: ``opt.clock().variance_factor``) the optimizer
steps ``x ← x − (η/l)(ĝ + λx)``, which is Euler–Maruyama with ``Δt = η/l`` of

.. math::  dX = -(∇L(X) + λX)\,dt + (η\,f\,Σ_1(X)/B)^{1/2}\,dW

(``(η/l)·√(l f/(nB))Σ z_i(g_i − ḡ)`` has covariance ``Δt·ηfΣ_1/B``). ``l = 1`` is P1's NGD (SGD's
discretization, Gaussian noise); ``l → ∞`` is the SDE; the weight decay ``λx`` is added by the optimizer
and not amplified. Compare SVAG(l): the same drift and per-step covariance (with replacement), noise
from two minibatches (third cumulant ``(3l−1)/2·κ_1/B²``) instead of a Gaussian (third cumulant 0).
For Adam/RMSprop SVAG ``v = ℓ²`` (their clock), the same way.

**Cost and memory.** One forward and one backward over all ``n`` samples per step, in chunks of
``chunk`` samples whose gradients are accumulated: memory is that of a batch of ``chunk``, not ``n``,
besides a few numbers per sample and replica (the noise weights and the losses:
:data:`STEP_BYTES_PER_SAMPLE`, which the run's budget counts).
Random streams: draw ``z`` from the run's ``"gaussian"`` stream (:func:`svag.seeds.generator`).

**Scope.** One model, or ``R`` replicas stacked in one model whose forward maps a chunk of shared
inputs ``(k, ...)`` to outputs ``(R, k, ...)`` with replica ``r``'s parameters entering row ``r`` only
(``replicas=R``: each replica gets its own ``z``). The per-sample loss must not couple samples:
BatchNorm in train mode is refused (GroupNorm, LayerNorm and no normalization work).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from svag.per_sample import finite_population_factor
from svag.task import Task

__all__ = [
    "DEFAULT_CHUNK",
    "STEP_BYTES_PER_SAMPLE",
    "GaussianStepOutput",
    "check_model",
    "finite_population_factor",
    "gaussian_gradient",
    "gaussian_step",
    "gaussian_weights",
    "noise_scale",
    "weights_from_normals",
]

DEFAULT_CHUNK = 1024  # samples per forward/backward of the full-data pass (memory of a batch of this size)
# Bytes a step holds at its peak per training sample and replica, besides the data, the model and one chunk: the
# draw (z and two temporaries, float64), then the weights, w/n, the detached losses, their concatenation and its
# float64 copy (4 × the dtype's size + 8). Measured with n = 10^7 (the peak RSS of one step): 28.8 in float32, 40.8
# in float64; the budget counts this bound (svag.runner.budget).
STEP_BYTES_PER_SAMPLE = 40

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class GaussianStepOutput:
    """What :func:`gaussian_step` returns.

    Attributes:
        loss: detached **unweighted** mean loss over the ``n`` training samples at the parameters
            before the step (the full-batch training loss, for logging); ``(R,)`` with replicas.
        noise_scale: ``c = √(v·n·f/B)`` of the weights ``w_i = 1 + c(z_i − z̄)``.
    """

    loss: torch.Tensor
    noise_scale: float


def _check_int(value: object, name: str, low: int, high: int | None = None, what: str = "") -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        valid = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {valid}{what}, got {value!r}")
    return int(value)


def noise_scale(n: int, batch_size: int, variance_factor: float, *, finite_population: bool = False) -> float:
    r"""``c = √(v·n·f/B)``, the scale of the weights ``w_i = 1 + c(z_i − z̄)`` (module docstring):
    the noise of the weighted gradient then has covariance ``v·f·Σ_1/B``.

    Args:
        n: training samples, ``>= 1``.
        batch_size: ``B`` of the SGD run being simulated, in ``[1, n]``.
        variance_factor: ``v`` (``l`` for SVAG, ``ℓ²`` for Adam/RMSprop SVAG: the optimizer's clock).
        finite_population: ``f = (n − B)/(n − 1)`` (without replacement) instead of 1 (with).
    """
    n = _check_int(n, "n", 1)
    batch_size = _check_int(batch_size, "batch_size", 1, n, f" (at most the n = {n} training samples)")
    v = variance_factor
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"variance_factor must be a finite number > 0, got {v!r}")
    f = finite_population_factor(n, batch_size) if finite_population else 1.0
    return math.sqrt(float(v) * n * f / batch_size)


def weights_from_normals(
    z: torch.Tensor, batch_size: int, variance_factor: float, *, finite_population: bool = False
) -> torch.Tensor:
    r"""``w_i = 1 + c(z_i − z̄)`` from given normals ``z`` (``(n,)``, or ``(R, n)``: each row centred on its
    own), ``c`` = :func:`noise_scale`; ``Σ_i w_i = n`` up to rounding. Computed in ``z``'s dtype."""
    if not isinstance(z, torch.Tensor) or z.dim() not in (1, 2) or z.shape[-1] < 1:
        raise ValueError(f"z must be an (n,) or (R, n) tensor with n >= 1, got {getattr(z, 'shape', z)!r}")
    c = noise_scale(z.shape[-1], batch_size, variance_factor, finite_population=finite_population)
    return 1.0 + c * (z - z.mean(-1, keepdim=True))


def gaussian_weights(
    n: int,
    batch_size: int,
    variance_factor: float,
    generator: torch.Generator | Sequence[torch.Generator],
    *,
    replicas: int | None = None,
    finite_population: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Fresh weights ``w_i = 1 + c(z_i − z̄)``: ``z ~ N(0, I)`` drawn on the generator's device
    (``torch.randn((n,) or (replicas, n), generator=generator, dtype=float64)``; float32 on Apple MPS,
    which has no float64), centred and scaled there (:func:`weights_from_normals`), then cast to ``dtype``
    (default: the draw's) on ``device`` (default: the generator's).

    With ``replicas = R``, ``generator`` may also be a sequence of ``R`` generators, one per replica: row
    ``r`` is then exactly (bit for bit) the ``(n,)`` weights that generator ``r`` gives alone, so stacked
    replicas draw what their single runs would."""
    n = _check_int(n, "n", 1)
    if isinstance(generator, (list, tuple)):
        if replicas is None or len(generator) != replicas:
            raise ValueError(f"one generator per replica: got {len(generator)} generators and replicas={replicas!r}")
        rows = [gaussian_weights(n, batch_size, variance_factor, g, finite_population=finite_population,
                                 dtype=dtype, device=device) for g in generator]  # fmt: skip
        return torch.stack(rows)
    shape = (n,) if replicas is None else (_check_int(replicas, "replicas", 1), n)
    z_dtype = torch.float32 if generator.device.type == "mps" else torch.float64
    z = torch.randn(shape, generator=generator, dtype=z_dtype, device=generator.device)
    w = weights_from_normals(z, batch_size, variance_factor, finite_population=finite_population)
    target = torch.device(device) if device is not None else generator.device
    if dtype is None:
        dtype = torch.float32 if target.type == "mps" else z_dtype
    return w.to(dtype=dtype, device=target)


def check_model(model: object) -> None:
    """Refuse BatchNorm in train mode (``ValueError`` naming the module): a sample's loss would depend on the
    other samples of its chunk. Works on a model built on the ``meta`` device (the budget's)."""
    if not isinstance(model, nn.Module):
        return
    for name, module in model.named_modules():
        batchnorm = isinstance(module, _BatchNorm) or "batchnorm" in type(module).__name__.lower()
        if batchnorm and module.training:
            raise ValueError(
                f"the Gaussian-noise step needs per-sample losses, which BatchNorm in train mode does not have "
                f"(module {name or '<root>'!r} is {type(module).__name__}); use GroupNorm, LayerNorm or no "
                "normalization (svag.models: norm='gn' or 'none'), or put the BatchNorm layers in eval mode"
            )


def _check_data(data: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)):
        raise ValueError("data must be the whole training set as a pair of tensors (inputs, targets)")
    inputs, targets = data
    n = inputs.shape[0] if inputs.dim() else 0
    if n < 1 or targets.dim() == 0 or targets.shape[0] != n:
        raise ValueError(
            f"data must be (inputs, targets) with the same number n >= 1 of samples, got shapes "
            f"{tuple(inputs.shape)} and {tuple(targets.shape)}"
        )
    return inputs, targets, n


def _loss_fn(task: Task | PerSampleLoss) -> PerSampleLoss:
    if isinstance(task, Task):
        return task.per_sample_loss
    if callable(task):
        return task
    raise ValueError(f"task must be a svag.task.Task or a callable (output, target) -> per-sample losses, got {task!r}")


def _chunk_losses(model, loss_fn, inputs, targets, replicas: int | None) -> torch.Tensor:
    """Per-sample losses of one chunk: ``(k,)``, or ``(R, k)`` for a model with ``replicas`` stacked."""
    out = model(inputs)
    k = inputs.shape[0]
    if replicas is None:
        losses = loss_fn(out, targets)
        expected = (k,)
    else:
        if out.dim() < 2 or tuple(out.shape[:2]) != (replicas, k):
            raise ValueError(
                f"with replicas={replicas} the model must return ({replicas}, {k}, ...), got {tuple(out.shape)}"
            )
        flat_y = targets.expand(replicas, *targets.shape).reshape(-1, *targets.shape[1:])
        losses = loss_fn(out.flatten(0, 1), flat_y)
        expected = (replicas * k,)
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != expected:
        raise ValueError(
            f"the per-sample loss must return one loss per sample, shape {expected}, got "
            f"{tuple(getattr(losses, 'shape', ()))} (a mean loss such as Task.loss is not per-sample: pass the Task "
            "or a reduction='none' loss)"
        )
    return losses if replicas is None else losses.view(replicas, k)


def gaussian_gradient(
    model: Callable[[torch.Tensor], torch.Tensor],
    task: Task | PerSampleLoss,
    data: Sequence[torch.Tensor],
    weights: torch.Tensor,
    *,
    params: Sequence[torch.Tensor] | None = None,
    chunk: int | None = DEFAULT_CHUNK,
) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    r"""``∇_θ (1/n)Σ_i w_i ℓ_i(θ)`` over the whole data set, accumulated over chunks, without any step.

    With the weights of :func:`gaussian_weights` this is ``ḡ + √(vf/(nB))Σ_i z_i(g_i − ḡ)`` (module
    docstring). Each chunk of ``chunk`` samples is one forward and one ``torch.autograd.grad`` of
    ``(1/n)Σ_{i∈chunk} w_iℓ_i``, added to the running sum: memory of one chunk.

    Args:
        model: maps inputs ``(k, ...)`` to outputs ``(k, ...)`` (``(R, k, ...)`` when ``weights`` is ``(R, n)``).
        task: a :class:`svag.task.Task` (its ``per_sample_loss``) or ``(output, target) -> (k,)`` losses.
        data: the whole training set ``(inputs, targets)``, ``n`` samples.
        weights: ``(n,)``, or ``(R, n)`` for ``R`` stacked replicas (row ``r`` weights replica ``r``).
        params: the tensors to differentiate (default: the model's parameters with ``requires_grad``).
        chunk: samples per forward/backward (``None``: all ``n`` at once).

    Returns:
        ``(grads, loss)``: one gradient per tensor of ``params`` (``None`` where the loss does not depend
        on it), and the detached unweighted mean loss ``(1/n)Σ_i ℓ_i`` (``(R,)`` with replicas).
    """
    if params is None:
        if not isinstance(model, nn.Module):
            raise ValueError("params is needed when model is not an nn.Module")
        params = [p for p in model.parameters() if p.requires_grad]
    params = list(params)
    grads: list[torch.Tensor | None] = [None] * len(params)

    def add(losses: torch.Tensor, w: torch.Tensor) -> None:  # ∇ of Σ_i w_i ℓ_i: the vector-Jacobian product
        for j, g in enumerate(torch.autograd.grad(losses, params, grad_outputs=w, allow_unused=True)):
            if g is not None:
                grads[j] = g if grads[j] is None else grads[j].add_(g)

    check_model(model)
    loss = _weighted_pass(model, task, data, weights, params, chunk, add)
    if all(g is None for g in grads):
        raise ValueError("the loss depends on none of the parameters given")
    return grads, loss


def _weighted_pass(model, task, data, weights, params: list, chunk: int | None, backward) -> torch.Tensor:
    """The chunk loop of :func:`gaussian_gradient`: ``backward(ℓ, w/n)``, the gradient of
    ``(1/n)Σ_{i∈chunk} w_iℓ_i`` as the vector-Jacobian product of the per-sample losses with ``w/n`` (no
    weighted sum is formed: bit for bit the gradient of the dot product, one op less each way), for each
    chunk; returns the detached unweighted mean loss. ``backward`` either collects ``autograd.grad`` (the
    reference, :func:`gaussian_gradient`) or accumulates into ``p.grad`` (:func:`gaussian_step`: what a
    chunked ``loss.backward()`` costs, ``benchmarks/bench_gaussian.py``). The caller checks the model."""
    inputs, targets, n = _check_data(data)
    chunk = n if chunk is None else _check_int(chunk, "chunk", 1, what=" (samples per forward/backward) or None")
    if not isinstance(weights, torch.Tensor) or weights.dim() not in (1, 2) or weights.shape[-1] != n:
        raise ValueError(f"weights must be (n,) or (R, n) with n = {n}, got {tuple(getattr(weights, 'shape', ()))}")
    replicas = None if weights.dim() == 1 else weights.shape[0]
    if not params:
        raise ValueError("there is no parameter to differentiate (none requires grad)")
    loss_fn = _loss_fn(task)
    parts = []  # the detached per-sample losses: one float64 sum at the end
    # few small ops per chunk (each costs microseconds on a CPU): views made once, w_i/n the backward's seed
    pieces = zip(inputs.split(chunk), targets.split(chunk), (weights / n).split(chunk, dim=-1))
    for i, (x, y, w) in enumerate(pieces):
        losses = _chunk_losses(model, loss_fn, x, y, replicas)
        if w.dtype != losses.dtype or w.device != losses.device:
            w = w.to(dtype=losses.dtype, device=losses.device)
        if i == 0 and not losses.requires_grad:
            raise ValueError(
                "the weighted loss depends on no parameter requiring grad (computed under torch.no_grad(), or "
                "with a model whose parameters are not the ones differentiated?)"
            )
        parts.append(losses.detach())
        backward(losses, w)
    return (torch.cat(parts, -1).to(torch.float64).sum(-1) / n).to(losses.dtype)


def _variance_factor(optimizer: torch.optim.Optimizer) -> float:
    """The optimizer's variance factor (its clock: ``l`` for SVAG, ``ℓ²`` for Adam/RMSprop; 1 for a plain
    ``torch.optim`` optimizer); one value for all param groups, since one Gaussian draw serves them all."""
    ask = getattr(optimizer, "variance_factor", None)
    factors = [1.0] * len(optimizer.param_groups) if ask is None else [float(ask(g)) for g in optimizer.param_groups]
    if len(set(factors)) > 1:
        raise ValueError(
            f"the Gaussian-noise step needs one variance factor for all param groups, got {factors}: "
            "use the same l in every group"
        )
    return factors[0]


def _backward_into(model, params: list[torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """``backward(losses, w)`` accumulating ``∇Σ_i w_iℓ_i`` into ``p.grad`` of ``params`` only: a plain
    ``losses.backward(w)`` when they are all of the model's trainable parameters (the runner's case;
    ``backward(inputs=...)`` measured ~5% slower on a small MLP), else restricted to them."""
    if isinstance(model, nn.Module):
        mine = {id(p) for p in params}
        if all(id(p) in mine for p in model.parameters() if p.requires_grad):
            return torch.Tensor.backward
    return lambda losses, w: torch.autograd.backward(losses, w, inputs=params)


def gaussian_step(
    optimizer: torch.optim.Optimizer,
    model: Callable[[torch.Tensor], torch.Tensor],
    task: Task | PerSampleLoss,
    data: Sequence[torch.Tensor],
    *,
    batch_size: int,
    generator: torch.Generator | Sequence[torch.Generator],
    chunk: int | None = DEFAULT_CHUNK,
    finite_population: bool = False,
    replicas: int | None = None,
) -> GaussianStepOutput:
    r"""One Gaussian-noise step: ``p.grad ← ḡ + √(vf/(nB))Σ_i z_i(g_i − ḡ)``, then ``optimizer.step()``.

    With :class:`svag.SVAG` at amplification ``l`` this is Euler–Maruyama with ``Δt = η/l`` of the SDE of
    SGD at batch size ``B`` (module docstring); ``l = 1`` is P1's NGD. The counterpart of
    :func:`svag.train_step`, with the whole training set in place of two minibatches.

    Args:
        optimizer: a :class:`svag.SVAG` (or adaptive SVAG) optimizer: its ``variance_factor`` (``l``, or
            ``ℓ²``) sets the noise, and it steps with ``η/l`` as usual (``λx`` not amplified). A plain
            ``torch.optim`` optimizer counts as ``v = 1``. All groups must share one factor.
        model: the network (BatchNorm in train mode is refused: no per-sample loss), or any callable.
        task: the run's :class:`svag.task.Task`, or ``(output, target) -> (k,)`` per-sample losses.
        data: the **whole** training set ``(inputs, targets)`` (``n`` samples).
        batch_size: ``B`` of the SGD run being simulated, ``1 <= B <= n``.
        generator: the stream of ``z`` (a run's: ``svag.seeds.generator(seed, "gaussian")``); with
            ``replicas``, one generator for all or one per replica (:func:`gaussian_weights`).
        chunk: samples per forward/backward (memory of a batch of ``chunk``); ``None``: all at once.
        finite_population: match SGD **without** replacement (covariance ``×(n−B)/(n−1)``); default:
            with replacement (P1's NGD weights).
        replicas: ``R`` stacked independent replicas (outputs ``(R, k, ...)``; each gets its own ``z``).

    Returns:
        :class:`GaussianStepOutput`: the unweighted full-data mean loss before the step and ``c``.

    Raises:
        ValueError: a bad ``batch_size`` or ``chunk``, BatchNorm in train mode, a loss that is not
            per-sample, groups with different variance factors, or nothing to train.
    """
    check_model(model)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if not params:
        raise ValueError("gaussian_step: none of the optimizer's parameters requires grad (all frozen)")
    _, _, n = _check_data(data)
    if chunk is not None:  # before the draw, so that a refused call leaves the generator as it was
        _check_int(chunk, "chunk", 1, what=" (samples per forward/backward) or None")
    v = _variance_factor(optimizer)
    c = noise_scale(n, batch_size, v, finite_population=finite_population)
    inputs = data[0]
    weights = gaussian_weights(n, batch_size, v, generator, replicas=replicas, finite_population=finite_population,
                               dtype=params[0].dtype, device=inputs.device)  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    loss = _weighted_pass(model, task, data, weights, params, chunk, _backward_into(model, params))
    if all(p.grad is None for p in params):
        raise ValueError("the loss depends on none of the parameters given")
    mark = getattr(optimizer, "mark_amplified", None)
    if mark is not None:  # p.grad holds noise of covariance v·Σ: the amplified gradient, built here
        mark()
    optimizer.step()
    return GaussianStepOutput(loss, c)
