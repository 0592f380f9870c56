"""The SVAG training step: two forward passes, the amplified loss, its backward, one step.

Source: P1 §4 and its official code: the 2B samples are split into two batches, **each batch
gets its own forward pass** (BatchNorm normalizes with each batch's own statistics, exactly as
in the SGD run being simulated, and its running statistics are updated twice), the two mean
losses are combined as ``a1·loss1 + a2·loss2`` and backpropagated.

Three ways to backpropagate the amplified loss, all giving ``p.grad = a1 g1 + a2 g2``:

- ``"accumulate"`` (default): forward 1, backward of ``a1·loss1``, forward 2, backward of
  ``a2·loss2``, the second accumulating into ``p.grad``. Only one batch's graph is alive at a
  time (half the activation memory of ``"fused"``), and it measured fastest for conv nets
  (``benchmarks/bench_step.py``).
- ``"fused"``: both forwards, then one backward of ``a1·loss1 + a2·loss2`` (the official code).
- ``"reference"``: ``g1`` and ``g2`` by two separate backward passes (each set aside before the
  next), combined per parameter group: the slow, obviously correct path, also used when the two
  gradients are wanted for the noise estimates and when each is clipped (``max_norm``). (SVAG's
  optimizers hold one ``l`` for all groups; an optimizer of one's own whose groups differ in
  ``variance_factor`` gets each group's coefficients here.)

:func:`amplified_backward` is the open form: it only fills ``.grad`` (clipping, ``GradScaler``,
micro-batches and DDP's ``no_sync`` fit around it); :func:`train_step` is it plus ``optimizer.step()``.

Never concatenate the two batches into one forward of size 2B: BatchNorm would then see
2B-sample statistics and the simulated noise would change.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from svag.amplify import amplified_loss, coefficients
from svag.batch_loss import scalar_loss
from svag.noise import MicroBatchSums

__all__ = ["MODES", "StepOutput", "amplified_backward", "checked_loss", "train_step"]

MODES = ("accumulate", "fused", "reference")

LossFn = Callable[[Any], Any]


@dataclass
class StepOutput:
    """What :func:`train_step` and :func:`amplified_backward` return.

    Attributes:
        loss1: detached mean loss of the first batch (the SGD loss when ``l = 1``), never scaled by a
            ``GradScaler``; with micro-batches the size-weighted mean of the chunks' losses.
        loss2: detached mean loss of the second batch, or ``None`` when it was not touched.
        grads: with ``return_grads=True``: the two batch gradients ``(g1, g2)``, each a list of
            tensors aligned with the trainable parameters of the optimizer (``g2`` is ``None``
            when the second batch was not touched), unscaled and unclipped. Used for the free
            (G, N) estimates.
        noise: with ``micro_noise=True``: ``(Ĝ, N̂)`` at the batch size ``B`` from the micro-batches of the
            first batch (:func:`svag.noise.from_microbatch_sums`), for a :class:`svag.noise.NoiseAccumulator`.
    """

    loss1: torch.Tensor
    loss2: torch.Tensor | None
    grads: tuple[list[torch.Tensor], list[torch.Tensor] | None] | None = None
    noise: tuple[float, float] | None = None


def _group_factors(optimizer: torch.optim.Optimizer) -> list[float]:
    factor = getattr(optimizer, "variance_factor", None)
    if factor is None:
        # a plain torch.optim optimizer: the gradient is used as is (SGD, l = 1)
        return [1.0 for _ in optimizer.param_groups]
    return [float(factor(group)) for group in optimizer.param_groups]


def _trainable(optimizer: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    return [[p for p in group["params"] if p.requires_grad] for group in optimizer.param_groups]


def train_step(
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batch1: Any,
    batch2: Any = None,
    *,
    mode: str = "accumulate",
    return_grads: bool = False,
    micro_batches: int = 1,
    max_norm: float | None = None,
    micro_noise: bool | MicroBatchSums = False,
) -> StepOutput:
    r"""One SVAG step: :func:`amplified_backward` (``p.grad ← a1 ∇L_γ1 + a2 ∇L_γ2``), then ``optimizer.step()``.

    The convenience form; for gradient clipping of the amplified gradient, ``GradScaler``, DDP's
    ``no_sync`` or anything else between backward and step, call :func:`amplified_backward` and step
    yourself (README, "The open step").

    Args:
        optimizer: a :class:`svag.SVAG` (or adaptive SVAG) optimizer; its
            :meth:`~svag.optim.SVAGOptimizer.variance_factor` decides the coefficients
            (``coefficients(l)`` for SGD, ``coefficients(l²)`` for Adam/RMSprop), so they cannot
            be mismatched. A plain ``torch.optim`` optimizer is treated as ``l = 1``.
        loss_fn: ``loss_fn(batch)`` runs the model's forward on one batch and returns its **mean**
            loss: a scalar tensor, a tuple such as ``(logits, loss)`` with one scalar tensor, or an
            object with ``.loss`` (:mod:`svag.batch_loss`). Called once per batch (per chunk with
            micro-batches): separate forward passes.
        batch1, batch2: two independent minibatches of the same size B. ``batch2`` is not
            touched (and may be ``None``) when every group has ``l = 1``.
        mode, return_grads, micro_batches, max_norm, micro_noise: as for :func:`amplified_backward`.

    Returns:
        :class:`StepOutput` with the detached batch losses (and the grads if asked).

    Raises:
        ValueError: as :func:`amplified_backward`.
    """
    out = amplified_backward(
        optimizer,
        loss_fn,
        batch1,
        batch2,
        mode=mode,
        return_grads=return_grads,
        micro_batches=micro_batches,
        max_norm=max_norm,
        micro_noise=micro_noise,
        _caller="train_step",
    )
    optimizer.step()
    return out


def amplified_backward(
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batch1: Any,
    batch2: Any = None,
    *,
    mode: str = "accumulate",
    micro_batches: int = 1,
    max_norm: float | None = None,
    scaler: Any = None,
    no_sync: Callable[[], AbstractContextManager] | None = None,
    return_grads: bool = False,
    micro_noise: bool | MicroBatchSums = False,
    _caller: str = "amplified_backward",
) -> StepOutput:
    r"""The open SVAG step: zero ``.grad``, then backpropagate into it the amplified gradient, and stop.

    .. math::  p.grad \leftarrow a_1\,\tilde g_1 + a_2\,\tilde g_2, \qquad (a_1, a_2) = \mathrm{coefficients}(v)

    with ``v`` the optimizer's variance factor (``l`` for SGD, P1 §4; ``l²`` for Adam/RMSprop, P2)
    and ``g̃_i`` batch ``i``'s mean-loss gradient (clipped, with ``max_norm``). The caller then runs
    ``optimizer.step()`` (or ``scaler.step(optimizer)``), with whatever it needs in between. This is
    the one place where the two batches' gradients are combined; :func:`train_step` calls it.

    Recipes (README, "The open step"; tested in ``tests/test_open_step.py``):

    - **Mixed precision.** Run ``loss_fn`` under ``torch.autocast`` (bf16 needs nothing else). For
      fp16 pass ``scaler=torch.amp.GradScaler(...)``: every backward is of ``scaler.scale(a·loss)``,
      the returned losses are unscaled, and ``scaler.step(optimizer); scaler.update()`` unscales,
      skips the step on inf/nan (no SDE time passes) and steps. Under autocast the coefficients
      enter the low-precision graph rounded like every gradient (relative 2⁻⁸ in bf16).
    - **Micro-batches.** ``micro_batches=k`` splits every tensor of each batch into ``k`` chunks
      along dim 0 (``torch.tensor_split``) and backpropagates ``a·(n_c/B)·loss_c`` per chunk:
      ``Σ_c (n_c/B)·mean_c = mean_B``, so the gradient equals the unchunked one up to rounding
      (layers that couple samples, BatchNorm, then see chunk statistics). This is the accumulation:
      each call zeroes ``.grad`` first, so one call per micro-batch (a nanoGPT loop) would keep only
      the last, and a second call before ``optimizer.step()`` is refused (after ``zero_grad()``, or a
      step a ``GradScaler`` skipped on inf/nan, a call is accepted: nothing is lost).
    - **DDP.** With ``no_sync=ddp_model.no_sync``, every forward/backward but the last runs inside
      it, so gradients are all-reduced once per step (``mode="accumulate"``; once per batch when the
      two batch gradients are needed apart: ``max_norm``, ``return_grads``, ``"reference"``).
      ``svag.runner.distributed``'s own data parallelism needs nothing: it all-reduces in a step pre-hook.
    - **G/N for free.** With ``micro_batches=M >= 2`` and ``micro_noise=True`` the ``M`` micro-batch gradients
      of the first batch give unbiased ``(Ĝ, N̂)`` at ``B`` (``StepOutput.noise``; :func:`svag.noise.from_microbatches`,
      McCandlish et al. 2018, App. A): each micro backward starts from an empty ``.grad`` whose norm is taken
      before it is added to the running sum (the addition autograd would have done), so no gradient is
      copied; pool the steps with ``acc.add(*out.noise)`` (:class:`svag.noise.NoiseAccumulator`). The chunks
      must be of equal size (``M`` divides ``B``). Not with ``no_sync`` (DDP would all-reduce the last
      micro-batch alone: there the ranks are the micro-batches, :mod:`svag.integrations.ddp`).
    - **Clipping.** Either clip what this returns (``torch.nn.utils.clip_grad_norm_`` on the amplified
      gradient: its norm grows with ``l``, so a fixed threshold clips more and the SDE changes), or
      pass ``max_norm=c``: each batch gradient ``g_i`` is clipped to norm ``c`` **before** the
      combination. That is SVAG of the clipped-SGD oracle ``clip_c(∇L_γ)``: mean ``E clip_c(∇L_γ)``
      and covariance ``v·Cov clip_c(∇L_γ)`` (``a1 + a2 = 1``, ``a1² + a2² = v``), so every ``l``
      simulates the SDE of the clipped run (drift ``E clip_c``, diffusion ``η·Cov clip_c``). With a
      scaler the threshold is ``c`` times the current scale (the gradients are scaled). EXPERIMENTS.md
      ("Language models at CPU scale") measures both. The norm is taken over the optimizer's trainable
      parameters **in its group order** (``[p for g in opt.param_groups for p in g["params"]]``): at
      ``l = 1`` it is ``clip_grad_norm_`` over that list bit for bit, and equals
      ``clip_grad_norm_(model.parameters(), c)`` only up to rounding when the groups list the
      parameters in another order (nanoGPT's decay / no-decay groups do): the per-tensor norms are
      summed in a different order.

    Args:
        optimizer, loss_fn, batch1, batch2: as for :func:`train_step`.
        mode: ``"accumulate"`` (default), ``"fused"`` or ``"reference"`` (module docstring); all
            give the same gradient up to rounding. ``"reference"`` is used automatically whenever the
            two batch gradients are needed apart (``max_norm``, ``return_grads``).
        micro_batches: ``k >= 1`` chunks per batch.
        max_norm: clip each batch's gradient (2-norm over the optimizer's trainable parameters, taken in
            the optimizer's group order: "Clipping" above) to this before combining; ``None``: no clipping.
        scaler: a ``torch.amp.GradScaler`` (fp16), or ``None``.
        no_sync: a DDP model's ``no_sync`` (a callable returning a context manager), or ``None``.
        return_grads: also return ``(g1, g2)`` (implies ``"reference"``).
        micro_noise: also return ``(Ĝ, N̂)`` from the first batch's micro-batches (``micro_batches >= 2``
            dividing its size; ``mode="fused"`` then runs as ``"accumulate"``). A :class:`svag.noise.MicroBatchSums`
            instead of ``True`` is reset and used (``stacked=True``: parameters that stack ``K`` runs along dim 0,
            as the runner's seed replicas; ``noise`` then holds ``(K,)`` tensors).

    Returns:
        :class:`StepOutput` with the detached, unscaled batch losses (and the grads if asked). The
        optimizer is told that ``.grad`` holds the amplified gradient: an SVAG optimizer with
        ``l > 1`` refuses a step on a gradient that did not come from here
        (:meth:`svag.optim.SVAGOptimizer.mark_amplified`).

    Raises:
        ValueError: no parameter of the optimizer requires grad, or the loss does not depend on
            any that does (frozen parameters are skipped, as in ``torch.optim``); ``loss_fn``
            returned no scalar loss; ``batch2`` missing when ``l > 1``, or the same batch as
            ``batch1`` (see :func:`_check_two_batches`); a bad ``mode``, ``micro_batches`` or
            ``max_norm``; ``no_sync`` with ``mode="fused"``.
        RuntimeError: a second call before ``optimizer.step()`` while ``.grad`` still holds the first
            call's gradient ("Micro-batches" above).
    """
    factors = _group_factors(optimizer)
    single = all(f == 1.0 for f in factors)
    if not any(p.requires_grad for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            f"{_caller}: none of the optimizer's parameters requires grad (all frozen): there is nothing to train"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    k = _check_micro_batches(micro_batches)
    if max_norm is not None:
        max_norm = _check_max_norm(max_norm)
    if no_sync is not None and mode == "fused":
        raise ValueError(
            f"{_caller}: no_sync needs mode='accumulate' (mode='fused' runs two forwards before one backward, "
            "which DDP cannot sync once)"
        )
    if micro_noise is not False:
        if k < 2:
            raise ValueError(f"{_caller}: micro_noise needs micro_batches >= 2, got {k}")
        if no_sync is not None:
            raise ValueError(
                f"{_caller}: micro_noise cannot run with no_sync (DDP all-reduces the last micro-batch's gradient "
                "alone); under DDP the ranks are the micro-batches: svag.integrations.ddp.register_noise_hook"
            )
        mode = "accumulate" if mode == "fused" else mode
    trainable = [p for params in _trainable(optimizer) for p in params]
    _check_stepped(optimizer, trainable, _caller)
    run = _Backward(loss_fn, k, scaler, no_sync, _caller)
    if micro_noise is not False:
        run.sums = micro_noise if isinstance(micro_noise, MicroBatchSums) else MicroBatchSums()
        run.sums.reset()
        run.params = trainable
    micro_noise = micro_noise is not False
    per_batch = return_grads or max_norm is not None
    if single and not per_batch:
        optimizer.zero_grad(set_to_none=True)
        out = StepOutput(run.backward(batch1, 1.0, sync=True, measure=micro_noise), None)
    else:
        if not single and batch2 is None:
            raise ValueError(f"{_caller} needs batch2 when l > 1 (SVAG draws two independent batches)")
        if batch2 is not None:
            _check_two_batches(batch1, batch2, _caller)
        optimizer.zero_grad(set_to_none=True)
        if mode == "reference" or per_batch or len(set(factors)) > 1:
            out = _per_batch(optimizer, run, batch1, batch2, factors, return_grads, single, max_norm)
        elif mode == "fused":
            out = run.fused(batch1, batch2, factors[0])
        else:
            a1, a2 = coefficients(factors[0])
            loss1 = run.backward(batch1, a1, sync=False, measure=micro_noise)
            out = StepOutput(loss1, run.backward(batch2, a2, sync=True))
    out.noise = run.noise
    mark = getattr(optimizer, "mark_amplified", None)
    if mark is not None:
        mark()
    _left_for_step(optimizer, trainable)
    return out


# -- one amplified_backward per optimizer step ------------------------------------------------------
_LEFT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> the .grad tensors the call left
_HOOKED: weakref.WeakSet = weakref.WeakSet()  # optimizers whose step() forgets their entry (a step post-hook)


def _stepped(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    _LEFT.pop(optimizer, None)


def _left_for_step(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Remember the ``.grad`` tensors this call filled, until ``optimizer.step()`` runs (a step post-hook)."""
    if optimizer not in _HOOKED:
        optimizer.register_step_post_hook(_stepped)
        _HOOKED.add(optimizer)
    _LEFT[optimizer] = [None if p.grad is None else weakref.ref(p.grad) for p in params]


def _check_stepped(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], caller: str) -> None:
    """Refuse a call that would zero the gradient the previous call left for a step that has not run.

    Each call zeroes ``.grad`` first, so calling once per micro-batch (the way a nanoGPT loop accumulates)
    keeps only the last micro-batch: ``micro_batches=k`` is the accumulation. A gradient that is no longer
    there is no loss: ``.grad`` replaced (``zero_grad()``, a backward of one's own), zeroed in place
    (``zero_grad(set_to_none=False)``), or not finite (a ``GradScaler`` skipped the step).
    """
    left = _LEFT.get(optimizer)
    if left is None or len(left) != len(params):
        return
    grads = [p.grad for p in params]
    if any((g is None) != (r is None) or (r is not None and r() is not g) for g, r in zip(grads, left)):
        return
    present = [g for g in grads if g is not None]
    if not present or not all(bool(torch.isfinite(g).all()) for g in present):
        return
    if not any(bool(g.any()) for g in present):
        return
    raise RuntimeError(
        f"{caller}: called again before optimizer.step() (it zeroes .grad, so the previous call's gradient would "
        "be lost: calling it once per micro-batch keeps only the last one); to accumulate micro-batches pass the "
        "whole batch with micro_batches=k (each batch split into k chunks, their gradients accumulated), and "
        "call optimizer.zero_grad() first to discard a gradient on purpose"
    )


