"""Training-time augmentation for CIFAR: random crop with padding and horizontal flip, in torch.

Vectorized over the batch and driven only by the ``torch.Generator`` passed in, so a run that
saves and restores that generator resumes with identical augmentations. The random numbers are
drawn on the generator's device (the CPU for the runner's generators) and then moved to the
batch's device, so the same CPU generator state gives the same crops on every device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator, *, padding: int = 4, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """Pad by ``padding`` pixels, crop back to ``H×W`` at a random offset, flip left-right with p = ½.

    The standard CIFAR recipe (He et al. 2016; P1's training code): ``RandomCrop(32, padding=4)``
    then ``RandomHorizontalFlip()``, one independent draw per sample.

    Draw order (a reference implementation may replay it): ``offsets = torch.randint(0, 2·padding + 1,
    (n, 2), generator=generator)`` (row offset, column offset), then ``flips = torch.randint(0, 2,
    (n,), generator=generator)``. Sample ``i`` of the output is
    ``padded[i, :, r:r+H, c:c+W]`` with ``(r, c) = offsets[i]``, reversed along the last axis
    when ``flips[i] == 1``.

    Args:
        x: a batch ``(n, C, H, W)``.
        generator: the generator that supplies all the randomness (normally a CPU one).
        padding: pixels of padding on each side (0: flips only).
        fill: per-channel padding value of shape ``(C,)``; default 0. For standardized images, pass
            the value of a black pixel, ``−μ_c/σ_c``, to match padding the raw image with zeros.

    Returns:
        A new tensor of the shape, dtype and device of ``x``.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of images (n, C, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding}")
    n, c, h, w = x.shape
    gdev = generator.device
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=gdev).to(x.device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=gdev).to(x.device).bool()
    hp, wp = h + 2 * padding, w + 2 * padding
    if fill is None:
        padded = F.pad(x, (padding, padding, padding, padding))
    else:
        padded = fill.to(x.device, x.dtype).view(1, c, 1, 1).repeat(n, 1, hp, wp)
        padded[:, :, padding : padding + h, padding : padding + w] = x
    cols = torch.arange(w, device=x.device)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[:, 1:2]  # (n, W), reversed when flipped
    rows = torch.arange(h, device=x.device) + offsets[:, 0:1]  # (n, H)
    # one gather over the flattened padded image: out[i, :, y, x] = padded[i, :, rows[i, y], cols[i, x]]
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, hp * wp).gather(2, flat).view(n, c, h, w)
