"""The runner's entry points: :func:`run` trains one run into a folder, :func:`run_replicas` several seeds at once."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed

from svag.checkpoint import load_checkpoint
from svag.config import RunConfig
from svag.models import default_device
from svag.runfolder import FolderInUseError, RunFolder
from svag.runner.budget import check_budget, cost_notice
from svag.runner.distributed import Dist, setup
from svag.runner.ensemble import NotStackable
from svag.runner.folder import prepare_folder
from svag.runner.loop import Group
from svag.runner.progress import notice
from svag.runner.recorder import SinkFactory
from svag.version import __version__

__all__ = ["RunResult", "resolve_device", "run", "run_replicas"]


@dataclass
class RunResult:
    out_dir: Path
    status: str
    records: list[dict]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: nothing a run can train on
        raise ValueError(f"device must be auto, cpu, cuda[:N] or mps, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"device {name!r} requested but Apple MPS is not available; use --device cpu or auto")
    return device


def _environment(device: torch.device, seed: int, replicas: int, processes: int) -> dict[str, Any]:
    return {
        "svag": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "seed": seed,
        "trained_with_replicas": replicas,
        "processes": processes,
    }


def run_replicas(
    cfg: RunConfig,
    seeds: list[int],
    out_dirs: list[str | os.PathLike],
    *,
    resume: bool = False,
    progress: bool = True,
    sinks: Sequence[SinkFactory] = (),
    init_from: Sequence[str | os.PathLike] | None = None,
) -> list[RunResult]:
    """Train ``cfg`` for every seed at once (one process, stacked parameters when > 1 seed).

    Each seed writes into its own folder exactly what :func:`run` would write (metrics equal to
    float rounding: batched kernels may round differently). A seed that diverges is marked
    ``diverged`` in its ``status.json`` and the others go on. ``cfg.seed`` is ignored.

    ``init_from``: one checkpoint file per seed (another run's ``checkpoint.pt``) that a new run starts
    from (:func:`svag.runner.state.start_from`: model, optimizer state, every stream; its own clock from 0).
    A run that already has its own checkpoint resumes from that one with ``resume``, as any run.
    """
    cfg = RunConfig.of(cfg).validate()  # a dict of its fields is accepted (RunConfig.from_dict)
    folders = [RunFolder(o) for o in out_dirs]
    if len(folders) != len(seeds) or not seeds:
        raise ValueError(f"need one out_dir per seed, got {len(seeds)} seeds and {len(folders)} folders")
    cfgs = [replace(cfg, seed=int(s)) for s in seeds]
    starts = [Path(p) for p in init_from] if init_from else []
    if starts and len(starts) != len(seeds):
        raise ValueError(f"need one init_from checkpoint per seed, got {len(starts)} for {len(seeds)} seeds")
    for p in starts:
        if not p.is_file():
            raise FileNotFoundError(f"init_from: no checkpoint at {p}")
    dist, device = setup(resolve_device(cfg.device), cfg.batch_size)
    budget = check_budget(cfg, len(seeds), device)  # batches, steps and memory, before any folder is made
    if dist.world > 1 and cfg.loader_workers:
        raise ValueError(f"loader_workers runs in one process, got {cfg.loader_workers} under {dist.world} processes")
    if dist.world > 1 and len(seeds) > 1:
        raise ValueError(f"multi-process runs train one seed at a time, got {len(seeds)} seeds")
    if dist.world > 1 and cfg.gradient_noise == "gaussian":
        raise ValueError(
            "gradient_noise gaussian runs in one process (each step is one full-batch pass; use --gaussian-chunk "
            "for memory): launch it without torchrun"
        )
    cost = cost_notice(cfg, budget)  # e.g. a Gaussian-noise run on a large training set: say so before it starts
    if cost and dist.main:
        notice(cost)
    with _sole_writer(folders, dist):  # rank 0 is the folders' one writer until the run ends
        return _train(cfg, seeds, cfgs, folders, dist, device, resume, progress, sinks, starts)


@contextlib.contextmanager
def _sole_writer(folders: list[RunFolder], dist: Dist):
    """Rank 0 holds every folder's lock (:meth:`RunFolder.hold`) while the block runs; a folder that
    another process writes is refused on every rank alike, before anything is read or written."""
    with contextlib.ExitStack() as held:
        refused = None
        if dist.main:
            try:
                for f in folders:
                    held.enter_context(f.hold())
            except Exception as err:  # told to every rank below: none may wait for the others for ever
                refused = err
        if dist.world > 1:
            said = [None if refused is None else str(refused).splitlines()[0]]
            torch.distributed.broadcast_object_list(said, src=0)
            if refused is None and said[0] is not None:
                refused = FolderInUseError(said[0])
        if refused is not None:
            raise refused
        yield


def _train(cfg, seeds, cfgs, folders, dist, device, resume, progress, sinks, starts=()) -> list[RunResult]:
    """:func:`run_replicas` once its checks passed and rank 0 holds the folders."""
    # every process checks (a bad folder fails on all of them alike); rank 0 alone creates it
    resumable = [prepare_folder(c, f, resume, create=dist.main) for c, f in zip(cfgs, folders)]
    statuses = [f.status().status for f in folders]
    if dist.world > 1:
        torch.distributed.barrier()  # every rank has decided before rank 0 writes anything
    if all(resumable) and all(s == "completed" for s in statuses):
        return [RunResult(f.path, "completed", f.records()) for f in folders]
    try:
        run = Group(cfg, [int(s) for s in seeds], folders, progress, dist, device)
    except NotStackable as why:  # e.g. dropout, data-dependent control flow: the seeds one by one, as --ensemble off
        if dist.main:
            notice(f"training the {len(seeds)} seeds of model {cfg.model!r} one by one: stacking them failed, {why}")
        alone = [[p] for p in starts] if starts else [[] for _ in seeds]
        return [res for s, c, f, st in zip(seeds, cfgs, folders, alone)
                for res in _train(cfg, [s], [c], [f], dist, device, resume, progress, sinks, st)]  # fmt: skip
    if all(resumable):
        run.load([f.load_checkpoint(map_location=run.device) for f in folders])
        for r, status in zip(run.replicas, statuses):
            r.diverged = status == "diverged"
            if dist.main:
                r.folder.keep_records(r.n_records)
    elif dist.main:
        for c, r in zip(cfgs, run.replicas):
            r.folder.create(c.to_dict(), run.derived(), _environment(run.device, r.seed, len(seeds), dist.world))
    if starts and not all(resumable):  # a new run from other runs' checkpoints (svag cbs's branches), every rank
        run.start_from([load_checkpoint(p, map_location=run.device) for p in starts])
    if dist.main:  # sinks first: one that cannot open (an unwritable TensorBoard folder) leaves the status as it was
        run.recorder.open_sinks(sinks, run.replicas)  # e.g. TensorBoard, wired in by the front
        for r in run.live():
            run.report(r, "running")
    try:
        run.train()
    finally:
        run.close()
        run.recorder.close_sinks()
    results = []
    for r in run.replicas:
        if not r.diverged and dist.main:
            run.report(r, "completed")
        rows = r.folder.records() if dist.main else []
        results.append(RunResult(r.out, "diverged" if r.diverged else "completed", rows))
    if dist.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return results


def run(
    cfg: RunConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    sinks: Sequence[SinkFactory] = (),
    init_from: str | os.PathLike | None = None,
) -> RunResult:
    """Train one run into ``out_dir`` (see :mod:`svag.runfolder` and :mod:`svag.runner.recorder` for what it writes).

    Args:
        cfg: the run configuration (validated here), or a dict of its fields.
        out_dir: output folder; it must be empty or absent unless ``resume``.
        resume: continue from ``out_dir/checkpoint.pt`` (same config required); the
            metrics are bit-identical to an uninterrupted run except ``wall_time``. Without a
            checkpoint the run starts afresh if it never wrote one, and is refused if its
            checkpoint was deleted (remove the folder to run it again; see ``prepare_folder``).
        progress: show a progress bar over continuous time.
        sinks: factories of record sinks (:class:`svag.runner.recorder.SinkFactory`): each run hands every
            record it writes to one sink of each, e.g. :class:`svag.integrations.tensorboard.TensorBoardSinks`,
            which the front (``svag train``, :func:`svag.api.train`) wires in for ``cfg.tensorboard``.
        init_from: start a new run from another run's ``checkpoint.pt`` (see :func:`run_replicas`).

    Raises:
        RunDiverged: the loss became NaN/inf (``status.json`` says so; files are kept).
        RunInterrupted: SIGINT/SIGTERM; the folder was checkpointed and marked ``interrupted``.
        ValueError: bad config, a non-empty folder without ``resume``, or a config mismatch.
        NotWritableError: ``out_dir`` (or the folder it would be made in) is not writable; it is a
            ``PermissionError`` and a ``ValueError``. NotADirectoryError: a file is in the way.
    """
    cfg = RunConfig.of(cfg)  # a dict of its fields is accepted (RunConfig.from_dict)
    return run_replicas(
        cfg,
        [cfg.seed],
        [out_dir],
        resume=resume,
        progress=progress,
        sinks=sinks,
        init_from=None if init_from is None else [init_from],
    )[0]