def _check_micro_batches(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"micro_batches must be an integer >= 1, got {k!r}")
    return int(k)


def _check_max_norm(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"max_norm must be a finite number > 0 or None, got {value!r}")
    return float(value)


def _split(batch: Any, k: int) -> list[tuple[Any, float]]:
    """``batch`` as ``k`` chunks along dim 0 of every tensor, each with its weight ``n_c/B``."""
    if k == 1:
        return [(batch, 1.0)]
    sizes = {t.shape[0] for t in _leaves(batch) if t.dim() > 0}
    if len(sizes) != 1:
        raise ValueError(
            f"micro_batches={k} splits every tensor of a batch along dim 0, so they must share one leading size; "
            f"got sizes {sorted(sizes)}"
        )
    (size,) = sizes
    if size < k:
        raise ValueError(f"micro_batches={k} is more than the batch size {size}")
    return [(_chunk(batch, k, c), _chunk_len(size, k, c) / size) for c in range(k)]


def _chunk_len(size: int, k: int, c: int) -> int:
    return size // k + (1 if c < size % k else 0)  # torch.tensor_split's sizes


def _chunk(batch: Any, k: int, c: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return torch.tensor_split(batch, k)[c] if batch.dim() > 0 else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_chunk(item, k, c) for item in batch)
    if isinstance(batch, dict):
        return {key: _chunk(item, k, c) for key, item in batch.items()}
    return batch


