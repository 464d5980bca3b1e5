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


def test_kernel_threads_follow_blas_threads_and_restore():
    pytest.importorskip("threadpoolctl")
    from cnnlab.scratch.threads import kernel_threads

    before = kernel_threads()
    with blas_threads(3):
        assert kernel_threads() == 3
        with blas_threads(1):
            assert kernel_threads() == 1
        assert kernel_threads() == 3
    assert kernel_threads() == before


def test_run_parts_returns_results_in_order_and_split_range_covers_everything():
    from cnnlab.scratch.threads import run_parts, split_range

    for threads in (1, 2, 3):
        with blas_threads(threads):
            assert run_parts([lambda i=i: i * i for i in range(5)]) == [0, 1, 4, 9, 16]
    for count, parts in [(10, 3), (7, 7), (128, 2), (1, 1)]:
        slices = split_range(count, parts)
        assert len(slices) == parts
        assert [i for s in slices for i in range(count)[s]] == list(range(count))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_conv_in_image_chunks_over_kernel_threads_matches_one_piece(threads):
    """The conv's im2col in chunks of images (each chunk's product on its own thread, the
    weight gradient summed over fixed parts) gives what one undivided copy and product give,
    and the same bits for any thread count."""
    pytest.importorskip("threadpoolctl")
    from cnnlab.scratch import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 32, 32))
    weight = rng.standard_normal((16, 16, 3, 3))
    dout = rng.standard_normal((64, 16, 32, 32))
    with blas_threads(threads):
        out, cache = F.conv2d_forward(x, weight, None, 1, 1)
        dx, dweight, _ = F.conv2d_backward(dout, cache)
    assert len(F._image_chunks(64, 32 * 32 * 9 * 16 * 8)) > 2  # more chunks than threads
    xp = np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.stack([xp[:, a:a + 32, b:b + 32] for a in range(3) for b in range(3)], axis=3)
    cols = windows.reshape(64 * 32 * 32, -1)
    wmat = weight.transpose(2, 3, 1, 0).reshape(-1, 16)
    np.testing.assert_allclose(out.transpose(0, 2, 3, 1).reshape(-1, 16), cols @ wmat,
                               rtol=1e-12, atol=1e-9)
    reference = (cols.T @ dout.transpose(0, 2, 3, 1).reshape(-1, 16))  # (9*C, O), one product
    reference = reference.reshape(3, 3, 16, 16).transpose(3, 2, 0, 1)
    np.testing.assert_allclose(dweight, reference, rtol=1e-12, atol=1e-9)
    with blas_threads(1):
        one_out, cache = F.conv2d_forward(x, weight, None, 1, 1)
        one_dx, one_dweight, _ = F.conv2d_backward(dout, cache)
    np.testing.assert_array_equal(one_out, out)
    np.testing.assert_array_equal(one_dweight, dweight)
    np.testing.assert_array_equal(one_dx, dx)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_large_linear_layer_in_row_blocks_matches_one_product(threads):
    """A linear layer large enough for `_parted_matmul` gives the one-product result, and the
    same bits for any thread count."""
    pytest.importorskip("threadpoolctl")
    from cnnlab.scratch import functional as F

    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((64, 1024)), rng.standard_normal((48, 1024)), rng.standard_normal(48)
    dout = rng.standard_normal((64, 48))
    assert 64 * 1024 * 48 >= F.PRODUCT_PARTS_MIN
    with blas_threads(threads):
        out, cache = F.linear_forward(x, w, b)
        dx, dw, db = F.linear_backward(dout, cache)
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(dx, dout @ w, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(dw, dout.T @ x, rtol=1e-12, atol=1e-10)
    with blas_threads(1):
        one_out, cache = F.linear_forward(x, w, b)
        one = F.linear_backward(dout, cache)
    np.testing.assert_array_equal(one_out, out)
    for ours, single in zip((dx, dw, db), one):
        np.testing.assert_array_equal(ours, single)


@pytest.mark.parametrize("threads", [2, 3])
def test_a_transposed_conv_in_blocks_gives_the_same_bits_for_any_thread_count(threads):
    pytest.importorskip("threadpoolctl")
    from cnnlab.scratch import functional as F

    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((9, 12, 6, 5)), rng.standard_normal((12, 4, 3, 3))
    dout = rng.standard_normal((9, 8, 13, 11))
    results = []
    for count in (1, threads):
        with blas_threads(count):
            out, cache = F.conv_transpose2d_forward(x, w, None, stride=2, groups=2)
            results.append((out,) + F.conv_transpose2d_backward(dout, cache)[:2])
    for one, many in zip(*results):
        np.testing.assert_array_equal(one, many)
