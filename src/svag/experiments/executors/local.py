"""Jobs in worker processes on this machine (``spawn``: each worker imports torch afresh and gets
``cores // n_jobs`` threads), with one progress bar over the continuous time of all runs, read from
their run folders (:meth:`svag.runfolder.RunFolder.progress`), so the workers need not report anything.
A failed run is reported and the others finish.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import sys

from svag.experiments.executors.jobs import Job, progress_of, run_job

__all__ = ["run_local"]


def run_local(jobs: list[Job], n_jobs: int, *, resume: bool, progress: bool, log) -> dict[str, str]:
    """Run ``jobs`` here, one after another (``n_jobs`` = 1) or in ``n_jobs`` worker processes;
    ``{name: status}`` of every run."""
    statuses: dict[str, str] = {}
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
        from svag.runner.progress import progress_bar  # loads the run engine: not at `--help`

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
                bar.update(max(progress_of(folders), bar.n) - bar.n)
    if bar is not None:
        bar.update(1.0 - bar.n)
        bar.close()
    return statuses
