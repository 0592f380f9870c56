"""Independent runs in parallel worker processes, with one combined progress display.

A job is ``(config, seeds, folders)``: one run, or several seeds trained together as an
ensemble (:func:`svag.runner.run_replicas`). ``run_jobs`` executes the jobs in ``n_jobs``
worker processes (``spawn``: each worker imports torch afresh, and gets ``cores // n_jobs``
threads), shows one progress bar over the continuous time of all runs (read from their run
folders, :meth:`svag.runfolder.RunFolder.progress`, so the workers need not report anything;
plain lines every tenth when stderr is a log or a pipe, :func:`svag.progress.progress_bar`),
and returns each run's status: a failed run is reported and the others finish.
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

__all__ = ["Job", "run_jobs"]


@dataclass
class Job:
    config: RunConfig
    seeds: list[int]
    folders: list[Path]
    names: list[str] = field(default_factory=list)


def _work(job: Job, resume: bool, threads: int, progress: bool) -> list[str]:
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
    n_jobs: int = 1,
    *,
    resume: bool = False,
    progress: bool = True,
    log=None,
) -> dict[str, str]:
    """Run every job; ``{name: status}`` for each run folder (``completed``, ``diverged``, ``failed: ...``)."""
    log = log or (lambda m: print(m, flush=True))
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {n_jobs!r}")
    statuses: dict[str, str] = {}
    if n_jobs == 1:
        for i, job in enumerate(jobs, 1):
            log(f"[{i}/{len(jobs)}] {', '.join(job.names)}")
            for name, status in zip(job.names, _work(job, resume, 0, progress)):
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
        futures = {pool.submit(_work, job, resume, threads, False): job for job in jobs}
        pending = set(futures)
        while pending:
            finished, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
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