class _Backward:
    """Forward and backward of batches, chunk by chunk: micro-batches, loss scaling and ``no_sync``."""

    def __init__(self, loss_fn: LossFn, k: int, scaler: Any, no_sync: Any, caller: str) -> None:
        self.loss_fn, self.k, self.scaler, self.no_sync, self.caller = loss_fn, k, scaler, no_sync, caller
        self.sums: MicroBatchSums | None = None  # micro_noise: the sums, over these parameters
        self.params: list[torch.Tensor] = []
        self.noise: tuple[float, float] | None = None

    def loss(self, batch: Any) -> torch.Tensor:
        return checked_loss(scalar_loss(self.loss_fn(batch), self.caller), self.caller)

    def _context(self, last: bool) -> AbstractContextManager:
        return contextlib.nullcontext() if last or self.no_sync is None else self.no_sync()

    def _backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def backward(self, batch: Any, coef: float, sync: bool, measure: bool = False) -> torch.Tensor:
        """Backpropagate ``coef·mean loss`` of ``batch`` into ``.grad``; the detached mean loss. With
        ``sync`` the last chunk runs outside ``no_sync`` (DDP all-reduces on its backward). With ``measure``
        (``.grad`` empty on entry) each chunk's gradient is summed into ``self.sums`` and ``self.noise`` set."""
        chunks = _split(batch, self.k)
        if measure and len({w for _, w in chunks}) > 1:
            raise ValueError(
                f"{self.caller}: micro_noise needs equal micro-batches: micro_batches={self.k} must divide the "
                f"batch size, got chunks of {sorted({round(w * _leading(batch)) for _, w in chunks})} samples"
            )
        scale = 1.0 if self.scaler is None else float(self.scaler.get_scale())
        total = None
        for c, (chunk, weight) in enumerate(chunks):
            held = None
            if measure and c > 0:  # the sum so far is set aside: this backward fills an empty .grad
                held = [p.grad for p in self.params]
                for p in self.params:
                    p.grad = None
            with self._context(sync and c == len(chunks) - 1):
                loss = self.loss(chunk)
                w = coef * weight
                self._backward(loss if w == 1.0 else w * loss)
            if measure:
                self.sums.add([p.grad for p in self.params], scale=w * scale)
                if held is not None:
                    _add_held(self.params, held)
            part = loss.detach() if weight == 1.0 else weight * loss.detach()
            total = part if total is None else total + part
        if measure:
            self.noise = self.sums.result([p.grad for p in self.params], scale=coef * scale)
        return total

    def fused(self, batch1: Any, batch2: Any, factor: float) -> StepOutput:
        """``mode="fused"``: per chunk pair, both forwards and one backward of the amplified loss."""
        total1 = total2 = None
        for (c1, w1), (c2, w2) in zip(_split(batch1, self.k), _split(batch2, self.k)):
            loss1, loss2 = self.loss(c1), self.loss(c2)
            if w1 == w2 == 1.0:
                self._backward(amplified_loss(loss1, loss2, factor))
            else:
                a1, a2 = coefficients(factor)
                self._backward((a1 * w1) * loss1 + (a2 * w2) * loss2)
            p1, p2 = w1 * loss1.detach(), w2 * loss2.detach()
            total1 = p1 if total1 is None else total1 + p1
            total2 = p2 if total2 is None else total2 + p2
        return StepOutput(total1, total2)


