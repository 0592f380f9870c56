"""Live curves: every record's scalars as TensorBoard events, beside ``metrics.jsonl``.

With ``--tensorboard DIR`` (:attr:`svag.config.RunConfig.tensorboard`) the front (the commands and
:mod:`svag.api`, through :func:`svag.integrations.record_sinks`) gives the runner a
:class:`TensorBoardSinks`, and the recorder (:mod:`svag.runner.recorder`, the owner of records) hands
each record it appends to the replica's :class:`EventLog`, which writes every number of the record
(``None`` fields, such as G/N outside the noise window, are skipped) with
:class:`torch.utils.tensorboard.SummaryWriter` into
``DIR/<run folder name>`` and flushes, so ``tensorboard --logdir DIR`` shows the run as it goes and
every run of a sweep as its own curve.

**Step.** TensorBoard's step of a record is its index in ``metrics.jsonl``: records sit on the
evaluation grid of continuous time, the same times for every ``l``, so the runs of a comparison
line up (epoch = index × ``eval_every``; ``epoch`` and ``sde_time`` are logged as scalars too).

**Resume.** A resumed run writes again the records after its checkpoint (:mod:`svag.runner`); its
log is opened with ``purge_step`` = the number of records kept, so TensorBoard drops the earlier
events from that step on and no point appears twice.

TensorBoard is imported only here, and only when asked (the ``svag[tensorboard]`` extra).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from svag.records import check_writable

__all__ = ["EventLog", "TensorBoardSinks", "scalars"]


def scalars(row: dict) -> dict[str, float]:
    """The numbers of a record (bools and ``None`` left out), as floats, in the record's order."""
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _try_to_make(folder: Path) -> None:
    """Make the missing folders of ``folder`` and remove them again: what the permission bits do not tell (a
    read-only or virtual file system, such as ``/proc``) fails here, in one line, instead of at the first run."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    try:
        for path in reversed(missing):
            path.mkdir()
    except OSError as err:
        where = err.filename or missing[0]
        raise ValueError(f"--tensorboard: cannot make the folder {where} ({err.strerror})") from None
    finally:
        for path in missing:
            with contextlib.suppress(OSError):
                path.rmdir()


def _summary_writer():
    """TensorBoard's ``SummaryWriter``, or a one-line ``ValueError`` saying which extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs the tensorboard package: pip install 'svag[tensorboard]'") from None
    return SummaryWriter


class EventLog:
    """One run's event file: :meth:`add` a record at its index, :meth:`close` at the end."""

    def __init__(self, log_dir: str | os.PathLike, name: str, *, first: int = 0) -> None:
        SummaryWriter = _summary_writer()
        self.path = Path(log_dir) / name
        check_writable(self.path, f"--tensorboard: cannot write events into {self.path}")
        # purge_step: events at steps >= first, left by an earlier start in this folder, are dropped (all: first = 0)
        try:
            self.writer = SummaryWriter(log_dir=str(self.path), purge_step=first)
        except OSError as err:  # what check_writable cannot see ahead (a full disk, a file made meanwhile)
            raise ValueError(f"--tensorboard: cannot write events into {self.path} ({err.strerror or err})") from None

    def add(self, row: dict, index: int) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, global_step=index)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class TensorBoardSinks:
    """A record-sink factory for the runner (:class:`svag.runner.recorder.SinkFactory`): each run's
    records into ``log_dir/<run folder name>``; picklable, so sweeps hand it to worker processes."""

    log_dir: str

    def __post_init__(self) -> None:
        """Refuse, before any run starts, a missing tensorboard package or a ``log_dir`` that cannot be written
        (``NotWritableError``, ``NotADirectoryError``: one line naming the path)."""
        _summary_writer()
        check_writable(self.log_dir, f"--tensorboard {self.log_dir}: cannot write events into it")
        _try_to_make(Path(self.log_dir))

    def __call__(self, name: str, first: int) -> EventLog:
        return EventLog(self.log_dir, name, first=first)
