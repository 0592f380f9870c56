"""The run engine: one loop for SGD (``l = 1``) and SVAG, driven by continuous SDE time.

==================  ==================================================================================
module              what it owns
==================  ==================================================================================
``entry``           :func:`run` and :func:`run_replicas`: check, prepare the folders, train, report
``loop``            :class:`~svag.runner.loop.Group`, the replicas of one config and the loop itself
``folder``          whether a run folder can take a run (fresh, resumable, refused)
``signals``         SIGINT/SIGTERM as a request honoured at the loop's next consistent point
``engine``          one model or stacked seeds behind one interface (loss, evaluation)
``ensemble``        stacked seeds: the zoo's hand-written layers, ``stack`` (which stacking), ``is_faster``
``vmap_ensemble``   any ``nn.Module`` stacked through ``torch.func``, and its trial step
``recorder``        the records: evaluation, G/N pairs, m-batch G/N; hands each record to its sinks
``state``           what a checkpoint holds (samplers, generators, counters)
``timeline``        when things happen on continuous time (grid, checkpoints, G/N window, schedule)
``budget``          what a run costs (batches, steps, memory), checked before anything starts
``distributed``     ``torchrun`` data parallelism
``progress``        progress bars and one-line notices on stderr
==================  ==================================================================================

The math core (optimizer, clock, step) lies below; the run folder's format is :mod:`svag.runfolder`'s.
"""

from __future__ import annotations

from svag.build import build_optimizer
from svag.runner.entry import RunResult, resolve_device, run, run_replicas
from svag.runner.folder import prepare_folder
from svag.runner.loop import RunDiverged
from svag.runner.signals import RunInterrupted

__all__ = [
    "RunDiverged",
    "RunInterrupted",
    "RunResult",
    "build_optimizer",
    "prepare_folder",
    "resolve_device",
    "run",
    "run_replicas",
]
