"""The speed paths of issue 10 item 5 against torch: they must give what the general kernels
give (float64 < 1e-7, float32 < 1e-4), including the cases that send them back to the loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from cnnlab.scratch import functional as F


def rel_err(ours, theirs) -> float:
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    scale = np.abs(theirs).max()
    return float(np.abs(np.asarray(ours) - theirs).max() / (scale if scale > 0 else 1.0))


@pytest.mark.parametrize("cin, cout, kernel, padding, dilation, dtype", [
    (16, 16, (3, 3), (1, 1), (1, 1), np.float64),   # the VGG case: dx by gather
    (20, 16, (3, 2), (0, 1), (2, 1), np.float64),   # dilation, asymmetric kernel, no padding
    (24, 8, (5, 5), (2, 2), (1, 1), np.float32),
    (16, 32, (3, 3), (1, 1), (1, 1), np.float64),   # C < O: the tap-by-tap scatter
])
def test_conv2d_input_gradient_paths_match_torch(cin, cout, kernel, padding, dilation, dtype):
    rng = np.random.default_rng(cin * cout)
    x = rng.standard_normal((2, cin, 7, 6)).astype(dtype)
    w = rng.standard_normal((cout, cin) + kernel).astype(dtype)
    out, cache = F.conv2d_forward(x, w, None, 1, padding, dilation, workspace={})
    assert F._dx_by_gather(cin, cout, 1, (1, 1), padding, dilation, kernel) == (cin >= cout)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, _ = F.conv2d_backward(dout, cache)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    TF.conv2d(tx, tw, None, 1, padding, dilation).backward(torch.tensor(dout))
    tolerance = 1e-7 if dtype == np.float64 else 1e-4
    assert dx.shape == x.shape and dx.dtype == dtype
    assert rel_err(dx, tx.grad) < tolerance and rel_err(dw, tw.grad) < tolerance


def _max_pool_grad(x, kernel, stride, dout):
    out, cache = F.max_pool2d_forward(x, kernel, stride)
    return out, F.max_pool2d_backward(dout, cache)


@pytest.mark.parametrize("shape, ties", [
    ((2, 16, 8, 6), False),     # windows tile the input exactly: the one-pass path
    ((2, 16, 9, 7), False),     # a last row and column no window reads
    ((2, 16, 6, 4), True),      # equal values in windows: torch's first-max routing
    ((2, 3, 8, 8), True),       # fewer than 16 channels: the tap loop
])
def test_tiled_max_pool_backward_matches_torch(shape, ties):
    rng = np.random.default_rng(shape[2])
    x = rng.standard_normal(shape)
    if ties:
        x = np.round(x)  # many ties of 0, 1, -1 within 2x2 windows
    dout = rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2))
    out, dx = _max_pool_grad(x, 2, 2, dout)
    tx = torch.tensor(x, requires_grad=True)
    t_out = TF.max_pool2d(tx, 2, 2)
    t_out.backward(torch.tensor(dout))
    np.testing.assert_array_equal(np.asarray(out), t_out.detach().numpy())
    np.testing.assert_array_equal(np.asarray(dx), tx.grad.numpy())


def test_tiled_max_pool_routes_nan_and_tie_windows_as_the_tap_loop(monkeypatch):
    # a NaN window beside a whole-window tie: the first maximum takes a tie's gradient, and a
    # NaN window (no element equals its NaN max) passes none, as the general tap loop does
    x = np.random.default_rng(0).standard_normal((2, 16, 6, 5))
    x = np.round(x)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 2:4, 2:4] = 5.0
    dout = np.random.default_rng(1).standard_normal((2, 16, 3, 2))
    _, tiled = _max_pool_grad(x, 2, 2, dout)
    monkeypatch.setattr(F, "_windows_tile", lambda *args: False)
    _, loop = _max_pool_grad(x, 2, 2, dout)
    np.testing.assert_array_equal(np.asarray(tiled), np.asarray(loop))
    assert np.asarray(tiled)[0, 0, 2:4, 2:4].tolist() == [[dout[0, 0, 1, 1], 0.0], [0.0, 0.0]]
    assert not np.asarray(tiled)[0, 0, :2, :2].any()


def test_a_conv_reuses_its_work_buffers_from_step_to_step():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 16, 5, 5)), rng.standard_normal((16, 16, 3, 3))
    workspace = {}
    expected = buffers = None
    for _ in range(2):  # the second step runs on the reused (not re-zeroed) buffers
        out, cache = F.conv2d_forward(x, w, None, 1, 1, workspace=workspace)
        dout = np.ones(out.shape)
        dx = F.conv2d_backward(dout, cache)[0]
        expected = dx.copy() if expected is None else expected
        np.testing.assert_array_equal(dx, expected)
        buffers = dict(workspace) if buffers is None else buffers
    # the padded input; per part (one image each): the chunk's columns, and the padded dout
    # and its columns for dx
    assert set(workspace) == {"pad"} | {f"{key}{part}:1" for key in ("cols", "dx_pad", "dx_cols")
                                        for part in (0, 1)}
    assert all(workspace[key] is buffer for key, buffer in buffers.items())
    tx = torch.tensor(x, requires_grad=True)
    TF.conv2d(tx, torch.tensor(w), None, 1, 1).backward(torch.ones(out.shape, dtype=torch.float64))
    assert rel_err(dx, tx.grad) < 1e-7


def test_weight_gradient_with_a_long_reduction_runs_on_one_blas_thread(monkeypatch):
    from cnnlab.scratch import threads

    entered = []
    real = threads.one_blas_thread

    def spy():
        entered.append(True)
        return real()

    monkeypatch.setattr(F, "one_blas_thread", spy)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((8, 1, 16, 16)), rng.standard_normal((4, 1, 3, 3))
    out, cache = F.conv2d_forward(x, w, None, 1, 1)  # dW: (9 x 2048) @ (2048 x 4)
    dout = rng.standard_normal(out.shape)
    _, dw, _ = F.conv2d_backward(dout, cache, need_input_grad=False)
    assert entered
    tw = torch.tensor(w, requires_grad=True)
    TF.conv2d(torch.tensor(x), tw, None, 1, 1).backward(torch.tensor(dout))
    assert rel_err(dw, tw.grad) < 1e-7
    before = threads.current_blas_threads()
    with threads.one_blas_thread():
        assert threads.current_blas_threads() in (1, None)
    assert threads.current_blas_threads() == before


@pytest.mark.parametrize("cin, cout, stride, padding", [
    (8, 8, 1, 1),    # dx by gather
    (4, 12, 1, 1),   # dx by the tap scatter
    (6, 6, 2, 1),    # stride 2: the scatter
    (1, 5, 1, 0),    # one input channel: columns copied tap by tap
])
def test_a_conv_split_in_many_image_chunks_matches_torch(monkeypatch, cin, cout, stride, padding):
    # small chunks: several per part, a last one shorter (7 images over chunks of 2 or 3)
    monkeypatch.setattr(F, "CHUNK_BYTES", 11 * 11 * 9 * cin * 8 * 2)
    rng = np.random.default_rng(cin + cout)
    x = rng.standard_normal((7, cin, 11, 11))
    w, b = rng.standard_normal((cout, cin, 3, 3)), rng.standard_normal(cout)
    assert len(F._image_chunks(7, 11 * 11 * 9 * cin * 8)) >= 3
    workspace = {}
    for _ in range(2):  # the second pass runs on the reused buffers
        out, cache = F.conv2d_forward(x, w, b, stride, padding, workspace=workspace)
        dout = np.cos(np.arange(out.size)).reshape(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    t_out = TF.conv2d(tx, tw, tb, stride, padding)
    t_out.backward(torch.tensor(dout))
    assert rel_err(out, t_out) < 1e-7
    assert rel_err(dx, tx.grad) < 1e-7 and rel_err(dw, tw.grad) < 1e-7
    assert rel_err(db, tb.grad) < 1e-7
