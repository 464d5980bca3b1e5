"""A cache of decoded datasets as `.npy` files, keyed by the source's path, size and mtime.

Layout: `<cache_root>/<stem>-<path hash>-<state hash>/{train,test}_{images,labels}.npy` plus
`meta.json`, written last, which marks the entry complete; `<entry>.lock` beside it is held
(flock) while one process builds the entry, so processes that miss together decode once.
Arrays are read back with `allow_pickle=False`; every file is written atomically.

Within one process the last datasets loaded are also kept in memory (`remembered`), keyed by
the same source state: a study worker's next run, and the figures drawn from the test set
after training, then reuse the arrays instead of reading and decoding the files again (~0.4 s
a load for MNIST). Those arrays are shared by every caller, so they are read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from cnnlab.data.dataset import ArrayDataset
from cnnlab.errors import OutputError
from cnnlab.utils import atomic_path, read_json, write_json

CACHE_FORMAT = 1
SPLITS = ("train", "test")


def source_state(path: Path) -> str:
    """A string that changes when the file (size, mtime) or any file under the folder changes."""
    if path.is_file():
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    parts = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            parts.append(f"{os.path.relpath(os.path.join(folder, name), path)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cache_entry(cache_root: Path, source: Path) -> Path:
    """The cache folder for `source` in its current state."""
    source = source.resolve()
    path_hash = _short_hash(str(source))
    state_hash = _short_hash(f"{CACHE_FORMAT}|{source_state(source)}")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.name) or "data"
    return cache_root / f"{stem}-{path_hash}-{state_hash}"


def cached_splits(cache_root: Path | None, source: Path,
                  build: Callable[[], dict[str, ArrayDataset]]) -> dict[str, ArrayDataset]:
    """Load `source`'s splits from the cache, or `build()` them and store them.

    A cache that cannot be written (read-only data dir) only costs speed: it warns and goes on.
    """
    if cache_root is None:
        return build()
    entry = cache_entry(cache_root, source)
    return remembered(("entry", str(entry)), lambda: _read_or_build(entry, source, build))


def _read_or_build(entry: Path, source: Path, build: Callable[[], dict[str, ArrayDataset]]):
    splits = _read_entry(entry)
    if splits is not None:
        return splits
    with _building(entry):
        # a study's workers start together: the first decodes, the others wait here and read
        # its entry, instead of all decoding the same 60,000 JPEGs at once on the same cores
        splits = _read_entry(entry)
        if splits is not None:
            return splits
        splits = build()
        try:
            _write_entry(entry, splits, source)
            _remove_stale_siblings(entry)
        except (OSError, OutputError) as err:  # a cache only saves time: warn and go on without it
            target, reason = ((err.target, err.reason) if isinstance(err, OutputError)
                              else (entry, err.strerror or str(err)))
            warnings.warn(f"the decoded-data cache '{target}' could not be written ({reason}), so every "
                          "load decodes the source again; free space there or point $CNNLAB_CACHE at "
                          "a writable folder.", stacklevel=2)
        return splits


MEMORY_ENTRIES = 2  # datasets kept per process: a study's, plus one other (e.g. a test's)
_memory: dict[tuple, dict[str, ArrayDataset]] = {}


def remembered(key: tuple, build: Callable[[], dict[str, ArrayDataset]]) -> dict[str, ArrayDataset]:
    """`build()`'s splits, kept in this process under `key` (which must change whenever the
    source does: its path and `source_state`). The arrays are made read-only, because later
    callers get the same ones; copy them to modify."""
    splits = _memory.pop(key, None)
    if splits is None:
        splits = build()
        for dataset in splits.values():
            dataset.images.setflags(write=False)
            dataset.labels.setflags(write=False)
    _memory[key] = splits  # most recently used last
    while len(_memory) > MEMORY_ENTRIES:
        del _memory[next(iter(_memory))]
    return dict(splits)


def forget_loaded() -> None:
    """Drop the datasets kept in memory (tests that count decodes; freeing memory)."""
    _memory.clear()


def file_key(paths) -> tuple:
    """A `remembered` key for data read from these files: their paths, sizes and mtimes."""
    return ("files", *((str(Path(p).resolve()), source_state(Path(p))) for p in paths))


@contextlib.contextmanager
def _building(entry: Path):
    """Hold an exclusive lock on `<entry>.lock` while the entry is built. Where the lock file
    cannot be made or the file system has no flock, build unlocked: the entry's files are
    written atomically, so concurrent builders only cost time."""
    fd = None
    try:
        import fcntl  # POSIX only; elsewhere concurrent builders just repeat the work

        entry.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(entry.parent / f"{entry.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _read_entry(entry: Path) -> dict[str, ArrayDataset] | None:
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
        splits = {}
        for split in SPLITS:
            images = np.load(entry / f"{split}_images.npy", allow_pickle=False)
            labels = np.load(entry / f"{split}_labels.npy", allow_pickle=False)
            if len(images) != meta["counts"][split]:
                return None
            splits[split] = ArrayDataset(images, labels, tuple(meta["classes"]))
        return splits
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None  # an unreadable entry is rebuilt, never trusted


def _write_entry(entry: Path, splits: dict[str, ArrayDataset], source: Path) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for field in ("images", "labels"):
            with atomic_path(entry / f"{split}_{field}.npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, getattr(splits[split], field), allow_pickle=False)
    write_json(entry / "meta.json", {
        "format": CACHE_FORMAT,
        "source": str(source.resolve()),
        "classes": list(splits["train"].classes),
        "counts": {split: len(splits[split]) for split in SPLITS},
    })


def _remove_stale_siblings(entry: Path) -> None:
    """Entries for the same source in an older state are dead weight: remove them."""
    prefix = entry.name.rsplit("-", 1)[0] + "-"
    for sibling in entry.parent.glob(prefix + "*"):
        if sibling != entry and sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
        elif sibling.name.endswith(".lock") and sibling.name != f"{entry.name}.lock":
            sibling.unlink(missing_ok=True)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
