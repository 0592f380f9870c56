"""Jobs in worker processes on this machine (``spawn``: each worker imports torch afresh and gets
``cores // n_jobs`` threads), with one progress bar over the continuous time of all runs, read from
their run folders (:meth:`svag.runfolder.RunFolder.progress`), so the workers need not report anything.
A failed run is reported and the others finish.

**Stopping.** The driver alone answers SIGINT and SIGTERM (:mod:`svag.interrupts`). A worker ignores
SIGINT, which a terminal's Ctrl-C sends to every process of the group, and the driver tells each
worker with SIGTERM instead, once, then waits for them: a worker in a run's loop finishes its step and
checkpoints (:mod:`svag.runner.signals`), one elsewhere in a job stops at once, an idle one starts no
further job. The workers start with both signals blocked and unblock them once set up, so none is lost
or acted on before. A further signal to the driver is passed on too (the runner then stops at once, its
folder at its last checkpoint, as after a kill). :func:`svag.experiments.executors.run_jobs` then marks
the runs left ``running`` ``interrupted``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import signal
import sys

from svag import interrupts
from svag.experiments.executors.jobs import Job, progress_of, run_job

__all__ = ["run_local"]

_STOPPED = None  # in a worker: the driver's shared int, the signal that stopped the sweep (0 while it runs)


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
    context, before = mp.get_context("spawn"), set(mp.active_children())
    stopped = context.RawValue("i", 0)
    with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=context, initializer=_start_worker,
                                initargs=(stopped,)) as pool:  # fmt: skip
        try:
            with _blocked():  # the workers start with SIGINT/SIGTERM blocked (see _start_worker)
                futures = {pool.submit(_work, job, resume, threads): job for job in jobs}
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
        except KeyboardInterrupt:  # SIGINT/SIGTERM here (or a worker's run stopped): stop them all
            _stop_workers(pool, stopped, [p for p in mp.active_children() if p not in before])
            raise
    if bar is not None:
        bar.update(1.0 - bar.n)
        bar.close()
    return statuses


@contextlib.contextmanager
def _blocked():
    """SIGINT and SIGTERM blocked in this thread while the block runs: processes started in it begin with
    them blocked (the mask is inherited); one that arrives meanwhile is delivered after."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no masks
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, interrupts.STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _idle(signum, frame) -> None:
    """A worker between jobs lets SIGTERM pass: the driver's ``stopped`` keeps it from starting another."""


def _start_worker(stopped) -> None:
    """A worker starts (the pool's initializer): SIGINT ignored for good, SIGTERM passed over until a job
    starts, then both unblocked (a signal that came while it started is dropped; ``stopped`` says so)."""
    global _STOPPED
    _STOPPED = stopped
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _idle)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupts.STOP_SIGNALS)


def _work(job: Job, resume: bool, threads: int) -> list[str]:
    """:func:`run_job` in a worker, which SIGTERM stops (:mod:`svag.interrupts`; in a run's loop after a
    checkpoint); once the driver was stopped a job does not begin."""
    previous = interrupts.raise_on_signals()
    try:
        if _STOPPED is not None and _STOPPED.value:
            raise interrupts.Interrupted(_STOPPED.value)
        return run_job(job, resume, threads, False)
    finally:
        interrupts.restore(previous)


def _stop_workers(pool: cf.ProcessPoolExecutor, stopped, workers: list) -> None:
    """Stop every worker and wait until each has: ``stopped`` set first (no job starts after it), then
    SIGTERM to each, again for each further signal the driver gets while it waits."""
    stopped.value = signal.SIGTERM
    while True:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            continue
