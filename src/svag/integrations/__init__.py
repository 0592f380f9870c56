"""Adapters to other tools, at the edge: they use the layers below and nothing below imports them.

* :mod:`~svag.integrations.lightning`: the G/N callback and the SVAG recipe for Lightning (``svag[lightning]``);
* :mod:`~svag.integrations.tensorboard`: live curves, a record sink of the runner (``svag[tensorboard]``);
* :mod:`~svag.integrations.transformers`: the G/N callback for the Hugging Face ``Trainer`` (``svag[transformers]``).

Each is imported only when used, so the default path runs without the extras installed.
"""

from __future__ import annotations

__all__ = ["record_sinks"]


def record_sinks(cfg) -> tuple:
    """The record sinks a run of ``cfg`` asks for (:class:`svag.runner.recorder.SinkFactory`), for the front
    to hand to the runner: TensorBoard when ``cfg.tensorboard`` names a folder; ``()`` otherwise."""
    if not cfg.tensorboard:
        return ()
    from svag.integrations.tensorboard import TensorBoardSinks

    return (TensorBoardSinks(cfg.tensorboard),)
