"""The BLAS thread limit for the scratch engine."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.scratch.threads import blas_threads, current_blas_threads


def test_blas_threads_limits_inside_the_block_and_restores_after():
    pytest.importorskip("threadpoolctl")
    before = current_blas_threads()
    assert before is not None
    with blas_threads(1):
        assert current_blas_threads() == 1
        a = np.ones((64, 64))
        assert (a @ a)[0, 0] == 64
    assert current_blas_threads() == before
    with blas_threads(None):
        assert current_blas_threads() == before
