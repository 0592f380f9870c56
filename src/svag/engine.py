"""The model side of a run: one model, or K seed replicas trained in lockstep.

The runner talks to an engine only: it hands it batches, asks for losses, metrics and
checkpoint state per replica. :class:`SingleEngine` wraps one ``nn.Module`` (``K = 1``, the
plain path with no stacking overhead); :class:`EnsembleEngine` wraps :class:`svag.ensemble.Ensemble`
(stacked parameters). Each replica's state can be exported in the single-run format, so
run folders look the same whichever engine trained them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EnsembleEngine", "SingleEngine"]


def _sum_ce(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-replica summed cross-entropy and number correct; logits (K, n, C), y (n,) or (K, n)."""
    K = logits.shape[0]
    yy = y.expand(K, -1) if y.dim() == 1 else y
    loss = F.cross_entropy(logits.flatten(0, 1), yy.reshape(-1), reduction="none").view(K, -1).sum(1)
    correct = (logits.argmax(-1) == yy).sum(1)
    return loss, correct


class SingleEngine:
    """One model: batches are ``(x, y)`` with ``x`` of shape ``(B, *input_shape)``."""

    K = 1

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.last_losses: torch.Tensor | None = None

    def loss(self, batch) -> torch.Tensor:
        return F.cross_entropy(self.model(batch[0]), batch[1])

    def stack(self, batches: list):
        return batches[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
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

    ``self.model`` is the :class:`svag.ensemble.Ensemble`; train mode and the buffer snapshot
    for SGD's extra noise batch work as for one model.
    """

    def __init__(self, ensemble) -> None:
        super().__init__(ensemble)
        self.K = ensemble.K

    def loss(self, batch) -> torch.Tensor:
        out = self.model.loss(batch)
        if self.last_losses is None:  # the first batch's losses are the run's training loss
            self.last_losses = self.model.last_losses
        return out

    def stack(self, batches: list):
        if batches[0] is None:
            return None
        return torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
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
def evaluate(engine, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> tuple[list[float], list[float]]:
    """Per-replica mean loss and accuracy of ``engine`` on ``(x, y)`` in its current mode."""
    loss = torch.zeros(engine.K, dtype=torch.float64, device=x.device)
    correct = torch.zeros(engine.K, dtype=torch.long, device=x.device)
    for i in range(0, len(x), chunk):
        l_i, c_i = _sum_ce(engine.logits(x[i : i + chunk]), y[i : i + chunk])
        loss += l_i.double()
        correct += c_i
    n = len(x)
    return (loss / n).tolist(), (correct.double() / n).tolist()


def grad_norm_sq(engine, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> list[float]:
    """Per-replica ‖∇L‖² of the mean loss over ``(x, y)``, in the engine's current mode."""
    grads = [torch.zeros_like(p) for p in engine.params]
    for i in range(0, len(x), chunk):
        loss_k, _ = _sum_ce(engine.logits(x[i : i + chunk]), y[i : i + chunk])
        for g, gi in zip(grads, torch.autograd.grad(loss_k.sum() / len(x), engine.params)):
            g.add_(gi)
    if engine.K == 1:
        return [float(sum((g.double() ** 2).sum() for g in grads))]
    total = sum((g.double() ** 2).flatten(1).sum(1) for g in grads)
    return [float(v) for v in total]
