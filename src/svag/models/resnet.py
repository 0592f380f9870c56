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

__all__ = ["BasicBlock", "PadShortcut", "ResNet"]


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


class ResNet(nn.Module):
    """ResNet-(6n+2) for (C, L) signals or (C, H, W) images; ``blocks=5`` is ResNet-32."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        norm: str = "bn",
        scale_invariant: bool = False,
        width: float = 1.0,
        blocks: int = 5,
        name: str = "resnet32",
    ) -> None:
        super().__init__()
        dims = spatial_dims(input_shape, name)
        c = [scaled(base, width) for base in (16, 32, 64)]
        self.stem = nn.Sequential(
            conv(dims, input_shape[0], c[0], 3, bias=norm == "none"),
            make_norm(norm, c[0], dims, scale_invariant),
            nn.ReLU(),
        )
        self.blocks = residual_stages(BasicBlock, dims, c, blocks, norm, scale_invariant)
        c_in = c[-1]
        self.pool = nn.Sequential(adaptive_avg_pool(dims), nn.Flatten())
        self.head = classifier(c_in, num_classes, scale_invariant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))))
