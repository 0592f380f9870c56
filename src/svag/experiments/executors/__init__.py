"""Where a sweep's runs train: worker processes on this machine (:mod:`~svag.experiments.executors`)
or a Ray cluster (:mod:`~svag.experiments.executors.ray`, imported only when chosen, so the default path
never imports Ray); the job type and the run of one job are :mod:`~svag.experiments.executors.jobs`'.
Every executor runs a job with the same :func:`run_job`, and on ``resume`` none runs again a job whose
runs are all ``completed``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace

from svag.experiments.executors.jobs import EXECUTORS, Executor, Job, finished, run_job
from svag.experiments.executors.local import run_local
from svag.runfolder import RunFolder

__all__ = ["EXECUTORS", "Executor", "Job", "finished", "run_job", "run_jobs"]


def run_jobs(
    jobs: list[Job],
    n_jobs: int | Executor = 1,
    *,
    resume: bool = False,
    progress: bool = True,
    log=None,
    sinks: Sequence = (),
) -> dict[str, str]:
    """Run every job; ``{name: status}`` for each run folder (``completed``, ``diverged``, ``failed: ...``).

    ``n_jobs``: worker processes on this machine, or an :class:`Executor` (local or Ray). ``sinks``:
    record sinks every run hands its records to (:class:`svag.runner.recorder.SinkFactory`, picklable).

    A ``KeyboardInterrupt`` (SIGINT/SIGTERM: :class:`svag.interrupts.Interrupted`) at any point stops the
    sweep: once the executor has stopped its runs, each run it left ``running`` (stopped outside its loop)
    is marked ``interrupted`` like the ones the runner stopped itself, and the exception goes on, so that
    ``--resume`` continues every run from its last checkpoint."""
    log = log or (lambda m: print(m, flush=True))
    executor = n_jobs if isinstance(n_jobs, Executor) else None
    if executor is not None:
        n_jobs = executor.jobs
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {n_jobs!r}")
    jobs = [replace(job, sinks=tuple(sinks)) for job in jobs] if sinks else jobs
    statuses: dict[str, str] = {}
    if resume:
        done = [job for job in jobs if finished(job)]
        statuses.update({name: "completed" for job in done for name in job.names})
        if done:
            log(f"{len(statuses)} run(s) already completed, not run again: {', '.join(statuses)}")
        jobs = [job for job in jobs if job not in done]
    try:
        if executor is not None and executor.kind == "ray":
            from svag.experiments.executors.ray import run_on_ray  # Ray only when chosen

            return {**statuses, **run_on_ray(jobs, executor, resume=resume, progress=progress, log=log)}
        return {**statuses, **run_local(jobs, n_jobs, resume=resume, progress=progress, log=log)}
    except KeyboardInterrupt:  # SIGINT/SIGTERM (svag.interrupts): the executor has stopped its runs
        for folder in (f for job in jobs for f in job.folders):
            with contextlib.suppress(OSError, ValueError):  # unreadable: --resume says what is wrong with it
                RunFolder(folder).mark_interrupted()
        raise
