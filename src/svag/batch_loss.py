"""The one loss convention of every place that calls a user's loss: ``loss_fn(batch) -> mean loss``.

:func:`svag.train_step`, :func:`svag.amplified_backward` and :func:`svag.measure_noise` all accept
``loss_fn(batch)``: it runs the model's forward on one batch and returns the **mean** loss over
it. What it returns may be

- a scalar tensor (``F.cross_entropy(model(x), y)``),
- a tuple or list holding exactly one scalar tensor: ``(logits, loss)``, as language models often
  return (``lambda b: model(*b)``),
- a mapping with a ``"loss"`` key, or an object with a ``.loss`` attribute (model-output classes).

Anything else is refused in one line that says what came back and what is expected.
:func:`measure_noise` also keeps its older convention ``loss_fn(outputs, targets)`` (the model is
called for it): :func:`takes_batch` tells the two apart by the number of required positional
parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["EXPECTED", "describe", "scalar_loss", "takes_batch"]

EXPECTED = "a scalar mean-loss tensor, a tuple/list with exactly one scalar tensor (e.g. (logits, loss)), or a .loss"


def describe(value: Any) -> str:
    """A short description of what a loss function returned, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of ({', '.join(describe(v) for v in value)})"
    return f"a {type(value).__name__}"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1


def scalar_loss(value: Any, caller: str) -> torch.Tensor:
    """The scalar loss in what ``loss_fn`` returned (see the module docstring), or a one-line ``ValueError``.

    Args:
        value: what the user's loss function returned.
        caller: the public function that called it (named in the error).
    """
    if _is_scalar(value):
        return value.reshape(())
    if isinstance(value, (tuple, list)):
        scalars = [v for v in value if _is_scalar(v)]
        if len(scalars) == 1:
            return scalars[0].reshape(())
    elif isinstance(value, Mapping) and _is_scalar(value.get("loss")):
        return value["loss"].reshape(())
    elif _is_scalar(getattr(value, "loss", None)):
        return value.loss.reshape(())
    raise ValueError(f"{caller}: loss_fn returned {describe(value)}; expected {EXPECTED}")


def takes_batch(loss_fn: Callable[..., Any]) -> bool:
    """Whether ``loss_fn`` is ``loss_fn(batch)`` (one required positional parameter) rather than
    ``loss_fn(outputs, targets)`` (two or more, e.g. ``F.cross_entropy``).

    Raises:
        ValueError: ``loss_fn`` is not callable, or takes no positional argument.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    try:
        params = inspect.signature(loss_fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume the (outputs, targets) form
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if any(p.kind is p.VAR_POSITIONAL for p in params) and not required:
        return False
    if not positional:
        raise ValueError("loss_fn must take loss_fn(batch) or loss_fn(outputs, targets), got one with no positional")
    return len(required) <= 1
