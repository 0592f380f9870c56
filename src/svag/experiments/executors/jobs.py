"""A sweep's unit of work and where it runs: :class:`Job` (one run, or the seeds of an ensemble),
:class:`Executor` (local processes or Ray), :func:`run_job` (the same for every executor).

Executors know how to run a job, not what it computes: a job is trained by
:func:`svag.runner.run_replicas` into its folders, which are the only thing the driver reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from svag.config import RunConfig
from svag.memory import usable_cores
from svag.runfolder import RunFolder

__all__ = ["EXECUTORS", "Executor", "Job", "finished", "progress_of", "run_job"]

EXECUTORS = ("local", "ray")
JOBS_PER_CORE = 4  # --jobs at most this many per core of this machine: more runs at once only share the cores


@dataclass
class Job:
    config: RunConfig
    seeds: list[int]
    folders: list[Path]
    names: list[str] = field(default_factory=list)
    sinks: tuple = ()  # record sinks the front wired in (svag.runner.recorder.SinkFactory), e.g. TensorBoard
    init_from: list[Path] = field(default_factory=list)  # a checkpoint per seed a new run starts from (svag cbs)


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
        if self.jobs > JOBS_PER_CORE * usable_cores():  # each job is a process (local) or a run's share of the cores
            cores = usable_cores()
            raise ValueError(f"--jobs must be at most {JOBS_PER_CORE * cores} ({JOBS_PER_CORE} per core, {cores} "
                             f"core(s) here), got {self.jobs}")  # fmt: skip
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
    import torch  # the run engine and torch load in the process that trains, not with `svag compare --help`

    from svag.runner import run_replicas

    if threads:
        torch.set_num_threads(threads)
    try:
        results = run_replicas(
            job.config,
            job.seeds,
            job.folders,
            resume=resume,
            progress=progress,
            sinks=job.sinks,
            init_from=job.init_from or None,
        )
        return [r.status for r in results]
    except ValueError as err:  # diverged or bad input: reported per run, the sweep goes on
        return [f"failed: {str(err).splitlines()[0]}"] * len(job.folders)


def progress_of(folders: list[Path]) -> float:
    """Mean over runs of the fraction of their continuous time done (0 for runs not started)."""
    fractions = []
    for folder in folders:
        try:
            fractions.append(RunFolder(folder).progress())
        except (OSError, ValueError, KeyError):  # a folder being rewritten or left unreadable: the bar goes on
            fractions.append(0.0)
    return sum(fractions) / max(1, len(fractions))
