"""The model zoo: MLP, small CNN, PreResNet-32, VGG-16/19 and ResNet-32, each with bn / gn / none
normalization and P1's scale-invariant form (see :mod:`svag.models.norm`).

Every model takes the shape of one sample: ``(d,)`` vectors (MLP only), ``(C, L)`` 1-D signals
such as MNIST-1D's ``(1, 40)``, or ``(C, H, W)`` images; the conv layers are 1-D or 2-D
accordingly. Models are plain ``nn.Module`` compositions whose only state is parameters and
buffers (so ``torch.func.functional_call``/``vmap`` over stacked replicas work), and each has its
classifier as ``model.head``. Initialization is PyTorch's default: call ``torch.manual_seed``
before :func:`build_model` for a reproducible model.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from svag.models import plugin
from svag.models.cnn import SmallCNN
from svag.models.mlp import MLP
from svag.models.norm import GN_GROUPS, NORMS, SCALE_INVARIANT_EPS, check_norm, check_width, gn_groups
from svag.models.preresnet import PreResNet
from svag.models.resnet import ResNet
from svag.models.vgg import VGG
from svag.plugins import is_spec

__all__ = [
    "GN_GROUPS",
    "MLP",
    "MODELS",
    "NORMS",
    "SCALE_INVARIANT_EPS",
    "VGG",
    "PreResNet",
    "ResNet",
    "SmallCNN",
    "build_model",
    "default_device",
    "gn_groups",
    "trainable_parameters",
]

MODELS: tuple[str, ...] = ("mlp", "cnn", "preresnet32", "vgg16", "vgg19", "resnet32")


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if (
        shape is None
        or not 1 <= len(shape) <= 3
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ValueError(
            "input_shape must be the shape of one sample, (d,), (C, L) or (C, H, W) with "
            f"positive integer sides, got {input_shape!r}"
        )
    return tuple(int(s) for s in shape)


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    norm: str = "bn",
    scale_invariant: bool = False,
    width: float = 1.0,
) -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`) for samples of shape ``input_shape``.

    Args:
        name: "mlp", "cnn", "preresnet32", "vgg16", "vgg19" or "resnet32".
        input_shape: shape of one sample; conv models need (C, L) or (C, H, W).
        num_classes: number of logits.
        norm: "bn" (BatchNorm), "gn" (GroupNorm, 8 groups) or "none".
        scale_invariant: P1's form: non-affine norms after every weight layer, no biases
            before them, last linear layer frozen at init (needs ``norm != "none"``).
        width: channel/width multiplier (> 0); layer widths are ``round(base·width)``, each >= 1
            (a width that leaves a layer below one channel is refused).

    Returns:
        The model, in train mode, mapping ``(batch, *input_shape)`` to ``(batch, num_classes)``.

    ``name`` may also be a plug-in, ``package.module:callable`` or ``path/to/file.py:callable``
    (:mod:`svag.models.plugin`; :mod:`svag.plugins` says what the callable receives).
    """
    if is_spec(name):
        return plugin.build_model(name, input_shape=_check_shape(input_shape), num_classes=num_classes, norm=norm,
                                  scale_invariant=scale_invariant, width=width)  # fmt: skip
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    check_norm(norm, scale_invariant)
    width = check_width(width)
    shape = _check_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    kwargs = {"norm": norm, "scale_invariant": bool(scale_invariant), "width": width}
    if name == "mlp":
        return MLP(shape, int(num_classes), **kwargs)
    if name == "cnn":
        return SmallCNN(shape, int(num_classes), **kwargs)
    if name in ("vgg16", "vgg19"):
        return VGG(name, shape, int(num_classes), **kwargs)
    cls = PreResNet if name == "preresnet32" else ResNet
    return cls(shape, int(num_classes), blocks=5, name=name, **kwargs)


def default_device() -> torch.device:
    """CUDA if available, else Apple MPS if available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters SGD/SVAG updates: those with ``requires_grad`` (not the frozen head)."""
    return [p for p in model.parameters() if p.requires_grad]
