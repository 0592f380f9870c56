"""A user's data as a plug-in (:mod:`svag.plugins` reads the text; this module adapts what the callable returns).

``load(n_train, n_test, seed, root) -> (train, test)`` or ``(train, test, num_classes)``, called with
the keywords it names among those four; each split a pair of tensors ``(inputs, labels)`` (or of NumPy
arrays, taken as ``torch.from_numpy`` gives them) or a map-style ``Dataset`` of ``(input, label)``, or a
whole :class:`svag.data.ArrayDataset` (the full contract is in :mod:`svag.plugins`). Every failure is a
:class:`svag.data.DataError` of one line that starts with the plug-in's name (``data '<text>'``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from svag import plugins
from svag.data.base import ArrayDataset, DataError, seeded_subset
from svag.data.loader import TensorPairs
from svag.data.streamed import DatasetSplits, Samples, sample
from svag.memory import memory_limit
from svag.plugins import call, first_line

__all__ = ["DATA_KEYWORDS", "as_data_spec", "load_data"]

DATA_KEYWORDS = ("n_train", "n_test", "seed", "root")
_DATA_CACHE: dict[tuple, Any] = {}  # one entry: the last data set loaded by a plug-in in this process


def as_data_spec(obj: Any) -> str:
    """The config text of a data value given to the Python API (:func:`svag.plugins.as_spec`): splits
    given as Datasets are read into tensors now, so their fingerprint hashes the numbers."""
    if not isinstance(obj, str) and not callable(obj) and isinstance(obj, (tuple, list)) and len(obj) in (2, 3):
        key = plugins.data_key(obj)
        obj = (_split(obj[0], "train", key), _split(obj[1], "test", key), *obj[2:])
    return plugins.as_spec(obj, "data")


def _is_dataset(value: Any) -> bool:
    """Whether a split is a map-style Dataset (rather than a pair of tensors)."""
    return (
        hasattr(value, "__getitem__")
        and hasattr(value, "__len__")
        and not isinstance(value, (tuple, list, str, torch.Tensor))
    )


def _first(value: Any, split: str, text: str) -> Any:
    """Item 0 of a split's Dataset, checked to be a pair ``(input, label)``."""
    if len(value) < 1:
        raise DataError(f"data {text!r}: the {split} Dataset is empty")
    first = value[0]
    if not (isinstance(first, (tuple, list)) and len(first) == 2):
        raise DataError(f"data {text!r}: item 0 of the {split} Dataset is a {type(first).__name__}; expected "
                        "a pair (input, label)")  # fmt: skip
    return first


def _from_numpy(value: Any, split: str, part: str, text: str) -> Any:
    """A NumPy array as the tensor ``torch.from_numpy`` makes of it (a copy where the array is read-only or
    its strides are not C order, which ``from_numpy`` refuses or warns about); anything else as it is. The
    tensor then follows a tensor's rules (inputs to float32, labels integer class indices)."""
    if not isinstance(value, np.ndarray):
        return value
    if not (value.flags.writeable and value.flags.c_contiguous):
        value = value.copy(order="C")
    try:
        return torch.from_numpy(value)
    except TypeError:
        raise DataError(f"data {text!r}: the {split} {part} are a NumPy array of dtype {value.dtype}; expected numbers "
                        "(a float or integer dtype)") from None  # fmt: skip


