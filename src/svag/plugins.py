"""A user's own model, data and loss: ``package.module:callable`` and ``path/to/file.py:callable``.

Wherever a built-in name is accepted (``--model``, ``--data``, ``--loss``, the fields of
:class:`svag.config.RunConfig`), a **plug-in** can stand instead: text with a colon, the part
before it a dotted module (imported with the current folder on the path, as ``python -m`` does) or
a file ending in ``.py`` (imported from its path, its folder on the path while it loads), the part
after it the name of a callable in it. This module is the one place that reads such text; the
owners ask it (:func:`svag.models.build_model`, :func:`svag.data.load_dataset`,
:func:`svag.task.make_task`), so every command that trains (train, compare, lsr, scale, the
verdicts) and the Python API take plug-ins alike. What each callable is given and must return:

**model** ``factory(input_shape, num_classes, ...) -> torch.nn.Module``, called with the keywords it
names among ``input_shape`` (one sample's shape, a tuple such as ``(1, 40)``), ``num_classes``,
``dtype`` (the run's ``torch.dtype``; the factory also runs under it as the default dtype, then
the model is moved to it), ``norm``, ``width``, ``scale_invariant`` (the config's values); with
``**kwargs`` it gets them all. The model maps ``(batch, *input_shape)`` to ``(batch, num_classes)``
logits. The runner seeds PyTorch from the run's seed tree before each call (its ``init`` stream).

**data** ``load(n_train, n_test, seed, root) -> (train, test)`` or ``(train, test, num_classes)``,
called with the keywords it names among those four (the config's ``n_train``, ``n_test``,
``data_seed``, ``data_root``), where ``train`` and ``test`` are each a pair of tensors
``(inputs, labels)`` or a map-style ``torch.utils.data.Dataset`` whose items are
``(input, label)``; or a whole :class:`svag.data.ArrayDataset`. Labels are integer class indices;
``num_classes`` defaults to the largest label + 1. A Dataset is read once into memory (stacked),
refused with its size when it would take more than half the memory, except in a run with
``loader_workers > 0`` (``--loader-workers N``): there a Dataset split stays on disk, read by index
as the run goes (:mod:`svag.data.streamed`: the same numbers as stacked), and the callable must
return ``num_classes`` (the labels are not read ahead). Split sizes larger than ``n_train`` /
``n_test`` are cut to a subset drawn with ``data_seed`` (as the built-in files are).

**loss** a :class:`svag.task.Task` subclass (built with ``num_classes`` if its ``__init__`` names
it) or instance, or a function ``loss(outputs, targets) -> scalar``: the **mean** over the batch
(P1's noise Σ is the covariance of the mean loss's gradient; a sum is refused). A function becomes
a :class:`FunctionTask`: its per-sample losses, which evaluation, stacked seeds and Gaussian runs
need, are the function on one-sample batches (``torch.func.vmap``, or a loop where vmap cannot
trace it), and its metric is accuracy (arg-max of the outputs = label).

Every failure is a :class:`PluginError` (a ``ValueError``: the CLI prints one line and exits 2)
naming what was given and what is expected.

**Resume.** ``config.json`` records the text, and its ``derived.plugins`` a fingerprint of each
plug-in: the SHA-256 of the **source file of the module** that defines the callable (not only the
callable's own source, since a factory's layers usually live beside it in the file). ``--resume``
refuses, in one line, a plug-in that no longer imports or whose file changed (other modules it
imports are not fingerprinted). Python objects handed to the Python API (:mod:`svag.api`) that are
not importable by name (defined in ``__main__``, lambdas, tensors) are registered in this process
as ``python:NAME`` (:func:`as_spec`); their fingerprint is the SHA-256 of the callable's own source,
or of the tensors' bytes, and such a run resumes only from Python, by passing the same objects again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .task import Task

__all__ = [
    "MODEL_KEYWORDS",
    "FunctionTask",
    "PluginError",
    "as_spec",
    "build_model",
    "check_fit",
    "check_resume",
    "fingerprints",
    "is_spec",
    "load_data",
    "make_task",
    "resolve",
]

PYTHON = "python:"  # prefix of objects registered in this process by the Python API
MODEL_KEYWORDS = ("input_shape", "num_classes", "dtype", "norm", "width", "scale_invariant")
DATA_KEYWORDS = ("n_train", "n_test", "seed", "root")
_KINDS = ("model", "data", "loss")
_REGISTRY: dict[str, tuple[Any, str | None]] = {}  # "python:NAME" -> (object, fingerprint)
_DATA_CACHE: dict[tuple, Any] = {}  # one entry: the last data set loaded by a plug-in in this process


class PluginError(ValueError):
    """A plug-in could not be used; the message is one line: what was given, what is expected."""


def is_spec(text: object) -> bool:
    """Whether ``text`` names a plug-in (``module:callable``, ``file.py:callable``, ``python:NAME``)."""
    return isinstance(text, str) and ":" in text


def _parse(text: str, kind: str) -> tuple[str, str, str]:
    """``(form, target, attribute)``: form "module", "file" or "python"."""
    if text.startswith(PYTHON):
        return "python", text, ""
    target, _, attr = text.rpartition(":")
    expected = f"{kind} must be a built-in name, package.module:callable or path/to/file.py:callable"
    if not target or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise PluginError(f"{expected}, got {text!r}")
    if target.endswith(".py") or "/" in target or os.sep in target:
        return "file", target, attr
    if not all(p.isidentifier() for p in target.split(".")):
        raise PluginError(f"{expected}, got {text!r} ({target!r} is neither a dotted module nor a .py file)")
    return "module", target, attr


@contextlib.contextmanager
def _on_path(folder: str) -> Iterator[None]:
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _module(form: str, target: str, text: str, kind: str):
    if form == "module":
        try:
            with _on_path(os.getcwd()):
                return importlib.import_module(target)
        except Exception as err:  # any failure of the user's code at import is reported in one line
            raise PluginError(f"{kind} {text!r}: cannot import module {target!r} ({_first_line(err)})") from None
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise PluginError(f"{kind} {text!r}: no file {target} (from {os.getcwd()}); expected path/to/file.py:callable")
    name = "svag_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    stamp = path.stat().st_mtime_ns
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__svag_mtime__", None) == stamp:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__svag_mtime__ = stamp
    sys.modules[name] = module  # dataclasses and pickle look their module up while it loads
    try:
        with _on_path(str(path.parent)):
            spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise PluginError(f"{kind} {text!r}: cannot import {target} ({_first_line(err)})") from None
    return module


def resolve(text: str, kind: str) -> Any:
    """The object ``text`` names (``kind``: "model", "data" or "loss", for messages)."""
    form, target, attr = _parse(text, kind)
    if form == "python":
        if text not in _REGISTRY:
            raise PluginError(
                f"{kind} {text!r} was a Python object given to the Python API in another process: pass the same "
                "object again (from Python), or give an import path package.module:callable or file.py:callable"
            )
        return _REGISTRY[text][0]
    module = _module(form, target, text, kind)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") or "none"
            raise PluginError(f"{kind} {text!r}: {target} has no {attr!r} (its callables: {shown})")
        obj = getattr(obj, part)
    return obj


def _file_hash(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(text: str, kind: str) -> dict:
    """What ``config.json`` keeps of a plug-in to check it on resume: the text, the source file of
    its module and the file's SHA-256 (for ``python:`` objects, the registered fingerprint)."""
    form, target, _ = _parse(text, kind)
    if form == "python":
        resolve(text, kind)
        return {"spec": text, "sha256": _REGISTRY[text][1]}
    module = _module(form, target, text, kind)
    try:  # the file that defines the callable (a package may re-export it from another module)
        path = inspect.getsourcefile(resolve(text, kind))
    except TypeError:  # an instance or a builtin: its module's file
        path = None
    path = path or getattr(module, "__file__", None)
    return {"spec": text, "file": str(Path(path).resolve()) if path else None, "sha256": _file_hash(path)}


