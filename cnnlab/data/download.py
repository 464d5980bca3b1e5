"""Fetching dataset files: streamed to a temporary file, MD5-checked, then renamed into place.

Nothing half-downloaded or with a wrong checksum is ever left under the final name.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from cnnlab.errors import ChecksumError, DataError
from cnnlab.utils import atomic_path

# a dead network should fail in seconds, not minutes
DEFAULT_TIMEOUT_S = 15.0
_CHUNK = 1 << 20


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, md5: str | None, *,
             timeout: float = DEFAULT_TIMEOUT_S, progress: bool | None = None) -> Path:
    """Fetch `url` to `dest` atomically, checking the MD5 when one is given.

    Raises ChecksumError (the file is not kept) on a mismatch, and lets network errors
    (urllib.error.URLError, OSError) through for the caller to explain.
    """
    dest = Path(dest)
    show = sys.stderr.isatty() if progress is None else progress
    digest = hashlib.md5()
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(dest.name, total) if show else None
            try:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and out.tell() != total:
                raise DataError(f"the download of {url} stopped after {out.tell():,} of {total:,} "
                                "bytes; try again.")
        if md5 is not None and digest.hexdigest() != md5:
            raise ChecksumError(f"{url} downloaded with MD5 {digest.hexdigest()}, but the published "
                                f"checksum is {md5}; the file was not kept. The mirror may be "
                                "serving a different or damaged file: try again, or fetch it by "
                                f"hand into {dest.parent}.")
    return dest


def is_network_error(err: BaseException) -> bool:
    return isinstance(err, (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError))


def _progress_bar(name: str, total: int | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", leave=False)