def _split(value: Any, split: str, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs float32, labels int64)`` of one split: a pair of tensors or of NumPy arrays (converted by
    :func:`_from_numpy`), or a map-style Dataset."""
    expected = (
        "a pair of tensors or NumPy arrays (inputs, labels), or a map-style torch.utils.data.Dataset of (input, label)"
    )
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, (torch.Tensor, np.ndarray))
                                                                    for t in value):  # fmt: skip
        x, y = (_from_numpy(v, split, part, text) for v, part in zip(value, ("inputs", "labels")))
        if x.dim() < 2:
            got = "are a 0-d tensor" if x.dim() == 0 else f"have shape {tuple(x.shape)}"
            raise DataError(f"data {text!r}: the {split} inputs {got}; expected (n, *input_shape), one sample per "
                            "row")  # fmt: skip
        if y.dim() >= 1 and len(y) != len(x):
            raise DataError(f"data {text!r}: the {split} split has {len(x)} inputs and {len(y)} labels; expected one "
                            "label per input")  # fmt: skip
    elif _is_dataset(value):
        n = len(value)
        first = _first(value, split, text)
        first_x = torch.as_tensor(first[0])
        need = n * first_x.numel() * 4  # float32
        limit = memory_limit()
        if limit is not None and need > limit:
            raise DataError(
                f"data {text!r}: the {split} Dataset holds {n} samples of shape {tuple(first_x.shape)}, "
                f"{need / 2**30:.3g} GiB as float32 tensors, more than the {limit / 2**30:.3g} GiB (half the memory) "
                "an in-memory run may use: use a DataLoader-backed run (--loader-workers N)"
            )
        xs, ys = [], []
        for i in range(n):
            x_i, y_i = sample(value[i])
            xs.append(x_i)
            ys.append(y_i)
        try:
            x, y = torch.stack(xs), torch.stack(ys)
        except RuntimeError as err:
            raise DataError(f"data {text!r}: the {split} samples differ in shape ({first_line(err)})") from None
    else:
        raise DataError(f"data {text!r}: the {split} split is a {type(value).__name__}; expected {expected}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() < 1:
        raise DataError(
            f"data {text!r}: {split} labels are {y.dtype} of shape {tuple(y.shape)}; expected integer class indices "
            "of shape (n,), or (n, ...) per position (e.g. next tokens) for a plug-in loss"
        )
    return x.to(torch.float32), y.to(torch.int64)


def load_data(text: str, *, n_train: int | None, n_test: int | None, seed: int, root: str | None,
              datasets: bool = False):  # fmt: skip
    """The :class:`svag.data.ArrayDataset` of plug-in ``text`` (cached: the last one in this process).

    With ``datasets`` (a run with ``loader_workers > 0``), splits returned as map-style Datasets are
    not read into memory: the result is a :class:`svag.data.streamed.DatasetSplits` (when at least one
    split is a Dataset), the subsets cut by index, the items converted as the in-memory path does.
    """
    registered = plugins.registered(text)
    key = (text, n_train, n_test, seed, root, datasets, id(registered) if registered is not None else None)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key][0]
    fn = plugins.resolve(text, "data")
    offered = {"n_train": n_train, "n_test": n_test, "seed": seed, "root": root}
    out = call(fn, offered, "data", text)
    expected = (
        "(train, test) or (train, test, num_classes), each split a pair of tensors (inputs, labels) or a map-style "
        "Dataset of (input, label), or a svag.data.ArrayDataset"
    )
    if isinstance(out, ArrayDataset):
        parts = [(out.train_x, out.train_y), (out.test_x, out.test_y)]
        classes, augment = out.num_classes, out.augment
    elif isinstance(out, (tuple, list)) and len(out) in (2, 3) and datasets and any(map(_is_dataset, out[:2])):
        ds = _dataset_splits(text, out, n_train, n_test, seed)
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = (ds, registered)
        return ds
    elif isinstance(out, (tuple, list)) and len(out) in (2, 3):
        parts = [_split(out[0], "train", text), _split(out[1], "test", text)]
        classes, augment = (out[2] if len(out) == 3 else None), None
    else:
        raise DataError(f"data {text!r} returned a {type(out).__name__}; expected {expected}")
    cut = []
    for (x, y), asked, split in zip(parts, (n_train, n_test), ("train", "test")):
        idx = seeded_subset(len(x), asked, seed, what=f"data {text!r} {split}") if asked is not None else None
        cut.append((x, y) if idx is None else (x[idx], y[idx]))
    (tx, ty), (vx, vy) = cut
    if tx.shape[1:] != vx.shape[1:]:
        raise DataError(f"data {text!r}: train and test samples differ in shape: {tuple(tx.shape[1:])} vs "
                        f"{tuple(vx.shape[1:])}")  # fmt: skip
    if len(tx) == 0:
        raise DataError(f"data {text!r} returned an empty training split (0 samples); a run needs at least one")
    labels_max = max(int(ty.max()), int(vy.max()) if len(vy) else 0)
    if classes is None:
        classes = labels_max + 1
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1 or labels_max >= classes:
        raise DataError(f"data {text!r}: num_classes must be an integer > every label (largest {labels_max}), "
                        f"got {classes!r}")  # fmt: skip
    if min(int(ty.min()), int(vy.min()) if len(vy) else 0) < 0:
        raise DataError(f"data {text!r}: labels must be class indices >= 0")
    ds = ArrayDataset(text, tx, ty, vx, vy, classes, augment)
    _DATA_CACHE.clear()
    _DATA_CACHE[key] = (ds, registered)  # holding the registered object keeps its id from being reused
    return ds


def _dataset_splits(text: str, out: tuple, n_train: int | None, n_test: int | None, seed: int):
    """:func:`load_data`'s result for a Dataset-backed run: each Dataset split checked on its item 0
    and kept as it is (a split given as tensors stays in memory), cut to the seeded subsets."""
    splits, shapes, streamed, labels = [], [], [], []
    for value, asked, split in zip(out[:2], (n_train, n_test), ("train", "test")):
        if _is_dataset(value):
            x0, y0 = sample(_first(value, split, text))
            if y0.dtype.is_floating_point or y0.dtype == torch.bool or y0.dim() != 0:
                raise DataError(f"data {text!r}: item 0 of the {split} Dataset has a label of {y0.dtype} and shape "
                                f"{tuple(y0.shape)}; expected an integer class index")  # fmt: skip
            data, shape = Samples(value), tuple(x0.shape)
            streamed.append(split)
        else:
            x, y = _split(value, split, text)
            data, shape = TensorPairs(x, y), tuple(x.shape[1:])
            labels.append(y)
        idx = seeded_subset(len(data), asked, seed, what=f"data {text!r} {split}") if asked is not None else None
        splits.append(data if idx is None else Subset(data, idx.tolist()))
        shapes.append(shape)
    classes = out[2] if len(out) == 3 else None
    if classes is None:
        raise DataError(
            f"data {text!r}: a run with --loader-workers reads its Datasets only as it trains, so it cannot count "
            "the classes first: return (train, test, num_classes)"
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise DataError(f"data {text!r}: num_classes must be an integer >= 1, got {classes!r}")
    if any(len(y) and (int(y.min()) < 0 or int(y.max()) >= classes) for y in labels):
        raise DataError(f"data {text!r}: labels must be class indices in [0, num_classes={classes})")
    if shapes[0] != shapes[1]:
        raise DataError(f"data {text!r}: train and test samples differ in shape: {shapes[0]} vs {shapes[1]}")
    return DatasetSplits(text, splits[0], splits[1], classes, shapes[0], tuple(streamed))
