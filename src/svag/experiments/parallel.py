"""Independent runs in parallel worker processes, with one combined progress display.

A job is ``(config, seeds, folders)``: one run, or several seeds trained together as an
ensemble (:func:`svag.runner.run_replicas`). ``run_jobs`` executes the jobs in ``n_jobs``
worker processes (``spawn``: each worker imports torch afresh, and gets ``cores // n_jobs``
threads), shows one progress bar over the continuous time of all runs (read from their run
folders, :meth:`svag.runfolder.RunFolder.progress`, so the workers need not report anything;
plain lines every tenth when stderr is a log or a pipe, :func:`svag.progress.progress_bar`),
and returns each run's status: a failed run is reported and the others finish.

**Executors.** ``run_jobs`` takes the number of worker processes, or an :class:`Executor` saying
where the jobs run: ``local`` (the processes above, the default, which needs nothing beyond
svag) or ``ray`` (:mod:`svag.experiments.ray_executor`, one Ray task per job, imported only when
chosen, so the default path never imports Ray). Every executor runs a job with the same
:func:`run_job`, and on ``resume`` none runs again a job whose runs are all ``completed``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from ..runfolder import RunFolder

__all__ = ["EXECUTORS", "Executor", "Job", "finished", "run_job", "run_jobs"]

EXECUTORS = ("local", "ray")


@dataclass
class Job:
    config: RunConfig
    seeds: list[int]
    folders: list[Path]
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Executor:
    """Where the jobs of a sweep run (the ``--cluster`` flags of every sweep command).

    ``local``: ``jobs`` worker processes on this machine. ``ray``: one Ray task per job on the
    cluster at ``address`` (``None``: an embedded Ray instance on this machine with room for
    ``jobs`` runs, all cores when ``jobs`` is 1), each declaring ``cpus_per_run`` CPUs (also its
    PyTorch threads) and ``gpus_per_run`` GPUs (fractions pack several runs on one GPU), retried
    up to ``retries`` times when its worker or node dies. ``worker_dir``: the runs train in this
    folder on each worker (node-local disk, checkpoints stay there) and the driver writes each
    finished run's result files into the sweep's folder; ``None``: the workers write into the
    sweep's folder itself, which every node must then see (a shared file system).
    """

    kind: str = "local"  # one of EXECUTORS
    jobs: int = 1  # local: worker processes; ray without address: runs at once on the embedded instance
    address: str | None = None  # ray: the cluster to join ("auto", "HOST:PORT", "ray://HOST:10001")
    cpus_per_run: float = 1.0  # ray: CPUs each task declares (and PyTorch threads, rounded down, >= 1)
    gpus_per_run: float = 0.0  # ray: GPUs each task declares (0.5: two runs share a GPU)
    worker_dir: str | None = None  # ray: node-local folder to train in; None: a shared --out
    retries: int = 3  # ray: times a task is run again after its worker or node died

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"--cluster must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"--jobs must be an integer >= 1, got {self.jobs!r}")
        if not (self.cpus_per_run > 0 and self.cpus_per_run < float("inf")):
            raise ValueError(f"--cpus-per-run must be a number > 0, got {self.cpus_per_run!r}")
        if not (0 <= self.gpus_per_run < float("inf")):
            raise ValueError(f"--gpus-per-run must be a number >= 0, got {self.gpus_per_run!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"--retries must be an integer >= 0, got {self.retries!r}")
        if self.kind == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise ValueError("--cluster ray needs Ray, which is not installed: pip install 'svag[ray]'")
            if self.address and self.jobs != 1:
                raise ValueError(f"--jobs {self.jobs} sizes the embedded Ray instance; with --address "
                                 f"{self.address} the cluster's resources decide how many runs go at once")  # fmt: skip
        if self.kind == "local":
            given = [flag for flag, value, default in (("--address", self.address, None),
                     ("--worker-dir", self.worker_dir, None), ("--cpus-per-run", self.cpus_per_run, 1.0),
                     ("--gpus-per-run", self.gpus_per_run, 0.0), ("--retries", self.retries, 3))
                     if value != default]  # fmt: skip
            if given:
                raise ValueError(f"{', '.join(given)} apply to --cluster ray only, got --cluster local")


def finished(job: Job) -> bool:
    """Whether every run of ``job`` is ``completed`` in its folder (``--resume`` skips it)."""
    try:
        return all(RunFolder(f).exists() and RunFolder(f).status().status == "completed" for f in job.folders)
    except (OSError, ValueError):  # unreadable: let the runner say what is wrong with it
        return False


def run_job(job: Job, resume: bool, threads: int, progress: bool) -> list[str]:
    """Train ``job`` in this process (:func:`svag.runner.run_replicas`); each run's status, a
    ``ValueError`` (diverged, or bad input found only now) as ``failed: ...`` for every run."""
    import torch

    from ..runner import run_replicas

    if threads:
        torch.set_num_threads(threads)
    try:
        results = run_replicas(job.config, job.seeds, job.folders, resume=resume, progress=progress)
        return [r.status for r in results]
    except ValueError as err:  # diverged or bad input: reported per run, the sweep goes on
        return [f"failed: {str(err).splitlines()[0]}"] * len(job.folders)


def _progress(folders: list[Path]) -> float:
    """Mean over runs of the fraction of their continuous time done (0 for runs not started)."""
    fractions = []
    for folder in folders:
        try:
            fractions.append(RunFolder(folder).progress())
        except (OSError, ValueError, KeyError):  # a folder being rewritten or left unreadable: the bar goes on
            fractions.append(0.0)
    return sum(fractions) / max(1, len(fractions))


def run_jobs(
    jobs: list[Job],
    n_jobs: int | Executor = 1,
    *,
    resume: bool = False,
    progress: bool = True,
    log=None,
) -> dict[str, str]:
    """Run every job; ``{name: status}`` for each run folder (``completed``, ``diverged``, ``failed: ...``).

    ``n_jobs``: worker processes on this machine, or an :class:`Executor` (local or Ray)."""
    log = log or (lambda m: print(m, flush=True))
    executor = n_jobs if isinstance(n_jobs, Executor) else None
    if executor is not None:
        n_jobs = executor.jobs
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {n_jobs!r}")
    statuses: dict[str, str] = {}
    if resume:
        done = [job for job in jobs if finished(job)]
        statuses.update({name: "completed" for job in done for name in job.names})
        if done:
            log(f"{len(statuses)} run(s) already completed, not run again: {', '.join(statuses)}")
        jobs = [job for job in jobs if job not in done]
    if executor is not None and executor.kind == "ray":
        from .ray_executor import run_on_ray

        return {**statuses, **run_on_ray(jobs, executor, resume=resume, progress=progress, log=log)}
    if n_jobs == 1:
        for i, job in enumerate(jobs, 1):
            log(f"[{i}/{len(jobs)}] {', '.join(job.names)}")
            for name, status in zip(job.names, run_job(job, resume, 0, progress)):
                statuses[name] = status
                if status != "completed":
                    print(f"  {name}: {status}", file=sys.stderr, flush=True)
        return statuses
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    log(f"running {len(jobs)} job(s) in {n_jobs} worker processes ({threads} thread(s) each)")
    folders = [f for job in jobs for f in job.folders]
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(1.0, desc="all runs")
    with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job, resume, threads, False): job for job in jobs}
        pending = set(futures)
        while pending:
            ready, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in ready:
                job = futures[fut]
                try:
                    result = fut.result()
                except Exception as err:  # a worker that crashed: report, keep the others
                    result = [f"failed: {type(err).__name__}: {err}"] * len(job.folders)
                for name, status in zip(job.names, result):
                    statuses[name] = status
                    message = f"{name}: {status}"
                    (bar.write if bar is not None else log)(message)
            if bar is not None:
                bar.update(max(_progress(folders), bar.n) - bar.n)
    if bar is not None:
        bar.update(1.0 - bar.n)
        bar.close()
    return statuses
