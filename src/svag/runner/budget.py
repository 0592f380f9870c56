"""What a run will cost, checked before anything starts: batches, optimizer steps, memory.

A size-like value can ask for a run that never ends or that exhausts the machine without a word
(``--n-train 1000000000``, ``--l 1e7``, ``--width 1e6``). :func:`check_budget` works out what a
config implies from facts known before loading anything: the data set's size
(:func:`svag.data.data_size`), the optimizer's clock (:meth:`svag.optim.SVAGOptimizer.clock`) and
the model's parameter count (the model built on PyTorch's ``meta`` device, which allocates
nothing). It refuses with one line naming the value, what it implies and the limit. The runner
calls it before it creates a run folder; sweeps call it for every run before the first one starts.
Limits that follow from the config alone (records, checkpoints, m) are in
:meth:`svag.config.RunConfig.validate`. A Gaussian-noise run (each step a pass over every sample)
also counts its step's per-sample buffers and its per-sample gradients; a run that is allowed but
slow to start or long (such a run, a large MNIST-1D set not yet generated) gets one line saying so
before it starts (:func:`cost_notice`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from svag.build import build_optimizer, check_fit
from svag.config import RunConfig
from svag.data import data_size
from svag.data.mnist1d import generation_notice
from svag.gaussian import STEP_BYTES_PER_SAMPLE, check_model
from svag.memory import MEMORY_FRACTION, available_memory
from svag.models import build_model
from svag.plugins import KINDS, is_spec
from svag.runner.engine import EVAL_CHUNK
from svag.runner.timeline import make_schedule
from svag.schedules import OnSteps
from svag.task import make_task

__all__ = ["MAX_SAMPLE_GRADIENTS", "MAX_STEPS", "NOTICE_SAMPLE_GRADIENTS", "Budget", "check_budget", "cost_notice",
           "optimizer_steps"]  # fmt: skip

MAX_STEPS = 10**9  # optimizer steps of one run (days of training even for the smallest model)
# Per-sample gradients of a Gaussian-noise run (each step is a pass over all n_train samples): refused past
# MAX_SAMPLE_GRADIENTS (the MNIST-1D-sized MLP computes ~3e5 a second on one CPU core: 10^12 is a month there),
# announced with a notice past NOTICE_SAMPLE_GRADIENTS (minutes there).
MAX_SAMPLE_GRADIENTS = 10**12
NOTICE_SAMPLE_GRADIENTS = 10**8
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
    step_bytes: int = 0  # gaussian runs: the step's per-sample buffers (svag.gaussian.STEP_BYTES_PER_SAMPLE)
    sample_gradients: float = 0.0  # gaussian runs: steps × n_train × replicas per-sample gradients; else 0


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
    except (RuntimeError, TypeError, OverflowError) as err:  # a layer too large even to describe: its size overflows
        raise ValueError(
            f"width={cfg.width:g} makes a layer of {cfg.model} too large to allocate ({str(err).splitlines()[0]}); "
            "use a smaller width"
        ) from None
    plugins = {k: getattr(cfg, k) for k in KINDS}
    if any(map(is_spec, plugins.values())):  # a user's model, data or loss: do they fit together?
        task = make_task(cfg.loss, size.num_classes)
        check_fit(model, task, size.input_shape, size.num_classes, plugins, label_shape=size.label_shape)
    return model


def check_budget(cfg: RunConfig | dict, replicas: int = 1, device: torch.device | None = None) -> Budget:
    """Refuse ``cfg`` (``ValueError``, one line) if its batches do not fit the training set, its
    run would take more than :data:`MAX_STEPS` optimizer steps, or its data set and model
    (``replicas`` seeds trained together) would not fit in :data:`MEMORY_FRACTION` of the memory
    (:func:`available_memory`; on a CUDA ``device`` also of the device's). A Gaussian-noise run
    is also refused when its model has BatchNorm, its step's per-sample buffers do not fit beside
    them, or it would compute more than :data:`MAX_SAMPLE_GRADIENTS` per-sample gradients. Returns
    the :class:`Budget`. Validates ``cfg`` first; reads and allocates nothing.
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
    model = _described_model(cfg, size)
    if cfg.gradient_noise == "gaussian":  # e.g. a plug-in model with BatchNorm (built-in ones: config.validate)
        try:
            check_model(model)
        except ValueError as err:
            raise ValueError(f"model {cfg.model!r}: {str(err).splitlines()[0]}") from None
    n_params = sum(p.numel() for p in model.parameters())
    model_bytes = n_params * replicas * itemsize * _PARAM_COPIES
    if limit is not None and data_bytes + model_bytes > limit:
        raise ValueError(
            f"width={cfg.width:g} gives {cfg.model} {n_params:.3g} parameters × {replicas} seed(s), at least "
            f"{_gib(model_bytes)} in {cfg.dtype} (parameters, gradient, two batch gradients) besides the data "
            f"({_gib(data_bytes)}), more than {MEMORY_FRACTION:.0%} of the {_gib(memory)} available; "
            "use a smaller width or fewer seeds at once"
        )
    step_bytes, work = _check_gaussian(cfg, size.n_train, replicas, steps, data_bytes + model_bytes, memory)
    if device is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        if data_bytes + model_bytes + step_bytes > MEMORY_FRACTION * total:
            step = f" and the Gaussian step's buffers ({_gib(step_bytes)})" if step_bytes else ""
            raise ValueError(
                f"the data ({_gib(data_bytes)}) and {cfg.model} at width={cfg.width:g} × {replicas} seed(s) "
                f"({_gib(model_bytes)}){step} need more than {MEMORY_FRACTION:.0%} of the {_gib(total)} of {device}; "
                "use fewer samples or a smaller width"
            )
    return Budget(size.n_train, size.n_test, steps, data_bytes, model_bytes, limit, step_bytes, work)


def _check_gaussian(cfg: RunConfig, n: int, replicas: int, steps: float, held: int, memory) -> tuple[int, float]:
    """A Gaussian-noise run's per-sample buffers (bytes) and per-sample gradients; ``(0, 0)`` for a minibatch
    run. Refused when the buffers and ``held`` (data and model) pass :data:`MEMORY_FRACTION` of ``memory``,
    or the gradients :data:`MAX_SAMPLE_GRADIENTS`."""
    if cfg.gradient_noise != "gaussian":
        return 0, 0.0
    step_bytes = n * replicas * STEP_BYTES_PER_SAMPLE
    if memory is not None and held + step_bytes > MEMORY_FRACTION * memory:
        raise ValueError(
            f"gradient_noise gaussian with n_train={n} × {replicas} seed(s): each step holds {_gib(step_bytes)} of "
            f"per-sample noise weights and losses besides the data and the model ({_gib(held)}), more than "
            f"{MEMORY_FRACTION:.0%} of the {_gib(memory)} available; use fewer samples (--n-train) or seeds at once"
        )
    work = steps * n * replicas
    if not work <= MAX_SAMPLE_GRADIENTS:
        seeds = f" × {replicas} seeds" if replicas > 1 else ""
        raise ValueError(
            f"gradient_noise gaussian computes every training sample's gradient at every step: {steps:.3g} steps × "
            f"n_train={n}{seeds} = {work:.3g} per-sample gradients; at most {MAX_SAMPLE_GRADIENTS:.0e} are allowed: "
            "use fewer samples (--n-train) or epochs"
        )
    return step_bytes, work


def cost_notice(cfg: RunConfig, budget: Budget) -> str | None:
    """The line to show before a run whose start or cost would otherwise be silent for minutes: MNIST-1D
    generating a large set that is not cached (:func:`svag.data.mnist1d.generation_notice`), a Gaussian-noise
    run past :data:`NOTICE_SAMPLE_GRADIENTS` per-sample gradients; ``None``: nothing to say."""
    said = []
    if cfg.data == "mnist1d":
        said.append(generation_notice(budget.n_train, budget.n_test, cfg.data_seed))
    if budget.sample_gradients > NOTICE_SAMPLE_GRADIENTS:
        said.append(
            f"this gaussian run computes {budget.sample_gradients:.3g} per-sample gradients ({budget.steps:.3g} "
            f"full-batch steps over n_train={budget.n_train}), n_train/B = {budget.n_train / cfg.batch_size:.3g}× "
            "those of the minibatch run it simulates: --n-train sets its cost"
        )
    return "; ".join(line for line in said if line) or None
