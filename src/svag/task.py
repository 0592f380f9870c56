"""The task of a run: its loss and its metrics, owned by one object.

The runner, the engines (one model or a stacked ensemble), the noise estimators and the
evaluation all ask the task; none of them names a loss. A task gives

- ``loss(output, target)``: the **mean** loss over the batch, what SGD differentiates (the
  gradient noise Σ of P1 is the covariance of this mean's gradient at batch size B);
- ``per_sample_loss(output, target)``: the loss of each sample, shape ``(n,)``, whose mean is
  ``loss`` (ensembles reduce it per replica; evaluation sums it over chunks);
- ``per_sample_metrics(output, target)``: ``{name: (n,) tensor}`` for each name in
  ``metrics``, averaged over the evaluation set (accuracy only where it means something).

A record of the run then holds ``train_loss``, ``test_loss`` and ``train_<m>``, ``test_<m>`` for
each metric ``m``. A new loss is a new :class:`Task` subclass; the runner needs no edit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from svag import plugins

__all__ = ["LOSSES", "CrossEntropy", "FunctionTask", "SquaredError", "Task", "make_task", "plugin_task"]


class Task:
    """Base class: subclasses set ``name`` and ``metrics`` and implement :meth:`per_sample_loss`."""

    name = "task"
    metrics: tuple[str, ...] = ()

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean over the batch of :meth:`per_sample_loss`."""
        return self.per_sample_loss(output, target).mean()

    def per_sample_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropy(Task):
    r"""Classification: :math:`\ell_i = -\log \mathrm{softmax}(f(x_i))_{y_i}`; metric ``acc``
    (:math:`\mathbb 1[\arg\max_c f(x_i)_c = y_i]`). Targets are class indices."""

    name = "cross_entropy"
    metrics = ("acc",)

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target, reduction="none")

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # torch's fused mean (the rounding of every run before the task existed)
        return F.cross_entropy(output, target)

    def per_sample_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"acc": (output.argmax(-1) == target).to(output.dtype)}


class SquaredError(Task):
    r"""Squared error :math:`\ell_i = \frac1C\|f(x_i) - t_i\|^2` (the mean over the ``C`` outputs,
    so the batch mean equals ``F.mse_loss``). With ``num_classes`` the targets are class indices
    and ``t_i`` is their one-hot vector, and the task reports ``acc``; without, targets are real
    tensors of the output's shape and there is no metric."""

    name = "mse"

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.metrics = ("acc",) if num_classes else ()

    def _target(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.num_classes:
            return F.one_hot(target, self.num_classes).to(output.dtype)
        return target.to(output.dtype)

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = output - self._target(output, target)
        return diff.square().flatten(1).mean(1) if diff.dim() > 1 else diff.square()

    def per_sample_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.num_classes:
            return {}
        return {"acc": (output.argmax(-1) == target).to(output.dtype)}

    def __repr__(self) -> str:
        return f"SquaredError(num_classes={self.num_classes})"


LOSSES = ("cross_entropy", "mse")


def make_task(loss: str, num_classes: int | None = None) -> Task:
    """The task of ``RunConfig.loss`` for a data set with ``num_classes`` classes (None: real targets).
    ``loss`` may be a plug-in ``package.module:callable`` / ``path/to/file.py:callable``: a Task
    subclass or instance, or a mean loss function (:mod:`svag.plugins`)."""
    if plugins.is_spec(loss):
        return plugin_task(loss, num_classes)
    if loss == "cross_entropy":
        if not num_classes:
            raise ValueError("loss cross_entropy needs class labels; this data set has real-valued targets: use mse")
        return CrossEntropy()
    if loss == "mse":
        return SquaredError(num_classes)
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


# -- a user's loss (svag.plugins reads the text) -------------------------------------------------
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


def plugin_task(text: str, num_classes: int | None) -> Task:
    """The :class:`Task` of loss plug-in ``text``."""
    obj = plugins.resolve(text, "loss")
    if isinstance(obj, type) and issubclass(obj, Task):
        obj = plugins.call(obj, {"num_classes": num_classes}, "loss", text)
    if isinstance(obj, Task):
        return obj
    if not callable(obj):
        raise plugins.PluginError(
            f"loss {text!r} is a {type(obj).__name__}; expected a svag.task.Task subclass or instance, or a function "
            "loss(outputs, targets) -> the mean loss over the batch"
        )
    return FunctionTask(obj, text)
