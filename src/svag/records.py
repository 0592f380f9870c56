"""Results on disk: JSON and JSONL written atomically, read back for plots and tables.

Every file a run writes goes through :func:`write_json` / :func:`write_jsonl` (write to a
temporary file in the same folder, ``fsync``, ``os.replace``: :func:`atomic_path`) or
:func:`append_jsonl` (whole lines, flushed). A reader therefore sees either the old or the new
file, never half of one; a run killed in the middle of an append leaves at most one partial last
line, which :func:`read_jsonl` reports and the resuming runner truncates.

**Temporary files** are named ``.NAME.XXXXXXXX.tmp`` next to ``NAME`` (hidden, so ``ls`` does
not show them). A process killed between creating one and replacing ``NAME`` leaves it behind:
:func:`is_temporary` recognizes the name (folder checks ignore such files) and
:func:`remove_temporaries` deletes them when no writer is at work in the folder.

**Modes.** A written file gets the mode any other tool's output gets, ``0o666`` less the
process's umask (``mkstemp`` alone would give ``0o600``). The umask is read from
``/proc/self/status`` (Linux, no side effect); elsewhere by setting and restoring it, which is
not thread-safe but harmless in a command-line process that writes from one thread.

**Errors.** A folder that cannot be written raises :class:`NotWritableError` (a
``PermissionError`` and a ``ValueError``: one line naming the path, which the CLI prints with
exit status 2); a file standing where a folder is needed raises ``NotADirectoryError`` naming it.

**NaN and infinities.** JSON has no NaN/inf, so every writer here stores a non-finite float as
one of the strings ``"nan"``, ``"inf"``, ``"-inf"`` (the file stays valid JSON that jq and pandas
read), and every reader (:func:`read_json`, :func:`read_jsonl`) turns exactly those three strings
back into floats, at any depth of the value. This module is the only place that knows the
encoding (:func:`encode`, :func:`decode`).

*Collision rule:* a genuine string value ``"nan"``, ``"inf"`` or ``"-inf"`` would also come back
as a float. Our files never hold one: their string values are names from validated lists
(data set, model, norm, optimizer, schedule, sampling, noise mode, device, dtype, status),
versions, platform strings and sentences (messages), none of which can be exactly one of
those three words (only a ``data_root`` literally named ``nan`` could, and it would read back
as a float).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "NotWritableError",
    "append_jsonl",
    "atomic_path",
    "check_writable",
    "decode",
    "encode",
    "file_mode",
    "is_temporary",
    "read_json",
    "read_jsonl",
    "remove_temporaries",
    "temporary_of",
    "write_csv",
    "write_json",
    "write_jsonl",
    "write_text",
]


class NotWritableError(PermissionError, ValueError):
    """A folder or file that must be written is not writable (permission denied or a read-only file
    system); the message names it. A ``ValueError`` too, so the CLI prints it as one line."""


_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+\.tmp$")  # .NAME.XXXXXXXX.tmp (mkstemp's letters)
_DENIED = {errno.EACCES: "is not writable (permission denied)", errno.EPERM: "is not writable (permission denied)",
           errno.EROFS: "is on a read-only file system"}  # fmt: skip


def temporary_of(path: str | os.PathLike) -> str | None:
    """The name ``NAME`` of the file that ``path`` was to replace if ``path`` is named like a
    temporary file of :func:`atomic_path` (``.NAME.XXXXXXXX.tmp``), else ``None``."""
    match = _TEMPORARY.match(Path(path).name)
    return match["target"] if match else None


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_path`: a write in progress,
    or what a process killed in the middle of one left behind."""
    return temporary_of(path) is not None


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` left in ``folder`` (not below it) and return
    them. Call it only when no process is writing into ``folder`` (the runner, before it starts)."""
    folder = Path(folder)
    stale = sorted(p for p in folder.iterdir() if is_temporary(p) and p.is_file()) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (see the module notes)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666`` less the umask (``0o644`` under umask 022)."""
    return 0o666 & ~_umask()


def _blocker(folder: Path, action: str) -> OSError | None:
    """Why files cannot be written into ``folder`` (which need not exist yet): a file standing at it
    or above it, or the nearest existing folder not writable; ``None`` if nothing is in the way."""
    probe = folder
    while True:
        try:
            is_dir = probe.is_dir()
            present = is_dir or probe.exists() or probe.is_symlink()
        except OSError:  # cannot even look: a parent is not searchable
            return NotWritableError(f"{action}: {probe} is not accessible (permission denied)")
        if present or probe.parent == probe:
            break
        probe = probe.parent
    if not is_dir:
        return NotADirectoryError(f"{action}: {probe} is a file, not a folder")
    effective = os.access in os.supports_effective_ids
    if not os.access(probe, os.W_OK | os.X_OK, effective_ids=effective):
        try:  # tell a read-only file system from a permission
            readonly = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            readonly = False
        return NotWritableError(f"{action}: {probe} {_DENIED[errno.EROFS if readonly else errno.EACCES]}")
    return None


def check_writable(folder: str | os.PathLike, action: str) -> None:
    """Raise unless this process can create (if needed) and write into the folder ``folder``:
    ``NotADirectoryError`` if a file stands at it or above it, :class:`NotWritableError` if the
    nearest existing folder is not writable. ``action`` starts the message (``"cannot write X"``)."""
    err = _blocker(Path(folder), action)
    if err is not None:
        raise err


def _writing_error(err: OSError, path: Path) -> OSError:
    """``err`` (raised while writing ``path``) as one line naming what is in the way, when it is a
    permission, a read-only file system or a file where a folder should be; else ``err`` itself."""
    if isinstance(err, NotWritableError):
        return err
    if err.errno in _DENIED or isinstance(err, (FileExistsError, NotADirectoryError)):
        found = _blocker(path.parent, f"cannot write {path}")
        if found is not None:
            return found
        if err.errno in _DENIED:
            return NotWritableError(f"cannot write {path}: {Path(err.filename or path)} {_DENIED[err.errno]}")
    if isinstance(err, IsADirectoryError):
        return IsADirectoryError(f"cannot write {path}: it is a folder")
    return err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` (``.NAME.XXXXXXXX.tmp``, mode ``0o666`` less the umask) to
    write; when the block ends it replaces ``path`` in one step. On any error (or interruption) the
    temporary file is removed and ``path`` is left as it was; a kill leaves it (see
    :func:`remove_temporaries`). The folder is created if needed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _writing_error(err, path) from None
    try:
        try:
            os.fchmod(fd, file_mode())
        finally:
            os.close(fd)
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise _writing_error(err, path) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # the strings that stand for floats


