"""One seed tree for every random stream of a run.

A run's ``seed`` is the root of a tree (``numpy.random.SeedSequence``, as numpy and JAX split
keys). Each stream is the child of the root at a fixed index, ``SeedSequence(seed,
spawn_key=(i,))``, which is exactly ``SeedSequence(seed).spawn(n)[i]``:

==  ================  ===========================================================================
 i  stream            what it draws
==  ================  ===========================================================================
 0  ``init``          the model's initialization (the global torch RNG is seeded with it before
                      the model is built, so a replica's init depends on its seed alone)
 1  ``data_order``    the sampler: both batches of an SVAG step (disjoint halves of one
                      permutation, or i.i.d. draws) and SGD's batch
 2  ``augment``       data augmentation of training batches
 3  ``noise_batches`` SGD's extra independent batch for the G/N pair estimates
 4  ``m_batches``     the minibatches of P1's m-batch G/N measurement
 5  ``gaussian``      Gaussian noise (reserved: Gaussian-noise and Euler–Maruyama runs)
 6  ``loader``        the seeds of ``DataLoader`` worker processes (:mod:`svag.data.loader`;
                      the batches' indices come from ``data_order``)
==  ================  ===========================================================================

New streams are appended at new indices, so adding one never changes the others. Two streams
never share a generator seed by construction (each is a distinct node of the tree; a test checks
the 64-bit seeds of every stream of seeds 0..999 are distinct). The data set's own seed
(``data_seed``: subsets, synthetic data) is not part of this tree: it is the same for every run.

Before this tree (release 0.1.0) seed ``k`` seeded the sampler with ``k`` and augmentation, extra
G/N batches and m-batch draws with ``k+1``, ``k+2``, ``k+3``, so seed ``k``'s augmentation stream
was seed ``k+1``'s data order. Folders written then resume with the generator states saved in
their checkpoints.

**Studies on closed-form problems** (``svag verify``, the quadratic studies of
:mod:`svag.problems.studies`, and the tests that check them against exact moments) are not runs: they
draw from named streams, :data:`STUDY_STREAMS`, each a node ``SeedSequence([seed, node, *keys])``
whose ``keys`` (``round(1000·l)``, β, a count of substeps, ...) pick independent streams below it
(:func:`study_generator`). The node numbers are those of release 0.2.0, so every number those studies
print is unchanged.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["STREAMS", "STUDY_STREAMS", "check_seed", "generator", "stream_seed", "study_generator"]

STREAMS = ("init", "data_order", "augment", "noise_batches", "m_batches", "gaussian", "loader")


def check_seed(seed: object) -> int:
    """Return ``seed`` as an int, or raise ``ValueError`` unless it is an integer >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def stream_seed(seed: int, stream: str) -> int:
    """The 63-bit integer that seeds ``stream`` of run ``seed``: the first word of
    ``SeedSequence(seed, spawn_key=(STREAMS.index(stream),))``, top bit cleared."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    node = np.random.SeedSequence(check_seed(seed), spawn_key=(STREAMS.index(stream),))
    return int(node.generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)


def generator(seed: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with :func:`stream_seed`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


STUDY_STREAMS = {
    "svag_samples": 0,  # SVAG on a closed-form problem (svag.problems.verify.simulate_svag's default)
    "verify.moments": 1,  # svag verify: SVAG's samples against their exact moments
    "verify.weak_error": 2,  # svag verify: SVAG's weak-error ladder on noisy regression
    "verify.gaussian_ou": 3,  # Gaussian steps (NGD / Euler–Maruyama) on the OU problem
    "verify.gaussian_regression": 4,  # Gaussian steps on noisy regression
    "verdict_ladder": 5,  # real SVAG runs whose ‖x_T‖² ladders calibrate the verdict (tests)
    "studies.momentum": 7,  # the heavy-ball study
    "studies.adaptive.adam": 31,  # the adaptive study, one node per optimizer
    "studies.adaptive.rmsprop": 32,
    "verify.exact_substeps": 99,  # Euler–Maruyama substeps of the exact reference
}


def study_generator(seed: int, name: str, *keys: int) -> torch.Generator:
    r"""The torch stream ``name`` of a study on a closed-form problem, below it the one of ``keys``:

    .. math::  (s_0, s_1) = \mathrm{SeedSequence}([seed, \mathrm{node}(name), k_1, …]).\mathrm{generate\_state}(2),
               \qquad \mathrm{torch\ seed} = 2^{32} s_0 + s_1

    Distinct ``(name, keys)`` give statistically independent streams (no accidental overlap as with
    ``seed + k``); the same ones always give the same stream. Keys are non-negative integers.
    """
    if name not in STUDY_STREAMS:
        raise ValueError(f"study stream must be one of {', '.join(STUDY_STREAMS)}, got {name!r}")
    state = np.random.SeedSequence([check_seed(seed), STUDY_STREAMS[name], *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
