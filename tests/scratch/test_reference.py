"""Fast kernels against the readable loop references, and RoIPool against torchvision's algorithm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.scratch import functional as F
from cnnlab.scratch import reference as R


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("geometry", [
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2), groups=1),
    dict(stride=2, padding=1, dilation=1, groups=2),
])
def test_conv2d_fast_equals_reference(geometry):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    weight = rng.standard_normal((6, 4 // geometry["groups"], 3, 2))
    bias = rng.standard_normal(6)
    out, cache = F.conv2d_forward(x, weight, bias, **geometry)
    ref_out, ref_cache = R.conv2d_forward(x, weight, bias, **geometry)
    _close(out, ref_out)
    dout = rng.standard_normal(out.shape)
    for fast, ref in zip(F.conv2d_backward(dout, cache), R.conv2d_backward(dout, ref_cache)):
        _close(fast, ref)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((3, 2), 2, (1, 0))])
def test_pooling_fast_equals_reference(kernel, stride, padding):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, (2, 3, 7, 8)).astype(float)  # many ties
    out, cache = F.max_pool2d_forward(x, kernel, stride, padding)
    ref_out, ref_cache = R.max_pool2d_forward(x, kernel, stride, padding)
    _close(out, ref_out)
    dout = rng.standard_normal(out.shape)
    _close(F.max_pool2d_backward(dout, cache), R.max_pool2d_backward(dout, ref_cache))
    for count_include_pad in (True, False):
        out, cache = F.avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)
        ref_out, ref_cache = R.avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)
        _close(out, ref_out)
        _close(F.avg_pool2d_backward(dout, cache), R.avg_pool2d_backward(dout, ref_cache))


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_fast_equals_reference(shape, training):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    stats = [rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1])]
    ref_stats = [s.copy() for s in stats]
    out, cache = F.batchnorm_forward(x, gamma, beta, *stats, None, training, 0.1, 1e-5)
    ref_out, ref_cache = R.batchnorm_forward(x, gamma, beta, *ref_stats, training, 0.1, 1e-5)
    _close(out, ref_out)
    _close(stats[0], ref_stats[0])
    _close(stats[1], ref_stats[1])
    dout = rng.standard_normal(shape)
    for fast, ref in zip(F.batchnorm_backward(dout, cache), R.batchnorm_backward(dout, ref_cache)):
        _close(fast, ref)


def roi_pool_loops(x, rois, pooled_h, pooled_w, spatial_scale):
    """torchvision's CPU roi_pool, transcribed as plain loops (C's round: half away from 0)."""
    def c_round(v):
        return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)

    n, c, h, w = x.shape
    out = np.zeros((len(rois), c, pooled_h, pooled_w))
    argmax = -np.ones((len(rois), c, pooled_h, pooled_w), int)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        start_w, start_h = c_round(roi[1] * spatial_scale), c_round(roi[2] * spatial_scale)
        end_w, end_h = c_round(roi[3] * spatial_scale), c_round(roi[4] * spatial_scale)
        bin_h = max(end_h - start_h + 1, 1) / pooled_h
        bin_w = max(end_w - start_w + 1, 1) / pooled_w
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                hs = min(max(math.floor(ph * bin_h) + start_h, 0), h)
                he = min(max(math.ceil((ph + 1) * bin_h) + start_h, 0), h)
                ws = min(max(math.floor(pw * bin_w) + start_w, 0), w)
                we = min(max(math.ceil((pw + 1) * bin_w) + start_w, 0), w)
                empty = he <= hs or we <= ws
                for ch in range(c):
                    best, best_index = (0.0 if empty else -np.finfo(np.float32).max), -1
                    for row in range(hs, he):
                        for col in range(ws, we):
                            if x[b, ch, row, col] > best:
                                best, best_index = x[b, ch, row, col], row * w + col
                    out[k, ch, ph, pw], argmax[k, ch, ph, pw] = best, best_index
    return out, argmax


def test_roi_pool_hand_computed_example():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    rois = np.array([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], float)
    out, _ = F.roi_pool_forward(x, rois, (2, 2), spatial_scale=0.1)
    assert out[:, 0].tolist() == [[[5, 6], [9, 10]], [[9, 11], [13, 15]]]
    # C rounding: 0.5 -> 1 and 2.5 -> 3 (numpy's round-half-even would give 0 and 2)
    out, _ = F.roi_pool_forward(x, np.array([[0, 0.5, 0.5, 2.5, 2.5]]), 1, spatial_scale=1.0)
    assert out.item() == 15


def test_roi_pool_matches_the_loop_transcription_with_ties_and_empty_bins():
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (2, 3, 9, 11)).astype(float)
    rois = np.array([[0, 0, 0, 10, 8], [1, 3.3, 2.5, 7.7, 6.2], [1, 5, 5, 4, 3],
                     [0, -4, -3, 2, 2], [1, 30, 30, 40, 40], [0, 1, 1, 1, 1]])
    for scale, size in ((1.0, (3, 2)), (0.5, (2, 4)), (0.25, (1, 1))):
        out, cache = F.roi_pool_forward(x, rois, size, scale)
        ref_out, ref_argmax = roi_pool_loops(x, rois, *size, scale)
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(cache[2], ref_argmax)
        dout = rng.standard_normal(out.shape)
        dx = F.roi_pool_backward(dout, cache)
        expected = np.zeros((2, 3, 9 * 11))
        for k, ch, i, j in np.ndindex(*ref_argmax.shape):
            if ref_argmax[k, ch, i, j] >= 0:
                expected[int(rois[k, 0]), ch, ref_argmax[k, ch, i, j]] += dout[k, ch, i, j]
        np.testing.assert_allclose(dx, expected.reshape(x.shape), rtol=1e-12)
