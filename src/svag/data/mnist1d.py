"""MNIST-1D (Greydanus & Kobak 2020/2024), the embedded default data set, generated locally.

The installed ``mnist1d`` package generates the samples with ``make_dataset(args)`` from its
``get_dataset_args()`` defaults (its ``get_dataset`` download path is never used). Ten classes of
1-D signals of length 40, returned as ``(n, 1, 40)`` float32.

* **Sizes.** Defaults are the package's: 4000 train / 1000 test (``num_samples`` 5000, split 0.8).
  Other sizes generate ``num_samples = 10·⌈(n_train + n_test)/10⌉`` (the generator makes the
  same number of samples per class) and take the first ``n_train`` shuffled samples for training
  and the next ``n_test`` for testing; with the defaults this is exactly the package's standard
  split. Changing the sizes changes every sample, test set included.
* **Seed.** ``seed`` s uses generation seed ``42 + s``: seed 0 is the package's standard data set.
  The package seeds Python's and numpy's global generators; their states are restored afterwards.
* **Standardization.** The package centres and scales the signals with statistics of *all*
  generated samples, test split included; they are standardized again here with the scalar mean
  and standard deviation of the training inputs, so the test set stays out of preprocessing
  (values change by ~1e-3; inputs of mean 0 and variance 1 keep default inits and LRs sensible).
* **Cache.** The first generation is saved under ``cache_dir`` (default ``$SVAG_CACHE`` or
  ``~/.cache/svag``), keyed by the generation arguments and the package version, written to a
  temporary file then moved into place (``os.replace``). A cache file that is unreadable,
  truncated, for other arguments or fails its SHA-256 checksum is silently regenerated and
  rewritten; an unwritable cache folder only means no cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svag.data.base import ArrayDataset, DataError, default_cache_dir

__all__ = [
    "BASE_SEED",
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "generation_notice",
    "generation_overrides",
    "load_mnist1d",
]

DEFAULT_N_TRAIN, DEFAULT_N_TEST = 4000, 1000
BASE_SEED = 42  # the package's own default generation seed
NUM_CLASSES = 10
CACHE_FORMAT = 1
# the package generates ~0.3-0.7 ms a sample on one CPU core (measured: 20000 samples, 0.68 ms each on a loaded
# core), one sample at a time: past this many, a generation that is not cached takes a minute or more
NOTICE_SAMPLES = 100_000
_TENSORS = ("train_x", "train_y", "test_x", "test_y")


def generation_overrides(n_train: int, n_test: int, seed: int) -> dict[str, Any]:
    """The arguments changed from the package's ``get_dataset_args()`` defaults."""
    total = n_train + n_test
    return {"num_samples": NUM_CLASSES * math.ceil(total / NUM_CLASSES), "train_split": 1.0, "seed": BASE_SEED + seed}


def _generate(overrides: dict[str, Any], n_train: int, n_test: int) -> tuple[dict[str, torch.Tensor], dict]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for key, value in overrides.items():
        setattr(args, key, value)
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002 (the package seeds them)
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    x = torch.from_numpy(np.asarray(raw["x"], dtype=np.float32)).reshape(-1, 1, raw["x"].shape[-1])
    y = torch.from_numpy(np.asarray(raw["y"], dtype=np.int64))
    end = n_train + n_test
    tensors = {"train_x": x[:n_train], "train_y": y[:n_train], "test_x": x[n_train:end], "test_y": y[n_train:end]}
    full_args = {k: v for k, v in vars(args).items() if k != "url"}
    return {k: v.clone() for k, v in tensors.items()}, full_args


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in _TENSORS:
        h.update(key.encode())
        h.update(tensors[key].contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_cache(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The cached tensors if ``path`` holds a complete, uncorrupted file for ``key``; else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign files raise several types; all mean "regenerate"
        return None
    if not isinstance(state, dict) or state.get("format") != CACHE_FORMAT or state.get("key") != key:
        return None
    tensors = state.get("tensors")
    if not isinstance(tensors, dict) or not all(isinstance(tensors.get(k), torch.Tensor) for k in _TENSORS):
        return None
    if state.get("digest") != _digest(tensors):
        return None
    return {k: tensors[k] for k in _TENSORS}


def _write_cache(path: Path, key: str, tensors: dict[str, torch.Tensor], args: dict) -> None:
    """Write atomically (temporary file, fsync, ``os.replace``); an unwritable folder is skipped."""
    buf = io.BytesIO()
    state = {"format": CACHE_FORMAT, "key": key, "args": json.dumps(args), "tensors": tensors}
    torch.save({**state, "digest": _digest(tensors)}, buf)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cache_path(cache_dir: Path, n_train: int, n_test: int, seed: int) -> tuple[Path, str]:
    """The cache file for these sizes and seed, and its key (JSON of the generation arguments)."""
    try:
        version = metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        raise DataError("mnist1d: the mnist1d package is not installed; install it (a dependency of svag)") from None
    spec = {"overrides": generation_overrides(n_train, n_test, seed), "n_train": n_train, "n_test": n_test}
    key = json.dumps({**spec, "mnist1d": version, "format": CACHE_FORMAT}, sort_keys=True)
    short = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"mnist1d-{n_train}-{n_test}-seed{seed}-{short}.pt", key


def generation_notice(n_train: int, n_test: int, seed: int, cache_dir: str | os.PathLike | None = None) -> str | None:
    """What to say before :func:`load_mnist1d` generates more than :data:`NOTICE_SAMPLES` samples that are not
    in the cache (minutes, without a word otherwise); ``None`` when they are cached or few."""
    total = n_train + n_test
    if total <= NOTICE_SAMPLES:
        return None
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path, _ = cache_path(folder, n_train, n_test, seed)
    if path.is_file():
        return None
    return (
        f"generating MNIST-1D's {total} samples (n_train={n_train} + n_test={n_test}) takes about "
        f"{total * 0.5e-3 / 60:.2g} min (~0.5 ms each) the first time; then they are read from {folder}"
    )


def load_mnist1d(
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> ArrayDataset:
    """MNIST-1D as an :class:`ArrayDataset` (see the module docstring)."""
    n_train = DEFAULT_N_TRAIN if n_train is None else n_train
    n_test = DEFAULT_N_TEST if n_test is None else n_test
    path, key = cache_path(
        Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(), n_train, n_test, seed
    )
    tensors = _read_cache(path, key)
    if tensors is None:
        tensors, args = _generate(generation_overrides(n_train, n_test, seed), n_train, n_test)
        _write_cache(path, key, tensors, args)
    mean, std = tensors["train_x"].double().mean(), tensors["train_x"].double().std(correction=0)
    std = std if std > 0 else torch.ones((), dtype=torch.float64)
    train_x = ((tensors["train_x"].double() - mean) / std).float()
    test_x = ((tensors["test_x"].double() - mean) / std).float()
    return ArrayDataset("mnist1d", train_x, tensors["train_y"], test_x, tensors["test_y"], NUM_CLASSES)