def _leading(batch: Any) -> int:
    return next(t.shape[0] for t in _leaves(batch) if t.dim() > 0)


def _add_held(params: list[torch.Tensor], held: list[torch.Tensor | None]) -> None:
    """``p.grad ← held + p.grad`` in place into ``held`` (``None`` counts as 0): the accumulation autograd
    would have done had ``.grad`` not been emptied."""
    both = [(h, p.grad) for p, h in zip(params, held) if h is not None and p.grad is not None]
    if both:  # one fused add over the parameters (a loop of add_ costs more than the add on small models)
        torch._foreach_add_([h for h, _ in both], [g for _, g in both])
    for p, h in zip(params, held):
        if h is not None:
            p.grad = h


def checked_loss(loss: torch.Tensor, caller: str = "train_step") -> torch.Tensor:
    """``loss`` if backward can run through it, else a ``ValueError`` saying why it cannot."""
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        raise ValueError(
            f"{caller}: loss_fn returned a loss that depends on no parameter requiring grad (was it computed "
            "under torch.no_grad(), or with a model whose parameters are not the optimizer's?)"
        )
    return loss


def _leaves(batch: Any) -> list[torch.Tensor]:
    """The tensors of a batch: a tensor, or tensors nested in tuples, lists and dicts."""
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, (tuple, list)):
        return [t for item in batch for t in _leaves(item)]
    if isinstance(batch, dict):
        return [t for item in batch.values() for t in _leaves(item)]
    return []


