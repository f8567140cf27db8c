"""Reading idx files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An idx file is a 4-byte magic number — two zero bytes, a type code (0x08 uint8,
0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and the number of
dimensions — then each dimension as a big-endian uint32, then the data in C
order, big-endian. ``read_idx`` checks every part of that and raises ``IdxError``
(a ValueError) naming the file and what is wrong with it.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from typing import Union

import numpy as np

__all__ = ["IdxError", "read_idx", "write_idx"]

_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}
_MAX_ELEMENTS = 1 << 34  # 16 Gi elements: far beyond any idx dataset, and it stops absurd headers early


class IdxError(ValueError):
    """An idx file is missing parts, has a bad header, or is corrupted; the message names the file."""


def _contents(path: str) -> tuple[bytes, str]:
    """The file's bytes, gunzipped when it starts with the gzip magic; and a name for the kind of file."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:2] != b"\x1f\x8b":
        return blob, "idx file"
    try:
        return gzip.decompress(blob), "gzip-compressed idx file"
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise IdxError(f"'{path}': the gzip data is corrupted or truncated ({e})") from None


def read_idx(path: Union[str, os.PathLike]) -> np.ndarray:
    """The array stored in an idx file (``.gz`` or raw; the gzip magic decides, not the name).

    Multi-byte types are returned in native byte order. Raises FileNotFoundError
    when the file does not exist and IdxError when it is not a complete, valid idx file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"idx file not found: '{path}'")
    blob, what = _contents(path)
    head = blob[:4]
    if len(head) < 4:
        raise IdxError(f"'{path}': the {what} is truncated: it has {len(head)} bytes, and the header alone needs 4")
    zero, code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise IdxError(f"'{path}': not an idx file: its magic number is 0x{head.hex()} (an idx file starts with "
                       "0x0000, a type code 08/09/0B/0C/0D/0E and the number of dimensions, e.g. 0x00000803 for "
                       "MNIST images)")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise IdxError(f"'{path}': the {what} is truncated inside its header: {ndim} dimensions need {4 * ndim} "
                       f"bytes after the magic number, the file has {len(blob) - 4}")
    dims = struct.unpack(f">{ndim}I", blob[4:header])
    count = 1
    for d in dims:
        count *= d
    if count > _MAX_ELEMENTS:
        raise IdxError(f"'{path}': the header claims dimensions {list(dims)} ({count} elements), which is not "
                       "plausible; the file is corrupted")
    dtype = _TYPES[code]
    need = count * dtype.itemsize
    got = len(blob) - header
    if got < need:
        raise IdxError(f"'{path}': the {what} is truncated: its header says {list(dims)} {dtype.name} "
                       f"({need} data bytes) but only {got} follow the header")
    if got > need:
        raise IdxError(f"'{path}': the {what} has more data than its header says ({list(dims)} {dtype.name}, "
                       f"{need} bytes; {got} follow the header); it is corrupted or not what its header describes")
    out = np.frombuffer(blob, dtype=dtype, count=count, offset=header).reshape(dims)
    return out.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def write_idx(path: Union[str, os.PathLike], array: np.ndarray, compress: bool = False) -> None:
    """Write `array` as an idx file (gzip-compressed when `compress`)."""
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=")
    if key not in _CODES:
        raise TypeError(f"write_idx: idx files hold uint8, int8, int16, int32, float32 or float64; got {a.dtype}")
    if a.ndim == 0 or a.ndim > 255:
        raise ValueError(f"write_idx: the array needs 1 to 255 dimensions; got {a.ndim}")
    code = _CODES[key]
    body = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    body += np.ascontiguousarray(a, dtype=_TYPES[code]).tobytes()
    opener = gzip.open if compress else open
    with opener(os.fspath(path), "wb") as f:
        f.write(body)
