"""The run folder: one typed, versioned artifact on disk, with one writer (the runner) and one reader.

Only this module knows the file names and their formats; summaries, plots, sweeps, executors and
resume ask a :class:`RunFolder`. A folder holds

- ``config.json``: ``{"schema_version": 2, "config": RunConfig fields, "derived": ...}``, where
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
  :meth:`RunFolder.remove_temporaries` deletes them.

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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from svag.config import RunConfig
from svag.records import (
    append_jsonl,
    check_writable,
    decode,
    is_temporary,
    read_json,
    read_jsonl,
    remove_temporaries,
    write_json,
    write_jsonl,
    write_text,
)

__all__ = ["RESULT_FILES", "SCHEMA_VERSION", "STATUSES", "Run", "RunFolder", "Status", "find_runs", "load_runs"]

SCHEMA_VERSION = 2  # folders without "schema_version" in config.json are version 1 (release 0.1.0)
STATUSES = ("not started", "running", "interrupted", "completed", "diverged", "failed")
DERIVED_KEYS = ("time_per_epoch", "end_time", "eval_times", "schedule", "clock", "optimizer_names")
CLOCK_KEYS = ("power", "l", "lr_factor")

CONFIG, ENV, STATUS, METRICS, CHECKPOINT = "config.json", "env.json", "status.json", "metrics.jsonl", "checkpoint.pt"
RESULT_FILES = (CONFIG, ENV, METRICS, STATUS)  # what a finished run sends to a driver that cannot see its folder
KEPT_AT = "checkpoint_kept_at"  # status.json of a received run: where its checkpoint stayed


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
        mid-append) is dropped."""
        return read_jsonl(self.metrics_path) if self.metrics_path.is_file() else []

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
        """The names in the folder, sorted, without the temporary files of atomic writes (ours,
        hidden: a user cannot see them); ``[]`` if the folder does not exist."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if not is_temporary(p))

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
        checkpoint stayed), so a reader never sees a finished status before the records."""
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
    return {**RunConfig().to_dict(), **_before_field(config), **config}


def _before_field(config: dict) -> dict:
    """Values of fields added after ``config`` was written, where they are not the current default:
    cosine and triangle were shaped on continuous time before ``schedule_unit`` (release 0.2.0) existed."""
    return {"schedule_unit": "time"} if config.get("schedule") in ("cosine", "triangle") else {}


def _derived(saved: dict) -> dict:
    return _upgrade_v1(_config(saved), saved["derived"]) if saved.get("schema_version", 1) == 1 else saved["derived"]


def _upgrade_v1(config: dict, derived: dict) -> dict:
    """``derived`` of a version-1 folder (release 0.1.0) with the optimizer facts that release did
    not save (the clock and the display names), asked of the optimizer the runner builds for
    ``config`` (built on one dummy parameter: the optimizer owns these facts)."""
    import torch

    from svag.build import build_optimizer

    opt = build_optimizer(RunConfig.from_dict(config), [torch.zeros(1, requires_grad=True)])
    return {**derived, "clock": opt.clock().to_dict(), "optimizer_names": opt.names()}


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
