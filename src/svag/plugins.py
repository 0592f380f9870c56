"""A user's own model, data and loss: ``package.module:callable`` and ``path/to/file.py:callable``.

Wherever a built-in name is accepted (``--model``, ``--data``, ``--loss``, the fields of
:class:`svag.config.RunConfig`), a **plug-in** can stand instead: text with a colon, the part
before it a dotted module (imported with the current folder on the path, as ``python -m`` does) or
a file ending in ``.py`` (imported from its path, its folder on the path while it loads), the part
after it the name of a callable in it. This module is the one place that reads such text (a leaf:
it parses, imports and fingerprints, and knows nothing of models, data or losses); each owner adapts
its own kind (:mod:`svag.models.plugin`, :mod:`svag.data.plugin`, :func:`svag.task.plugin_task`),
so every command that trains (train, compare, lsr, scale, the verdicts) and the Python API take
plug-ins alike. What each callable is given and must return:

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
a :class:`svag.task.FunctionTask`: its per-sample losses, which evaluation, stacked seeds and Gaussian runs
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
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "MODEL_OPTIONS",
    "PluginError",
    "as_spec",
    "call",
    "check_resume",
    "data_key",
    "fingerprint",
    "fingerprints",
    "first_line",
    "is_spec",
    "keywords",
    "registered",
    "resolve",
]

PYTHON = "python:"  # prefix of objects registered in this process by the Python API
KINDS = ("model", "data", "loss")
MODEL_OPTIONS = ("norm", "width", "scale_invariant")  # the config's model options a model factory may take
_REGISTRY: dict[str, tuple[Any, str | None]] = {}  # "python:NAME" -> (object, fingerprint)
_DATASET_TENSORS = ("train_x", "train_y", "test_x", "test_y")


class PluginError(ValueError):
    """A plug-in could not be used; the message is one line: what was given, what is expected."""


def registered(text: str) -> Any:
    """The object registered as ``text`` (``python:NAME``) in this process, or ``None``."""
    entry = _REGISTRY.get(text)
    return None if entry is None else entry[0]


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


def first_line(err: BaseException) -> str:
    if isinstance(err, SystemExit):  # the user's code called sys.exit() (or exit()) instead of raising
        return f"it called sys.exit({err.code!r})"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _module(form: str, target: str, text: str, kind: str):
    if form == "module":
        try:
            with _on_path(os.getcwd()):
                return importlib.import_module(target)
        except (Exception, SystemExit) as err:  # any failure of the user's code at import is reported in one line
            raise PluginError(f"{kind} {text!r}: cannot import module {target!r} ({first_line(err)})") from None
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
    except (Exception, SystemExit) as err:  # sys.exit() in a plug-in must not end svag with its status
        sys.modules.pop(name, None)
        raise PluginError(f"{kind} {text!r}: cannot import {target} ({first_line(err)})") from None
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
    return {kind: fingerprint(getattr(cfg, kind), kind) for kind in KINDS if is_spec(getattr(cfg, kind))}


def check_resume(saved: dict | None, cfg, where: str | os.PathLike) -> None:
    """Refuse to resume the run in ``where`` when a plug-in of ``cfg`` no longer imports or its
    fingerprint differs from the one saved when the run started (``saved``: ``derived["plugins"]``)."""
    saved = saved or {}
    for kind in KINDS:
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
    import torch  # only a Python object's fingerprint needs it: parsing specs stays torch-free

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


def _tensors_in(obj: Any) -> list:
    """The tensors of a data value: a whole data set (``train_x``, ``train_y``, ``test_x``, ``test_y``, as
    :class:`svag.data.ArrayDataset` holds them), or the tensors of nested pairs and triples."""
    if all(hasattr(obj, a) for a in _DATASET_TENSORS):
        return [getattr(obj, a) for a in _DATASET_TENSORS]
    if isinstance(obj, (tuple, list)):
        import torch

        return [t for part in obj for t in _tensors_in(part)] if not all(
            isinstance(t, torch.Tensor) for t in obj
        ) else list(obj)  # fmt: skip
    return []


def data_key(obj: Any) -> str:
    """The ``python:NAME`` under which a data value (not a callable) is registered."""
    name = getattr(obj, "name", None) if not isinstance(obj, (tuple, list)) else None
    return PYTHON + (name or "data")


def as_spec(obj: Any, kind: str) -> str:
    """The config text of ``obj`` for ``kind``: a string is kept; an object importable by name
    becomes ``module:qualname`` (resumable anywhere, usable by worker processes); anything else
    (defined in ``__main__``, a lambda, a Task instance, tensors) is registered in this process as
    ``python:NAME``, which only this process can resolve."""
    if isinstance(obj, str):
        return obj
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    text = _importable(obj)
    if text is not None:
        return text
    if kind == "data" and not callable(obj):  # a data value (Datasets already read: svag.data.plugin.as_data_spec)
        key = data_key(obj)
        _REGISTRY[key] = ((lambda: obj), _object_hash(obj))
        return key
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    key = PYTHON + name.replace("<", "").replace(">", "")
    _REGISTRY[key] = (obj, _object_hash(obj))
    return key


# -- calling the user's callables ------------------------------------------------------------------
def keywords(fn: Callable, offered: dict[str, Any], kind: str, text: str) -> dict[str, Any]:
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


def call(fn: Callable, offered: dict[str, Any], kind: str, text: str) -> Any:
    """``fn(**kwargs)`` with the entries of ``offered`` that its signature names (:func:`keywords`);
    any failure of the user's code is a :class:`PluginError` of one line naming the call."""
    return _call(fn, keywords(fn, offered, kind, text), kind, text)


def _call(fn: Callable, kwargs: dict, kind: str, text: str) -> Any:
    if not callable(fn):
        raise PluginError(f"{kind} {text!r} is a {type(fn).__name__}, not a callable")
    try:
        return fn(**kwargs)
    except PluginError:
        raise
    except (Exception, SystemExit) as err:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise PluginError(f"{kind} {text!r} failed when called with ({args}): {first_line(err)}") from None