def _check_two_batches(batch1: Any, batch2: Any, caller: str = "train_step") -> None:
    """Refuse ``batch2`` when it is ``batch1``: the same object, or the same tensors in the same memory.

    The same batch twice makes ``g1 = g2``, so ``a1 g1 + a2 g2 = g1``: the amplified noise is
    silently gone. The check is on identity and memory (every tensor of ``batch2`` is a view of the
    same data pointer, shape and strides as the tensor at its place in ``batch1``), not on values:
    two independently drawn batches may legitimately hold equal values (sampling with replacement
    from a small data set), and comparing values would cost a pass over both batches per step. A
    tensor shared by both batches (a constant target, say) is allowed as long as another differs.
    """

    def views(batch: Any) -> list[tuple]:
        return [(t.data_ptr(), tuple(t.shape), t.stride()) for t in _leaves(batch)]

    same = batch1 is batch2 or (bool(_leaves(batch1)) and views(batch1) == views(batch2))
    if same:
        raise ValueError(
            f"{caller}: batch2 is the same batch as batch1 (the same object or tensors in the same memory); "
            "SVAG needs two independently drawn batches, else a1·g1 + a2·g2 = g1 and the amplified noise is lost"
        )


def _per_batch(optimizer, run, batch1, batch2, factors, return_grads, single, max_norm) -> StepOutput:
    """Reference path: each batch's gradient on its own (backward into ``.grad``, then set aside), each
    clipped to ``max_norm`` if asked, then ``a1 g1 + a2 g2`` per parameter group."""
    groups = _trainable(optimizer)
    flat = [p for params in groups for p in params]
    loss1 = run.backward(batch1, 1.0, sync=True, measure=run.sums is not None)
    g1 = _take_grads(flat)
    loss2, g2 = None, None
    if not single or (return_grads and batch2 is not None):
        loss2 = run.backward(batch2, 1.0, sync=True)
        g2 = _take_grads(flat)
    grads = None
    if return_grads:  # unscaled and unclipped, for the noise estimates
        grads = (_unscaled(g1, run.scaler), None if g2 is None else _unscaled(g2, run.scaler))
    if max_norm is not None:
        if return_grads and run.scaler is None:  # clipped in place below: keep the returned ones intact
            g1, g2 = _copy(g1), None if g2 is None else _copy(g2)
        scale = 1.0 if run.scaler is None else float(run.scaler.get_scale())
        for g in (g1, g2):
            _clip_(g, max_norm * scale)
    i = 0
    for params, factor in zip(groups, factors):
        a1, a2 = coefficients(factor)
        for p in params:
            p.grad = _combine(a1, g1[i], a2, None if g2 is None else g2[i])
            i += 1
    return StepOutput(loss1, loss2, grads)