def fingerprints(cfg) -> dict:
    """``{kind: fingerprint}`` of every plug-in of config ``cfg`` (``{}``: all built-in)."""
    return {kind: fingerprint(getattr(cfg, kind), kind) for kind in _KINDS if is_spec(getattr(cfg, kind))}


def check_resume(saved: dict | None, cfg, where: str | os.PathLike) -> None:
    """Refuse to resume the run in ``where`` when a plug-in of ``cfg`` no longer imports or its
    fingerprint differs from the one saved when the run started (``saved``: ``derived["plugins"]``)."""
    saved = saved or {}
    for kind in _KINDS:
        text = getattr(cfg, kind)
        if not is_spec(text):
            continue
        try:
            now = fingerprint(text, kind)
        except PluginError as err:
            raise PluginError(f"cannot resume {where}: {err}") from None
        before = saved.get(kind, {}).get("sha256")
        if before != now["sha256"]:
            what = now.get("file") or text
            raise PluginError(
                f"cannot resume {where}: the {kind} plug-in {text} changed since the run started ({what}: sha256 "
                f"{str(before)[:12]} then, {str(now['sha256'])[:12]} now); restore it, or start the run in a new folder"
            )


# -- Python objects (the Python API) --------------------------------------------------------------
def _importable(obj: Any) -> str | None:
    """``module:qualname`` of ``obj`` when importing it by that name gives ``obj`` back."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname or module.startswith("svag_plugin_"):
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:  # not importable by name: registered instead
        return None
    return f"{module}:{qualname}" if found is obj else None


def _object_hash(obj: Any) -> str | None:
    """SHA-256 of a callable's own source, or of the bytes of the tensors in a data value."""
    tensors = _tensors_in(obj)
    if tensors:
        h = hashlib.sha256()
        for t in tensors:
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()
    target = obj if callable(obj) and not isinstance(obj, torch.nn.Module) else type(obj)
    try:
        return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()
    except (OSError, TypeError):  # no source (defined at a prompt): the name alone is checked
        return None


