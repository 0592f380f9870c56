"""K seed replicas of any ``nn.Module`` trained at once through ``torch.func`` (one process).

The replicas' parameters and buffers are stacked along a new leading axis of size K and put back
into one copy of the model under their own names, so ``ensemble.net.state_dict()`` has the plain
model's keys with ``(K, ...)`` values. A forward pass is ``vmap`` over the replica axis of
``functional_call(net, (params_k, buffers_k), x_k)``: replica k runs the model's own ``forward``
(any control flow that does not depend on the data) with its own tensors, BatchNorm updates its
own running statistics in place (the stacked buffer's row k; ``num_batches_tracked`` too), and the
train/eval mode is the model's. Randomness is refused (``randomness="error"``): a dropout layer's
draws could not be those of the replica's sequential run.

Whether a model can be stacked this way is decided by :func:`trial`: one forward/backward step of
the stacked replicas on one batch against each replica's plain forward/backward, before training,
leaving every state as it was. What it catches: an operation ``vmap`` refuses (data-dependent
control flow, ``.item()``, in-place writes into a tensor that is not per replica, random draws),
and a model whose stacked step differs from its own (a buffer re-assigned instead of updated in
place is lost by ``functional_call``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["VmapEnsemble", "trial"]


class VmapEnsemble(nn.Module):
    """K replicas (``models``: same architecture, replica k built after seeding its ``init`` stream)
    behind the interface of :class:`svag.runner.ensemble.Ensemble`: ``forward`` on ``(K, B, ...)``,
    :meth:`logits`, ``params``, :meth:`replica_state_dict` and :meth:`load_replica_state_dicts`."""

    def __init__(self, models: list[nn.Module], *, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"an ensemble needs >= 2 replicas, got {len(models)}")
        if any(_signature(m) != _signature(models[0]) for m in models[1:]):
            raise ValueError("ensemble replicas must have the same architecture")
        self.K = len(models)
        self.input_shape = tuple(input_shape)
        self.net = copy.deepcopy(models[0])
        for kind, named in (("parameter", nn.Module.named_parameters), ("buffer", nn.Module.named_buffers)):
            for names in _aliases(models[0], named):  # tied tensors stay one tensor
                first = models[0].get_parameter(names[0]) if kind == "parameter" else models[0].get_buffer(names[0])
                getter = "get_parameter" if kind == "parameter" else "get_buffer"
                stacked = torch.stack([getattr(m, getter)(names[0]).detach() for m in models])
                if kind == "parameter":
                    stacked = nn.Parameter(stacked, requires_grad=first.requires_grad)
                for name in names:
                    owner, _, leaf = name.rpartition(".")
                    table = "_parameters" if kind == "parameter" else "_buffers"
                    getattr(self.net.get_submodule(owner), table)[leaf] = stacked
        self.params = [p for p in self.net.parameters() if p.requires_grad]

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, (params, buffers), (x,))

    def _vmapped(self, x: torch.Tensor, x_dim: int | None) -> torch.Tensor:
        params, buffers = dict(self.net.named_parameters()), dict(self.net.named_buffers())
        return vmap(self._one, in_dims=(0, 0, x_dim), randomness="error")(params, buffers, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (K, B, *sample), replica k's batch in row k -> outputs (K, B, ...)."""
        return self._vmapped(x, 0)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (K, n, ...) for inputs (n, *sample) shared by all replicas, or (K, n, *sample)."""
        return self._vmapped(x, None if x.dim() == len(self.input_shape) + 1 else 0)

    def replica_state_dict(self, k: int) -> dict[str, Any]:
        """Replica ``k`` as the ``state_dict`` of the plain model."""
        return {n: v[k].clone() if torch.is_tensor(v) else copy.deepcopy(v) for n, v in self.net.state_dict().items()}

    @torch.no_grad()
    def load_replica_state_dicts(self, states: list[dict[str, Any]]) -> None:
        """Load each replica from a plain model's ``state_dict`` (``states[k]`` -> replica k)."""
        if len(states) != self.K:
            raise ValueError(f"expected {self.K} replica states, got {len(states)}")
        for name, value in self.net.state_dict().items():  # detached views of the stacked tensors
            if torch.is_tensor(value):
                for k, state in enumerate(states):
                    value[k].copy_(state[name])


