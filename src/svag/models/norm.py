"""Normalization (bn / gn / none), P1's scale-invariant form, and dimension-generic layers.

Every model of the zoo builds its layers here, so the rules below hold for all of them.

**Bias.** A conv/linear layer has a bias only in an unnormalized net (``norm="none"``); with a
normalization no weight layer has a bias (the classifier head excepted), as in the CIFAR
ResNets. A bias right before BatchNorm is cancelled by its mean subtraction anyway.

**Scale invariance** (P1 §3, after Li & Arora 2020): with ``scale_invariant=True`` every weight
layer is followed by a normalization *without* affine parameters, and the last linear layer is
frozen at its initialization. Then for every weight tensor ``W`` but the head's,

.. math::  f(x;\\, cW) = f(x;\\, W)  \\quad \\forall c > 0,

because ``Norm(c·z) = Norm(z)`` for the layer's pre-activation ``z = W * h`` (batch statistics
in train mode; in eval mode the running statistics scale with ``c`` too). So with weight decay
the norm ‖W‖ is set by the balance of gradient noise and decay, which is the regime of P1's
necessary condition.

**eps.** P1 uses ``eps = 0``. This code uses :data:`SCALE_INVARIANT_EPS` ``= 1e-12`` instead:
PyTorch rejects ``eps = 0`` for BatchNorm in train mode, and a constant channel or group (a
ReLU-dead input, one value per channel) gives ``0/0 = NaN`` with ``eps = 0``, while ``1e-12``
maps it to 0. The invariance error is ``eps / (2 Var z)`` relative, below float32 resolution
(6e-8) as long as ``Var z > 1e-5``, i.e. ‖W‖ stays within ~300× of its initial scale.
Outside scale-invariant mode the norms keep PyTorch's defaults (affine, ``eps = 1e-5``).

**GroupNorm** (Wu & He 2018) uses :data:`GN_GROUPS` ``= 8`` groups as in P1; a channel count
not divisible by 8 (small width multipliers) gets the largest divisor ≤ 8 (see
:func:`gn_groups`), e.g. 12 → 6, 13 → 1 (layer norm over channels and positions).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from torch import nn

__all__ = [
    "GN_GROUPS",
    "NORMS",
    "SCALE_INVARIANT_EPS",
    "adaptive_avg_pool",
    "check_norm",
    "check_width",
    "classifier",
    "conv",
    "freeze_",
    "gn_groups",
    "make_norm",
    "max_pool",
    "scaled",
    "spatial_dims",
]

NORMS: tuple[str, ...] = ("bn", "gn", "none")
GN_GROUPS = 8  # groups of GroupNorm, as in P1's GN runs
SCALE_INVARIANT_EPS = 1e-12  # eps of the non-affine norms in scale-invariant mode (P1: 0)


def check_norm(norm: str, scale_invariant: bool = False) -> str:
    """Return ``norm`` if it is one of :data:`NORMS` (and, when scale-invariant, not "none")."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if scale_invariant and norm == "none":
        raise ValueError(
            "scale_invariant=True needs a normalization after every weight layer: "
            f"norm must be 'bn' or 'gn', got {norm!r}"
        )
    return norm


def check_width(width: float) -> float:
    """Return ``width`` as a float, or raise unless it is a finite real number > 0."""
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not math.isfinite(width):
        raise ValueError(f"width must be a finite real number > 0, got {width!r}")
    if width <= 0:
        raise ValueError(f"width must be a finite real number > 0, got {width!r}")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """Channels of a layer with base count ``channels`` under width multiplier ``width``:
    ``round(channels·width)``; a width that leaves a layer less than one channel is refused."""
    if channels * width < 1:
        raise ValueError(
            f"width {width:g} leaves a layer of {channels} channels (at width 1) with {channels * width:.3g} < 1; "
            f"this model needs width >= 1/{channels} = {1 / channels:.4g}"
        )
    return max(1, round(channels * width))


def gn_groups(channels: int, max_groups: int = GN_GROUPS) -> int:
    """Number of GroupNorm groups: ``max_groups`` if it divides ``channels``, else the largest
    divisor of ``channels`` that is ≤ ``max_groups``."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def spatial_dims(input_shape: Sequence[int], model: str) -> int:
    """1 for a (C, L) signal, 2 for a (C, H, W) image; a clear error for anything else."""
    if len(input_shape) == 2:
        return 1
    if len(input_shape) == 3:
        return 2
    hint = ": use 'mlp' for vector inputs" if len(input_shape) == 1 else ""
    raise ValueError(
        f"model {model!r} needs input_shape (C, L) for 1-D signals or (C, H, W) for images, "
        f"got {tuple(input_shape)}{hint}"
    )


def make_norm(norm: str, channels: int, dims: int, scale_invariant: bool = False) -> nn.Module:
    """The normalization of ``channels`` features after a weight layer.

    ``dims`` is 0 for (N, C) features, 1 for (N, C, L) signals, 2 for (N, C, H, W) images.
    "bn": BatchNorm (Ioffe & Szegedy 2015) over the batch and positions of each channel;
    "gn": GroupNorm over :func:`gn_groups` channel groups and the positions of each sample;
    "none": identity. Scale-invariant: no affine parameters, ``eps = SCALE_INVARIANT_EPS``.
    """
    check_norm(norm, scale_invariant)
    kwargs: dict = {"affine": False, "eps": SCALE_INVARIANT_EPS} if scale_invariant else {}
    if norm == "bn":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, **kwargs)
    if norm == "gn":
        return nn.GroupNorm(gn_groups(channels), channels, **kwargs)
    return nn.Identity()


def conv(dims: int, c_in: int, c_out: int, kernel: int, stride: int = 1, *, bias: bool) -> nn.Conv1d | nn.Conv2d:
    """A ``kernel``-wide convolution with "same" padding (``kernel // 2``) in 1-D or 2-D."""
    cls = nn.Conv2d if dims == 2 else nn.Conv1d
    return cls(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)


def max_pool(dims: int, size: Sequence[int]) -> tuple[nn.Module, tuple[int, ...]]:
    """A 2× max pool, or the identity where a side is already < 2 (so it never shrinks to 0).

    Returns the layer and the spatial size after it.
    """
    if min(size) < 2:
        return nn.Identity(), tuple(size)
    return (nn.MaxPool2d(2) if dims == 2 else nn.MaxPool1d(2)), tuple(s // 2 for s in size)


def adaptive_avg_pool(dims: int) -> nn.Module:
    """Global average pooling to one position per channel."""
    return nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)


def freeze_(module: nn.Module) -> nn.Module:
    """Freeze ``module``'s parameters at their current values (``requires_grad=False``)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def classifier(in_features: int, num_classes: int, scale_invariant: bool = False) -> nn.Linear:
    """The last linear layer (with bias); frozen at its initialization when scale-invariant (P1)."""
    head = nn.Linear(in_features, num_classes)
    return freeze_(head) if scale_invariant else head
