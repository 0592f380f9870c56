"""A data plug-in's map-style ``Dataset``s kept on disk: runs whose data do not fit in memory.

With ``loader_workers > 0`` (``--loader-workers N``) the runner asks :func:`svag.plugins.load_data`
for the splits as they are (:class:`DatasetSplits`) instead of reading them into tensors. Only
what must be in memory is: the first ``eval_train_samples`` training samples (train loss, accuracy
and ‖∇L‖² at each record), each step's batches, and one evaluation chunk of the test set at a time.

* training batches: :class:`svag.data.loader.TrainLoader` over :attr:`DatasetSplits.train`, with the
  in-memory path's indices;
* SGD's extra G/N batches and P1's m-batch draws: the indices of the ``noise_batches`` and
  ``m_batches`` streams, read by index in the run's process (:func:`fetch`, :class:`Cast`);
* the test set: read in order in chunks of :data:`svag.runner.engine.EVAL_CHUNK` samples by ``DataLoader``
  workers at each record (:class:`Chunks`), the chunks of the in-memory evaluation.

Every item goes through :class:`Samples`, the conversion the in-memory path applies before stacking
(inputs ``float32``, labels ``int64``), so both paths see the same numbers bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from svag.data.loader import _worker_init, collate

__all__ = ["Cast", "Chunks", "DatasetSplits", "Samples", "fetch", "sample"]


def sample(item: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One item ``(input, label)`` of a plug-in's Dataset as tensors: the input ``float32``, the label
    as given (its dtype is checked by the caller before it becomes ``int64``)."""
    return torch.as_tensor(item[0], dtype=torch.float32), torch.as_tensor(item[1])


class Samples(Dataset):
    """``dataset``'s items ``(input, label)`` as ``(float32 tensor, int64 tensor)``: what
    :mod:`svag.plugins` stacks for the in-memory path, one item at a time."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = sample(self.dataset[i])
        return x, y.to(torch.int64)


class Cast(Dataset):
    """``dataset``'s items with the inputs in ``dtype`` (for :func:`svag.noise.measure_noise`, which
    moves batches to the model's device but keeps their dtype)."""

    def __init__(self, dataset: Any, dtype: torch.dtype) -> None:
        self.dataset, self.dtype = dataset, dtype

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset[i]
        return x.to(self.dtype), y


def fetch(dataset: Any, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch ``(inputs, labels)`` of ``dataset`` at ``indices``, read in this process (with the
    data set's ``__getitems__`` when it has one, as ``DataLoader`` does)."""
    getitems = getattr(dataset, "__getitems__", None)
    samples = getitems(list(indices)) if getitems is not None else [dataset[i] for i in indices]
    x, y = collate(samples)
    return x, y


@dataclass
class DatasetSplits:
    """A data set whose splits stay map-style ``Dataset``s of ``(float32 input, int64 label)``
    (:class:`Samples`, or :class:`svag.data.loader.TensorPairs` for a split given as tensors)."""

    name: str
    train: Any
    test: Any
    num_classes: int
    input_shape: tuple[int, ...]
    streamed: tuple[str, ...] = ("train", "test")  # the splits read from a Dataset as the run goes
    augment: None = None  # a Dataset's items are final: augmentation would belong to the runner

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_test(self) -> int:
        return len(self.test)


class Chunks:
    """``dataset`` in order, ``size`` samples at a time, loaded by ``workers`` processes and handed
    out on ``device`` (inputs in ``dtype``): the chunks in which :func:`svag.runner.engine.evaluate` reads
    in-memory tensors. Each iteration starts the workers and stops them when it ends; their seeds
    come from the ``loader`` stream of run ``seed`` (never the global RNG)."""

    def __init__(self, dataset: Any, size: int, *, workers: int, seed: int, device: torch.device,
                 dtype: torch.dtype) -> None:  # fmt: skip
        self.dataset, self.size, self.workers, self.seed = dataset, size, workers, seed
        self.device, self.dtype = torch.device(device), dtype

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from svag.seeds import generator

        pin = self.device.type == "cuda"
        loader = DataLoader(
            self.dataset, batch_size=self.size, shuffle=False, num_workers=self.workers, collate_fn=collate,
            pin_memory=pin, generator=generator(self.seed, "loader"),
            worker_init_fn=_worker_init if self.workers else None,
        )  # fmt: skip
        for x, y in loader:
            yield x.to(self.device, self.dtype, non_blocking=pin), y.to(self.device, non_blocking=pin)
