"""A fast listing of an uncompressed tar: (name, data offset, size) of each regular file.

`tarfile.getmembers()` spends ~40 µs per member building TarInfo objects: 2.3 s for the 60,000
images of CIFAR-10, more than decoding them takes per core. Reading the 512-byte headers directly
costs a few µs each. Handles ustar, GNU long names ('L') and pax headers ('x', 'g'); anything
else unusual (a bad checksum, base-256 sizes, sparse files) makes `scan_tar` return None so the
caller can fall back to `tarfile`.
"""

from __future__ import annotations

import mmap
import os

_BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")
_SKIPPED = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, fifos


def scan_tar(path: str | os.PathLike) -> list[tuple[str, int, int]] | None:
    """[(member name, offset of its data, size)] for regular files, or None if unsure."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return []
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _scan(buf)


def _scan(buf) -> list[tuple[str, int, int]] | None:
    files, pos, end = [], 0, len(buf)
    pax: dict[bytes, bytes] = {}
    global_pax: dict[bytes, bytes] = {}
    long_name = None
    while pos + _BLOCK <= end:
        header = buf[pos:pos + _BLOCK]
        if header.count(0) == _BLOCK:
            return files  # end-of-archive marker
        if not _checksum_ok(header):
            return None
        size = _octal(header[124:136])
        kind = header[156:157]
        if size is None:
            return None
        data = pos + _BLOCK
        if data + size > end:
            return None  # truncated
        if kind == b"x" or kind == b"g":
            records = _pax_records(buf[data:data + size])
            if records is None:
                return None
            (pax if kind == b"x" else global_pax).update(records)
        elif kind == b"L":
            long_name = buf[data:data + size].rstrip(b"\0")
        elif kind in _REGULAR or kind in _SKIPPED:
            fields = {**global_pax, **pax}
            name = fields.get(b"path") or long_name or _ustar_name(header)
            if b"size" in fields:
                size = int(fields[b"size"])
                if data + size > end:
                    return None
            if kind in _REGULAR:
                files.append((name.decode("utf-8", "surrogateescape"), data, size))
            pax, long_name = {}, None
        else:
            return None  # sparse files, volume headers, ...: leave them to tarfile
        pos = data + -(-size // _BLOCK) * _BLOCK
    return files if pos == end else None  # no end marker: fine only at the exact end


def _ustar_name(header: bytes) -> bytes:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            return prefix + b"/" + name
    return name


def _checksum_ok(header: bytes) -> bool:
    stored = _octal(header[148:156])
    # the checksum field itself counts as eight spaces
    return stored is not None and stored == sum(header[:148]) + 256 + sum(header[156:])


def _octal(field: bytes) -> int | None:
    text = field.rstrip(b"\0 ").lstrip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None  # base-256 (GNU huge sizes) or garbage


def _pax_records(data: bytes) -> dict[bytes, bytes] | None:
    """'<len> key=value\\n' records."""
    records, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            return None
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records
