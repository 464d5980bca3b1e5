"""The IDX format of MNIST and Fashion-MNIST (`*-ubyte`, optionally gzip-compressed).

Layout: two zero bytes, a dtype code, the number of dimensions D, then D big-endian uint32
sizes, then the values in C order, big-endian. See http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

# IDX dtype code -> big-endian numpy dtype
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a writable array in native byte order.

    Raises DataError naming the file when it cannot be read, is not IDX, or its size does not
    match its header (a truncated download, say).
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    return parse_idx(raw, source=str(path))


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file; `source` names it in error messages."""
    if len(raw) < 4:
        raise DataError(f"IDX file {source} is {len(raw)} bytes long, too short for the 4-byte "
                        "IDX header; the file is truncated or empty. Delete it and download it again.")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{source} is not an IDX file: it starts with bytes {raw[:4].hex(' ')}, "
                        "but IDX files start with two zero bytes, a dtype code and a dimension "
                        "count (e.g. 00 00 08 03 for MNIST images).")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"IDX file {source} has dtype code 0x{code:02X}; known codes are {known}. "
                        "The file is corrupt or not an IDX file.")
    if ndim == 0:
        raise DataError(f"IDX file {source} declares 0 dimensions; IDX data needs at least one.")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"IDX file {source} declares {ndim} dimensions but is only {len(raw)} "
                        f"bytes long, shorter than its {header_len}-byte header; it is truncated.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header_len + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"IDX file {source} is {problem}: its header declares shape {shape} of "
                        f"{dtype.name} ({expected:,} bytes with the header) but it holds "
                        f"{len(raw):,} bytes. Delete it and download it again.")
    values = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    # copy: a writable array in native byte order (torch.from_numpy needs writable memory)
    return values.astype(dtype.newbyteorder("="), copy=True)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise DataError(f"cannot read IDX file {path}: {err.strerror or err}.") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"IDX file {path} is gzip-compressed but cannot be decompressed ({err}); "
                        "the download is truncated or corrupt. Delete it and download it again.") from None
