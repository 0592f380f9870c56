"""Training batches from any map-style ``Dataset`` through ``DataLoader`` workers, index for index
those of the in-memory path.

The in-memory path indexes tensors with :class:`~svag.data.sampling.PairSampler`'s index batches.
For data that does not fit in memory the same sampler drives a ``torch.utils.data.DataLoader``:

* :class:`StepBatches` is the loader's ``batch_sampler``: it asks a :class:`PairSampler` for each
  step's index batches and yields them one after the other (batch 1, then batch 2 of an SVAG step;
  one batch per SGD step), or both halves as one list (``joined=True``, one loader item per step).
  Same sampler, same seed (the ``data_order`` stream of :mod:`svag.seeds`), same modes: the indices
  are exactly the in-memory path's.
* :class:`TrainLoader` runs that loader with ``workers`` processes (pinned memory when the run is
  on a GPU) and hands out each step's batches on the run's device and dtype. The loader runs
  ahead (``prefetch_factor`` batches per worker) with its own copy of the sampler; the sampler the
  caller gave (``loader.sampler``, which the runner checkpoints) advances only when a step's
  batches are handed out. So a checkpoint taken between steps holds the position of the next
  step to train, not of the prefetched ones, and a resumed run draws exactly the batches of an
  uninterrupted one: the copy restarts from the saved state at the first :meth:`TrainLoader.next`
  after :meth:`TrainLoader.load_state_dict` (or after the sampler's own ``load_state_dict``, when
  the loader has not started yet).

What the data set must do: ``dataset[i]`` returns ``(input, target)`` (tensors, or anything
``default_collate`` stacks) and is **deterministic**: random augmentation belongs to the runner
(``ArrayDataset.augment``, drawn in the main process from the ``augment`` stream), because worker
processes are started afresh on resume and a random ``__getitem__`` would not repeat. The workers'
own seeds come from the ``loader`` stream of the seed tree (and no draw from the global RNG, which
the run's dropout uses). A data set may define ``__getitems__(indices)`` (PyTorch's batched fetch)
for speed: :class:`TensorPairs` does.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from svag.data.sampling import PairSampler
from svag.memory import usable_cores

__all__ = [
    "LOAD_SAMPLES",
    "WORKERS_PER_CORE",
    "StepBatches",
    "TensorPairs",
    "TrainLoader",
    "check_workers",
    "collate",
]

LOAD_SAMPLES = 512  # samples per worker message by default (benchmarks/bench_loader.py)
# Worker processes allowed per core this process may run on. Each worker is a process of its own (~100 MB and
# more); PyTorch's DataLoader warns past one per core, and loading that waits on a disk gains from a few more.
WORKERS_PER_CORE = 2


def check_workers(workers: Any, name: str = "loader workers") -> int:
    """``workers`` as an int, or ``ValueError`` naming ``name`` unless it is an integer in
    ``[0, WORKERS_PER_CORE × usable_cores()]``."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {workers!r}")
    cores = usable_cores()
    if workers > WORKERS_PER_CORE * cores:
        raise ValueError(
            f"{name} must be at most {WORKERS_PER_CORE * cores} ({WORKERS_PER_CORE} worker processes per core, "
            f"{cores} core(s) here), got {workers}"
        )
    return workers


class TensorPairs(Dataset):
    """A map-style view of in-memory ``(inputs, targets)`` tensors; ``__getitems__`` gathers a whole
    batch with one indexing operation (the values of ``inputs[idx]``, as the in-memory path)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"inputs and targets differ in length: {len(inputs)} and {len(targets)}")
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.targets[i]

    def __getitems__(self, indices: list[int]) -> _Collated:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return _Collated((self.inputs[idx], self.targets[idx]))


class _Collated(tuple):
    """A batch gathered whole by ``__getitems__``: :func:`collate` passes it through."""


def collate(samples: Any) -> Any:
    """``default_collate``, except for a batch a data set gathered whole (:class:`TensorPairs`)."""
    if isinstance(samples, _Collated):
        return tuple(samples)
    return default_collate(samples)


class StepBatches(Sampler):
    """A ``batch_sampler`` yielding the index batches of consecutive steps of ``sampler``.

    Args:
        sampler: the :class:`PairSampler` whose ``next()`` gives each step's batches; it is advanced.
        steps: steps per iteration (``None``: endless; a number gives ``len()`` for loops that
            count epochs, e.g. Lightning: each new iteration continues the same stream).
        joined: one list per step (batch 1 then batch 2) instead of one list per batch.
        group: with ``joined``, the steps per list (fewer, larger loads: one message from a worker
            costs milliseconds whatever its size). Endless streams only.
    """

    def __init__(self, sampler: PairSampler, steps: int | None = None, *, joined: bool = False, group: int = 1) -> None:
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"steps must be an integer >= 1 or None, got {steps!r}")
        if isinstance(group, bool) or not isinstance(group, int) or group < 1 or (group > 1 and not joined):
            raise ValueError(f"group must be an integer >= 1 (> 1 only with joined=True), got {group!r}")
        if group > 1 and steps is not None:
            raise ValueError(f"group > 1 needs an endless stream (steps=None), got steps={steps}")
        self.sampler, self.steps, self.joined, self.group = sampler, steps, joined, group

    def __iter__(self) -> Iterator[list[int]]:
        k = 0
        while self.steps is None or k < self.steps:
            if self.joined:
                yield [i for _ in range(self.group) for t in self.sampler.next() if t is not None for i in t.tolist()]
            else:
                for t in self.sampler.next():
                    if t is not None:
                        yield t.tolist()
            k += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless StepBatches has no length")
        return self.steps * (2 if self.sampler.pairs and not self.joined else 1)


def _worker_init(worker_id: int) -> None:
    """Workers ignore SIGINT and SIGTERM: Ctrl-C reaches the whole process group, and the run's
    process must finish its step and checkpoint (:mod:`svag.runner`) before it stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _copy(sampler: PairSampler) -> PairSampler:
    twin = PairSampler(sampler.n, sampler.batch_size, pairs=sampler.pairs, mode=sampler.mode, seed=sampler.seed)
    twin.load_state_dict(sampler.state_dict())
    return twin