def _tensors_in(obj: Any) -> list[torch.Tensor]:
    from .data.base import ArrayDataset

    if isinstance(obj, ArrayDataset):
        return [obj.train_x, obj.train_y, obj.test_x, obj.test_y]
    if isinstance(obj, (tuple, list)):
        return [t for part in obj for t in _tensors_in(part)] if not all(
            isinstance(t, torch.Tensor) for t in obj
        ) else list(obj)  # fmt: skip
    return []


def as_spec(obj: Any, kind: str) -> str:
    """The config text of ``obj`` for ``kind``: a string is kept; an object importable by name
    becomes ``module:qualname`` (resumable anywhere, usable by worker processes); anything else
    (defined in ``__main__``, a lambda, a Task instance, tensors) is registered in this process as
    ``python:NAME``, which only this process can resolve."""
    if isinstance(obj, str):
        return obj
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    text = _importable(obj)
    if text is not None:
        return text
    if kind == "data" and not callable(obj):
        name = getattr(obj, "name", None) if not isinstance(obj, (tuple, list)) else None
        key = PYTHON + (name or "data")
        value = obj
        if isinstance(obj, (tuple, list)) and len(obj) in (2, 3):  # Datasets read now: their tensors are hashed
            value = (_split(obj[0], "train", key), _split(obj[1], "test", key), *obj[2:])
        _REGISTRY[key] = ((lambda: value), _object_hash(value))
        return key
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    key = PYTHON + name.replace("<", "").replace(">", "")
    _REGISTRY[key] = (obj, _object_hash(obj))
    return key


# -- calling the user's callables ------------------------------------------------------------------
def _keywords(fn: Callable, offered: dict[str, Any], kind: str, text: str) -> dict[str, Any]:
    """The entries of ``offered`` that ``fn``'s signature names (all with ``**kwargs``); a required
    parameter svag does not pass is refused."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: give it everything
        return dict(offered)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(offered)
    missing = [
        n for n, p in params.items()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in offered
    ]  # fmt: skip
    if missing:
        raise PluginError(
            f"{kind} {text!r} needs {', '.join(missing)}, which svag does not pass; it passes (as keywords, those "
            f"the callable names) {', '.join(offered)}"
        )
    return {k: v for k, v in offered.items() if k in params}


def _call(fn: Callable, kwargs: dict, kind: str, text: str) -> Any:
    if not callable(fn):
        raise PluginError(f"{kind} {text!r} is a {type(fn).__name__}, not a callable")
    try:
        return fn(**kwargs)
    except PluginError:
        raise
    except Exception as err:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise PluginError(f"{kind} {text!r} failed when called with ({args}): {_first_line(err)}") from None


def build_model(text: str, *, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> torch.nn.Module:
    """The model of plug-in ``text`` (``options``: norm, width, scale_invariant) in the default dtype."""
    fn = resolve(text, "model")
    offered = {"input_shape": tuple(input_shape), "num_classes": int(num_classes), "dtype": torch.get_default_dtype()}
    offered.update(options)
    model = _call(fn, _keywords(fn, offered, "model", text), "model", text)
    if not isinstance(model, torch.nn.Module):
        raise PluginError(f"model {text!r} returned a {type(model).__name__}; expected a torch.nn.Module")
    return model


def _memory_limit() -> int | None:
    from .budget import MEMORY_FRACTION, available_memory

    memory = available_memory()
    return None if memory is None else int(MEMORY_FRACTION * memory)


def _is_dataset(value: Any) -> bool:
    """Whether a split is a map-style Dataset (rather than a pair of tensors)."""
    return (
        hasattr(value, "__getitem__")
        and hasattr(value, "__len__")
        and not isinstance(value, (tuple, list, str, torch.Tensor))
    )


def _first(value: Any, split: str, text: str) -> Any:
    """Item 0 of a split's Dataset, checked to be a pair ``(input, label)``."""
    from .data.base import DataError

    if len(value) < 1:
        raise DataError(f"data {text!r}: the {split} Dataset is empty")
    first = value[0]
    if not (isinstance(first, (tuple, list)) and len(first) == 2):
        raise DataError(f"data {text!r}: item 0 of the {split} Dataset is a {type(first).__name__}; expected "
                        "a pair (input, label)")  # fmt: skip
    return first


