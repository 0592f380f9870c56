"""Results on disk: JSON and JSONL written atomically, read back for plots and tables.

Every file a run writes goes through :func:`write_json` / :func:`write_jsonl` (write to a
temporary file in the same folder, ``fsync``, ``os.replace``) or :func:`append_jsonl` (whole
lines, flushed). A reader therefore sees either the old or the new file, never half of one;
a run killed in the middle of an append leaves at most one partial last line, which
:func:`read_jsonl` reports and the resuming runner truncates.

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

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "append_jsonl",
    "decode",
    "encode",
    "read_json",
    "read_jsonl",
    "write_csv",
    "write_json",
    "write_jsonl",
    "write_text",
]


def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (NaN/inf decoded); a missing file raises ``FileNotFoundError``, a corrupt
    one ``ValueError``, each naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return decode(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as JSON Lines, atomically (replaces the file)."""
    write_text(path, "".join(json.dumps(encode(r)) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one row as a whole line and flush it to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(encode(row)) + "\n")
        fh.flush()


def read_jsonl(path: str | os.PathLike, *, allow_partial_last: bool = True) -> list[dict]:
    """Read JSON Lines (NaN/inf decoded). A partial last line (a run killed mid-write) is dropped when allowed;
    any other malformed line raises ``ValueError`` naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    lines = path.read_text().split("\n")
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
