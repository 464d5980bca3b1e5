"""Process-level settings for a training run: seeds, allocator tuning, threads, signals."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import random
import signal
import sys
import threading

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024

_allocator_tuned = False


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's, the scratch engine's and torch's generators."""
    import numpy as np
    import torch

    from cnnlab.scratch import random as scratch_random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    scratch_random.seed(seed)
    torch.manual_seed(seed)


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds so activation buffers are reused, not re-mapped.

    glibc maps and unmaps a fresh buffer for every ~5 MB activation by default; keeping them in
    the heap sped up torch CPU training 12-30% here (benchmarks/harness_overhead.py
    --allocator measures it). Returns whether the thresholds were set; a no-op (False) on
    non-glibc systems.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    _allocator_tuned = ok
    return ok


@contextlib.contextmanager
def compute_threads(threads: int | None):
    """Use `threads` CPU threads inside the block (None: leave as is), then restore.

    Both engines are limited: torch's intra-op pool and NumPy's BLAS pool (the scratch
    engine's matmuls), so a study's parallel jobs do not oversubscribe the cores.
    """
    import torch

    from cnnlab.scratch.threads import blas_threads

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with blas_threads(threads or None):
            yield
    finally:
        if threads:
            torch.set_num_threads(previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block SIGTERM raises KeyboardInterrupt, so it is handled like Ctrl-C.

    Only possible in the main thread; elsewhere (e.g. a worker thread) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
