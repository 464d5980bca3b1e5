"""Fast kernels against the readable loop references (RoIPool's is torchvision's CPU algorithm)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.scratch import functional as F
from cnnlab.verify import reference as R


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


@pytest.mark.parametrize("kernel,stride,padding",
                         [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((3, 2), 2, (1, 0))])
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
    empty_bins = 0
    for scale, size in ((1.0, (3, 2)), (0.5, (2, 4)), (0.25, (1, 1))):
        out, cache = F.roi_pool_forward(x, rois, size, scale)
        ref_out, ref_cache = R.roi_pool_forward(x, rois, size, scale)
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(cache[2], ref_cache[2])  # same argmax: ties agree
        empty_bins += int((cache[2] == -1).sum())
        dout = rng.standard_normal(out.shape)
        np.testing.assert_allclose(F.roi_pool_backward(dout, cache),
                                   R.roi_pool_backward(dout, ref_cache), rtol=1e-12)
    assert empty_bins > 0  # the RoI off the map pools nothing
