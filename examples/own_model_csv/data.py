"""A CSV-backed data set for svag: ``--data examples/own_model_csv/data.py:load --data-root DIR``.

svag calls ``load`` with the keywords it names among ``n_train``, ``n_test``, ``seed`` and ``root``
(here only ``root``: ``--data-root``); it returns the train and test splits as map-style
``torch.utils.data.Dataset``s of ``(features, label)``, which svag reads into memory once. svag cuts
each split to ``--n-train`` / ``--n-test`` samples (a subset drawn with ``--data-seed``) and takes
the number of classes as the largest label + 1 (return ``(train, test, num_classes)`` to say it).
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch.utils.data import Dataset


class CSVDataset(Dataset):
    """Rows of a CSV file with a header: every column but the last is a feature, the last the class
    label; features are standardized with ``mean`` and ``std`` (those of the training file)."""

    def __init__(self, path: Path, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> None:
        with Path(path).open(newline="") as f:
            rows = list(csv.reader(f))[1:]
        self.x = torch.tensor([[float(v) for v in row[:-1]] for row in rows], dtype=torch.float32)
        self.y = torch.tensor([int(row[-1]) for row in rows], dtype=torch.int64)
        self.mean = self.x.mean(0) if mean is None else mean
        self.std = self.x.std(0) if std is None else std

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return (self.x[i] - self.mean) / self.std, int(self.y[i])


def load(root: str | None) -> tuple[Dataset, Dataset]:
    """``(train, test)`` from ``root/train.csv`` and ``root/test.csv`` (written by ``make_csv.py``)."""
    if root is None:
        raise ValueError("pass --data-root DIR, the folder holding train.csv and test.csv (see make_csv.py)")
    train = CSVDataset(Path(root) / "train.csv")
    return train, CSVDataset(Path(root) / "test.csv", train.mean, train.std)
