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
from typing import Iterator


def current_blas_threads() -> int | None:
    """The BLAS pool size NumPy uses now, or None when threadpoolctl cannot tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    sizes = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
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
    with threadpool_limits(limits=int(threads), user_api="blas"):
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
            _BLAS_POOLS.append(ThreadpoolController().select(user_api="blas"))
    pools = _BLAS_POOLS[0]
    if pools is None:
        yield
        return
    with pools.limit(limits=1):
        yield
