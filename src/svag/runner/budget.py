"""What a run will cost, checked before anything starts: batches, optimizer steps, memory.

A size-like value can ask for a run that never ends or that exhausts the machine without a word
(``--n-train 1000000000``, ``--l 1e7``, ``--width 1e6``). :func:`check_budget` works out what a
config implies from facts known before loading anything: the data set's size
(:func:`svag.data.data_size`), the optimizer's clock (:meth:`svag.optim.SVAGOptimizer.clock`) and
the model's parameter count (the model built on PyTorch's ``meta`` device, which allocates
nothing). It refuses with one line naming the value, what it implies and the limit. The runner
calls it before it creates a run folder; sweeps call it for every run before the first one starts.
Limits that follow from the config alone (records, checkpoints, m) are in
:meth:`svag.config.RunConfig.validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from svag.build import build_optimizer, check_fit
from svag.config import RunConfig
from svag.data import data_size
from svag.memory import MEMORY_FRACTION, available_memory
from svag.models import build_model
from svag.plugins import KINDS, is_spec
from svag.runner.engine import EVAL_CHUNK
from svag.runner.timeline import make_schedule
from svag.schedules import OnSteps
from svag.task import make_task

__all__ = ["MAX_STEPS", "Budget", "check_budget", "optimizer_steps"]

MAX_STEPS = 10**9  # optimizer steps of one run (days of training even for the smallest model)
_PARAM_COPIES = 4  # parameters, their gradient and SVAG's two batch gradients (a lower bound: no activations)


@dataclass(frozen=True)
class Budget:
    """What :func:`check_budget` worked out for a run (every number is per run of ``replicas`` seeds)."""

    n_train: int
    n_test: int
    steps: float  # optimizer steps to reach the end time (∫ dt / step time)
    data_bytes: int  # the data set in memory: float32 as loaded, plus the run's dtype copy
    model_bytes: int  # parameters × replicas × dtype size × 4 (params, gradient, two batch gradients)
    memory_limit: int | None  # MEMORY_FRACTION of available_memory(); None: unknown, not checked


def optimizer_steps(schedule, end_time: float, clock, points: int = 8192) -> float:
    r"""Optimizer steps a run takes to reach ``end_time``: :math:`\int_0^T dt / \Delta t(\eta(t))`,
    with :math:`\Delta t(\eta)` = ``clock.step_time(η)`` (midpoint rule on ``points`` cells; exact at
    constant LR, within a cell per milestone otherwise). A schedule over the steps
    (:class:`svag.schedules.OnSteps`) knows its count exactly: ``l^p`` per step of the simulated run."""
    if isinstance(schedule, OnSteps):
        try:
            return float(schedule.svag_steps(clock.l))
        except ValueError:  # l^p not an integer: SVAG steps straddle the schedule's steps; integrate
            pass
    dt = end_time / points
    return sum(dt / clock.step_time(schedule((i + 0.5) * dt)) for i in range(points))


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def _held(cfg: RunConfig, size) -> tuple[int, int]:
    """Training and test samples a run holds in memory: all of them, except for a split read from a
    Dataset as the run goes (:mod:`svag.data.streamed`): the evaluation subset of the training set,
    one evaluation chunk of the test set."""
    train = min(cfg.eval_train_samples, size.n_train) if "train" in size.streamed else size.n_train
    test = min(EVAL_CHUNK, size.n_test) if "test" in size.streamed else size.n_test
    return train, test


def _check_batches(cfg: RunConfig, n: int) -> None:
    """A batch (two disjoint ones for SVAG's minibatch noise) must fit in the ``n`` training samples."""
    B = cfg.batch_size
    if B > n:
        raise ValueError(f"batch_size={B} is larger than the training set (n_train={n}); use batch_size <= {n}")
    if cfg.l > 1 and cfg.sampling == "disjoint" and cfg.gradient_noise == "minibatch" and 2 * B > n:
        raise ValueError(
            f"batch_size={B}: SVAG (l={cfg.l:g}) draws two disjoint batches per step, 2·B = {2 * B} > n_train = {n}; "
            f"use batch_size <= {n // 2} or --sampling replacement"
        )


def _check_steps(cfg: RunConfig, n: int) -> float:
    """The run's optimizer steps (its clock and schedule), refused past :data:`MAX_STEPS`."""
    B = cfg.batch_size
    clock = build_optimizer(cfg, [torch.zeros(1, requires_grad=True)]).clock()
    schedule, end = make_schedule(cfg, n / B, clock)
    steps = optimizer_steps(schedule, end, clock)
    if not steps <= MAX_STEPS:
        per_epoch = n / B * clock.steps_per_original
        raise ValueError(
            f"this run takes {steps:.3g} optimizer steps (epochs={cfg.epochs:g} × n_train/B = {n}/{B} × "
            f"{clock.steps_per_original:g} steps per SGD step at l={cfg.l:g}, more at a decayed LR); at most "
            f"{MAX_STEPS:.0e} are allowed: about {MAX_STEPS / per_epoch:.3g} epochs at most here"
        )
    return steps


def _described_model(cfg: RunConfig, size) -> torch.nn.Module:
    """The run's model on the meta device (shapes only, nothing allocated); a user's factory that cannot
    run there is built for real; a user's model, data and loss are checked to fit together."""

    def build():
        return build_model(cfg.model, input_shape=size.input_shape, num_classes=size.num_classes, norm=cfg.norm,
                           scale_invariant=cfg.scale_invariant, width=cfg.width)  # fmt: skip

    try:
        with torch.device("meta"):
            model = build()
    except ValueError:
        if not is_spec(cfg.model):
            raise
        model = build()  # a user's factory that cannot run on the meta device (svag.plugins): built for real
    except RuntimeError as err:  # a layer too large even to describe: its size overflows
        raise ValueError(
            f"width={cfg.width:g} makes a layer of {cfg.model} too large to allocate ({str(err).splitlines()[0]}); "
            "use a smaller width"
        ) from None
    plugins = {k: getattr(cfg, k) for k in KINDS}
    if any(map(is_spec, plugins.values())):  # a user's model, data or loss: do they fit together?
        check_fit(model, make_task(cfg.loss, size.num_classes), size.input_shape, size.num_classes, plugins)
    return model


def check_budget(cfg: RunConfig | dict, replicas: int = 1, device: torch.device | None = None) -> Budget:
    """Refuse ``cfg`` (``ValueError``, one line) if its batches do not fit the training set, its
    run would take more than :data:`MAX_STEPS` optimizer steps, or its data set and model
    (``replicas`` seeds trained together) would not fit in :data:`MEMORY_FRACTION` of the memory
    (:func:`available_memory`; on a CUDA ``device`` also of the device's). Returns the
    :class:`Budget`. Validates ``cfg`` first; reads and allocates nothing.
    """

    cfg = RunConfig.of(cfg).validate()
    size = data_size(cfg.data, cfg.n_train, cfg.n_test, root=cfg.data_root, seed=cfg.data_seed,
                     datasets=cfg.loader_workers > 0)  # fmt: skip
    _check_batches(cfg, size.n_train)
    itemsize = torch.empty((), dtype=getattr(torch, cfg.dtype)).element_size()
    held = _held(cfg, size)
    values = sum(held) * math.prod(size.input_shape)
    data_bytes = values * (4 + (itemsize if itemsize != 4 else 0))
    memory = available_memory()
    limit = None if memory is None else int(MEMORY_FRACTION * memory)
    if limit is not None and data_bytes > limit:
        counted = "" if not size.streamed else f" (held in memory: {held[0]} + {held[1]})"
        raise ValueError(
            f"n_train={size.n_train} + n_test={size.n_test} samples{counted} of shape {size.input_shape} take "
            f"{_gib(data_bytes)} in memory, more than {MEMORY_FRACTION:.0%} of the {_gib(memory)} available; "
            "use fewer samples"
        )
    steps = _check_steps(cfg, size.n_train)
    n_params = sum(p.numel() for p in _described_model(cfg, size).parameters())
    model_bytes = n_params * replicas * itemsize * _PARAM_COPIES
    if limit is not None and data_bytes + model_bytes > limit:
        raise ValueError(
            f"width={cfg.width:g} gives {cfg.model} {n_params:.3g} parameters × {replicas} seed(s), at least "
            f"{_gib(model_bytes)} in {cfg.dtype} (parameters, gradient, two batch gradients) besides the data "
            f"({_gib(data_bytes)}), more than {MEMORY_FRACTION:.0%} of the {_gib(memory)} available; "
            "use a smaller width or fewer seeds at once"
        )
    if device is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        if data_bytes + model_bytes > MEMORY_FRACTION * total:
            raise ValueError(
                f"the data ({_gib(data_bytes)}) and {cfg.model} at width={cfg.width:g} × {replicas} seed(s) "
                f"({_gib(model_bytes)}) need more than {MEMORY_FRACTION:.0%} of the {_gib(total)} of {device}; "
                "use fewer samples or a smaller width"
            )
    return Budget(size.n_train, size.n_test, steps, data_bytes, model_bytes, limit)
