"""The flags that say where a sweep's runs go (``--jobs``, ``--cluster`` and Ray's), shared by every
command that runs a sweep: one call adds them, one call reads them into an
:class:`svag.experiments.executors.Executor`."""

from __future__ import annotations

import argparse

from svag.experiments.executors import EXECUTORS, Executor

__all__ = ["add_executor_arguments", "executor_from_args"]


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the runs go")
    group.add_argument("--jobs", type=int, default=1, help="independent jobs run in parallel worker processes, at "
                       "most 4 per core (with --cluster ray and no --address: runs at once on the embedded Ray "
                       "instance)")  # fmt: skip
    group.add_argument(
        "--cluster",
        choices=EXECUTORS,
        default="local",
        help="local: worker processes on this machine; ray: one Ray task per job (needs svag[ray]) on the cluster "
        "at --address, or on an embedded Ray instance on this machine without one",
    )
    group.add_argument(
        "--address", default=None, help="Ray cluster to join: auto (the one `ray start` began here), HOST:PORT"
    )
    group.add_argument("--cpus-per-run", type=float, default=1.0,
                       help="Ray: CPUs each run declares (and its PyTorch threads)")  # fmt: skip
    group.add_argument("--gpus-per-run", type=float, default=0.0,
                       help="Ray: GPUs each run declares; 0.5 puts two runs on one GPU")  # fmt: skip
    group.add_argument(
        "--worker-dir",
        default=None,
        help="Ray without a shared file system: train each run in this node-local folder (its checkpoints stay "
        "there) and send the finished run's files back to --out on this machine; default: the workers write into "
        "--out, which every node must see",
    )
    group.add_argument(
        "--retries", type=int, default=3, help="Ray: times a run restarts (from its checkpoint) after its worker died"
    )


def executor_from_args(args: argparse.Namespace) -> Executor:
    """The :class:`Executor` the flags name (bad values: one-line ``ValueError``)."""
    return Executor(kind=args.cluster, jobs=args.jobs, address=args.address, cpus_per_run=args.cpus_per_run,
                    gpus_per_run=args.gpus_per_run, worker_dir=args.worker_dir, retries=args.retries)  # fmt: skip
