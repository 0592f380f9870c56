"""Index batches for training: two independent batches of size B per SVAG step, one per SGD step.

Modes (:data:`SAMPLING_MODES`):

* ``"disjoint"`` (the default, as in P1's code): one shuffled pass over the ``n`` training samples.
  An SVAG step (``pairs=True``) takes the next ``2B`` indices of the permutation, the first ``B``
  for batch 1 and the next ``B`` for batch 2; an SGD step (``pairs=False``) takes the next ``B``.
  When fewer than that remain, the remainder is dropped, the pass is counted and a fresh
  permutation is drawn. Within a pass no index repeats, so the two batches of a step are
  disjoint: together they are a uniformly random ``2B``-subset split in halves. Each batch alone
  is a uniform ``B``-subset (the finite-population covariance ``Σ_1·(n−B)/(B(n−1))``); the two are
  exchangeable but not exactly independent (``Cov(g1, g2) = −Σ_1/(n−1)``, negligible for n ≫ 1).
* ``"replacement"``: every index of every batch is drawn i.i.d. uniformly from ``0..n−1``; the
  batches are exactly independent of each other and of the past, and each has covariance
  ``Σ_1/B`` (no finite-population factor). ``passes`` then counts ``samples_seen // n``.

**What an "epoch" means for SVAG.** The runner measures progress in *SGD-equivalent epochs*:
``epochs = effective steps · B / n = t / (η·n/B)`` at constant LR η, with continuous time
``t = k·η/l`` after ``k`` SVAG steps (effective steps ``k/l``; P1 §4). A pass of this sampler is
*not* an epoch: an SVAG step consumes ``2B`` samples, so a pass takes ``n/(2B)`` steps, which cover
``n/(2Bl)`` effective steps = ``1/(2l)`` of an SGD-equivalent epoch — half of what the same number
of samples buys an SGD run, times the ``1/l`` of SVAG's smaller LR. (P1's script therefore
multiplies epochs and LR milestones by ``2l``; PAPER.md §2 and §5.) Count continuous time, not passes.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

__all__ = ["SAMPLING_MODES", "PairSampler"]

SAMPLING_MODES = ("disjoint", "replacement")


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class PairSampler:
    """Index batches for each step: two independent batches of size B for SVAG (``pairs=True``),
    one for SGD. See the module docstring for the modes and for what a pass is.

    Args:
        n: number of training samples.
        batch_size: B, the size of each batch (``B <= n``; ``2B <= n`` for disjoint pairs).
        pairs: two batches per step (SVAG, ``l > 1``) or one (SGD).
        mode: ``"disjoint"`` or ``"replacement"``.
        seed: seed of the sampler's own ``torch.Generator`` (the global RNG is never touched).
    """

    def __init__(self, n: int, batch_size: int, *, pairs: bool, mode: str = "disjoint", seed: int = 0) -> None:
        self.n = _check_int("n", n, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if not isinstance(pairs, bool):
            raise ValueError(f"pairs must be True (SVAG, two batches) or False (SGD, one), got {pairs!r}")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode must be one of {', '.join(SAMPLING_MODES)}, got {mode!r}")
        if self.batch_size > self.n:
            raise ValueError(f"batch_size must be <= n = {self.n}, got {self.batch_size}")
        if mode == "disjoint" and pairs and 2 * self.batch_size > self.n:
            raise ValueError(
                f"disjoint pairs need 2*batch_size <= n = {self.n}, got batch_size = {self.batch_size}; "
                "use mode='replacement' or a smaller batch"
            )
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.pairs, self.mode, self.seed = pairs, mode, int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)
        self._perm = torch.randperm(self.n, generator=self._gen) if mode == "disjoint" else torch.empty(0)
        self._pos = 0
        self._passes = 0
        self._samples_seen = 0

    @property
    def per_step(self) -> int:
        """Samples drawn per step: ``2B`` with pairs, ``B`` without."""
        return 2 * self.batch_size if self.pairs else self.batch_size

    @property
    def samples_seen(self) -> int:
        """Total samples drawn so far (``steps · per_step``)."""
        return self._samples_seen

    @property
    def passes(self) -> int:
        """Completed passes over the shuffled data (disjoint); ``samples_seen // n`` (replacement)."""
        return self._passes if self.mode == "disjoint" else self._samples_seen // self.n

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The index batches of the next step: ``(batch1, batch2)`` with pairs, ``(batch, None)``
        without; int64 tensors of length B on the CPU."""
        B = self.batch_size
        if self.mode == "replacement":
            first = torch.randint(0, self.n, (B,), generator=self._gen)
            second = torch.randint(0, self.n, (B,), generator=self._gen) if self.pairs else None
        else:
            chunk = self._perm[self._pos : self._pos + self.per_step]  # a view: _perm is replaced, never mutated
            first, second = (chunk[:B], chunk[B:]) if self.pairs else (chunk, None)
            self._pos += self.per_step
            if self._pos + self.per_step > self.n:  # the next step does not fit: the pass is over
                self._passes += 1
                self._perm = torch.randperm(self.n, generator=self._gen)
                self._pos = 0
        self._samples_seen += self.per_step
        return first, second

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly; only tensors, ints, bools and strings, so it
        loads with ``torch.load(weights_only=True)``."""
        return {
            "n": self.n,
            "batch_size": self.batch_size,
            "pairs": self.pairs,
            "mode": self.mode,
            "seed": self.seed,
            "generator": self._gen.get_state(),
            "perm": self._perm.clone(),
            "pos": self._pos,
            "passes": self._passes,
            "samples_seen": self._samples_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; it must come from a sampler with the same n, B, pairs, mode."""
        mine = {"n": self.n, "batch_size": self.batch_size, "pairs": self.pairs, "mode": self.mode}
        theirs = {k: state.get(k) for k in mine}
        if theirs != mine:
            raise ValueError(f"sampler state is for {theirs}, this sampler has {mine}")
        perm = state["perm"]
        if self.mode == "disjoint" and (perm.dtype != torch.int64 or perm.shape != (self.n,)):
            raise ValueError(f"sampler state holds a permutation of shape {tuple(perm.shape)}, expected ({self.n},)")
        self._gen.set_state(state["generator"])
        self._perm = perm.clone()
        self._pos = int(state["pos"])
        self._passes = int(state["passes"])
        self._samples_seen = int(state["samples_seen"])
        self.seed = int(state["seed"])

    def __repr__(self) -> str:
        return (
            f"PairSampler(n={self.n}, batch_size={self.batch_size}, pairs={self.pairs}, mode={self.mode!r}, "
            f"seed={self.seed}, passes={self.passes}, samples_seen={self.samples_seen})"
        )
