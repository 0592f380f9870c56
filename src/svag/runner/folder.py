"""Whether a run folder can take a run: fresh, resumable, or refused in one line naming why."""

from __future__ import annotations

import contextlib

from svag.config import OUTPUT_ONLY, RunConfig
from svag.plugins import KINDS, check_resume, is_spec
from svag.records import NotWritableError, check_writable, temporary_of
from svag.runfolder import RunFolder
from svag.runner.progress import notice

__all__ = ["prepare_folder"]


def _listing(names: list[str], shown: int = 5) -> str:
    """``a, b and 3 more``: what a folder holds, for a message."""
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")


def prepare_folder(cfg: RunConfig, folder: RunFolder, resume: bool, create: bool = True) -> bool:
    """Check ``folder`` can hold the run (and create it if ``create``); return whether there is a
    checkpoint to resume from. Read-only without ``create``, so every process of a
    multi-process run can check, and fail with the same message.

    With ``resume`` and no checkpoint the run starts afresh when the folder shows it never had one
    (its status is at step 0: stopped before its first checkpoint; a line says so if records past
    t = 0 are rewritten) or when it diverged (a line says it runs again); when the status shows a
    checkpoint was written and is gone (:meth:`RunFolder.lost_checkpoint`) it refuses, naming
    the folder: the user removes the folder to run it again. Temporary files that a kill left
    (:mod:`svag.records`) are ignored by the checks and removed when the folder is created.
    """
    try:
        return _check_folder(cfg, folder, resume, create)
    except PermissionError as err:  # a folder we may not even look into; NotWritableError names its path itself
        if isinstance(err, NotWritableError):
            raise
        where = err.filename or folder.path
        raise NotWritableError(f"cannot use {folder.path}: {where} is not accessible (permission denied)") from None


def _check_folder(cfg: RunConfig, folder: RunFolder, resume: bool, create: bool) -> bool:
    out = folder.path
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    holds = folder.contents()  # without our own hidden temporary files
    message = None
    if resume and folder.exists():
        saved, mine = folder.config(), cfg.to_dict()
        for key in OUTPUT_ONLY:  # where the records are mirrored (TensorBoard) may change
            saved.pop(key, None), mine.pop(key, None)
        if saved != mine:
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise ValueError(f"cannot resume {out}: config differs in {diff}; resume with the saved config")
        if any(is_spec(mine[k]) for k in KINDS):  # a user's plug-in: the same one?
            check_resume(folder.derived().get("plugins"), cfg, out)
        if not folder.has_checkpoint():
            message = _without_checkpoint(folder)
    elif resume and holds:
        raise ValueError(f"cannot resume {out}: it holds no config.json of a run (it holds {_listing(holds)})")
    elif holds:
        raise ValueError(
            f"{out} is not empty (it holds {_listing(holds)}); pass --resume to continue the run in it or choose "
            "another --out"
        )
    resumable = resume and folder.has_checkpoint()
    if create and resumable and folder.status().status == "completed":  # nothing to write: may be read-only
        with contextlib.suppress(OSError):
            folder.remove_temporaries()
    elif create:
        check_writable(out, f"cannot {'resume' if resumable else 'write'} the run in {out}")
        out.mkdir(parents=True, exist_ok=True)
        stale = folder.remove_temporaries()
        if resume and stale and not folder.exists():
            partial = temporary_of(stale[0])  # .config.json.XXXXXXXX.tmp -> config.json
            message = f"{out} holds no run yet, only a partial {partial} of a start that was killed: starting afresh"
        if message:
            notice(message)
    return resumable


def _without_checkpoint(folder: RunFolder) -> str | None:
    """What ``--resume`` does with a run folder that has no ``checkpoint.pt``: raise if it had one
    (see :func:`prepare_folder`), else the line to show before starting afresh (``None``: nothing to say)."""
    status, rows = folder.status(), folder.records()
    past = [r for r in rows if r.get("sde_time", 0) > 0]
    if folder.lost_checkpoint():
        raise ValueError(
            f"cannot resume {folder.path}: its checkpoint.pt is gone, but status.json says the run had reached step "
            f"{status.step} ({status.status}); resuming would start again from step 0 and overwrite its "
            f"{len(rows)} records: remove the folder to run it again, or choose another --out"
        )
    if status.status == "diverged":
        return f"{folder.path} diverged and has no checkpoint: running it again from step 0"
    if past:
        return (f"{folder.path} was stopped before its first checkpoint: starting again from step 0 (its "
                f"{len(past)} records after t = 0 are written anew)")  # fmt: skip
    return None
