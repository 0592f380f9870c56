"""A sweep's jobs as Ray tasks: ``--cluster ray`` of every sweep command.

Imported only when a sweep chooses Ray (:class:`svag.experiments.executors.Executor`); the local
default never imports it. Each job (one run, or the seeds of an ensemble) is one task running
:func:`svag.experiments.executors.run_job`, the same function as a local worker process, declaring
``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs so that Ray packs runs onto the cluster's devices.

**Progress.** A small actor (:class:`Board`) collects each run's fraction of its continuous time,
which a thread of each task reads from the run's own folder on the worker
(:meth:`svag.runfolder.RunFolder.progress`) every :data:`POLL` seconds; the driver draws one bar
from the board, so it needs no view of the workers' files. The board also counts each task's
attempts, so the driver says when a lost worker's run starts again.

**Where results live.** Without ``worker_dir`` every worker writes into the sweep's folder (the
usual shared file system of a cluster), exactly as a local sweep. With ``worker_dir`` each run
trains in ``worker_dir/<the sweep folder's absolute path>/<run>`` on its node; when it ends the
task returns the run's result files and the driver writes them into the sweep's folder
(:meth:`svag.runfolder.RunFolder.receive`, atomically); the checkpoint stays on the worker.

**One writer per folder.** Each run's folder is locked by the process that trains it
(:meth:`svag.runfolder.RunFolder.hold`): the task on its worker, whether the folder is the shared
one or its own under ``worker_dir``; the driver locks a folder while it receives a run's files, so
a ``svag train`` at work in that folder is not overwritten (the run is reported ``failed`` instead,
its results kept on the worker). A task run again after its worker died finds the lock free: the
kernel dropped it with the dead process.

**Faults.** A task whose worker process or node dies is run again (Ray's ``max_retries``) with
``resume``, so the run continues from its last checkpoint and ends bit-identical to an
uninterrupted run, provided the retry sees that checkpoint: always with a shared folder, and with
``worker_dir`` only when the retry lands on the same node (elsewhere the run starts again from
step 0, with the same result). An exception in a task (a bad configuration found on the worker,
a diverged run) is not retried (``retry_exceptions=False``): it is reported once as ``failed: ...``
and the other runs go on. A driver stopped by Ctrl-C cancels its tasks (as a kill would: each run
keeps its last checkpoint) and exits 130; a driver that dies has its tasks stopped by Ray (with
SIGTERM: a run then checkpoints and is marked ``interrupted``, as under ``svag train``). Either way
``--resume`` then skips the completed runs and continues the others. The driver's own process
keeps no state a restart needs: everything is in the run folders.

**Ray's own state.** An embedded instance (no ``address``) is started with the dashboard off and,
unless ``RAY_USAGE_STATS_ENABLED`` is set, usage statistics off (nothing leaves the machine), and
is shut down at the end. A process already connected to Ray (``ray.init`` in a notebook or a
test) is used as it is and left connected.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from dataclasses import replace
from pathlib import Path

import ray

from svag.experiments.executors.jobs import Executor, Job, run_job
from svag.runfolder import CONFIG, FolderInUseError, RunFolder

__all__ = ["CONNECT_TIMEOUT", "POLL", "Board", "check_address", "run_on_ray", "task_name", "worker_folder"]

POLL = 0.5  # seconds between a task's progress reports and between the driver's looks at the board
# seconds the address of a cluster has to accept a connection before ray.init is called: ray.init itself
# retries an address where nothing listens for a minute and more before it gives up
CONNECT_TIMEOUT = 5.0


@ray.remote(num_cpus=0)
class Board:
    """Each run's progress (fraction of its continuous time) and each task's attempts so far."""

    def __init__(self) -> None:
        self.fractions: dict[str, float] = {}
        self.attempts: dict[str, int] = {}

    def started(self, task: str) -> int:
        """A task starts (again); returns which attempt this is (1 for the first)."""
        self.attempts[task] = self.attempts.get(task, 0) + 1
        return self.attempts[task]

    def report(self, names: list[str], fractions: list[float]) -> None:
        self.fractions.update(zip(names, fractions))

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.fractions), dict(self.attempts)


def task_name(job: Job) -> str:
    """``svag:<first run folder>`` (``+N`` for the other seeds of an ensemble): the task's name in
    Ray's tools and its worker's process title (``ray::svag:l2_seed0``)."""
    more = f"+{len(job.folders) - 1}" if len(job.folders) > 1 else ""
    return f"svag:{Path(job.folders[0]).name}{more}"


def worker_folder(worker_dir: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Where a run whose folder on the driver is ``folder`` (absolute) trains under ``worker_dir``:
    the driver's path below it, so two sweeps sharing a ``worker_dir`` never share a run folder."""
    folder = Path(folder)
    return Path(os.path.expanduser(worker_dir)) / folder.relative_to(folder.anchor)


