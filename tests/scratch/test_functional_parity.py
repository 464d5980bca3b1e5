"""The fast kernels in cnnlab.scratch.functional against torch.nn.functional, on random shapes.

Forward output and every gradient, relative error < 1e-7 in float64 and < 1e-4 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from _scratch_torch import TOLERANCE, TORCH_DTYPE, rel_err, tensor
from cnnlab.scratch import functional as F

FAST = settings(max_examples=20, deadline=None, derandomize=True)
DTYPES = st.sampled_from([np.float64, np.float32])


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kernel[0] - 1) + 1 - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, dilation[1] * (kernel[1] - 1) + 1 - 2 * padding[1]), 9))
    return dict(n=draw(st.integers(1, 3)), cin=groups * draw(st.integers(1, 3)),
                cout=groups * draw(st.integers(1, 3)), h=h, w=w, kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), dtype=draw(DTYPES), seed=draw(st.integers(0, 10**6)))


@FAST
@given(conv_cases())
def test_conv2d_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x = rng.standard_normal((case["n"], case["cin"], case["h"], case["w"])).astype(dtype)
    weight = rng.standard_normal((case["cout"], case["cin"] // case["groups"]) + case["kernel"])
    weight = weight.astype(dtype)
    bias = rng.standard_normal(case["cout"]).astype(dtype) if case["bias"] else None
    geometry = (case["stride"], case["padding"], case["dilation"], case["groups"])
    out, cache = F.conv2d_forward(x, weight, bias, *geometry, workspace={})
    tx, tw = tensor(x), tensor(weight)
    tb = tensor(bias) if bias is not None else None
    t_out = TF.conv2d(tx, tw, tb, *geometry)
    dout = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(torch.tensor(dout))
    dx, dw, db = F.conv2d_backward(dout, cache)
    tol = TOLERANCE[dtype]
    assert out.dtype == dtype and dx.dtype == dtype and dw.dtype == dtype
    assert rel_err(out, t_out) < tol
    assert rel_err(dx, tx.grad) < tol
    assert rel_err(dw, tw.grad) < tol
    if bias is not None:
        assert rel_err(db, tb.grad) < tol
    else:
        assert db is None


@st.composite
def conv_transpose_cases(draw):
    case = draw(conv_cases())
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(case["stride"], case["dilation"]))
    case["output_padding"] = output_padding
    # the output must be non-empty: (H-1)*s - 2p + d*(k-1) + op + 1 >= 1
    for axis, size in enumerate(("h", "w")):
        needed = 2 * case["padding"][axis] - case["dilation"][axis] * (case["kernel"][axis] - 1) \
            - output_padding[axis]
        minimum = max(1, -(-needed // case["stride"][axis]) + 1)
        case[size] = max(case[size], minimum)
    return case


@FAST
@given(conv_transpose_cases())
def test_conv_transpose2d_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    dtype, groups = case["dtype"], case["groups"]
    x = rng.standard_normal((case["n"], case["cin"], case["h"], case["w"])).astype(dtype)
    weight = rng.standard_normal((case["cin"], case["cout"] // groups) + case["kernel"])
    weight = weight.astype(dtype)
    bias = rng.standard_normal(case["cout"]).astype(dtype) if case["bias"] else None
    args = (case["stride"], case["padding"], case["output_padding"], groups, case["dilation"])
    out, cache = F.conv_transpose2d_forward(x, weight, bias, *args)
    tx, tw = tensor(x), tensor(weight)
    tb = tensor(bias) if bias is not None else None
    t_out = TF.conv_transpose2d(tx, tw, tb, *args)
    dout = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(torch.tensor(dout))
    dx, dw, db = F.conv_transpose2d_backward(dout, cache)
    tol = TOLERANCE[dtype]
    assert rel_err(out, t_out) < tol
    assert rel_err(dx, tx.grad) < tol
    assert rel_err(dw, tw.grad) < tol
    if bias is not None:
        assert rel_err(db, tb.grad) < tol


@st.composite
def pool_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 10))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 10))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w), kernel=kernel,
                stride=stride, padding=padding, dilation=(draw(st.integers(1, 2)), 1),
                dtype=draw(DTYPES), seed=draw(st.integers(0, 10**6)),
                ties=draw(st.booleans()), count_include_pad=draw(st.booleans()))


def _pool_input(case):
    rng = np.random.default_rng(case["seed"])
    if case["ties"]:  # few distinct values: many windows hold several maxima
        x = rng.integers(-2, 3, case["shape"]).astype(case["dtype"])
    else:
        x = rng.standard_normal(case["shape"]).astype(case["dtype"])
    return x, rng


@FAST
@given(pool_cases())
def test_max_pool2d_matches_torch_including_ties(case):
    x, rng = _pool_input(case)
    dilation = case["dilation"]
    kh, kw = case["kernel"]
    # the dilated window must fit the padded input
    if (x.shape[2] + 2 * case["padding"][0] - dilation[0] * (kh - 1) - 1) < 0:
        dilation = (1, 1)
    args = (case["kernel"], case["stride"], case["padding"], dilation)
    out, cache = F.max_pool2d_forward(x, *args)
    tx = tensor(x)
    t_out = TF.max_pool2d(tx, *args)
    dout = rng.standard_normal(out.shape).astype(case["dtype"])
    t_out.backward(torch.tensor(dout))
    dx = F.max_pool2d_backward(dout, cache)
    assert rel_err(out, t_out) == 0
    assert rel_err(dx, tx.grad) < TOLERANCE[case["dtype"]]


@FAST
@given(pool_cases())
def test_avg_pool2d_matches_torch(case):
    x, rng = _pool_input(case)
    args = (case["kernel"], case["stride"], case["padding"], case["count_include_pad"])
    out, cache = F.avg_pool2d_forward(x, *args)
    tx = tensor(x)
    t_out = TF.avg_pool2d(tx, case["kernel"], case["stride"], case["padding"],
                          count_include_pad=case["count_include_pad"])
    dout = rng.standard_normal(out.shape).astype(case["dtype"])
    t_out.backward(torch.tensor(dout))
    tol = TOLERANCE[case["dtype"]]
    assert rel_err(out, t_out) < tol
    assert rel_err(F.avg_pool2d_backward(dout, cache), tx.grad) < tol


def test_max_pool2d_ties_route_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2))
    out, cache = F.max_pool2d_forward(x, 2, 2)
    dx = F.max_pool2d_backward(np.full((1, 1, 1, 1), 5.0), cache)
    assert out.item() == 1
    assert dx[0, 0].tolist() == [[5.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("size,output_size", [((7, 10), (1, 1)), ((7, 10), (3, 4)),
                                              ((5, 5), (5, 7)), ((9, 4), (2, None))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adaptive_avg_pool2d_matches_torch(size, output_size, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3) + size).astype(dtype)
    out, cache = F.adaptive_avg_pool2d_forward(x, output_size)
    tx = tensor(x)
    t_out = TF.adaptive_avg_pool2d(tx, output_size)
    dout = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(torch.tensor(dout))
    assert rel_err(out, t_out) < TOLERANCE[dtype]
    assert rel_err(F.adaptive_avg_pool2d_backward(dout, cache), tx.grad) < TOLERANCE[dtype]


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 7), (3, 4, 1, 1), (3, 2, 9, 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_train_then_eval_matches_torch(shape, dtype, momentum):
    rng = np.random.default_rng(2)
    c = shape[1]
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    running_mean, running_var = np.zeros(c, dtype), np.ones(c, dtype)
    tracked = np.array(0, np.int64)
    t_mean = torch.zeros(c, dtype=TORCH_DTYPE[dtype])
    t_var = torch.ones(c, dtype=TORCH_DTYPE[dtype])
    tol = TOLERANCE[dtype]
    for training in (True, True, False):
        x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
        out, cache = F.batchnorm_forward(x, gamma, beta, running_mean, running_var, tracked,
                                         training, momentum, 1e-5)
        tx, tg, tb = tensor(x), tensor(gamma), tensor(beta)
        # torch's momentum=None (cumulative average) uses exponential_average_factor 1/n
        factor = momentum if momentum is not None else 1.0 / float(tracked)
        t_out = TF.batch_norm(tx, t_mean, t_var, tg, tb, training, factor, 1e-5)
        dout = rng.standard_normal(shape).astype(dtype)
        t_out.backward(torch.tensor(dout))
        dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
        assert rel_err(out, t_out) < tol
        assert rel_err(dx, tx.grad) < tol
        assert rel_err(dgamma, tg.grad) < tol
        assert rel_err(dbeta, tb.grad) < tol
        assert rel_err(running_mean, t_mean) < tol
        assert rel_err(running_var, t_var) < tol
    assert tracked == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_and_activations_match_torch(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7)).astype(dtype) * 4
    weight, bias = rng.standard_normal((3, 7)).astype(dtype), rng.standard_normal(3).astype(dtype)
    tol = TOLERANCE[dtype]
    out, cache = F.linear_forward(x, weight, bias)
    tx, tw, tb = tensor(x), tensor(weight), tensor(bias)
    t_out = TF.linear(tx, tw, tb)
    dout = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(torch.tensor(dout))
    dx, dw, db = F.linear_backward(dout, cache)
    for ours, theirs in ((out, t_out), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        assert rel_err(ours, theirs) < tol
    activations = [
        (F.relu_forward, F.relu_backward, torch.relu),
        (lambda v: F.leaky_relu_forward(v, 0.01), F.leaky_relu_backward,
         lambda t: TF.leaky_relu(t, 0.01)),
        (lambda v: F.leaky_relu_forward(v, 1.7), F.leaky_relu_backward,
         lambda t: TF.leaky_relu(t, 1.7)),
        (F.sigmoid_forward, F.sigmoid_backward, torch.sigmoid),
        (F.tanh_forward, F.tanh_backward, torch.tanh),
    ]
    for forward, backward, torch_fn in activations:
        tx = tensor(x)
        t_out = torch_fn(tx)
        t_out.backward(torch.tensor(dout[:, :1].repeat(7, axis=1)))
        out, cache = forward(x)
        assert out.dtype == dtype
        assert rel_err(out, t_out) < tol
        assert rel_err(backward(dout[:, :1].repeat(7, axis=1), cache), tx.grad) < tol


def test_sigmoid_does_not_overflow_at_extremes():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, _ = F.sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    assert out.tolist() == [0.0, 0.5, 1.0]


def test_dropout_is_inverted_and_its_backward_uses_the_same_mask():
    rng = np.random.default_rng(4)
    x = np.ones((200, 50), np.float32)
    out, mask = F.dropout_forward(x, 0.3, True, rng)
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    dx = F.dropout_backward(np.full_like(x, 2.0), mask)
    np.testing.assert_array_equal(dx != 0, kept)
    same, cache = F.dropout_forward(x, 0.3, False, rng)
    assert same is x and F.dropout_backward(x, cache) is x
