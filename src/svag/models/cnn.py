"""A small convolutional network for MNIST-1D (1-D signals) and Fashion-MNIST (images)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from svag.models.norm import classifier, conv, make_norm, max_pool, scaled, spatial_dims

__all__ = ["SmallCNN"]


class SmallCNN(nn.Sequential):
    """``[Conv3 → Norm → ReLU → MaxPool2] × 2 → Flatten → Linear``, 32·width and 64·width channels.

    Works on (C, L) signals (Conv1d) and (C, H, W) images (Conv2d), chosen from
    ``len(input_shape)``. A pool is skipped where a side is already below 2. Parameters at
    width 1: 13k on MNIST-1D (1, 40), 50k on Fashion-MNIST (1, 28, 28).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        norm: str = "none",
        scale_invariant: bool = False,
        width: float = 1.0,
        channels: Sequence[int] = (32, 64),
    ) -> None:
        dims = spatial_dims(input_shape, "cnn")
        c_in, size = input_shape[0], tuple(input_shape[1:])
        layers: list[nn.Module] = []
        for base in channels:
            c_out = scaled(base, width)
            pool, size = max_pool(dims, size)
            layers += [
                conv(dims, c_in, c_out, 3, bias=norm == "none"),
                make_norm(norm, c_out, dims, scale_invariant),
                nn.ReLU(),
                pool,
            ]
            c_in = c_out
        layers.append(nn.Flatten())
        super().__init__(*layers)
        self.head = classifier(c_in * math.prod(size), num_classes, scale_invariant)
