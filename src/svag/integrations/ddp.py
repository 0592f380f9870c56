"""G/N for free in a user's own ``DistributedDataParallel`` training: the ranks' local gradients are the g_j.

Before DDP's all-reduce every rank ``j`` of ``W`` holds the gradient ``g_j`` of its own batch of ``b`` samples;
after it every rank holds ``ḡ = Σ_j g_j/W``, the gradient at ``B = W·b``. :func:`register_noise_hook` installs a
communication hook (``torch.distributed.algorithms.ddp_comm_hooks`` style) that adds each bucket's local
``‖g_j‖²`` to a running sum and then all-reduces the bucket as DDP's default hook does; after ``backward``,
:meth:`RankNoise.result` all-reduces that one number and returns :func:`svag.noise.from_microbatch_sums` with
``M = W`` and ``‖ḡ‖²`` from the reduced ``.grad``: no gradient is sent twice. Pool the steps in a
:class:`svag.noise.NoiseAccumulator` (``acc.add(*noise.result(model.parameters()))``). Assumes every rank's
batch has the same size and the loss is the **mean** over it (DDP's averaging then gives the batch-``B`` mean).
Source: McCandlish et al. 2018, App. A; PAPER.md §7. ``import svag`` never imports this module.
"""

from collections.abc import Iterable

import torch
import torch.distributed as dist

from svag.noise import MicroBatchSums

__all__ = ["RankNoise", "register_noise_hook"]


class RankNoise:
    """The state of the hook: this rank's ``Σ_buckets ‖local bucket‖²`` since the last :meth:`result`."""

    def __init__(self, process_group: dist.ProcessGroup | None = None) -> None:
        self.process_group = process_group
        self.local_sq = 0.0

    def result(self, params: Iterable[torch.Tensor]) -> tuple[float, float]:
        """``(Ĝ, N̂)`` at ``B = W·b`` of the step just backpropagated (call on every rank, after ``backward``)."""
        grads = [p.grad for p in params if p.requires_grad]
        device = next(g.device for g in grads if g is not None)
        total = torch.tensor([self.local_sq], dtype=torch.float64, device=device)
        dist.all_reduce(total, group=self.process_group)  # Σ_j ‖g_j‖²: one number per step
        self.local_sq = 0.0
        sums = MicroBatchSums()
        sums.add_sq(float(total), count=dist.get_world_size(self.process_group))
        return sums.result(grads)


def _hook(state: "RankNoise", bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Add ``‖local bucket‖²`` to the state, then DDP's default all-reduce of the bucket's mean. (No
    ``from __future__ import annotations`` in this module: DDP checks the hook's annotations at runtime.)"""
    buf = bucket.buffer()
    state.local_sq += float(torch.linalg.vector_norm(buf, dtype=torch.float64) ** 2)
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    buf.div_(dist.get_world_size(group))
    work = dist.all_reduce(buf, group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def register_noise_hook(ddp_model: torch.nn.parallel.DistributedDataParallel) -> RankNoise:
    """Register the G/N communication hook on ``ddp_model`` and return its state (:class:`RankNoise`)."""
    state = RankNoise(ddp_model.process_group)
    ddp_model.register_comm_hook(state, _hook)
    return state