def _fraction(folder: Path) -> float:
    try:
        return RunFolder(folder).progress()
    except (OSError, ValueError, KeyError):  # being written: report it next time
        return 0.0


@ray.remote
def _train(job: Job, threads: int, board, key: str, worker_dir: str | None) -> dict:
    """One job on a worker: tell the board, train, report progress meanwhile, return the statuses
    and, with ``worker_dir``, each run's result files. Always with ``resume``: the driver checked
    every folder before any task started (empty, or the same config under ``--resume``), so what
    a folder holds now is this run's own progress, from an attempt that died or a driver that
    was stopped."""
    ray.get(board.started.remote(key))
    folders = [worker_folder(worker_dir, f) for f in job.folders] if worker_dir else list(job.folders)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(POLL):
            board.report.remote(job.names, [_fraction(f) for f in folders])

    watcher = threading.Thread(target=watch, name="svag-progress", daemon=True)
    watcher.start()
    try:
        statuses = run_job(replace(job, folders=folders), True, threads, False)
    finally:
        stop.set()
        watcher.join()
    ray.get(board.report.remote(job.names, [_fraction(f) for f in folders]))
    host = socket.gethostname()
    files = [RunFolder(f).result_files() if worker_dir else None for f in folders]
    return {"statuses": statuses, "files": files, "kept_at": [f"{host}:{f}" for f in folders]}


def _connect(executor: Executor, log) -> bool:
    """Join ``executor.address`` or start an embedded instance; whether we must shut it down."""
    if ray.is_initialized():
        return False
    if executor.address:
        where, done = f"join the Ray cluster at {executor.address}", f"joined the Ray cluster at {executor.address}"
        options = {"address": executor.address}
        check_address(executor.address)
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # an embedded instance reports nothing anywhere
        where, done = "start an embedded Ray instance", "started an embedded Ray instance on this machine"
        options = {"num_cpus": executor.jobs * executor.cpus_per_run if executor.jobs > 1 else None}
    try:
        ray.init(**options, include_dashboard=False, log_to_driver=True)
    except (OSError, ConnectionError, RuntimeError, ValueError) as err:  # no cluster there, a bad temp dir, ...
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise ValueError(f"cannot {where}: {lines[0]}") from None
    log(f"{done}: {_resources()}")
    return True


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse (``ValueError``, one line) a cluster address ``HOST:PORT`` or ``ray://HOST:PORT`` where nothing
    accepts a TCP connection within ``timeout`` seconds; ``auto`` and other forms are left to ``ray.init``."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    host = host.strip("[]") or "127.0.0.1"  # [::1]:6379
    if not 0 < int(port) < 65536:
        raise ValueError(f"cannot join the Ray cluster at {address}: port {port} is not in 1..65535")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        why = f"no answer within {timeout:g} s" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ValueError(
            f"cannot join the Ray cluster at {address}: nothing accepts connections at {host}:{port} ({why}); "
            "is the cluster started there (ray start --head)?"
        ) from None


def _resources() -> str:
    total = ray.cluster_resources()
    return f"{total.get('CPU', 0):g} CPU(s), {total.get('GPU', 0):g} GPU(s) on {len(ray.nodes())} node(s)"


def _check_room(executor: Executor, embedded: bool, log) -> None:
    """A run that no node can hold would wait for ever: refuse it on an embedded instance (which
    cannot grow), say so on a cluster (whose autoscaler may add the node)."""
    total = ray.cluster_resources()
    short = [f"--{kind}s-per-run {need:g} but the cluster has {total.get(kind.upper(), 0):g} {kind.upper()}(s)"
             for kind, need in (("cpu", executor.cpus_per_run), ("gpu", executor.gpus_per_run))
             if need > total.get(kind.upper(), 0)]  # fmt: skip
    if short and embedded:
        raise ValueError(f"no run fits on this machine: {'; '.join(short)}")
    for line in short:
        log(f"waiting for room: {line} (an autoscaler may add it)")