def encode(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``"nan"``, ``"inf"`` or ``"-inf"`` (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # str(nan) == "nan", str(inf) == "inf", str(-inf) == "-inf"
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`: the strings ``"nan"``, ``"inf"``, ``"-inf"`` become floats (recursively)."""
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    _atomic_write(Path(path), text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text(path, json.dumps(encode(obj), indent=2, sort_keys=False) + "\n")


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a missing file raises ``FileNotFoundError``, one that is not UTF-8 text
    or cannot be read ``ValueError``, each naming it (JSON is UTF-8: RFC 8259)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"
        ) from None
    except PermissionError:
        raise ValueError(f"cannot read {path}: permission denied") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (NaN/inf decoded); a missing file raises ``FileNotFoundError``, a corrupt
    one ``ValueError``, each naming it."""
    path = Path(path)
    try:
        return decode(json.loads(_read_text(path)))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as JSON Lines, atomically (replaces the file)."""
    write_text(path, "".join(json.dumps(encode(r)) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one row as a whole line and flush it to disk."""
    line = json.dumps(encode(row)) + "\n"
    try:
        fh = open(path, "a", encoding="utf-8")  # closed by the with below; only the open is guarded
    except OSError as err:
        raise _writing_error(err, Path(path)) from None
    with fh:
        fh.write(line)
        fh.flush()


def read_jsonl(path: str | os.PathLike, *, allow_partial_last: bool = True) -> list[dict]:
    """Read JSON Lines (NaN/inf decoded). A partial last line (a run killed mid-write) is dropped when allowed;
    any other malformed line raises ``ValueError`` naming the file and line number."""
    path = Path(path)
    lines = _read_text(path).split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(decode(json.loads(line)))
        except json.JSONDecodeError:
            last = all(not rest.strip() for rest in lines[i + 1 :])
            if last and allow_partial_last:
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    return rows


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    """Write rows (dicts) as CSV with a header, atomically."""
    columns = list(columns or (rows[0].keys() if rows else []))
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(encode(row))
    write_text(path, buf.getvalue())
