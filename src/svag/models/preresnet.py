"""PreResNet-32: the pre-activation CIFAR ResNet of P1's main experiments.

He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks", 2016: three stages of
five basic blocks (16, 32, 64 channels × ``width``; stride 2 at the start of stages 2 and 3),
each block ``x + Conv(ReLU(Norm(Conv(ReLU(Norm(x))))))``, a projection shortcut
(1×1 conv on the pre-activated input) where the shape changes, and
``Norm → ReLU → global AvgPool → Linear`` at the end. 0.47M parameters at width 1 on CIFAR.

Scale-invariant form (P1 §3). A residual sum ``x + F(x)`` is not invariant to the scale of
``F``'s last conv, nor of the stem conv or a projection shortcut, whose outputs feed the
residual stream unnormalized. So that *every* weight layer is followed by a normalization,
``scale_invariant=True`` adds a non-affine norm after the stem, after each block's second conv
and after each projection shortcut; then each block's output is a sum of normalized (scale-free)
terms and ``f(cW) = f(W)`` for every weight tensor but the frozen head.
"""

from __future__ import annotations

import torch
from torch import nn

from svag.models.norm import adaptive_avg_pool, conv, make_norm
from svag.models.resnet import CifarResNet

__all__ = ["PreActBlock", "PreResNet"]


def _post_norm(norm: str, channels: int, dims: int, scale_invariant: bool) -> nn.Module:
    """The extra norm of the scale-invariant form (identity otherwise)."""
    return make_norm(norm, channels, dims, True) if scale_invariant else nn.Identity()


class PreActBlock(nn.Module):
    """A pre-activation basic block: ``out = N3(C2(ReLU(N2(C1(a))))) + S(a or x)``, ``a = ReLU(N1(x))``.

    ``N3`` and the norm inside ``S`` exist only in scale-invariant form; ``S`` is the identity
    on ``x`` when the shape is kept and ``Norm(Conv1×1(a))`` otherwise.
    """

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int, norm: str, scale_invariant: bool) -> None:
        super().__init__()
        bias = norm == "none"
        self.norm1 = make_norm(norm, c_in, dims, scale_invariant)
        self.conv1 = conv(dims, c_in, c_out, 3, stride, bias=bias)
        self.norm2 = make_norm(norm, c_out, dims, scale_invariant)
        self.conv2 = conv(dims, c_out, c_out, 3, bias=bias)
        self.norm3 = _post_norm(norm, c_out, dims, scale_invariant)
        self.projection = stride != 1 or c_in != c_out
        if self.projection:
            self.shortcut = nn.Sequential(
                conv(dims, c_in, c_out, 1, stride, bias=bias),
                _post_norm(norm, c_out, dims, scale_invariant),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.norm1(x))
        residual = self.shortcut(a) if self.projection else x
        out = self.conv2(torch.relu(self.norm2(self.conv1(a))))
        return self.norm3(out) + residual


class PreResNet(CifarResNet):
    """PreResNet-(6n+2) for (C, L) signals or (C, H, W) images; ``blocks=5`` is PreResNet-32.

    Stem ``Conv`` (then a norm in scale-invariant form), :class:`PreActBlock` stages, and
    ``Norm → ReLU → global AvgPool`` before the head.
    """

    block = PreActBlock
    default_name = "preresnet32"

    def stem_norm(self, norm: str, channels: int, dims: int, scale_invariant: bool) -> list[nn.Module]:
        return [_post_norm(norm, channels, dims, scale_invariant)]

    def final_layers(self, norm: str, channels: int, dims: int, scale_invariant: bool) -> list[nn.Module]:
        return [make_norm(norm, channels, dims, scale_invariant), nn.ReLU(), adaptive_avg_pool(dims), nn.Flatten()]