def _failure(err: Exception, retries: int) -> str:
    """The status of a task that raised: its own exception, or its worker lost too often."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None) or err
        lines = str(cause).strip().splitlines() or [""]
        return f"failed: {type(cause).__name__}: {lines[0]}"
    return f"failed: the worker was lost {retries + 1} time(s) ({type(err).__name__}); --resume continues the run"


def run_on_ray(jobs: list[Job], executor: Executor, *, resume: bool, progress: bool, log) -> dict[str, str]:
    """Run every job as a Ray task; ``{name: status}`` as :func:`svag.experiments.executors.run_jobs`
    (which has already skipped, under ``resume``, the jobs whose runs are all completed)."""
    jobs = [replace(job, folders=[Path(os.path.abspath(f)) for f in job.folders]) for job in jobs]
    statuses: dict[str, str] = {}
    if not jobs:
        return statuses
    must_stop = _connect(executor, log)
    bar = None
    pending: dict = {}
    try:
        _check_room(executor, must_stop and not executor.address, log)
        board = Board.remote()
        _submit(jobs, executor, board, pending)
        where = f"results sent back to {Path(jobs[0].folders[0]).parent}" if executor.worker_dir else "shared folder"
        log(f"running {len(jobs)} job(s) as Ray tasks ({executor.cpus_per_run:g} CPU, {executor.gpus_per_run:g} GPU "
            f"each; {where})")  # fmt: skip
        if progress:
            from svag.runner.progress import progress_bar

            bar = progress_bar(1.0, desc="all runs")
        _wait(pending, board, executor, statuses, bar, log)
    except KeyboardInterrupt as err:  # SIGINT/SIGTERM (svag.interrupts.Interrupted)
        for ref in pending:  # as a kill would: each run keeps its last checkpoint
            ray.cancel(ref, force=True)
        from svag.runner import RunInterrupted

        raise RunInterrupted(getattr(err, "signum", signal.SIGINT)) from None
    finally:
        if bar is not None:
            bar.update(max(1.0 if not pending else bar.n, bar.n) - bar.n)
            bar.close()
        if must_stop:
            ray.shutdown()
    return statuses


def _submit(jobs: list[Job], executor: Executor, board, pending: dict) -> None:
    """One task per job, declaring the executor's CPUs, GPUs and retries, into ``pending`` (``{ref: (key, job)}``)."""
    needs = {"num_cpus": executor.cpus_per_run, "num_gpus": executor.gpus_per_run,
             "max_retries": executor.retries, "retry_exceptions": False}  # fmt: skip
    threads = max(1, int(executor.cpus_per_run))
    for job in jobs:
        key = task_name(job)
        ref = _train.options(name=key, **needs).remote(job, threads, board, key, executor.worker_dir)
        pending[ref] = (key, job)


def _wait(pending: dict, board, executor: Executor, statuses: dict[str, str], bar, log) -> None:
    """Until ``pending`` is empty: every :data:`POLL` seconds, say which lost tasks run again, take each ended
    task's statuses (and, with ``worker_dir``, its files) into ``statuses``, and move the bar."""
    names = [name for _, job in pending.values() for name in job.names]
    say = bar.write if bar is not None else log
    told: dict[str, int] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL)
        fractions, attempts = ray.get(board.snapshot.remote())
        for key, n in attempts.items():
            if n > max(1, told.get(key, 1)):
                say(f"{key}: its worker was lost; running it again (attempt {n}) from its last checkpoint")
            told[key] = n
        for ref in ready:
            key, job = pending.pop(ref)
            try:
                out = ray.get(ref)
            except ray.exceptions.RayError as err:
                out = {"statuses": [_failure(err, executor.retries)] * len(job.folders), "files": None}
            for i, (name, status) in enumerate(zip(job.names, out["statuses"])):
                files = (out["files"] or [None] * len(job.folders))[i]
                if files and CONFIG in files:
                    try:
                        RunFolder(job.folders[i]).receive(files, out["kept_at"][i])
                    except FolderInUseError as err:  # a process here writes that folder: leave it to it
                        status = f"failed: {err}; its results stay on the worker ({out['kept_at'][i]})"
                statuses[name] = status
                say(f"{name}: {status}")
                fractions[name] = 1.0
        if bar is not None:
            done = sum(1.0 if n in statuses else fractions.get(n, 0.0) for n in names) / len(names)
            bar.update(max(done, bar.n) - bar.n)
