"""Scratch losses against torch (value and gradient) and central differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.errors import ModelError
from cnnlab.scratch import losses
from cnnlab.verify.gradcheck import numerical_gradient


def _ours_and_torch(logits, target, smoothing, dloss=1.0):
    """(loss, dlogits) from the scratch loss and from torch's, for the same inputs."""
    loss_fn = losses.CrossEntropyLoss(label_smoothing=smoothing)
    value = loss_fn.forward(logits, target)
    grad = loss_fn.backward(dloss)
    z = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(z, torch.from_numpy(target))
    (dloss * expected).backward()
    return (value, grad), (expected.item(), z.grad.numpy())


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("n, k", [(1, 2), (7, 5), (16, 10)])
def test_cross_entropy_matches_torch(n, k, smoothing):
    rng = np.random.default_rng(n * 100 + k)
    logits = rng.normal(scale=3.0, size=(n, k))
    target = rng.integers(0, k, size=n)
    (value, grad), (expected, expected_grad) = _ours_and_torch(logits, target, smoothing)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 9), smoothing=st.floats(0.0, 1.0),
       scale=st.floats(1e-3, 60.0), seed=st.integers(0, 2**16), float32=st.booleans())
def test_cross_entropy_random_cases_match_torch(n, k, smoothing, scale, seed, float32):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if float32 else np.float64
    logits = rng.normal(scale=scale, size=(n, k)).astype(dtype)
    target = rng.integers(0, k, size=n)
    (value, grad), (expected, expected_grad) = _ours_and_torch(logits, target, smoothing)
    tolerance = dict(rtol=1e-5, atol=1e-6) if float32 else dict(rtol=1e-10, atol=1e-12)
    assert grad.dtype == dtype
    np.testing.assert_allclose(value, expected, **tolerance)
    np.testing.assert_allclose(grad, expected_grad, **tolerance)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_with_probability_targets_matches_torch(smoothing):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 4))
    target = rng.dirichlet(np.ones(4), size=6)
    (value, grad), (expected, expected_grad) = _ours_and_torch(logits, target, smoothing, 2.0)
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_gradient_by_central_differences(smoothing):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 6))
    target = rng.integers(0, 6, size=5)
    _, cache = losses.cross_entropy_forward(logits, target, smoothing)
    analytic = losses.cross_entropy_backward(1.0, cache)
    numeric = numerical_gradient(
        lambda: losses.cross_entropy_forward(logits, target, smoothing)[0], logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_is_stable_for_huge_logits_in_float32():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 3e4, 0.0]], dtype=np.float32)
    target = np.array([1, 1])
    loss_fn = losses.CrossEntropyLoss()
    value = loss_fn.forward(logits, target)
    grad = loss_fn.backward()
    assert np.isfinite(value) and value == pytest.approx(5e3, rel=1e-6)
    assert grad.dtype == np.float32 and np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)


def test_mse_matches_torch_and_central_differences():
    rng = np.random.default_rng(2)
    output = rng.normal(size=(4, 3, 2))
    target = rng.normal(size=(4, 3, 2))
    loss_fn = losses.MSELoss()
    value = loss_fn.forward(output, target)
    grad = loss_fn.backward()

    out = torch.tensor(output, requires_grad=True)
    expected = torch.nn.MSELoss()(out, torch.from_numpy(target))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, out.grad.numpy(), rtol=1e-12)
    numeric = numerical_gradient(lambda: losses.mse_forward(output, target)[0], output)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_num_correct():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert losses.num_correct(logits, np.array([1, 1, 1])) == 2


@pytest.mark.parametrize("loss_fn", [losses.CrossEntropyLoss(), losses.MSELoss()])
def test_backward_before_forward_is_a_clear_error(loss_fn):
    with pytest.raises(ModelError, match=r"backward\(\) was called before forward\(\)"):
        type(loss_fn)().backward()


@pytest.mark.parametrize(
    "logits, target, message",
    [
        (np.zeros((3, 4)), np.array([0, 1, 4]), r"class\(es\) \[4\] outside \[0, 4\)"),
        (np.zeros((3, 4)), np.array([0, 1]), r"targets of shape \(2,\)"),
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), r"dtype float64; targets must be class indices of shape \(3,\) "
         r"\(integers\)"),
        (np.zeros((3, 4, 2)), np.array([0, 1, 2]), r"class indices of shape \(3, 2\)"),
        (np.zeros(()), np.array(0), r"shape \(N, C, ...\) or \(C,\); got shape \(\)"),
        (np.zeros((3, 4)), np.zeros((3, 5)), r"probabilities of the logits' shape"),
    ],
)
def test_cross_entropy_bad_input(logits, target, message):
    with pytest.raises(ModelError, match=message):
        losses.CrossEntropyLoss().forward(logits, target)


def test_bad_smoothing_and_mse_shapes():
    with pytest.raises(ModelError, match=r"label_smoothing must lie in \[0, 1\]; got 1.5"):
        losses.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ModelError, match=r"output \(2, 3\) and target \(3, 2\)"):
        losses.MSELoss().forward(np.zeros((2, 3)), np.zeros((3, 2)))
