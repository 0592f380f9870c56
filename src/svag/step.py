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
- ``"reference"``: ``g1`` and ``g2`` by two separate ``autograd.grad`` calls, combined per
  parameter group: the slow, obviously correct path, also used when groups differ in ``l`` and
  when the two gradients are wanted for the noise estimates.

Never concatenate the two batches into one forward of size 2B: BatchNorm would then see
2B-sample statistics and the simulated noise would change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .amplify import amplified_loss, coefficients

__all__ = ["MODES", "StepOutput", "train_step"]

MODES = ("accumulate", "fused", "reference")

LossFn = Callable[[Any], torch.Tensor]


@dataclass
class StepOutput:
    """What :func:`train_step` returns.

    Attributes:
        loss1: detached mean loss of the first batch (the SGD loss when ``l = 1``).
        loss2: detached mean loss of the second batch, or ``None`` when it was not touched.
        grads: with ``return_grads=True``: the two batch gradients ``(g1, g2)``, each a list of
            tensors aligned with the trainable parameters of the optimizer (``g2`` is ``None``
            when the second batch was not touched). Used for the free (G, N) estimates.
    """

    loss1: torch.Tensor
    loss2: torch.Tensor | None
    grads: tuple[list[torch.Tensor], list[torch.Tensor] | None] | None = None


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
) -> StepOutput:
    r"""One SVAG step: ``p.grad ← a1 ∇L_γ1 + a2 ∇L_γ2``, then ``optimizer.step()``.

    Args:
        optimizer: a :class:`svag.SVAG` (or adaptive SVAG) optimizer; its
            :meth:`~svag.optim.SVAGOptimizer.variance_factor` decides the coefficients
            (``coefficients(l)`` for SGD, ``coefficients(l²)`` for Adam/RMSprop), so they cannot
            be mismatched. A plain ``torch.optim`` optimizer is treated as ``l = 1``.
        loss_fn: ``loss_fn(batch) -> scalar`` runs the model's forward on one batch and returns
            its **mean** loss (e.g. ``lambda b: F.cross_entropy(model(b[0]), b[1])``). It is
            called once per batch: two separate forward passes.
        batch1, batch2: two independent minibatches of the same size B. ``batch2`` is not
            touched (and may be ``None``) when every group has ``l = 1``.
        mode: ``"accumulate"`` (default), ``"fused"`` or ``"reference"`` (see the module
            docstring); all give the same update up to rounding. ``"reference"`` is used
            automatically when param groups have different amplification.
        return_grads: also return ``(g1, g2)`` (implies ``"reference"``).

    Returns:
        :class:`StepOutput` with the detached batch losses (and the grads if asked).

    Raises:
        ValueError: no parameter of the optimizer requires grad, or the loss does not depend on
            any that does (frozen parameters are skipped, as in ``torch.optim``); ``batch2`` missing
            when ``l > 1``, or the same batch as ``batch1`` (see :func:`_check_two_batches`).
    """
    factors = _group_factors(optimizer)
    single = all(f == 1.0 for f in factors)
    if not any(p.requires_grad for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            "train_step: none of the optimizer's parameters requires grad (all frozen): there is nothing to train"
        )
    if single and not return_grads:
        optimizer.zero_grad(set_to_none=True)
        loss1 = _checked(loss_fn(batch1))
        loss1.backward()
        optimizer.step()
        return StepOutput(loss1.detach(), None)
    if not single and batch2 is None:
        raise ValueError("train_step needs batch2 when l > 1 (SVAG draws two independent batches)")
    if batch2 is not None:
        _check_two_batches(batch1, batch2)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "reference" or return_grads or len(set(factors)) > 1:
        return _two_backward_step(optimizer, loss_fn, batch1, batch2, factors, return_grads, single)
    optimizer.zero_grad(set_to_none=True)
    if mode == "fused":
        loss1 = _checked(loss_fn(batch1))
        loss2 = _checked(loss_fn(batch2))
        amplified_loss(loss1, loss2, factors[0]).backward()
    else:
        a1, a2 = coefficients(factors[0])
        loss1 = _checked(loss_fn(batch1))
        (a1 * loss1).backward()
        loss2 = _checked(loss_fn(batch2))
        (a2 * loss2).backward()
    optimizer.step()
    return StepOutput(loss1.detach(), loss2.detach())


def _checked(loss: torch.Tensor) -> torch.Tensor:
    """``loss`` if backward can run through it, else a ``ValueError`` saying why it cannot."""
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        raise ValueError(
            "train_step: loss_fn returned a loss that depends on no parameter requiring grad (was it computed "
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


def _check_two_batches(batch1: Any, batch2: Any) -> None:
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
            "train_step: batch2 is the same batch as batch1 (the same object or tensors in the same memory); "
            "SVAG needs two independently drawn batches, else a1·g1 + a2·g2 = g1 and the amplified noise is lost"
        )


def _grads_of(loss: torch.Tensor, groups: list[list[torch.Tensor]]) -> list[torch.Tensor | None]:
    """Gradient of ``loss`` for every trainable parameter (``None`` where it does not depend)."""
    flat = [p for params in groups for p in params]
    return list(torch.autograd.grad(loss, flat, allow_unused=True))


def _two_backward_step(optimizer, loss_fn, batch1, batch2, factors, return_grads, single) -> StepOutput:
    """Reference path: backpropagate each batch loss on its own and combine ``a1 g1 + a2 g2``."""
    groups = _trainable(optimizer)
    loss1 = _checked(loss_fn(batch1))
    g1 = _grads_of(loss1, groups)
    loss2, g2 = None, None
    if not single or (return_grads and batch2 is not None):
        loss2 = _checked(loss_fn(batch2))
        g2 = _grads_of(loss2, groups)
    i = 0
    for params, factor in zip(groups, factors):
        a1, a2 = coefficients(factor)
        for p in params:
            p.grad = _combine(a1, g1[i], a2, None if g2 is None else g2[i])
            i += 1
    optimizer.step()
    grads = (g1, g2) if return_grads else None
    return StepOutput(loss1.detach(), None if loss2 is None else loss2.detach(), grads)


def _combine(a1: float, g1: torch.Tensor | None, a2: float, g2: torch.Tensor | None) -> torch.Tensor | None:
    """``a1·g1 + a2·g2`` where a missing gradient counts as zero (both missing: ``None``)."""
    if a2 == 0.0 or g2 is None:
        return None if g1 is None else a1 * g1 if a1 != 1.0 else g1.clone()
    if g1 is None:
        return a2 * g2
    return a1 * g1 + a2 * g2
