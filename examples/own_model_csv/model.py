"""A model of your own for svag: ``--model examples/own_model_csv/model.py:make_model``.

svag calls ``make_model`` with the keywords it names among ``input_shape`` (one sample's shape,
here ``(8,)``), ``num_classes``, ``dtype``, ``norm``, ``width`` and ``scale_invariant``; PyTorch is
already seeded from the run's seed tree, so every seed has its own initialization and a resumed run
its own again. The model maps ``(batch, *input_shape)`` to ``(batch, num_classes)`` logits.
"""

from __future__ import annotations

import math

from torch import nn


def make_model(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """An MLP with two tanh layers of ``round(64·width)`` units."""
    hidden = max(1, round(64 * width))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.Tanh(),
        nn.Linear(hidden, hidden),
        nn.Tanh(),
        nn.Linear(hidden, num_classes),
    )
