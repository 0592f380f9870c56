"""The model side of a run: one model, or K seed replicas trained in lockstep, and its task.

The runner talks to an engine only: it hands it batches, asks for losses, metrics and
checkpoint state per replica. :class:`SingleEngine` wraps one ``nn.Module`` (``K = 1``, the
plain path with no stacking overhead); :class:`EnsembleEngine` wraps K replicas with stacked
parameters, as :func:`svag.runner.ensemble.stack` built them (the zoo's hand-written layers or
``torch.func``). Both take the run's :class:`svag.task.Task`, the one owner of the loss and the
metrics. Each replica's state can be exported in the single-run format, so run folders
look the same whichever engine trained them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from svag.task import Task

__all__ = ["EVAL_CHUNK", "EnsembleEngine", "SingleEngine", "evaluate", "evaluate_batches", "grad_norm_sq"]

EVAL_CHUNK = 2048  # samples per forward pass when evaluating (the chunks fix the float sums)


class SingleEngine:
    """One model: batches are ``(x, y)`` with ``x`` of shape ``(B, *input_shape)``."""

    K = 1

    def __init__(self, model: nn.Module, task: Task) -> None:
        self.model, self.task = model, task
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.last_losses: torch.Tensor | None = None

    def loss(self, batch) -> torch.Tensor:
        """The task's mean loss on ``batch = (x, y)``."""
        return self.task.loss(self.model(batch[0]), batch[1])

    def per_replica_sums(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-replica sums over ``(x, y)`` of the loss, ``(K,)``, and of each metric, ``{m: (K,)}``."""
        out = self.outputs(x)
        K = out.shape[0]
        flat_out, flat_y = out.flatten(0, 1), y.expand(K, *y.shape).reshape(-1, *y.shape[1:])
        loss = self.task.per_sample_loss(flat_out, flat_y).view(K, -1).sum(1)
        metrics = {m: v.view(K, -1).sum(1) for m, v in self.task.per_sample_metrics(flat_out, flat_y).items()}
        return loss, metrics

    def stack(self, batches: list):
        return batches[0]

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(K, n, ...)`` for inputs ``(n, *sample)`` shared by all replicas."""
        return self.model(x).unsqueeze(0)

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    @property
    def training(self) -> bool:
        return self.model.training

    def stacked_grads(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """The gradients with a leading replica axis of size K."""
        return [None if g is None else g.unsqueeze(0) for g in grads]

    def weight_norm_sq(self) -> list[float]:
        return [float(sum((p.detach().double() ** 2).sum() for p in self.params))]

    def buffers(self) -> list[torch.Tensor]:
        return [b.clone() for b in self.model.buffers()]

    def restore_buffers(self, saved: list[torch.Tensor]) -> None:
        for b, s in zip(self.model.buffers(), saved):
            b.copy_(s)

    def replica_state(self, k: int) -> dict[str, Any]:
        return self.model.state_dict()

    def load_replica_states(self, states: list[dict[str, Any]]) -> None:
        self.model.load_state_dict(states[0])


class EnsembleEngine(SingleEngine):
    """K replicas with stacked parameters: batches ``(x, y)`` with ``x`` of shape ``(K, B, ...)``.

    ``self.model`` is the stacked model (:class:`svag.runner.ensemble.Ensemble` or
    :class:`svag.runner.vmap_ensemble.VmapEnsemble`); train mode and the buffer snapshot for SGD's extra
    noise batch work as for one model.
    """

    def __init__(self, ensemble, task: Task) -> None:
        super().__init__(ensemble, task)
        self.K = ensemble.K

    def loss(self, batch) -> torch.Tensor:
        """Sum over replicas of each replica's mean loss; ``batch = (x (K,B,...), y (K,B,...))``.

        Replica k's parameters enter only its own term, so the gradient of the sum is, slice by
        slice, each replica's own gradient. The first call after ``last_losses = None`` keeps the
        per-replica losses (the run's training loss is batch 1's).
        """
        x, y = batch
        out = self.model(x)
        per = self.task.per_sample_loss(out.flatten(0, 1), y.reshape(-1, *y.shape[2:])).view(self.K, -1).mean(1)
        if self.last_losses is None:
            self.last_losses = per.detach()
        return per.sum()

    def stack(self, batches: list):
        if batches[0] is None:
            return None
        return torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)

    def stacked_grads(self, grads):
        return grads

    def weight_norm_sq(self) -> list[float]:
        total = sum((p.detach().double() ** 2).flatten(1).sum(1) for p in self.params)
        return [float(v) for v in total]

    def replica_state(self, k: int) -> dict[str, Any]:
        return self.model.replica_state_dict(k)

    def load_replica_states(self, states: list[dict[str, Any]]) -> None:
        self.model.load_replica_state_dicts(states)


@torch.no_grad()
def evaluate(
    engine, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_CHUNK
) -> tuple[list[float], dict[str, list[float]]]:
    """Per-replica mean loss and mean of each task metric on ``(x, y)``, in the engine's current mode."""
    return evaluate_batches(engine, ((x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(x), chunk)), x.device)


@torch.no_grad()
def evaluate_batches(engine, batches, device: torch.device | str = "cpu") -> tuple[list[float], dict[str, list[float]]]:
    """:func:`evaluate` on a data set given as consecutive ``(x, y)`` chunks (a test set read from disk,
    :class:`svag.data.streamed.Chunks`): sums per chunk, accumulated in float64, over the total count.
    The same chunks give the same numbers bit for bit."""
    loss = torch.zeros(engine.K, dtype=torch.float64, device=device)
    sums = {m: torch.zeros(engine.K, dtype=torch.float64, device=device) for m in engine.task.metrics}
    n = 0
    for x, y in batches:
        l_i, m_i = engine.per_replica_sums(x, y)
        loss += l_i.double()
        for m, v in m_i.items():
            sums[m] += v.double()
        n += len(x)
    return (loss / n).tolist(), {m: (v / n).tolist() for m, v in sums.items()}


def grad_norm_sq(engine, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_CHUNK) -> list[float]:
    """Per-replica ‖∇L‖² of the mean loss over ``(x, y)``, in the engine's current mode."""
    grads = [torch.zeros_like(p) for p in engine.params]
    for i in range(0, len(x), chunk):
        loss_k, _ = engine.per_replica_sums(x[i : i + chunk], y[i : i + chunk])
        for g, gi in zip(grads, torch.autograd.grad(loss_k.sum() / len(x), engine.params)):
            g.add_(gi)
    if engine.K == 1:
        return [float(sum((g.double() ** 2).sum() for g in grads))]
    total = sum((g.double() ** 2).flatten(1).sum(1) for g in grads)
    return [float(v) for v in total]