def _split(value: Any, split: str, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs float32, labels int64)`` of one split: a pair of tensors or a map-style Dataset."""
    from .data.base import DataError
    from .data.streamed import sample as as_tensors

    expected = "a pair of tensors (inputs, labels) or a map-style torch.utils.data.Dataset of (input, label)"
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value):
        x, y = value
    elif _is_dataset(value):
        n = len(value)
        first = _first(value, split, text)
        sample = torch.as_tensor(first[0])
        need = n * sample.numel() * 4  # float32
        limit = _memory_limit()
        if limit is not None and need > limit:
            raise DataError(
                f"data {text!r}: the {split} Dataset holds {n} samples of shape {tuple(sample.shape)}, "
                f"{need / 2**30:.3g} GiB as float32 tensors, more than the {limit / 2**30:.3g} GiB (half the memory) "
                "an in-memory run may use: use a DataLoader-backed run (--loader-workers N)"
            )
        xs, ys = [], []
        for i in range(n):
            x_i, y_i = as_tensors(value[i])
            xs.append(x_i)
            ys.append(y_i)
        try:
            x, y = torch.stack(xs), torch.stack(ys)
        except RuntimeError as err:
            raise DataError(f"data {text!r}: the {split} samples differ in shape ({_first_line(err)})") from None
    else:
        raise DataError(f"data {text!r}: the {split} split is a {type(value).__name__}; expected {expected}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
        raise DataError(
            f"data {text!r}: {split} labels are {y.dtype} of shape {tuple(y.shape)}; expected integer class indices "
            "of shape (n,)"
        )
    return x.to(torch.float32), y.to(torch.int64)


def load_data(text: str, *, n_train: int | None, n_test: int | None, seed: int, root: str | None,
              datasets: bool = False):  # fmt: skip
    """The :class:`svag.data.ArrayDataset` of plug-in ``text`` (cached: the last one in this process).

    With ``datasets`` (a run with ``loader_workers > 0``), splits returned as map-style Datasets are
    not read into memory: the result is a :class:`svag.data.streamed.DatasetSplits` (when at least one
    split is a Dataset), the subsets cut by index, the items converted as the in-memory path does.
    """
    from .data.base import ArrayDataset, DataError, seeded_subset

    registered = _REGISTRY.get(text)
    key = (text, n_train, n_test, seed, root, datasets, id(registered[0]) if registered else None)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key][0]
    fn = resolve(text, "data")
    offered = {"n_train": n_train, "n_test": n_test, "seed": seed, "root": root}
    out = _call(fn, _keywords(fn, offered, "data", text), "data", text)
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
    from torch.utils.data import Subset

    from .data.base import DataError, seeded_subset
    from .data.loader import TensorPairs
    from .data.streamed import DatasetSplits, Samples, sample

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


# -- the loss -----------------------------------------------------------------------------------
class FunctionTask(Task):
    """A :class:`svag.task.Task` around ``loss(outputs, targets) -> mean``; ``per_sample_loss`` is
    the function on one-sample batches (vmap; :meth:`per_sample_loss_reference` is the loop)."""

    metrics = ("acc",)

    def __init__(self, fn: Callable, name: str) -> None:
        self.fn, self.name = fn, name
        self._vmap_ok = True

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(output, target)

    def per_sample_loss_reference(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loop over samples: ``ℓ_i = loss(f(x_i)[None], y_i[None])``."""
        return torch.stack([self.fn(output[i : i + 1], target[i : i + 1]).reshape(()) for i in range(len(output))])

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._vmap_ok:
            try:
                return torch.func.vmap(lambda o, t: self.fn(o[None], t[None]).reshape(()))(output, target)
            except Exception:  # a loss vmap cannot trace (data-dependent control flow): the loop from now on
                self._vmap_ok = False
        return self.per_sample_loss_reference(output, target)

    def per_sample_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"acc": (output.argmax(-1) == target).to(output.dtype)}

    def __repr__(self) -> str:
        return f"FunctionTask({self.name!r})"


