"""How many threads NumPy's BLAS (the scratch engine's matmuls) may use.

OpenBLAS sizes its pool from the core count at import. On a machine shared with other jobs,
two BLAS threads on two busy cores wait on each other: the `small_cnn` step measured 22 ms
with one thread and 140 ms to 3.3 s with two (benchmarks/scratch_vs_torch.py, load 4-6 on
2 cores). Training code can match the BLAS pool to torch's thread setting with
`blas_threads(n)`. It uses threadpoolctl (installed with scikit-learn); without it the block
runs unchanged.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


def _numpy_blas(infos: list[dict]) -> list[dict]:
    """The entries of NumPy's own BLAS among threadpoolctl's (SciPy, loaded later by the
    study statistics, brings a second OpenBLAS that NumPy's matmuls never use); all BLAS
    entries when none lies in NumPy's folders (a NumPy linked to a system BLAS)."""
    import numpy

    blas = [info for info in infos if info["user_api"] == "blas"]
    home = os.path.dirname(os.path.abspath(numpy.__file__))  # .../numpy; wheels: numpy.libs
    own = [info for info in blas if os.path.abspath(info["filepath"]).startswith(home)]
    return own or blas


def current_blas_threads() -> int | None:
    """The BLAS pool size NumPy uses now, or None when threadpoolctl cannot tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    sizes = [info["num_threads"] for info in _numpy_blas(threadpool_info())]
    return max(sizes) if sizes else None


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit NumPy's BLAS to `threads` inside the block (None: leave it as it is)."""
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with _kernel_threads_set(threads), threadpool_limits(limits=int(threads), user_api="blas"):
        yield


_BLAS_POOLS = []  # the threadpoolctl selection of BLAS pools, found once (it is slow to find)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block's matmuls on one BLAS thread, cheaply (about 25 us per use).

    For products with a long reduction and a small result, such as a first conv layer's
    weight gradient (27 x 131072) @ (131072 x 32): OpenBLAS splits them across its threads
    with many synchronisations, and with two threads on busy cores one product measured
    2.3 s against 19 ms on one thread (and no faster with two on idle cores).
    """
    if not _BLAS_POOLS:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS_POOLS.append(None)
        else:
            controller = ThreadpoolController()
            paths = {info["filepath"] for info in _numpy_blas(controller.info())}
            _BLAS_POOLS.append(controller.select(filepath=sorted(paths)))
    pools = _BLAS_POOLS[0]
    if pools is None:
        yield
        return
    kernel_threads()  # found before the limit, which it would otherwise read as the default
    with pools.limit(limits=1):
        yield


# --------------------------------------------------------------------------------------------
# kernel threads: a kernel splits its work into independent parts, each on one BLAS thread.
#
# Two OpenBLAS threads synchronise many times inside one product; on busy cores each waits for
# the other (see `one_blas_thread`). Parts that share nothing until one final sum or copy wait
# once, at the end, so a kernel split in two is never much slower than one thread and is close
# to twice as fast on idle cores. NumPy releases the GIL inside matmuls and array copies, so
# plain Python threads run the parts in parallel.

_KERNEL_THREADS: list[int] = []  # the kernels' thread count, set by `blas_threads`, else found once
_POOL: list = []
# a forked child has the pool object but none of its threads: it starts its own
os.register_at_fork(after_in_child=_POOL.clear)


def kernel_threads() -> int:
    """How many parts a kernel may split its work into: the thread count `blas_threads` set
    around the caller, else NumPy's BLAS pool size when the process started."""
    if not _KERNEL_THREADS:
        _KERNEL_THREADS.append(max(1, current_blas_threads() or 1))
    return _KERNEL_THREADS[-1]


@contextlib.contextmanager
def _kernel_threads_set(threads: int) -> Iterator[None]:
    kernel_threads()  # the process default goes first, so the stack pops back to it
    _KERNEL_THREADS.append(max(1, int(threads)))
    try:
        yield
    finally:
        _KERNEL_THREADS.pop()


def run_parts(parts: list) -> list:
    """Call each zero-argument function of `parts`, up to `kernel_threads()` at once (one on
    this thread, the rest on a pool), and return their results in order."""
    threads = min(len(parts), kernel_threads())
    if threads == 1:
        return [part() for part in parts]
    if threads < len(parts):  # more parts than threads: each thread takes a run of them
        runs = [parts[s] for s in split_range(len(parts), threads)]
        return [result for run in run_parts([lambda r=r: [p() for p in r] for r in runs])
                for result in run]
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=7, thread_name_prefix="cnnlab-kernel"))
    futures = [_POOL[0].submit(part) for part in parts[1:]]
    first = parts[0]()
    return [first] + [future.result() for future in futures]


def split_range(count: int, parts: int) -> list[slice]:
    """`parts` consecutive slices covering range(count), as even as integers allow."""
    return [slice(i * count // parts, (i + 1) * count // parts) for i in range(parts)]
