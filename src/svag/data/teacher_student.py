"""A synthetic teacher–student classification task: fast, exact to regenerate, no files.

Inputs ``x ~ N(0, I_d)``; a fixed random teacher, a one-hidden-layer tanh network
``f(x) = W₂ᵀ tanh(W₁ᵀ x)`` with ``W₁ ∈ ℝ^{d×h}``, ``W₂ ∈ ℝ^{h×k}`` of i.i.d. ``N(0, 1/fan_in)``
entries (no biases), labels ``y = argmax_c f(x)_c``. The task is realizable (a student as wide as
the teacher can reach zero training loss); tanh is odd, so no class dominates (with the defaults
each of the 4 classes gets roughly 18–32% of the samples, depending on the seed).

The teacher, the training inputs and the test inputs come from three independent streams of
``numpy.random.SeedSequence([seed, 0x7EAC])``: changing ``n_train`` does not change the teacher
or the test set, and the first samples of a larger training set are those of a smaller one.
Inputs are already standardized; they are returned as ``(n, d)`` float32.
"""

from __future__ import annotations

import numpy as np
import torch

from svag.data.base import ArrayDataset

__all__ = ["DEFAULT_N_TEST", "DEFAULT_N_TRAIN", "load_teacher_student", "teacher_logits"]

DEFAULT_N_TRAIN, DEFAULT_N_TEST = 2000, 1000
_STREAM = 0x7EAC
# samples generated at once: the float64 draws and the teacher's hidden layer of one chunk are held, not those
# of the whole set (for n = 10^8 they would take 15 + 24 GiB besides the float32 inputs); numpy's stream is
# the same drawn in pieces, and sets of up to one chunk are computed exactly as in one piece
_CHUNK = 1 << 16


def teacher_logits(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """The teacher's outputs ``f(x) = W₂ᵀ tanh(W₁ᵀ x)`` for a batch ``x`` of shape ``(n, d)``."""
    return np.tanh(x @ w1) @ w2


def load_teacher_student(
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    dim: int = 20,
    num_classes: int = 4,
    hidden: int = 32,
) -> ArrayDataset:
    """The teacher–student data set (see the module docstring); inputs ``(n, dim)``."""
    n_train = DEFAULT_N_TRAIN if n_train is None else n_train
    n_test = DEFAULT_N_TEST if n_test is None else n_test
    teacher, train, test = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, _STREAM]).spawn(3))
    w1 = teacher.standard_normal((dim, hidden)) / np.sqrt(dim)
    w2 = teacher.standard_normal((hidden, num_classes)) / np.sqrt(hidden)
    out = []
    for rng, n in ((train, n_train), (test, n_test)):
        x, y = torch.empty((n, dim), dtype=torch.float32), torch.empty(n, dtype=torch.int64)
        for start in range(0, n, _CHUNK):  # the draws of one (n, dim) call, a chunk at a time
            x_k = rng.standard_normal((min(_CHUNK, n - start), dim))
            x[start : start + len(x_k)] = torch.from_numpy(x_k.astype(np.float32))
            y[start : start + len(x_k)] = torch.from_numpy(teacher_logits(x_k, w1, w2).argmax(axis=1).astype(np.int64))
        out += [x, y]
    return ArrayDataset("teacher-student", *out, num_classes=num_classes)
