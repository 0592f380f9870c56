"""What every data set shares: the :class:`ArrayDataset` container, :class:`DataError`, and the
small helpers the loaders use (argument checks, seeded subsets, exact uint8 statistics, the cache
folder).

Every loader returns whole data sets as in-memory tensors: inputs ``float32`` of shape
``(n, *input_shape)``, labels ``int64`` of shape ``(n,)``. Inputs are standardized with statistics
of the **training** samples actually used (the test set never enters preprocessing).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ArrayDataset",
    "DataError",
    "check_count",
    "default_cache_dir",
    "seeded_subset",
    "standardize_uint8",
]


class DataError(ValueError):
    """A data set is missing or malformed; the message is one line: what was expected and how to get it."""


@dataclass
class ArrayDataset:
    """A whole classification data set held in memory.

    ``augment``, when set, maps a batch of training inputs and a ``torch.Generator`` to an
    augmented batch of the same shape; it is applied to training batches only, and all its
    randomness comes from that generator (so a run resumes exactly).
    """

    name: str
    train_x: torch.Tensor  # float32, (n_train, *input_shape)
    train_y: torch.Tensor  # int64, (n_train,) or (n_train, ...) per position, values in [0, num_classes)
    test_x: torch.Tensor  # float32, (n_test, *input_shape)
    test_y: torch.Tensor  # int64, (n_test,)
    num_classes: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None  # train batches only

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dim() < 2 or y.dim() < 1 or len(x) != len(y):
                raise DataError(
                    f"{self.name}: {split} inputs must be (n, *input_shape) and labels (n,) or (n, ...), "
                    f"got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            if y.dtype != torch.int64 or not x.is_floating_point():
                raise DataError(f"{self.name}: {split} labels must be int64 and inputs float, got {y.dtype}, {x.dtype}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(
                f"{self.name}: train and test samples differ in shape: "
                f"{tuple(self.train_x.shape[1:])} vs {tuple(self.test_x.shape[1:])}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. ``(1, 40)`` for MNIST-1D or ``(3, 32, 32)`` for CIFAR."""
        return tuple(self.train_x.shape[1:])

    @property
    def label_shape(self) -> tuple[int, ...]:
        """The shape of one sample's labels: ``()`` (one class) or per position, e.g. ``(T,)`` next tokens."""
        return tuple(self.train_y.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.train_x)

    @property
    def n_test(self) -> int:
        return len(self.test_x)


def check_count(name: str, value: int | None) -> int | None:
    """Return ``value`` (``None`` or an ``int >= 1``) or raise ``DataError`` naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{name} must be an integer >= 1 or None, got {value!r}")
    return int(value)


def seeded_subset(total: int, size: int | None, seed: int, *, what: str) -> torch.Tensor | None:
    """Sorted indices of ``size`` of ``total`` samples, drawn uniformly without replacement with
    ``seed``; ``None`` when ``size`` is ``None`` or ``total`` (take everything, in file order)."""
    if size is None or size == total:
        return None
    if size > total:
        raise DataError(f"{what}: asked for {size} samples, only {total} available; pass at most {total}")
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=gen)[:size].sort().values


def standardize_uint8(
    train: np.ndarray, test: np.ndarray, channels: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale uint8 pixels to ``[0, 1]`` and standardize per channel with the training statistics.

    ``x = (u/255 − μ_c) / σ_c`` with ``μ_c``, ``σ_c`` the mean and (population) standard deviation
    of channel ``c`` of ``train/255``, computed exactly from integer sums. Arrays are
    ``(n, channels, ...)``. Returns the two float32 tensors (same shapes) and ``μ``, ``σ`` (float64, per
    channel, on the ``[0, 1]`` scale).
    """
    flat = train.reshape(len(train), channels, -1)
    count = flat.shape[0] * flat.shape[2]
    s1 = [int(v) for v in flat.sum(axis=(0, 2), dtype=np.int64)]
    s2 = [int(v) for v in np.square(flat, dtype=np.uint16).sum(axis=(0, 2), dtype=np.int64)]
    # exact in Python integers: n²·255²·var = n·Σu² − (Σu)²; a constant channel keeps σ = 1
    mean = np.array([a / count / 255.0 for a in s1])
    std = np.array([((count * b - a * a) ** 0.5) / (count * 255.0) or 1.0 for a, b in zip(s1, s2)])
    out = []
    for arr in (train, test):
        arr = np.ascontiguousarray(arr)
        arr = arr if arr.flags.writeable else arr.copy()  # torch.from_numpy warns on read-only memory
        x = torch.from_numpy(arr).to(torch.float32)
        view = x.view(len(x), channels, -1)
        scale = torch.tensor(1.0 / (255.0 * std), dtype=torch.float32).view(1, channels, 1)
        shift = torch.tensor(mean / std, dtype=torch.float32).view(1, channels, 1)
        view.mul_(scale).sub_(shift)
        out.append(x)
    return out[0], out[1], torch.from_numpy(mean), torch.from_numpy(std)


def default_cache_dir() -> Path:
    """Where generated data sets are cached: ``$SVAG_CACHE`` if set, else ``~/.cache/svag``."""
    env = os.environ.get("SVAG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "svag"
