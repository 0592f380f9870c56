"""ResNet-32: the standard post-activation CIFAR ResNet (He, Zhang, Ren & Sun 2016, §4.2).

Three stages of five basic blocks (16, 32, 64 channels × ``width``), each block
``ReLU(Norm(Conv(ReLU(Norm(Conv(x))))) + S(x))`` with the parameter-free shortcut "option A"
(subsample by the stride, zero-pad the new channels), a ``Conv → Norm → ReLU`` stem, and
``global AvgPool → Linear`` at the end: 0.46M parameters at width 1 on CIFAR.

In P1 this is the net that is *not* scale-invariant: build it with ``scale_invariant=False``
(affine norms, trainable head) to reproduce that run. ``scale_invariant=True`` is accepted as
for the other models (non-affine norms, frozen head); since here every conv is directly followed
by a norm and the shortcut has no weights, the result is then scale-invariant too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from svag.models.norm import adaptive_avg_pool, classifier, conv, make_norm, scaled, spatial_dims

__all__ = ["STAGE_CHANNELS", "BasicBlock", "CifarResNet", "PadShortcut", "ResNet"]

STAGE_CHANNELS = (16, 32, 64)  # channels of the three stages at width 1 (He et al. 2016, §4.2)


class PadShortcut(nn.Module):
    """Shortcut option A: ``x[..., ::stride]`` with ``c_out − c_in`` zero channels, split evenly
    before and after (He et al. 2016, §4.2)."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.dims, self.stride = dims, stride
        extra = c_out - c_in
        self.pad = (0, 0) * dims + (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., :: self.stride, :: self.stride] if self.dims == 2 else x[..., :: self.stride]
        return F.pad(x, self.pad)


class BasicBlock(nn.Module):
    """``ReLU(N2(C2(ReLU(N1(C1(x))))) + S(x))``."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int, norm: str, scale_invariant: bool) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = conv(dims, c_in, c_out, 3, stride, bias=bias)
        self.norm1 = make_norm(norm, c_out, dims, scale_invariant)
        self.conv2 = conv(dims, c_out, c_out, 3, bias=bias)
        self.norm2 = make_norm(norm, c_out, dims, scale_invariant)
        keep = stride == 1 and c_in == c_out
        self.shortcut = nn.Identity() if keep else PadShortcut(dims, c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


def residual_stages(
    block: type[nn.Module], dims: int, widths: Sequence[int], blocks: int, norm: str, scale_invariant: bool
) -> nn.Sequential:
    """``blocks`` residual blocks per width, the first of every stage after the first with stride 2
    (He et al. 2016, §4.2: 6n+2 layers for n = ``blocks``)."""
    layers: list[nn.Module] = []
    c_in = widths[0]
    for stage, c_out in enumerate(widths):
        for b in range(blocks):
            layers.append(block(dims, c_in, c_out, 2 if stage > 0 and b == 0 else 1, norm, scale_invariant))
            c_in = c_out
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """The frame of the CIFAR ResNets (He et al. 2016, §4.2): ``stem → blocks → final → head``.

    ``stem``: a 3×3 conv, then :meth:`stem_norm`; ``blocks``: :func:`residual_stages` of the class's
    ``block`` over :data:`STAGE_CHANNELS` × ``width`` (6n+2 layers for n = ``blocks``); ``final``:
    :meth:`final_layers`, down to one vector per sample; ``head``: the classifier (frozen when
    scale-invariant). Built in this order, so the parameters come in it. :class:`ResNet` and
    :class:`~svag.models.preresnet.PreResNet` say which block, stem norm and final layers; ``name``
    (default: the class's ``default_name``) is the model's name in error messages.
    """

    block: type[nn.Module]
    default_name: str

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        norm: str = "bn",
        scale_invariant: bool = False,
        width: float = 1.0,
        blocks: int = 5,
        name: str | None = None,
    ) -> None:
        super().__init__()
        dims = spatial_dims(input_shape, self.default_name if name is None else name)
        c = [scaled(base, width) for base in STAGE_CHANNELS]
        stem_conv = conv(dims, input_shape[0], c[0], 3, bias=norm == "none")
        self.stem = nn.Sequential(stem_conv, *self.stem_norm(norm, c[0], dims, scale_invariant))
        self.blocks = residual_stages(self.block, dims, c, blocks, norm, scale_invariant)
        self.final = nn.Sequential(*self.final_layers(norm, c[-1], dims, scale_invariant))
        self.head = classifier(c[-1], num_classes, scale_invariant)

    def stem_norm(self, norm: str, channels: int, dims: int, scale_invariant: bool) -> list[nn.Module]:
        """The layers after the stem's conv."""
        raise NotImplementedError

    def final_layers(self, norm: str, channels: int, dims: int, scale_invariant: bool) -> list[nn.Module]:
        """The layers between the last block and the head, ending in ``(batch, channels)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.final(self.blocks(self.stem(x))))


class ResNet(CifarResNet):
    """ResNet-(6n+2) for (C, L) signals or (C, H, W) images; ``blocks=5`` is ResNet-32.

    Stem ``Conv → Norm → ReLU``, :class:`BasicBlock` stages, ``global AvgPool`` before the head.
    """

    block = BasicBlock
    default_name = "resnet32"

    def stem_norm(self, norm: str, channels: int, dims: int, scale_invariant: bool) -> list[nn.Module]:
        return [make_norm(norm, channels, dims, scale_invariant), nn.ReLU()]

    def final_layers(self, norm: str, channels: int, dims: int, scale_invariant: bool) -> list[nn.Module]:
        return [adaptive_avg_pool(dims), nn.Flatten()]
