"""K seed replicas of one model trained at once with stacked parameters (one process).

The replicas are independent: replica ``k`` sees its own batches, keeps its own BatchNorm
statistics, and the sum over replicas of their mean losses has, for each replica, exactly that
replica's gradient. SVAG's update is elementwise, so one :class:`svag.SVAG` over the stacked
parameters performs K independent runs. :func:`stack` is what the runner calls; it returns one of
two stackings with the same interface (``K``, ``params``, ``forward`` on ``(K, B, ...)``,
``logits``, ``replica_state_dict``, ``load_replica_state_dicts``), or raises
:class:`NotStackable` with the reason, and the runner then trains the seeds one by one.

**Why two stackings.** :class:`Ensemble` (below) stacks the layers of the built-in zoo by hand;
:class:`svag.runner.vmap_ensemble.VmapEnsemble` stacks any ``nn.Module`` through ``torch.func``
(``vmap`` of ``functional_call``). On most of the zoo the hand-written layers are faster
(``benchmarks/bench_ensemble.py``, K = 8, B = 32, SVAG l = 2, 2 shared CPU cores, one interleaved
run): a step of the torch.func stacking takes 1.21× (MLP), 1.60× (BN CNN), 1.29× (PreResNet-32)
and 0.93× (ResNet-32, within the noise of that loaded machine) the time of the hand-written one,
and a whole 8-seed run of the CNN 1.61× (vmap runs BatchNorm's batching rule as two kernels plus
an affine product, and 1-D max-pooling through its 2-D kernel). So the zoo's families
(:data:`LAYERED`) keep the hand-written layers, and everything else (a user's model,
:mod:`svag.plugins`) goes through ``torch.func``, after :func:`svag.runner.vmap_ensemble.trial`
checked one stacked step against the replicas' own on one batch.

How the layers are stacked by hand: activations of the convolutional part are in
"channel layout" ``(B, K·C, ...)``, so convolutions become grouped convolutions (``groups=K``),
BatchNorm normalizes ``K·C`` channels (per replica, per channel), GroupNorm uses ``K·G`` groups
(per replica), and pooling and ReLU are unchanged; ``nn.Flatten`` switches to "replica layout"
``(K, B, F)``, where linear layers are batched matrix products (``torch.baddbmm``). ResNet
option-A shortcuts pad each replica's channels. Supported: every model of :mod:`svag.models`
(MLP, CNN, VGG, ResNet, PreResNet), which call their leaf layers in registration order.

Measured speed (``benchmarks/bench_ensemble.py``, BENCHMARKS.md, 2 shared CPU cores, K = 8): the
stacked step has 2.4× (MLP), 2.2× (BN CNN), 2.7× (PreResNet-32), 3.2× (ResNet-32) and, through
torch.func, 2.7× (a plug-in MLP) the throughput of 8 sequential steps; end to end, 8 seeds of
half an MNIST-1D epoch ran 2.4× (CNN) and 2.2× (plug-in MLP) faster stacked. :func:`is_faster`
holds the verdict used by ``svag compare --ensemble auto``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from svag.models import MLP, VGG, PreResNet, ResNet, SmallCNN
from svag.models.resnet import PadShortcut
from svag.plugins import is_spec
from svag.runner.vmap_ensemble import VmapEnsemble, trial

__all__ = ["LAYERED", "Ensemble", "NotStackable", "is_faster", "stack", "supported"]

# the zoo's families whose hand-written stacked layers measured faster than torch.func (module docstring)
LAYERED = (MLP, SmallCNN, PreResNet, ResNet, VGG)


class NotStackable(ValueError):
    """The replicas cannot be trained as one stacked model (the message says why); train them one by one."""


def stack(models: list[nn.Module], *, input_shape: tuple[int, ...], task, x: torch.Tensor,
          y: torch.Tensor) -> nn.Module:  # fmt: skip
    """The K replicas ``models`` as one stacked model: :class:`Ensemble` for the zoo's families
    (:data:`LAYERED`), else :class:`svag.runner.vmap_ensemble.VmapEnsemble` once its
    :func:`~svag.runner.vmap_ensemble.trial` step on ``(x, y)`` (``(K, B, ...)``, replica k's batch in
    row k; nothing is changed by it) matched the replicas' own. Raises :class:`NotStackable`."""
    if isinstance(models[0], LAYERED) and supported(models[0]):
        return Ensemble(models, input_shape=input_shape)
    ensemble = VmapEnsemble(models, input_shape=input_shape)
    why = trial(ensemble, models, task, x, y)
    if why is not None:
        raise NotStackable(why)
    return ensemble


