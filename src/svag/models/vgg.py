"""VGG-16/19 in the CIFAR form used by P1: conv-norm-ReLU stacks, max pools, one linear layer.

Simonyan & Zisserman 2015, configurations D (16) and E (19), as adapted to 32×32 inputs: the
three fully connected layers are replaced by a single linear classifier on the 512 channels
left after five 2× pools. P1 trains VGG-16/19 with BN or GN (8 groups) in scale-invariant form,
and an unnormalized VGG-16 (``norm="none"``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from svag.models.norm import adaptive_avg_pool, classifier, conv, make_norm, max_pool, scaled, spatial_dims

__all__ = ["VGG", "VGG_CONFIGS"]

# channels of each 3×3 conv; "M" = 2× max pool
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


class VGG(nn.Sequential):
    """``[Conv3 → Norm → ReLU | MaxPool2]* → global AvgPool → Flatten → Linear``.

    Channels are multiplied by ``width``. A max pool is skipped once a side is below 2, so small
    inputs still run (MNIST-1D's length 40 pools 40→20→10→5→2→1; Fashion-MNIST's 28 stops at
    1 after four pools); the global average pool is the identity on 32×32 CIFAR inputs.
    Parameters at width 1 with BN on CIFAR: 14.7M (VGG-16), 20.0M (VGG-19).
    """

    def __init__(
        self,
        config: str,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        norm: str = "bn",
        scale_invariant: bool = False,
        width: float = 1.0,
    ) -> None:
        dims = spatial_dims(input_shape, config)
        c_in, size = input_shape[0], tuple(input_shape[1:])
        layers: list[nn.Module] = []
        for item in VGG_CONFIGS[config]:
            if item == "M":
                pool, size = max_pool(dims, size)
                layers.append(pool)
                continue
            c_out = scaled(int(item), width)
            layers += [
                conv(dims, c_in, c_out, 3, bias=norm == "none"),
                make_norm(norm, c_out, dims, scale_invariant),
                nn.ReLU(),
            ]
            c_in = c_out
        layers += [adaptive_avg_pool(dims), nn.Flatten()]
        super().__init__(*layers)
        self.head = classifier(c_in, num_classes, scale_invariant)
