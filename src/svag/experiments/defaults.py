"""The defaults of the experiments, one owner for the commands and the Python API that both run them.

Light on purpose (no torch, no numpy): the command-line parsers read it to build ``--help``.
"""

from __future__ import annotations

__all__ = [
    "CBS_BRANCH_EPOCHS",
    "CBS_CONFIG",
    "CBS_EPSILON",
    "CBS_KAPPAS",
    "CBS_POINTS",
    "LSR_CONFIG",
    "LSR_SEEDS",
    "LSR_TAU",
    "LSR_THREADS",
    "LSR_WINDOW",
    "TORCH_THREADS",
    "resolve_threads",
]

# the LSR test's run config, where it differs from RunConfig's. Chosen by
# measurement (EXPERIMENTS.md §2, "How the default was chosen"): on MNIST-1D this scale-invariant BN CNN
# reaches the equilibrium of its constant-LR phase (λη = 5e-4: ‖x‖² flat from epoch ~8), G/N grows with
# slope ≈ 1 along the LSR family, and the test error rises ≥ 20% within 2× of the predicted B*.
LSR_CONFIG = dict(
    model="cnn", norm="bn", scale_invariant=True, lr=0.1, batch_size=32, weight_decay=5e-3, epochs=12.0,
    schedule="multistep", milestones=(10.0,), eval_every=0.25, eval_train_samples=512, noise_fraction=1.0,
)  # fmt: skip


# `svag cbs`'s baseline: the LSR test's MNIST-1D CNN at a constant LR (the branches need one), 8 epochs (checkpoints
# at 0.5, 1, 2, 4, 8 with 5 points), an extra batch for G/N at every step (B_simple and B* near each checkpoint)
CBS_CONFIG = dict(LSR_CONFIG, schedule="constant", milestones=(), epochs=8.0)
CBS_POINTS = 5  # checkpoints of the baseline, log-spaced (each twice the one before, the last at --epochs)
CBS_KAPPAS = (1.0, 2.0, 4.0, 8.0, 16.0)  # the branches' κ ladder (batch size κB)
CBS_EPSILON = 0.01  # relative tolerance ε of a branch's final loss against the κ = 1 branch's
CBS_BRANCH_EPOCHS = 1.0  # a branch's length: SGD-equivalent epochs (branch_epochs·n samples, the same for every κ)

LSR_SEEDS = 3  # seeds per batch size of the verification sweep
# Intra-op CPU threads unless `--threads` (`threads=`) or OMP_NUM_THREADS says otherwise (resolve_threads), as for
# the demo: the default's small CNN gains little from a second thread, and with another process on
# the cores 2 threads wait for each other at every operation. Measured on the 2 cores with other jobs
# running (load 5-6), one epoch of the 3-seed ensemble at B = 32: 3.6-5.6 s wall with 1 thread,
# 32-36 s with 2.
LSR_THREADS = 1
LSR_TAU = 2.0  # threshold τ = C² − 1 of P1's condition G/N ≤ τ
LSR_WINDOW = 1 / 6  # the equilibrium window: the last fraction of the first constant-LR phase
TORCH_THREADS = 0  # the thread default of train, compare and scale (command and API): PyTorch's own


def resolve_threads(given: int | None, command_default: int, env) -> int:
    """Intra-op threads to set, 0 for PyTorch's choice: ``given`` (``--threads``, ``threads=``) if not
    ``None``, else the command's own default (:data:`LSR_THREADS`, :data:`TORCH_THREADS`, the demo's)
    unless the user set ``OMP_NUM_THREADS`` in ``env`` (which PyTorch already follows). The commands
    and the Python API both ask it, so ``svag lsr`` and :func:`svag.lsr_test` train on as many threads.

    PyTorch's CPU threads wait for each other at every operation: when another process holds one
    of the cores, a small model with 2 threads on 2 cores runs 10-40x slower than with 1."""
    if given is not None:
        return given
    return 0 if env.get("OMP_NUM_THREADS") else command_default