_ELEMENTWISE = (nn.ReLU, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                nn.AvgPool1d, nn.AvgPool2d)  # fmt: skip


_SUPPORTED = (nn.Flatten, nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm,
              PadShortcut, *_ELEMENTWISE)  # fmt: skip


def supported(model: nn.Module) -> bool:
    """Whether every leaf layer of ``model`` has a stacked version."""
    return all(isinstance(m, _SUPPORTED) for m in _leaves(model))


def is_faster(model: str, n_seeds: int) -> bool:
    """``svag compare --ensemble auto``: where the stacked ensemble measured faster than running
    the seeds one by one on 2 CPU cores (``benchmarks/bench_ensemble.py``, BENCHMARKS.md): the MLP,
    the CNN, PreResNet-32 and ResNet-32 of the zoo and a user's model (measured: a plug-in MLP,
    through torch.func). VGG was not measured and runs its seeds one by one."""
    return (model in ("mlp", "cnn", "preresnet32", "resnet32") or is_spec(model)) and n_seeds >= 2


class _Stacked(nn.Module):
    """A layer holding K replicas; ``replica(k)`` / ``load(k, state)`` map to the plain layer's state."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.K = len(layers)
        self.names = [n for n, _ in layers[0].named_parameters()] + [n for n, _ in layers[0].named_buffers()]
        for name in self.names:
            tensors = [getattr(m, name) for m in layers]
            if name == "num_batches_tracked":
                self.register_buffer(name, tensors[0].clone())
                continue
            stacked = torch.stack([t.detach() for t in tensors])
            if isinstance(tensors[0], nn.Parameter):
                self.register_parameter(name, nn.Parameter(stacked, requires_grad=tensors[0].requires_grad))
            else:
                self.register_buffer(name, stacked)

    def replica(self, k: int) -> dict[str, torch.Tensor]:
        return {n: (getattr(self, n) if n == "num_batches_tracked" else getattr(self, n)[k]) for n in self.names}

    def load(self, k: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n in self.names:
                target = getattr(self, n)
                (target if n == "num_batches_tracked" else target[k]).copy_(state[n])


class _Linear(_Stacked):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (K, B, in) -> (K, B, out)
        if getattr(self, "bias", None) is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class _Conv(_Stacked):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__(layers)
        c = layers[0]
        self.fn = F.conv2d if isinstance(c, nn.Conv2d) else F.conv1d
        self.kw = dict(stride=c.stride, padding=c.padding, dilation=c.dilation, groups=self.K * c.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K·C_in, ...) -> (B, K·C_out, ...)
        bias = None if getattr(self, "bias", None) is None else self.bias.reshape(-1)
        return self.fn(x, self.weight.flatten(0, 1), bias, **self.kw)


class _BatchNorm(_Stacked):
    def __init__(self, layers: list[nn.Module], replica_layout: bool) -> None:
        super().__init__(layers)
        self.momentum, self.eps, self.replica_layout = layers[0].momentum, layers[0].eps, replica_layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K = self.K
        if self.replica_layout:  # (K, B, C) -> (B, K·C)
            y = self.forward_flat(x.transpose(0, 1).reshape(x.shape[1], -1))
            return y.reshape(x.shape[1], K, -1).transpose(0, 1)
        return self.forward_flat(x)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        w = getattr(self, "weight", None)
        b = getattr(self, "bias", None)
        return F.batch_norm(
            x, self.running_mean.view(-1), self.running_var.view(-1), None if w is None else w.reshape(-1),
            None if b is None else b.reshape(-1), self.training, self.momentum, self.eps,
        )  # fmt: skip


class _GroupNorm(_Stacked):
    def __init__(self, layers: list[nn.Module], replica_layout: bool) -> None:
        super().__init__(layers)
        self.groups, self.eps, self.replica_layout = layers[0].num_groups, layers[0].eps, replica_layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = getattr(self, "weight", None)
        b = getattr(self, "bias", None)
        if self.replica_layout:  # (K, B, C): per sample, so fold replicas into the batch
            y = F.group_norm(x.reshape(-1, x.shape[-1]), self.groups, None, None, self.eps).view_as(x)
            return y if w is None else y * w.unsqueeze(1) + b.unsqueeze(1)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = F.group_norm(x, self.K * self.groups, None, None, self.eps)
        return y if w is None else y * w.reshape(shape) + b.reshape(shape)


class _ToReplica(nn.Module):
    def __init__(self, K: int) -> None:
        super().__init__()
        self.K = K

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K·C, ...) -> (K, B, C·...)
        return x.reshape(x.shape[0], self.K, -1).transpose(0, 1)


class _PadShortcut(nn.Module):
    """ResNet option-A shortcut per replica: subsample, then zero-pad each replica's channels."""

    def __init__(self, layer: nn.Module, K: int) -> None:
        super().__init__()
        self.K, self.dims, self.stride, self.pad = K, layer.dims, layer.stride, layer.pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K·C_in, ...) -> (B, K·C_out, ...)
        x = x[..., :: self.stride, :: self.stride] if self.dims == 2 else x[..., :: self.stride]
        y = F.pad(x.reshape(x.shape[0], self.K, -1, *x.shape[2:]), self.pad)
        return y.flatten(1, 2)


