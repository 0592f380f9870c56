"""A reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.

IDX layout (LeCun et al., the MNIST database): a 4-byte magic number ``0x00 0x00 T D`` — two
zero bytes, the element type code ``T`` and the number of dimensions ``D`` — then ``D`` sizes as
big-endian unsigned 32-bit integers, then the elements in C (row-major) order, big-endian.
Type codes: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32,
``0x0E`` float64. Compression is detected from the gzip magic bytes, not from the file name.

Every problem (missing file, wrong magic, unknown type, truncated header or payload, trailing
bytes, broken gzip stream) raises :class:`~svag.data.base.DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from svag.data.base import DataError

__all__ = ["IDX_TYPES", "read_idx", "read_idx_header"]

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path) -> BinaryIO:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(2)
    return gzip.open(path, "rb") if head == _GZIP_MAGIC else open(path, "rb")


def _read_exact(fh: BinaryIO, size: int, path: Path, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise DataError(f"{path}: truncated {what}: expected {size} bytes, got {len(data)}")
    return data


def _header(fh: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = _read_exact(fh, 4, path, "IDX magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic number starts {magic[:2].hex()}, expected 0000)")
    if magic[2] not in IDX_TYPES:
        known = ", ".join(f"0x{k:02X}" for k in IDX_TYPES)
        raise DataError(f"{path}: unknown IDX element type 0x{magic[2]:02X} (expected one of {known})")
    ndim = magic[3]
    if ndim == 0:
        raise DataError(f"{path}: IDX file with 0 dimensions (expected >= 1)")
    dims = struct.unpack(f">{ndim}I", _read_exact(fh, 4 * ndim, path, "IDX header"))
    return IDX_TYPES[magic[2]], tuple(int(d) for d in dims)


def read_idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """The element type (big-endian numpy dtype) and the sizes ``(d_1, ..., d_D)`` of an IDX file."""
    path = Path(path)
    try:
        with _open(path) as fh:
            return _header(fh, path)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


def read_idx(path: str | os.PathLike, *, max_items: int | None = None) -> np.ndarray:
    """Read an IDX file into a native-endian numpy array of shape ``(d_1, ..., d_D)``.

    Args:
        path: the file, raw or gzip-compressed.
        max_items: read only the first ``max_items`` entries along the first axis (the rest of
            the file is then not checked); ``None`` reads everything and checks that the
            payload has exactly ``d_1·…·d_D`` elements.
    """
    path = Path(path)
    try:
        with _open(path) as fh:
            dtype, dims = _header(fh, path)
            shape = dims if max_items is None else (min(dims[0], max_items), *dims[1:])
            size = math.prod(shape) * dtype.itemsize
            payload = _read_exact(fh, size, path, f"IDX payload of shape {dims}")
            if max_items is None and fh.read(1):
                raise DataError(f"{path}: trailing bytes after the IDX payload of shape {dims}")
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    # a bytearray keeps the array writable (torch.from_numpy warns on read-only memory)
    return np.frombuffer(bytearray(payload), dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)
