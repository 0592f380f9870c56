"""Multi-process data parallelism with ``torch.distributed`` (``gloo`` on CPU, ``nccl`` on GPU).

Launch the standard way::

    torchrun --standalone --nproc_per_node=2 -m svag train ...      # one machine
    torchrun --nnodes=2 --node_rank=R --rdzv-endpoint=HOST:PORT --nproc_per_node=G -m svag train ...

Every process draws the **same global batches** (same sampler seed) and keeps the slice
``[rank·B/W, (rank+1)·B/W)`` of each; both SVAG batches are sharded alike. Before each optimizer
update the gradients are averaged over processes (one bucketed all-reduce, a step pre-hook of the
optimizer), so the update equals the single-process one: the mean over the global batch of B.
This works with every training-step mode, including the two-forward SVAG step and the
two-gradient noise path, which a ``DistributedDataParallel`` wrapper (one forward per backward)
would not see whole.

BatchNorm: by default each process normalizes with the statistics of its own shard of B/W
samples ("ghost batch" BN; the SDE being simulated is then that of BN at batch B/W), and rank 0's
running statistics are the ones saved. ``--sync-bn`` converts BatchNorm to ``SyncBatchNorm`` for
single-process equivalence (PyTorch supports it on GPUs only). GroupNorm and unnormalized models
are equivalent to the single-process run without it.

Only rank 0 evaluates and writes results and checkpoints; on resume every rank reads rank 0's
checkpoint. A worker ends with :func:`finish_worker` (see there for why it skips interpreter
teardown).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Dist", "finish_worker", "setup"]

_joined = False  # this process joined a process group in setup()


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor | None) -> torch.Tensor | None:
        """This process's contiguous slice of a global batch of indices."""
        if idx is None or self.world == 1:
            return idx
        size = len(idx) // self.world
        return idx[self.rank * size : (self.rank + 1) * size]

    def mean_(self, tensors: list[torch.Tensor | None]) -> None:
        """Average ``tensors`` over processes in place (one flattened all-reduce)."""
        present = [t for t in tensors if t is not None]
        if self.world == 1 or not present:
            return
        flat = torch.cat([t.reshape(-1) for t in present])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in present:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Average every ``p.grad`` over processes right before each ``optimizer.step()``."""
        if self.world == 1:
            return

        def hook(opt, args, kwargs):
            self.mean_([p.grad for group in opt.param_groups for p in group["params"]])

        optimizer.register_step_pre_hook(hook)


def setup(device: torch.device, batch_size: int) -> tuple[Dist, torch.device]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device
    if batch_size % world:
        raise ValueError(f"batch_size must be divisible by the number of processes {world}, got {batch_size}")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    global _joined
    _joined = True
    return Dist(rank, world, local), device


def finish_worker(code: int) -> None:
    """End a multi-process worker now with exit status ``code``, skipping interpreter teardown.

    Why: once ``torch._dynamo`` is imported (``torch.optim`` imports it), PyTorch keeps the
    process group alive past ``destroy_process_group()``, so its gloo worker threads are not
    joined. A worker thread that releases its last finished collective after Python has started
    finalizing must take the GIL to free the tensors' Python objects, and the process aborts
    ("terminate called without an active exception", SIGABRT): measured in 1 of ~35
    two-process runs on a 2-core machine, after every result had been written. Skipping
    finalization (``os._exit``) avoids it; every file the runner writes is already closed and
    atomically in place, and the standard streams are flushed here. Does nothing in a process
    that did not join a group.
    """
    if not _joined:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
