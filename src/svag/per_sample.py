"""Per-sample gradients with ``torch.func`` and the exact ``G`` and ``N`` they give.

``functional_call`` + ``grad`` + ``vmap``: one vectorized call gives the gradient of every
sample's own loss. For a model whose forward treats samples independently (no BatchNorm in
train mode; GroupNorm, LayerNorm, InstanceNorm are fine) these are exact, and from all ``n`` of
them the signal and the noise at any batch size follow in closed form
(:func:`noise_from_per_sample_grads`). The slow, obviously correct loop over single samples
that checks this module lives in ``tests/test_per_sample.py``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.func import functional_call, grad, vmap
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "PerSampleMoments",
    "check_per_sample_defined",
    "finite_population_factor",
    "flatten_per_sample",
    "noise_from_per_sample_grads",
    "per_sample_grads",
    "per_sample_noise",
]

LossFn = Callable[[Any, Any], torch.Tensor]


def check_per_sample_defined(model: torch.nn.Module) -> None:
    """Raise ``ValueError`` if the model has a BatchNorm layer in train mode.

    In train mode BatchNorm normalizes with the batch's statistics, so a sample's loss depends
    on the other samples of its batch and a per-sample gradient is not defined.
    """
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.training:
            raise ValueError(
                f"per-sample gradients are not defined for BatchNorm in train mode (module "
                f"{name or '<root>'!r} is {type(module).__name__}); use the minibatch estimator: "
                f"measure_noise(..., method='minibatch')"
            )


def per_sample_grads(model: torch.nn.Module, loss_fn: LossFn, inputs: Any, targets: Any) -> list[torch.Tensor]:
    """Gradient of each sample's loss ``loss_fn(model(x_i[None]), y_i[None])``.

    Returns one tensor of shape ``(n, *p.shape)`` per trainable parameter ``p`` (order of
    ``model.named_parameters()``, frozen parameters excluded). Random layers (dropout) draw a
    different mask per sample. Raises ``ValueError`` for BatchNorm in train mode.
    """
    check_per_sample_defined(model)
    named = dict(model.named_parameters())
    trainable = {k: v.detach() for k, v in named.items() if v.requires_grad}
    frozen = {k: v.detach() for k, v in named.items() if not v.requires_grad}
    buffers = dict(model.named_buffers())
    if not trainable:
        raise ValueError("model has no trainable parameters (all have requires_grad=False)")

    def sample_loss(params: dict[str, torch.Tensor], x: Any, y: Any) -> torch.Tensor:
        out = functional_call(model, (params, frozen, buffers), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0), randomness="different")(trainable, inputs, targets)
    return [grads[k] for k in trainable]


def flatten_per_sample(grads: list[torch.Tensor]) -> torch.Tensor:
    """``(n, d)`` matrix of per-sample gradients from :func:`per_sample_grads`' list."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)


def finite_population_factor(n: int, batch_size: int) -> float:
    r"""``(n − B)/(n − 1)``: the covariance of the mean of ``B`` distinct samples drawn without replacement
    from ``n`` is this times that of ``B`` draws with replacement (survey sampling; 0 at ``n = B = 1``)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be an integer in [1, {n}] (at most the n = {n} samples), got {batch_size!r}")
    return (n - batch_size) / (n - 1) if n > 1 else 0.0


def _noise_at_batch(mean: torch.Tensor, m2: float, n: int, batch_size: int, finite_population: bool):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if finite_population and batch_size > n:
        raise ValueError(f"batch_size must be <= n = {n} with finite_population=True, got {batch_size}")
    G = float(mean @ mean)
    N = (m2 / n) / batch_size
    if finite_population:
        N = N * finite_population_factor(n, batch_size)
    return G, N


def noise_from_per_sample_grads(
    grads: torch.Tensor, batch_size: int, *, finite_population: bool = False
) -> tuple[float, float]:
    r"""Exact ``G`` and ``N`` at batch size ``B`` from all ``n`` per-sample gradients ``g_i``.

    .. math::  μ = \frac1n\sum_i g_i,\quad G = ‖μ‖^2,\quad
               \operatorname{Tr}Σ_1 = \frac1n \sum_i ‖g_i - μ‖^2,\quad
               N_B = \frac{\operatorname{Tr}Σ_1}{B}\,\Big[\frac{n-B}{n-1}\Big]

    ``N_B`` is the trace of the covariance of the mean gradient of a batch of ``B`` points drawn
    i.i.d. with replacement (``finite_population=False``) or ``B`` distinct points drawn
    uniformly without replacement (``True``: the finite-population factor ``(n−B)/(n−1)``).
    Source: P1 (``Σ ≈ Σ_1/B``) and the standard survey-sampling variance.
    """
    if not isinstance(grads, torch.Tensor) or grads.dim() != 2 or grads.shape[0] < 1:
        raise ValueError(f"grads must be an (n, d) tensor with n >= 1, got {getattr(grads, 'shape', grads)!r}")
    g = grads.detach().to(torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError("per-sample gradients must be finite, got a non-finite entry (nan or inf)")
    mean = g.mean(0)
    m2 = float(((g - mean) ** 2).sum())
    return _noise_at_batch(mean, m2, g.shape[0], batch_size, finite_population)


class PerSampleMoments:
    """Streaming mean and sum of squared deviations of per-sample gradients (Chan et al. merge).

    Add chunks of per-sample gradients; memory is one ``d``-vector (float64), not ``n·d``.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2 = 0.0

    def add(self, grads: list[torch.Tensor]) -> None:
        """Merge a chunk: a list of ``(k, *shape)`` tensors as from :func:`per_sample_grads`."""
        k = grads[0].shape[0]
        means, m2 = [], 0.0
        for g in grads:
            flat = g.detach().reshape(k, -1).to(torch.float64)
            if not torch.isfinite(flat).all():
                raise ValueError("per-sample gradients must be finite, got a non-finite entry (nan or inf)")
            mu = flat.mean(0)
            m2 += float(((flat - mu) ** 2).sum())
            means.append(mu)
        mean = torch.cat(means)
        if self.mean is None:
            self.n, self.mean, self.m2 = k, mean, m2
            return
        total = self.n + k
        delta = mean - self.mean
        self.m2 += m2 + float(delta @ delta) * self.n * k / total
        self.mean = self.mean + delta * (k / total)
        self.n = total

    def noise(self, batch_size: int, *, finite_population: bool = False) -> tuple[float, float]:
        """``(G, N)`` at batch size ``B`` as in :func:`noise_from_per_sample_grads`."""
        if self.mean is None:
            raise ValueError("PerSampleMoments.noise needs at least 1 sample, got 0")
        return _noise_at_batch(self.mean, self.m2, self.n, batch_size, finite_population)


def per_sample_noise(
    model: torch.nn.Module,
    loss_fn: LossFn,
    chunks: Iterable[tuple[Any, Any]],
    batch_size: int,
    *,
    finite_population: bool = False,
) -> tuple[float, float, int]:
    """Exact ``(G, N, n)`` over a data set given as chunks ``(inputs, targets)`` covering it once.

    See :func:`noise_from_per_sample_grads` for the equations; the model is used as is (set its
    mode before calling).
    """
    moments = PerSampleMoments()
    for inputs, targets in chunks:
        moments.add(per_sample_grads(model, loss_fn, inputs, targets))
    G, N = moments.noise(batch_size, finite_population=finite_population)
    return G, N, moments.n