def _aliases(model: nn.Module, named) -> list[list[str]]:
    """The names of each distinct parameter (or buffer) of ``model``, tied ones together, in order."""
    groups: dict[int, list[str]] = {}
    for name, t in named(model, remove_duplicate=False):
        groups.setdefault(id(t), []).append(name)
    return list(groups.values())


def _signature(model: nn.Module) -> list:
    """Module types, state names and shapes: equal for replicas of one architecture."""
    return [(n, type(m).__name__) for n, m in model.named_modules()] + [
        (n, tuple(t.shape), t.dtype) for n, t in model.state_dict().items() if torch.is_tensor(t)
    ]


def trial(ensemble, models: list[nn.Module], task, x: torch.Tensor, y: torch.Tensor) -> str | None:
    """Why the stacked ``ensemble`` cannot stand in for its plain ``models`` (``None``: it can).

    One training-mode step on one batch (replica k's inputs ``x[k]``, targets ``y[k]``): each
    replica's mean loss, its gradient and its buffers after the forward pass must equal those of
    its plain model, and so must the eval-mode outputs on ``x[0]``, within a relative (norm-wise)
    difference of ``√eps`` of the dtype (half the digits: float rounding of batched kernels is far
    below it; a replica that ran other code is far above). Nothing is left changed: the gradients
    are returned by ``torch.autograd.grad`` (``p.grad`` untouched), the buffers are restored, the
    plain models are copies, the global RNG is forked and the modes are put back.
    """
    tol = math.sqrt(torch.finfo(x.dtype if x.is_floating_point() else torch.get_default_dtype()).eps)
    devices = [x.device] if x.device.type == "cuda" else []
    saved = [b.clone() for b in ensemble.buffers()]
    was_training = ensemble.training
    try:
        with torch.random.fork_rng(devices=devices):
            ensemble.train(True)
            try:
                out = ensemble(x)
                per = task.per_sample_loss(out.flatten(0, 1), y.flatten(0, 1)).view(ensemble.K, -1).mean(1)
                grads = torch.autograd.grad(per.sum(), ensemble.params, allow_unused=True)
                after = [ensemble.replica_state_dict(k) for k in range(ensemble.K)]
                ensemble.train(False)
                evals = ensemble.logits(x[0]).detach()
            except Exception as err:  # whatever vmap or functional_call refuses: the reason, in one line
                return f"vmap refused it ({type(err).__name__}: {_first_sentence(err)})"
            for k, model in enumerate(models):
                plain = copy.deepcopy(model).train(True)
                mine = [p for p in plain.parameters() if p.requires_grad]
                loss = task.loss(plain(x[k]), y[k])
                diffs = {"loss": _rel(per[k], loss)}
                ref = torch.autograd.grad(loss, mine, allow_unused=True)
                diffs["gradient"] = _rel([g[k] for g in grads if g is not None], [g for g in ref if g is not None])
                state = plain.state_dict()
                diffs["buffers"] = _rel([after[k][n] for n, _ in plain.named_buffers() if n in state],
                                        [state[n] for n, _ in plain.named_buffers() if n in state])  # fmt: skip
                diffs["eval outputs"] = _rel(evals[k], plain.train(False)(x[0]).detach())
                bad = [what for what, d in diffs.items() if not d <= tol]  # NaN counts as a difference
                if bad:
                    return (f"its stacked step differs from replica {k}'s own ({bad[0]}: relative difference "
                            f"{diffs[bad[0]]:.2g} > {tol:.2g})")  # fmt: skip
    finally:
        with torch.no_grad():
            for b, s in zip(ensemble.buffers(), saved):
                b.copy_(s)
        ensemble.train(was_training)
    return None


def _rel(got, want) -> float:
    """``‖got − want‖ / ‖want‖`` over one tensor or a list (0 when both are 0), in float64."""
    got, want = ([got], [want]) if torch.is_tensor(got) else (got, want)
    if len(got) != len(want) or any(a.shape != b.shape for a, b in zip(got, want)):
        return math.inf
    num = sum(float((a.detach().double() - b.detach().double()).pow(2).sum()) for a, b in zip(got, want))
    den = sum(float(b.detach().double().pow(2).sum()) for b in want)
    return 0.0 if num == 0 else math.sqrt(num / den) if den > 0 else math.inf


def _first_sentence(err: Exception) -> str:
    """The first sentence of ``err``'s message (vmap's go on with advice for PyTorch's developers)."""
    text = " ".join(str(err).split())
    return text.split(". ")[0].rstrip(".") or "no message"
