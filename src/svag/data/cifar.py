"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the "python version" files.

``root`` may be the extracted folder itself (``cifar-10-batches-py`` / ``cifar-100-python``), a
folder holding it, the archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``), or a
folder holding the archive; by default it is the cache folder (``$SVAG_CACHE`` or
``~/.cache/svag``). CIFAR-10: ``data_batch_1`` … ``data_batch_5`` and ``test_batch``; CIFAR-100:
``train`` and ``test`` (the ``fine_labels``, 100 classes). Each file is a pickled dict whose
``b"data"`` is a uint8 array ``(N, 3072)`` (1024 red, 1024 green, 1024 blue values, rows in
order) and whose ``b"labels"`` / ``b"fine_labels"`` is a list of N ints.

The pickles are read with a restricted unpickler that only rebuilds numpy arrays, lists, dicts,
strings and numbers; any other global in the file is refused (a pickle can run code).

Samples are ``(n, 3, 32, 32)`` float32, scaled to ``[0, 1]`` and standardized per channel with
the mean and standard deviation of the training images used. ``augment`` is
:func:`~svag.data.augment.random_crop_flip` (crop 32 with 4 pixels of padding, horizontal flip),
padding with black (the standardized value of a 0 pixel), as the usual raw-image recipe does.
"""

from __future__ import annotations

import codecs
import functools
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svag.data.augment import random_crop_flip
from svag.data.base import ArrayDataset, DataError, default_cache_dir, seeded_subset, standardize_uint8

__all__ = ["CIFAR", "CifarSpec", "load_cifar", "unpickle_restricted"]


@dataclass(frozen=True)
class CifarSpec:
    folder: str  # the extracted folder
    archive: str  # the archive holding that folder
    train: tuple[str, ...]  # training files, in order
    test: tuple[str, ...]
    label_key: str
    num_classes: int


CIFAR = {
    "cifar10": CifarSpec(
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
        10,
    ),
    "cifar100": CifarSpec("cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "fine_labels", 100),
}

_ARRAY = np.zeros(1)
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles written by Python 3 store bytes
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def unpickle_restricted(data: bytes) -> Any:
    """``pickle.loads(data, encoding="bytes")`` allowing only numpy arrays and plain containers."""
    return _Unpickler(io.BytesIO(data), encoding="bytes").load()


def _how(spec: CifarSpec) -> str:
    return f"pass --data-root DIR holding {spec.folder}/ or {spec.archive} (the CIFAR 'python version')"


def _read_files(name: str, spec: CifarSpec, root: Path) -> dict[str, bytes]:
    """The raw bytes of every needed file, from the folder or (streamed once) from the archive."""
    wanted = spec.train + spec.test
    for folder in (root, root / spec.folder):
        if (folder / wanted[0]).is_file():
            missing = [f for f in wanted if not (folder / f).is_file()]
            if missing:
                raise DataError(f"{name}: {folder} lacks {', '.join(missing)}; {_how(spec)}")
            return {f: (folder / f).read_bytes() for f in wanted}
    archive = root if root.is_file() else root / spec.archive
    if not archive.is_file():
        raise DataError(f"{name}: no {spec.folder}/ or {spec.archive} in {root}; {_how(spec)}")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                parent, _, base = member.name.rpartition("/")
                if member.isfile() and base in wanted and parent.endswith(spec.folder):
                    found[base] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (OSError, EOFError, tarfile.TarError) as err:
        raise DataError(f"{name}: cannot read the archive {archive} ({type(err).__name__}); {_how(spec)}") from None
    missing = [f for f in wanted if f not in found]
    if missing:
        raise DataError(f"{name}: the archive {archive} lacks {spec.folder}/{', '.join(missing)}; {_how(spec)}")
    return found


def _parse(name: str, spec: CifarSpec, file: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(data (N, 3, 32, 32) uint8, labels (N,) int64)`` of one file, checked."""
    bad = f"{name}: {file} is not a CIFAR batch"
    try:
        obj = unpickle_restricted(raw)
    except Exception as err:  # corrupt pickles raise many types
        raise DataError(f"{bad} ({type(err).__name__}: {err}); {_how(spec)}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{bad} (a {type(obj).__name__}, expected a dict); {_how(spec)}")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = obj.get("data"), obj.get(spec.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{bad} (b'data' is {got}, expected uint8 (N, 3072)); {_how(spec)}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (len(data),):
        raise DataError(f"{bad} (b'{spec.label_key}' must be {len(data)} integers); {_how(spec)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{bad} (labels outside 0..{spec.num_classes - 1}); {_how(spec)}")
    return data.reshape(len(data), 3, 32, 32), labels


def load_cifar(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> ArrayDataset:
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``) as an :class:`ArrayDataset`."""
    spec = CIFAR[name]
    root = Path(root).expanduser() if root is not None else default_cache_dir()
    raw = _read_files(name, spec, root)
    splits: dict[str, tuple[np.ndarray, torch.Tensor]] = {}
    for split, files, size, split_seed in (("train", spec.train, n_train, seed), ("test", spec.test, n_test, seed + 1)):
        parts = [_parse(name, spec, f, raw.pop(f)) for f in files]
        x = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        idx = seeded_subset(len(x), size, split_seed, what=f"{name} n_{split}")
        if idx is not None:
            x, y = x[idx.numpy()], y[idx.numpy()]
        splits[split] = (x, torch.from_numpy(y))
    train_x, test_x, mean, std = standardize_uint8(splits["train"][0], splits["test"][0], channels=3)
    black = (-mean / std).to(torch.float32)
    augment = functools.partial(random_crop_flip, padding=4, fill=black)
    return ArrayDataset(name, train_x, splits["train"][1], test_x, splits["test"][1], spec.num_classes, augment)