def _stack(group: list[nn.Module], K: int, replica_layout: bool) -> nn.Module:
    """The stacked version of one leaf layer (``group[k]`` is replica k's)."""
    first = group[0]
    if isinstance(first, nn.Flatten):
        return _ToReplica(K)
    if isinstance(first, nn.Linear):
        return _Linear(group)
    if isinstance(first, (nn.Conv1d, nn.Conv2d)):
        return _Conv(group)
    if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if first.momentum is None or not first.track_running_stats:
            raise ValueError("ensembles need BatchNorm with running statistics and a numeric momentum")
        return _BatchNorm(group, replica_layout)
    if isinstance(first, nn.GroupNorm):
        return _GroupNorm(group, replica_layout)
    if isinstance(first, PadShortcut):
        return _PadShortcut(first, K)
    return copy.deepcopy(first)


class Ensemble(nn.Module):
    """K replicas (``models``: same architecture, replica k built after ``torch.manual_seed(seed_k)``).

    The replicas' module tree is kept (so residual blocks run their own ``forward``) and each
    leaf layer is replaced by its stacked version; leaves after the first ``nn.Flatten`` (in
    registration order, which is forward order for the models of :mod:`svag.models`) work in
    replica layout.
    """

    def __init__(self, models: list[nn.Module], *, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"an ensemble needs >= 2 replicas, got {len(models)}")
        bad = sorted({type(m).__name__ for model in models for m in _leaves(model) if not isinstance(m, _SUPPORTED)})
        if bad:
            raise ValueError(f"the stacked ensemble does not support the layer type(s) {bad}; supported: "
                             f"{sorted(t.__name__ for t in _SUPPORTED)}")  # fmt: skip
        names = [n for n, _ in _named_leaves(models[0])]
        if any(_signature(m) != _signature(models[0]) for m in models[1:]):
            raise ValueError("ensemble replicas must have the same architecture")
        self.K = len(models)
        self.input_shape = tuple(input_shape)
        self.net = copy.deepcopy(models[0])
        replica_layout = False
        leaves = [dict(_named_leaves(m)) for m in models]
        for name in names:
            group = [lv[name] for lv in leaves]
            replica_layout = replica_layout or isinstance(group[0], nn.Flatten)
            _set_module(self.net, name, _stack(group, self.K, replica_layout))
        self._stacked = [(n, m) for n, m in _named_leaves(self.net) if isinstance(m, _Stacked)]
        self.params = [p for p in self.net.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (K, B, *sample), replica k's batch in row k -> logits (K, B, classes)."""
        x = x.transpose(0, 1)  # (B, K, *sample) -> channel layout (B, K·C, *spatial)
        return self.net(x.reshape(x.shape[0], -1, *x.shape[3:]))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, n, classes) for inputs (n, *sample) shared by all replicas, or (K, n, *sample)."""
        if x.dim() == len(self.input_shape) + 1:
            x = x.unsqueeze(0).expand(self.K, *x.shape)
        return self(x)

    def replica_state_dict(self, k: int) -> dict[str, Any]:
        """Replica ``k`` as the ``state_dict`` of the plain model."""
        out = {}
        for name, layer in self._stacked:
            for key, value in layer.replica(k).items():
                out[f"{name}.{key}"] = value.detach().clone()
        return out

    def load_replica_state_dicts(self, states: list[dict[str, Any]]) -> None:
        """Load each replica from a plain model's ``state_dict`` (``states[k]`` -> replica k)."""
        if len(states) != self.K:
            raise ValueError(f"expected {self.K} replica states, got {len(states)}")
        for k, state in enumerate(states):
            for name, layer in self._stacked:
                layer.load(k, {key: state[f"{name}.{key}"] for key in layer.names})


def _leaves(model: nn.Module) -> list[nn.Module]:
    return [m for _, m in _named_leaves(model)]


def _named_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


def _signature(model: nn.Module) -> list:
    """Leaf names, types and state shapes: equal for replicas of one architecture."""
    return [(n, type(m), [tuple(t.shape) for t in m.state_dict().values()]) for n, m in _named_leaves(model)]


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)
