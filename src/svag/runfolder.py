"""The run folder: one typed, versioned artifact on disk, with one writer (the runner) and one reader.

Only this module knows the file names and their formats; summaries, plots, sweeps, executors and
resume ask a :class:`RunFolder`. A folder holds

- ``config.json``: ``{"schema_version": 3, "config": RunConfig fields, "derived": ...}``, where
  ``derived`` is what the runner computed once from the config: ``time_per_epoch``, ``end_time``,
  ``eval_times``, ``schedule`` (:func:`svag.schedules.schedule_to_dict`), ``n_train``, ..., the
  optimizer's ``clock`` (``power``, ``l``, ``lr_factor``: an original step at LR η covers
  ``(η·lr_factor)**power`` of continuous time in ``l**power`` steps) and its display names
  ``optimizer_names`` (``simulated``: the optimizer being simulated, i.e. the ``l = 1`` run;
  ``svag``: its SVAG), both as the optimizer class declares them (:class:`svag.optim.Clock`,
  ``simulated_name``, ``svag_name``);
- ``env.json``: versions, device, threads, seed;
- ``status.json``: one of :data:`STATUSES` and where the run stood (absent: ``"not started"``);
- ``metrics.jsonl``: one record per evaluation, appended whole (NaN/inf as in :mod:`svag.records`);
- ``checkpoint.pt``: the resumable state (:mod:`svag.checkpoint`);
- at most a few hidden ``.NAME.XXXXXXXX.tmp`` files: writes in progress, or left by a process
  killed in the middle of one (:mod:`svag.records`); :meth:`RunFolder.contents` ignores them and
  :meth:`RunFolder.remove_temporaries` deletes them;
- ``.lock`` while a process writes the folder (:meth:`RunFolder.hold`); :meth:`RunFolder.contents` ignores it.

**One writer.** The process that writes a folder (the runner, for the whole run; a driver receiving
a run's files) holds an exclusive OS lock on its ``.lock`` (``flock``: the kernel drops it when the
process ends, however it ends, so a crash leaves nothing that blocks the next run) and writes who
it is into the file (pid, host, start, command). A second writer is refused at once with
:class:`FolderInUseError`, one line naming the holder, before it reads or writes anything; the
holder removes the file when it lets go. A sweep folder has one writer the same way
(:func:`svag.sweepfolder.hold`). Where no lock can be taken (Windows, which has no ``flock``; a
file system without locks; a folder this process cannot write, which it will not write either),
:func:`hold_writer` goes on without one.

**Records come in time order, one per evaluation time.** The ``k``-th record of ``metrics.jsonl``
is the one taken at ``derived["eval_times"][k]``, so its ``sde_time`` is at least that time (up to
:data:`svag.clock.TIME_RTOL`). A file that breaks this (a record repeating a time, as two processes
appending to one folder wrote before the lock existed) is refused by every reader
(:meth:`RunFolder.records`: :class:`RepeatedRecordsError`, one line naming the file and the record):
the curves, the summary, the verdict and resume would otherwise read a mixture of two runs.

**What resume can tell from the files.** The runner rewrites ``status.json`` right after every
checkpoint, with the step reached; before the first one it says ``running`` at step 0. So a folder
without ``checkpoint.pt`` whose status is past step 0 (or ``completed``/``interrupted``) had one
that was deleted (:meth:`RunFolder.lost_checkpoint`), while a folder whose status is still at
step 0 was stopped before its first checkpoint. (Release 0.1.0 left its status at step 0: in its
folders a deleted checkpoint looks like none yet.)

**Results sent from elsewhere.** A sweep on a cluster without a shared file system trains each
run in a folder on its worker; when the run ends, the worker sends :meth:`RunFolder.result_files`
(config, env, metrics, status: :data:`RESULT_FILES`) and the driver writes them into the sweep's
folder with :meth:`RunFolder.receive`, status last, each atomically. The checkpoint stays on the
worker: the received ``status.json`` says where (``checkpoint_kept_at``), so such a folder is
not taken for one whose checkpoint was lost.

**Versions.** A ``config.json`` without ``schema_version`` is version 1 (release 0.1.0): its
``derived`` lacks the clock and the names, which :func:`_upgrade_v1` fills in from the config as
that release computed them; config fields added since are filled with the ``RunConfig`` defaults.
Version 2 is release 0.2.0. Version 3 shapes a multistep on the simulated run's steps when
``schedule_unit`` is ``step`` (issue 23); versions 1 and 2 shaped it on continuous time whatever that
field says, so their multistep folders read as ``schedule_unit = "time"`` (:func:`_ran_as`), resume
only as such, and keep the time shaping they ran with. Their ``eval_epochs`` (version 1: none) were
time over the base LR's epoch length; for a schedule other than a constant LR they read as the
simulated run's own epochs (:func:`_epochs_of_the_run`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from svag.clock import TIME_RTOL, Clock
from svag.config import RunConfig
from svag.records import (
    append_jsonl,
    check_writable,
    decode,
    file_mode,
    is_temporary,
    read_json,
    read_jsonl,
    remove_temporaries,
    write_json,
    write_jsonl,
    write_text,
)
from svag.schedules import original_steps, schedule_from_dict

try:
    import fcntl  # POSIX: flock
except ImportError:  # Windows: no flock (see hold_writer)
    fcntl = None

__all__ = [
    "LOCK",
    "RESULT_FILES",
    "SCHEMA_VERSION",
    "STATUSES",
    "FolderInUseError",
    "RepeatedRecordsError",
    "Run",
    "RunFolder",
    "Status",
    "find_runs",
    "hold_writer",
    "load_runs",
]

SCHEMA_VERSION = 3  # folders without "schema_version" in config.json are version 1 (release 0.1.0)
STATUSES = ("not started", "running", "interrupted", "completed", "diverged", "failed")
DERIVED_KEYS = ("time_per_epoch", "end_time", "eval_times", "schedule", "clock", "optimizer_names")
CLOCK_KEYS = ("power", "l", "lr_factor")

CONFIG, ENV, STATUS, METRICS, CHECKPOINT = "config.json", "env.json", "status.json", "metrics.jsonl", "checkpoint.pt"
RESULT_FILES = (CONFIG, ENV, METRICS, STATUS)  # what a finished run sends to a driver that cannot see its folder
KEPT_AT = "checkpoint_kept_at"  # status.json of a received run: where its checkpoint stayed
LOCK = ".lock"  # held (flock) by the one process writing a run or sweep folder: hold_writer


class FolderInUseError(ValueError):
    """Another process writes the folder (it holds its lock: :func:`hold_writer`); the message names it.
    A ``ValueError``, so the CLI prints it as one line with exit status 2."""


class RepeatedRecordsError(ValueError):
    """``metrics.jsonl`` repeats an evaluation time (:meth:`RunFolder.records`); the message names the
    file and the record. A ``ValueError``: one line, exit status 2."""


@dataclass(frozen=True)
class Status:
    """What ``status.json`` says; ``"not started"`` when it is absent (the one default)."""

    status: str  # one of STATUSES
    step: int | None = None  # optimizer steps taken
    sde_time: float | None = None  # continuous time reached
    records: int | None = None  # metric records written so far
    last_record: dict | None = None  # the last record's sde_time/epoch/train_loss (for schedulers)
    wall_time: float | None = None  # seconds of training
    message: str | None = None  # why a run diverged or failed
    extra: dict = field(default_factory=dict)  # anything else status.json holds

    @classmethod
    def from_dict(cls, data: dict, where: str | os.PathLike = "status") -> Status:
        if data.get("status") not in STATUSES:
            raise ValueError(f"{where}: status must be one of {', '.join(STATUSES)}, got {data.get('status')!r}")
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}


@dataclass(frozen=True)
class Run:
    """A snapshot of one folder: what summaries and plots read."""

    path: Path
    config: dict  # the RunConfig fields (absent ones filled with the defaults)
    derived: dict  # time_per_epoch, end_time, eval_times, schedule, clock, optimizer_names, ...
    env: dict
    status: Status
    records: list[dict]  # NaN/inf decoded to floats
    schema_version: int


@dataclass(frozen=True)
class RunFolder:
    """Handle on one folder: the only code that knows file names and formats.

    Reading methods read the files afresh on every call (a run may be writing them); :meth:`load`
    takes one consistent :class:`Run` snapshot.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def env_path(self) -> Path:
        return self.path / ENV

    @property
    def status_path(self) -> Path:
        return self.path / STATUS

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    # -- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the folder holds a run (its ``config.json``)."""
        return self.config_path.is_file()

    def _saved(self) -> dict:
        saved = read_json(self.config_path)
        version = saved.get("schema_version", 1) if isinstance(saved, dict) else None
        if not isinstance(saved, dict) or not {"config", "derived"} <= set(saved):
            raise ValueError(f"{self.config_path} is not the config of a run: it needs 'config' and 'derived'")
        if version not in range(1, SCHEMA_VERSION + 1):
            raise ValueError(
                f"{self.config_path} has schema_version {version!r}; this svag reads versions 1 to {SCHEMA_VERSION}"
            )
        return saved

    def schema_version(self) -> int:
        return self._saved().get("schema_version", 1)

    def config(self) -> dict:
        """The saved ``RunConfig`` fields; fields absent in older folders get their defaults."""
        return _config(self._saved())

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config())

    def derived(self) -> dict:
        """The derived times and the optimizer's clock and names (filled in for version 1)."""
        return _derived(self._saved())

    def env(self) -> dict:
        return read_json(self.env_path) if self.env_path.is_file() else {}

    def status(self) -> Status:
        if not self.status_path.is_file():
            return Status("not started")
        return Status.from_dict(read_json(self.status_path), self.status_path)

    def records(self) -> list[dict]:
        """The metric records (none if the file is absent); a partial last line (a run killed
        mid-append) is dropped. Records that repeat an evaluation time raise
        :class:`RepeatedRecordsError` (see the module notes)."""
        rows = read_jsonl(self.metrics_path) if self.metrics_path.is_file() else []
        if rows and self.exists():
            _check_times(self.metrics_path, rows, self._saved()["derived"].get("eval_times"))
        return rows

    def progress(self) -> float:
        """Fraction of ``derived["end_time"]`` reached: 1 when completed, else the status's
        ``sde_time`` if it has one, else the last record's; 0 when there is nothing yet."""
        if not self.exists():
            return 0.0
        status = self.status()
        if status.status == "completed":
            return 1.0
        t = status.sde_time
        if t is None and status.last_record:
            t = status.last_record.get("sde_time")
        if t is None:
            rows = self.records()
            t = rows[-1]["sde_time"] if rows else 0.0
        return min(max(float(t) / self.derived()["end_time"], 0.0), 1.0)

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def lost_checkpoint(self) -> bool:
        """Whether a checkpoint was written but is gone: no ``checkpoint.pt`` while ``status.json``
        says the run got past step 0 with one (``running`` or ``interrupted`` past step 0: each is
        written after a checkpoint) or ``completed``. ``diverged`` and ``failed`` tell nothing."""
        if self.has_checkpoint():
            return False
        status = self.status()
        if status.extra.get(KEPT_AT):  # received from a worker, which kept the checkpoint
            return False
        return status.status == "completed" or (status.status in ("running", "interrupted") and bool(status.step))

    def contents(self) -> list[str]:
        """The names in the folder, sorted, without the temporary files of atomic writes and the
        writer's ``.lock`` (ours, hidden: a user cannot see them); ``[]`` if the folder does not exist."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if not is_temporary(p) and p.name != LOCK)

    def hold(self) -> contextlib.AbstractContextManager[bool]:
        """Be this folder's one writer while the block runs (:func:`hold_writer`; not reentrant: a
        second hold, even from this process, is refused); the block gets whether a lock is held."""
        return hold_writer(self.path, f"the run folder {self.path}")

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files that writes killed midway left here (only when no process is
        writing into the folder: the runner calls it before it starts); return them."""
        return remove_temporaries(self.path)

    def load(self) -> Run:
        saved = self._saved()
        return Run(self.path, _config(saved), _derived(saved), self.env(), self.status(), self.records(),
                   saved.get("schema_version", 1))  # fmt: skip

    def result_files(self) -> dict[str, str]:
        """The text of the :data:`RESULT_FILES` present here, to send to a driver (:meth:`receive`)."""
        return {name: (self.path / name).read_text() for name in RESULT_FILES if (self.path / name).is_file()}

    # -- writing (the runner only; :meth:`receive` for a driver given a worker's files) --------
    def receive(self, files: dict[str, str], kept_at: str) -> None:
        """Write the result files of a run trained elsewhere (:meth:`result_files` there): each
        atomically, ``status.json`` last with ``checkpoint_kept_at = kept_at`` (where the
        checkpoint stayed), so a reader never sees a finished status before the records. Holds the
        folder's lock meanwhile: :class:`FolderInUseError` if another process writes it."""
        unknown = sorted(set(files) - set(RESULT_FILES))
        if unknown or CONFIG not in files or STATUS not in files:
            raise ValueError(f"a run's result files are {', '.join(RESULT_FILES)} with {CONFIG} and {STATUS}, "
                             f"got {sorted(files)}")  # fmt: skip
        try:
            status = decode(json.loads(files[STATUS]))
        except json.JSONDecodeError as err:
            raise ValueError(f"the {STATUS} sent for {self.path} is not valid JSON ({err.msg})") from None
        Status.from_dict(status, f"the {STATUS} sent for {self.path}")  # a known status, or one line
        check_writable(self.path, f"cannot write the results of the run into {self.path}")
        with self.hold():
            for name in RESULT_FILES[:-1]:
                if name in files:
                    write_text(self.path / name, files[name])
                else:
                    (self.path / name).unlink(missing_ok=True)
            self.checkpoint_path.unlink(missing_ok=True)  # a checkpoint here would be of an older run
            write_json(self.status_path, {**status, KEPT_AT: kept_at})

    # -- writing (the runner only) ------------------------------------------------------------
    def create(self, config: dict, derived: dict, env: dict) -> None:
        """Start the folder afresh: write ``config.json`` (current schema) and ``env.json``, and
        remove the records, checkpoint, status and leftover temporary files of an earlier run in it."""
        missing = [k for k in DERIVED_KEYS if k not in derived]
        missing += [f"clock.{k}" for k in CLOCK_KEYS if "clock" in derived and k not in derived["clock"]]
        if missing:
            raise ValueError(f"derived must hold {', '.join(DERIVED_KEYS)} (clock: {', '.join(CLOCK_KEYS)}); "
                             f"missing {missing}")  # fmt: skip
        self.path.mkdir(parents=True, exist_ok=True)
        for path in (self.metrics_path, self.checkpoint_path, self.status_path):
            path.unlink(missing_ok=True)
        self.remove_temporaries()
        write_json(self.config_path, {"schema_version": SCHEMA_VERSION, "config": config, "derived": derived})
        write_json(self.env_path, env)

    def write_status(self, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        write_json(self.status_path, {"status": status, **fields})

    def mark_interrupted(self) -> bool:
        """Make a ``running`` status say ``interrupted``, with the step, time and records of the last
        checkpoint it names: a run that a signal stopped outside its loop (being set up or wound up, or in a
        worker its sweep stopped; inside the loop the runner says so itself). Any other status is left as
        it is, and so is a folder another process writes (it holds the lock: :meth:`hold`). Whether the
        status changed."""
        if self.status().status != "running":
            return False
        try:
            with self.hold():
                status = self.status()  # as its last writer left it
                if status.status != "running":
                    return False
                self.write_status("interrupted", **{k: v for k, v in status.to_dict().items() if k != "status"})
                return True
        except FolderInUseError:
            return False

    def append_record(self, row: dict) -> None:
        append_jsonl(self.metrics_path, row)

    def keep_records(self, n: int) -> list[dict]:
        """Rewrite ``metrics.jsonl`` with its first ``n`` records (resume from a checkpoint that
        had written ``n``) and return them."""
        rows = self.records()
        if len(rows) < n:
            raise ValueError(f"cannot resume {self.path}: metrics.jsonl has {len(rows)} records, the checkpoint "
                             f"expects {n}")  # fmt: skip
        write_jsonl(self.metrics_path, rows[:n])
        return rows[:n]

    def save_checkpoint(self, state: dict) -> None:
        from svag.checkpoint import save_checkpoint  # torch: only the runner needs it

        save_checkpoint(self.checkpoint_path, state)

    def load_checkpoint(self, map_location="cpu") -> dict:
        from svag.checkpoint import load_checkpoint

        return load_checkpoint(self.checkpoint_path, map_location=map_location)


def _config(saved: dict) -> dict:
    """The saved config with the fields a folder predates filled in: with their defaults, except where the
    default changed since (:func:`_before_field`)."""
    config = saved["config"]
    return {**RunConfig().to_dict(), **_before_field(config), **config, **_ran_as(saved)}


def _before_field(config: dict) -> dict:
    """Values of fields added after ``config`` was written, where they are not the current default:
    cosine and triangle were shaped on continuous time before ``schedule_unit`` (release 0.2.0) existed."""
    return {"schedule_unit": "time"} if config.get("schedule") in ("cosine", "triangle") else {}


def _ran_as(saved: dict) -> dict:
    """How a folder of an earlier schema ran where its saved config now means otherwise: a multistep of
    version 1 or 2 was shaped on continuous time (``schedule_unit`` applied to cosine and triangle only)."""
    old = saved.get("schema_version", 1) <= 2 and saved["config"].get("schedule") == "multistep"
    return {"schedule_unit": "time"} if old else {}


def _derived(saved: dict) -> dict:
    config, version = _config(saved), saved.get("schema_version", 1)
    derived = _upgrade_v1(config, saved["derived"]) if version == 1 else saved["derived"]
    return _epochs_of_the_run(config, derived) if version <= 2 else derived


def _epochs_of_the_run(config: dict, derived: dict) -> dict:
    """``derived`` of a version-1 or -2 folder with ``eval_epochs`` the simulated run's epochs at each
    evaluation time, ``k(t)·B/n`` (:func:`svag.schedules.original_steps`), where that release saved time over
    the base LR's epoch length (or nothing): the same at a constant LR (kept as saved) and on a schedule
    shaped on steps (saved right)."""
    kind = derived.get("schedule", {}).get("kind")
    if kind in ("constant", "on_steps", "per_step") or "n_train" not in derived:
        return derived
    try:
        schedule = schedule_from_dict(derived["schedule"])
    except (TypeError, ValueError):  # a schedule this svag cannot rebuild: its epochs as saved
        return derived
    steps = original_steps(schedule, derived["eval_times"], Clock.from_dict(derived["clock"]))
    return {**derived, "eval_epochs": [k * config["batch_size"] / derived["n_train"] for k in steps]}


def _upgrade_v1(config: dict, derived: dict) -> dict:
    """``derived`` of a version-1 folder (release 0.1.0) with the optimizer facts that release did
    not save (the clock and the display names), asked of the optimizer the runner builds for
    ``config`` (built on one dummy parameter: the optimizer owns these facts)."""
    import torch

    from svag.build import build_optimizer

    opt = build_optimizer(RunConfig.from_dict(config), [torch.zeros(1, requires_grad=True)])
    return {**derived, "clock": opt.clock().to_dict(), "optimizer_names": opt.names()}


def _check_times(path: Path, rows: list[dict], grid: list[float] | None) -> None:
    """Raise :class:`RepeatedRecordsError` unless record ``k`` of ``rows`` is at or past ``grid[k]``
    (the runner takes it once ``sde_time >= grid[k]·(1 − TIME_RTOL)``), for every ``k``."""
    if not grid:
        return
    for k, row in enumerate(rows):
        t, step = row.get("sde_time"), row.get("step")
        if not isinstance(t, (int, float)) or (k < len(grid) and t >= grid[k] * (1 - TIME_RTOL)):
            continue
        if step is not None:  # the same step, else the same time, written earlier
            same, what = [j for j in range(k) if rows[j].get("step") == step], f"step {step}"
        else:
            same, what = [j for j in range(k) if rows[j].get("sde_time", -1) >= t * (1 - TIME_RTOL)], "the time"
        if same:
            where = f"repeats {what} of record {same[0] + 1}"
        elif k < len(grid):
            where = f"comes before the evaluation time it stands for, t={grid[k]:g}"
        else:
            where = f"is one more than the run's {len(grid)} evaluation times"
        raise RepeatedRecordsError(
            f"{path}: record {k + 1} (sde_time={t:g}) {where}, as two processes writing one run folder at once "
            "leave it: remove the folder and run it again"
        )


_HELD: dict[str, int] = {}  # the reentrant locks this process holds (absolute path of .lock) and their depth
_FDS: set[int] = set()  # the descriptors of every lock this process holds


def _forget_in_child() -> None:
    """In a forked child (a DataLoader worker): close the copies of the parent's lock descriptors, so
    that the lock goes with the parent (killed alone, it would otherwise live on in its workers)."""
    for fd in _FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _FDS.clear()
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


@contextlib.contextmanager
def hold_writer(folder: str | os.PathLike, what: str, *, reentrant: bool = False) -> Iterator[bool]:
    """Be the one process writing ``folder`` while the block runs; the block gets whether a lock is held.

    Takes an exclusive ``flock`` on ``folder/.lock`` (created, and the folder too, if absent) without
    waiting, writes the holder (pid, host, start, command) into it, and on exit removes the file
    and lets the lock go; folders it created that the block left empty go too (a command refused
    after taking the lock leaves nothing behind). The kernel drops the lock of a process that ends
    in any way (a kill included), so nothing is left that blocks the next writer. Another process
    holding it raises :class:`FolderInUseError`: ``"{what} is in use: another process writes it (pid
    ..., host, since ..., command); ..."``. A lock belongs to one open file: a second hold in this
    process is refused too, unless ``reentrant`` (a sweep's command around its driver), where it is a
    no-op. A child forked meanwhile (a DataLoader worker) does not hold it: it closes its copy.

    No lock is taken, and the block runs, where none can be: without ``fcntl`` (Windows: its
    ``msvcrt.locking`` byte ranges would do, untested, so svag does not pretend), on a file system
    without locks (``ENOLCK``), or where this process cannot write ``folder`` (it then writes
    nothing there; the caller's own check says why).
    """
    folder = Path(folder)
    key = os.path.abspath(folder / LOCK)
    if reentrant and key in _HELD:
        _HELD[key] += 1
        try:
            yield True
        finally:
            _HELD[key] -= 1
        return
    created = []  # the folders the lock makes, deepest first
    probe = folder
    while not (probe.exists() or probe.is_symlink()) and probe.parent != probe:
        created.append(probe)
        probe = probe.parent
    try:
        fd = _lock(folder, what)
    except BaseException:
        _remove_empty(created)
        raise
    if fd is None:
        yield False
        return
    if reentrant:
        _HELD[key] = 0
    _FDS.add(fd)
    owner = os.getpid()
    try:
        yield True
    finally:
        if os.getpid() == owner:  # not a forked child leaving the block: the lock is its parent's
            _release(key, fd, created)


def _release(key: str, fd: int, created: list[Path]) -> None:
    """Remove the lock file ``key`` while holding it (a waiter then locks a fresh file), let the lock go,
    and remove the folders ``created`` for it that are still empty."""
    _HELD.pop(key, None)
    _FDS.discard(fd)
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(key)):
            os.unlink(key)
    os.close(fd)  # the lock goes with the last descriptor
    _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; keep the others."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _lock(folder: Path, what: str) -> int | None:
    """The descriptor holding ``folder/.lock`` (see :func:`hold_writer`), or ``None`` where no lock can be taken."""
    if fcntl is None:
        return None
    try:
        check_writable(folder, what)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    path = folder / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
        except PermissionError:  # another user's file in a shared folder: a read-only descriptor locks as well
            try:
                fd = os.open(path, os.O_RDONLY)
            except PermissionError:  # not even readable: no lock to take
                return None
        except FileNotFoundError:  # a holder that had made the folder removed it as it let go
            folder.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderInUseError(f"{what} is in use: another process writes it ({holder}); wait for it to end "
                                   "or stop it, then try again") from None  # fmt: skip
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return None
            raise
        try:  # a holder letting go removes the file: ours must still be the one at path
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    argv = sys.argv or [""]
    prog = Path(argv[0]).parent.name if Path(argv[0]).name == "__main__.py" else Path(argv[0]).name
    command = shlex.join([prog, *argv[1:]])
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": command if len(command) <= 160 else command[:159] + "…"}  # fmt: skip
    with contextlib.suppress(OSError):  # a read-only descriptor: the lock holds, unnamed
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    return fd


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says: ``pid 12, host, since 2025-01-31 12:00:00: svag train ...``."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):  # locked, not written yet
        return "it has not said which yet"


def find_runs(root: str | os.PathLike) -> list[RunFolder]:
    """Every run folder (``config.json`` + ``metrics.jsonl``) at or below ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    folders = [RunFolder(p.parent) for p in sorted(root.rglob(CONFIG))]
    folders = [f for f in folders if f.metrics_path.is_file()]
    if not folders:
        raise FileNotFoundError(f"no runs ({CONFIG} + {METRICS}) under {root}")
    return folders


def load_runs(root: str | os.PathLike) -> list[Run]:
    """:meth:`RunFolder.load` of every folder :func:`find_runs` finds."""
    return [folder.load() for folder in find_runs(root)]
