"""A user's model factory as a plug-in (:mod:`svag.plugins` reads the text; this module calls it).

``factory(input_shape, num_classes, ...) -> torch.nn.Module``, called with the keywords it names among
:data:`MODEL_KEYWORDS` (the full contract is in :mod:`svag.plugins`).
"""

from __future__ import annotations

from typing import Any

import torch

from svag import plugins

__all__ = ["MODEL_KEYWORDS", "build_model"]

MODEL_KEYWORDS = ("input_shape", "num_classes", "dtype", "norm", "width", "scale_invariant")


def build_model(text: str, *, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> torch.nn.Module:
    """The model of plug-in ``text`` (``options``: norm, width, scale_invariant) in the default dtype."""
    fn = plugins.resolve(text, "model")
    if isinstance(fn, torch.nn.Module):  # callable, but its call is the forward pass
        raise plugins.PluginError(
            f"model {text!r} is a {type(fn).__name__} instance, a model already built; give its factory instead: a "
            "function or class called as factory(input_shape, num_classes) that returns a new model (each seed "
            "builds its own)"
        )
    offered = {"input_shape": tuple(input_shape), "num_classes": int(num_classes), "dtype": torch.get_default_dtype()}
    offered.update(options)
    model = plugins.call(fn, offered, "model", text)
    if not isinstance(model, torch.nn.Module):
        raise plugins.PluginError(f"model {text!r} returned a {type(model).__name__}; expected a torch.nn.Module")
    return model