def _clip_(grads: list[torch.Tensor | None] | None, max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``'s operations on a list of gradients, in place: multiply all by
    ``min(1, max_norm/(‖g‖ + 1e-6))`` with ``‖g‖`` the 2-norm of their concatenation."""
    present = [] if grads is None else [t for t in grads if t is not None]
    if not present:
        return
    norm = torch.nn.utils.get_total_norm(present)
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for t in present:
        t.mul_(coef.to(t.device))


def _copy(grads: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    return [None if g is None else g.clone() for g in grads]


def _take_grads(params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """The ``.grad`` of every parameter, which is then reset to ``None`` for the next batch."""
    grads = [p.grad for p in params]
    for p in params:
        p.grad = None
    return grads


def _unscaled(grads: list[torch.Tensor | None], scaler: Any) -> list[torch.Tensor | None]:
    if scaler is None:
        return grads
    inv = 1.0 / float(scaler.get_scale())
    return [None if g is None else g * inv for g in grads]


def _combine(a1: float, g1: torch.Tensor | None, a2: float, g2: torch.Tensor | None) -> torch.Tensor | None:
    """``a1·g1 + a2·g2`` where a missing gradient counts as zero (both missing: ``None``)."""
    if a2 == 0.0 or g2 is None:
        return None if g1 is None else a1 * g1 if a1 != 1.0 else g1.clone()
    if g1 is None:
        return a2 * g2
    return a1 * g1 + a2 * g2