def make_task(text: str, num_classes: int | None):
    """The :class:`svag.task.Task` of loss plug-in ``text``."""
    obj = resolve(text, "loss")
    if isinstance(obj, type) and issubclass(obj, Task):
        obj = _call(obj, _keywords(obj, {"num_classes": num_classes}, "loss", text), "loss", text)
    if isinstance(obj, Task):
        return obj
    if not callable(obj):
        raise PluginError(
            f"loss {text!r} is a {type(obj).__name__}; expected a svag.task.Task subclass or instance, or a function "
            "loss(outputs, targets) -> the mean loss over the batch"
        )
    return FunctionTask(obj, text)


def _scalar(value: Any, text: str, n: int) -> float:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise PluginError(f"loss {text!r} returned {shape} for a batch of {n}; expected a scalar tensor, the mean "
                          "loss over the batch")  # fmt: skip
    return float(value.detach().reshape(()))


def check_fit(model: torch.nn.Module, task, input_shape: tuple[int, ...], num_classes: int, names: dict) -> None:
    """Check the model, the data and the loss fit together before a run starts (one line each):
    the model maps a batch of 2 samples (on the ``meta`` device when ``model`` lives there: no
    memory, no arithmetic) to ``(2, num_classes)``; the loss returns a scalar that is the **mean**
    of its values on the one-sample batches (checked on random float64 logits, seed 0)."""
    model_name, data_name, loss_name = names["model"], names["data"], names["loss"]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    probe = torch.zeros((2, *input_shape), device=device)
    try:
        out = model(probe)
    except Exception as err:
        if device.type == "meta" and ("meta" in str(err).lower() or isinstance(err, NotImplementedError)):
            out = None  # an operation the meta device cannot run: the shape is checked at the first step
        else:
            raise PluginError(
                f"model {model_name!r} fails on a batch of shape {tuple(probe.shape)} from data {data_name!r} "
                f"({_first_line(err)}); it must map (batch, *input_shape) to (batch, num_classes={num_classes})"
            ) from None
    if out is not None and (not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(
            f"model {model_name!r} maps a batch of shape {tuple(probe.shape)} from data {data_name!r} to {got}; "
            f"expected (2, {num_classes}): one logit per class"
        )
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, num_classes, dtype=torch.float64, generator=gen)
    target = torch.arange(4) % num_classes
    try:
        whole = _scalar(task.loss(logits, target), loss_name, 4)
        parts = [_scalar(task.loss(logits[i : i + 1], target[i : i + 1]), loss_name, 1) for i in range(4)]
    except PluginError:
        raise
    except Exception as err:
        raise PluginError(f"loss {loss_name!r} fails on logits of shape (4, {num_classes}) and int64 class "
                          f"labels ({_first_line(err)})") from None  # fmt: skip
    mean, total = sum(parts) / 4, sum(parts)
    if not math.isclose(whole, mean, rel_tol=1e-6, abs_tol=1e-9):
        how = "the sum over the batch" if math.isclose(whole, total, rel_tol=1e-6) else "not the mean of the samples'"
        raise PluginError(
            f"loss {loss_name!r} gives {whole:.6g} on a batch of 4 whose one-sample losses average {mean:.6g}: it is "
            f"{how}; svag needs the mean over the batch (reduction='mean'): P1's noise is that of the mean's gradient"
        )
