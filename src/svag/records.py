"""Results on disk: JSON and JSONL written atomically, read back for plots and tables.

Every file a run writes goes through :func:`write_json` / :func:`write_jsonl` (write to a
temporary file in the same folder, ``fsync``, ``os.replace``) or :func:`append_jsonl` (whole
lines, flushed). A reader therefore sees either the old or the new file, never half of one;
a run killed in the middle of an append leaves at most one partial last line, which
:func:`read_jsonl` reports and the resuming runner truncates.
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

__all__ = ["append_jsonl", "read_json", "read_jsonl", "write_csv", "write_json", "write_jsonl", "write_text"]


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


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so pandas and jq can still read the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    _atomic_write(Path(path), text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or corrupt file raises ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as JSON Lines, atomically (replaces the file)."""
    write_text(path, "".join(json.dumps(_clean(r)) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one row as a whole line and flush it to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_clean(row)) + "\n")
        fh.flush()


def read_jsonl(path: str | os.PathLike, *, allow_partial_last: bool = True) -> list[dict]:
    """Read JSON Lines. A partial last line (a run killed mid-write) is dropped when allowed;
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
            rows.append(json.loads(line))
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
        writer.writerow(_clean(row))
    write_text(path, buf.getvalue())