class TrainLoader:
    """Each step's training batches from ``dataset``, loaded by ``workers`` processes.

    Args:
        dataset: a map-style ``Dataset`` of ``n = sampler.n`` samples (see the module docstring).
        sampler: the run's :class:`PairSampler`; it advances by one step per :meth:`next` and is
            the state to checkpoint (:meth:`state_dict` is its ``state_dict``).
        workers: ``DataLoader`` worker processes (>= 1; 0 loads in this process).
        seed: the run's seed: the workers' seeds come from its ``loader`` stream.
        device, dtype: where the batches go and the floating dtype of the inputs (targets keep theirs).
        pin_memory: page-locked host batches for fast copies (default: when ``device`` is a GPU).
        prefetch_factor: loads each worker keeps ready.
        steps_per_load: steps whose batches one worker loads at once, as one message to this process
            (each message has a fixed cost: 3.6 ms on a busy 2-core machine, BENCHMARKS.md); default:
            as many as hold at most :data:`LOAD_SAMPLES` samples (at least one step). Memory: up to
            ``workers·prefetch_factor`` loads are held at once.
        collate_fn: how samples become a batch (default :func:`collate`).
    """

    def __init__(
        self,
        dataset: Any,
        sampler: PairSampler,
        *,
        workers: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        steps_per_load: int | None = None,
        collate_fn: Callable[[Any], Any] | None = None,
    ) -> None:
        from svag.seeds import check_seed

        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise ValueError(f"dataset must be a map-style Dataset (__getitem__ and __len__), got {type(dataset)}")
        if len(dataset) != sampler.n:
            raise ValueError(f"dataset has {len(dataset)} samples but the sampler draws from n = {sampler.n}")
        self.dataset, self.sampler = dataset, sampler
        self.workers, self.seed = check_workers(workers), check_seed(seed)
        self.device = torch.device(device)
        self.dtype = dtype
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else bool(pin_memory)
        self.prefetch_factor = prefetch_factor
        if steps_per_load is None:
            steps_per_load = max(1, LOAD_SAMPLES // sampler.per_step)
        if isinstance(steps_per_load, bool) or not isinstance(steps_per_load, int) or steps_per_load < 1:
            raise ValueError(f"steps_per_load must be an integer >= 1, got {steps_per_load!r}")
        self.steps_per_load = steps_per_load
        self._load: tuple | None = None  # the current load: (inputs, targets) of steps_per_load steps
        self._pos = 0
        self.collate_fn = collate if collate_fn is None else collate_fn
        self._it: Iterator | None = None

    def _start(self) -> None:
        from svag.seeds import generator

        loader = DataLoader(
            self.dataset,
            batch_sampler=StepBatches(_copy(self.sampler), joined=True, group=self.steps_per_load),
            num_workers=self.workers,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_factor if self.workers else None,
            generator=generator(self.seed, "loader"),  # the workers' seeds; never the global RNG
            worker_init_fn=_worker_init if self.workers else None,
        )
        self._it = iter(loader)
        self._load, self._pos = None, 0

    def _to_device(self, batch: Any) -> Any:
        non_blocking = self.pin_memory and self.device.type == "cuda"
        inputs, targets = batch[0], batch[1]
        dtype = inputs.dtype if self.dtype is None else self.dtype
        inputs = inputs.to(self.device, dtype, non_blocking=non_blocking)
        return inputs, targets.to(self.device, non_blocking=non_blocking)

    def next(self) -> tuple[Any, Any]:
        """The next step's ``(batch1, batch2)`` (``batch2`` ``None`` for SGD), each ``(inputs, targets)``
        on ``device``: ``inputs = dataset[idx]`` stacked, for the indices ``sampler.next()`` returns."""
        if self._it is None:
            self._start()
        _, second = self.sampler.next()  # the step handed out: the state a checkpoint must hold
        if self._load is None or self._pos == len(self._load[0]):
            self._load, self._pos = self._to_device(next(self._it)), 0
        B = self.sampler.batch_size
        batches = []
        for _ in range(1 if second is None else 2):
            batches.append(tuple(t[self._pos : self._pos + B] for t in self._load[:2]))
            self._pos += B
        return batches[0], batches[1] if len(batches) > 1 else None

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state after the last step handed out (prefetched batches are not counted)."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the workers restart from it at the next :meth:`next`."""
        self.close()
        self.sampler.load_state_dict(state)

    def close(self) -> None:
        """Stop the worker processes (the next :meth:`next` starts them again where the sampler is)."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
