"""A user's model factory as a plug-in (:mod:`svag.plugins` reads the text; this module calls it).

``factory(input_shape, num_classes, ...) -> torch.nn.Module``, called with the keywords it names among
:data:`MODEL_KEYWORDS` (the full contract is in :mod:`svag.plugins`). Of the config's model options
(:data:`svag.plugins.MODEL_OPTIONS`: ``norm``, ``width``, ``scale_invariant``) only those the factory names
reach the model (:func:`passed_options`); the runner records them (``derived["model_options"]``) and the
figures and verdicts show those alone.
"""

from __future__ import annotations

from typing import Any

import torch

from svag import plugins
from svag.plugins import MODEL_OPTIONS

__all__ = ["MODEL_KEYWORDS", "build_model", "passed_options"]

MODEL_KEYWORDS = ("input_shape", "num_classes", "dtype", *MODEL_OPTIONS)


def _factory(text: str):
    """The factory of plug-in ``text``; a model already built (an ``nn.Module`` instance) is refused."""
    fn = plugins.resolve(text, "model")
    if isinstance(fn, torch.nn.Module):  # callable, but its call is the forward pass
        raise plugins.PluginError(
            f"model {text!r} is a {type(fn).__name__} instance, a model already built; give its factory instead: a "
            "function or class called as factory(input_shape, num_classes) that returns a new model (each seed "
            "builds its own)"
        )
    return fn


def _offered(input_shape: tuple[int, ...], num_classes: int, options: dict[str, Any]) -> dict[str, Any]:
    return {"input_shape": tuple(input_shape), "num_classes": int(num_classes), "dtype": torch.get_default_dtype(),
            **options}  # fmt: skip


def build_model(text: str, *, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> torch.nn.Module:
    """The model of plug-in ``text`` (``options``: norm, width, scale_invariant) in the default dtype."""
    model = plugins.call(_factory(text), _offered(input_shape, num_classes, options), "model", text)
    if not isinstance(model, torch.nn.Module):
        raise plugins.PluginError(f"model {text!r} returned a {type(model).__name__}; expected a torch.nn.Module")
    return model


def passed_options(text: str, options: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` (the config's ``norm``, ``width``, ``scale_invariant``) that reach model
    ``text``: all of them for a built-in model; for a plug-in, those its factory's signature names (all of
    them with ``**kwargs``), as :func:`build_model` passes them (:func:`svag.plugins.keywords`)."""
    if not plugins.is_spec(text):
        return dict(options)
    given = plugins.keywords(_factory(text), _offered((1,), 1, options), "model", text)
    return {k: v for k, v in options.items() if k in given}
