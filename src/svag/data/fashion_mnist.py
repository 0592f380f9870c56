"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its four IDX files.

The files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``) are read from ``root``, by default
Debian's package location :data:`DEBIAN_ROOT` (package ``dataset-fashion-mnist``). Images are
28×28 uint8 in 10 classes, 60000 train / 10000 test; samples are returned as ``(n, 1, 28, 28)``
float32, scaled to ``[0, 1]`` and standardized with the mean and standard deviation of the
training images used. ``n_train`` / ``n_test`` pick uniformly random subsets, fixed by ``seed``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from svag.data.base import ArrayDataset, DataError, seeded_subset, standardize_uint8
from svag.data.idx import read_idx

__all__ = ["DEBIAN_ROOT", "FILES", "load_fashion_mnist"]

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
NUM_CLASSES = 10
_HOW = "install Debian's dataset-fashion-mnist or pass --data-root DIR holding the four IDX files"


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DataError(f"fashion-mnist: no {stem}(.gz) in {root}; {_HOW}")


def _read(root: Path, key: str) -> np.ndarray:
    path = _find(root, FILES[key])
    try:
        arr = read_idx(path)
    except DataError as err:
        raise DataError(f"fashion-mnist: {err}; {_HOW}") from None
    is_images = key.endswith("x")
    want = "(n, 28, 28) uint8 images" if is_images else "(n,) uint8 labels"
    ok_shape = arr.shape[1:] == (28, 28) if is_images else arr.ndim == 1
    if arr.dtype != np.uint8 or not ok_shape:
        raise DataError(f"fashion-mnist: {path} holds {arr.dtype} {arr.shape}, expected {want}; {_HOW}")
    if not is_images and len(arr) and int(arr.max()) >= NUM_CLASSES:
        raise DataError(f"fashion-mnist: {path} has label {int(arr.max())}, expected 0..9; {_HOW}")
    return arr


def load_fashion_mnist(
    root: str | os.PathLike | None = None, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0
) -> ArrayDataset:
    """Fashion-MNIST as an :class:`ArrayDataset` (see the module docstring)."""
    root = Path(root).expanduser() if root is not None else DEBIAN_ROOT
    if not root.is_dir():
        raise DataError(f"fashion-mnist: folder {root} does not exist; {_HOW}")
    splits = {}
    for split, size, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x = _read(root, f"{split}_x")
        y = _read(root, f"{split}_y")
        if len(x) != len(y):
            raise DataError(f"fashion-mnist: {split} has {len(x)} images but {len(y)} labels in {root}; {_HOW}")
        idx = seeded_subset(len(x), size, split_seed, what=f"fashion-mnist n_{split}")
        if idx is not None:
            x, y = x[idx.numpy()], y[idx.numpy()]
        splits[split] = (x.reshape(len(x), 1, 28, 28), torch.from_numpy(y.astype(np.int64)))
    train_x, test_x, _, _ = standardize_uint8(splits["train"][0], splits["test"][0], channels=1)
    return ArrayDataset("fashion-mnist", train_x, splits["train"][1], test_x, splits["test"][1], NUM_CLASSES)
