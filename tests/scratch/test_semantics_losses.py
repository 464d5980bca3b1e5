"""The scratch losses against torch's for every reduction, weight, ignore_index, target kind,
input rank and label smoothing, in float64 (value and input gradient, relative error < 1e-7),
plus central differences for the general code paths."""

from __future__ import annotations

import itertools
import warnings
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn

from _scratch_torch import rel_err, tensor
from cnnlab import scratch
from cnnlab.errors import ModelError
from cnnlab.scratch import losses
from cnnlab.verify.gradcheck import check_function

TOL = 1e-7
C = 4
SHAPES = {"batch": (5, C), "k-dim": (3, C, 2, 3), "unbatched": (C,)}


def _targets(shape, kind, ignore, rng):
    if kind == "probabilities":
        t = rng.dirichlet(np.ones(C), size=int(np.prod(shape)) // C)
        rows = t.reshape((shape[0],) + shape[2:] + (C,)) if len(shape) > 1 else t[0]
        return np.ascontiguousarray(np.moveaxis(rows, -1, 1)) if len(shape) > 2 else rows
    target_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    target = rng.integers(0, C, target_shape)
    if ignore:
        target = np.where(rng.random(target_shape) < 0.3, 2 if ignore == "class 2" else -100,
                          target)
        if target_shape == ():
            target = np.array(-100 if ignore != "class 2" else 2)
    return np.asarray(target)


def _compare_loss(ours, theirs, logits, target, rng):
    """Value and input gradient of a scratch loss object and a torch loss module."""
    value = ours.forward(logits, target)
    z = tensor(logits)
    t_target = torch.tensor(target)
    expected = theirs(z, t_target)
    if ours.reduction != "none":
        assert isinstance(value, float)
        dloss = 1.7
    else:  # an array, 0-d for an unbatched input
        assert isinstance(value, np.ndarray) and value.shape == tuple(expected.shape)
        dloss = rng.standard_normal(value.shape)
    expected.backward(torch.tensor(dloss, dtype=torch.float64))
    grad = ours.backward(dloss)
    if np.isnan(expected.item() if expected.ndim == 0 else 0.0):
        assert np.isnan(value)
        return
    assert rel_err(value, expected) < TOL, (value, expected)
    assert grad.shape == logits.shape and grad.dtype == logits.dtype
    assert rel_err(grad, z.grad) < TOL


CE_CASES = [case for case in itertools.product(
    ["none", "mean", "sum"], [False, True], [None, "default", "class 2"], [0.0, 0.25],
    list(SHAPES), ["indices", "probabilities"])
    if not (case[5] == "probabilities" and case[2] == "class 2")]


@pytest.mark.parametrize("reduction, weighted, ignore, smoothing, shape, kind", CE_CASES)
def test_cross_entropy_every_combination_matches_torch(reduction, weighted, ignore, smoothing,
                                                       shape, kind):
    rng = np.random.default_rng(zlib.crc32(repr((reduction, weighted, ignore, smoothing, shape,
                                                 kind)).encode()))
    logits = rng.normal(scale=2.0, size=SHAPES[shape])
    target = _targets(SHAPES[shape], kind, ignore, rng)
    weight = rng.uniform(0.2, 2.0, C) if weighted else None
    ignore_index = 2 if ignore == "class 2" else -100
    args = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=smoothing)
    ours = scratch.CrossEntropyLoss(weight=weight, **args)
    theirs = nn.CrossEntropyLoss(weight=None if weight is None else torch.tensor(weight), **args)
    _compare_loss(ours, theirs, logits, target, rng)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_every_target_ignored_is_nan_like_torch(smoothing, weighted):
    weight = np.arange(1.0, C + 1) if weighted else None
    ours = scratch.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)
    theirs = nn.CrossEntropyLoss(weight=None if weight is None else torch.tensor(weight),
                                 label_smoothing=smoothing)
    logits, target = np.zeros((3, C)), np.full(3, -100)
    assert np.isnan(ours(logits, target))
    assert np.isnan(theirs(torch.tensor(logits), torch.tensor(target)).item())


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, "class 2"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_nll_loss_matches_torch(reduction, weighted, ignore, shape):
    rng = np.random.default_rng(7)
    log_probs = np.log(rng.dirichlet(np.ones(C), size=int(np.prod(SHAPES[shape])) // C))
    if len(SHAPES[shape]) == 1:
        log_probs = log_probs[0]
    elif len(SHAPES[shape]) > 2:
        n, _, *rest = SHAPES[shape]
        log_probs = np.ascontiguousarray(np.moveaxis(log_probs.reshape(n, *rest, C), -1, 1))
    target = _targets(SHAPES[shape], "indices", ignore, rng)
    weight = rng.uniform(0.2, 2.0, C) if weighted else None
    args = dict(reduction=reduction, ignore_index=2 if ignore else -100)
    ours = scratch.NLLLoss(weight=weight, **args)
    theirs = nn.NLLLoss(weight=None if weight is None else torch.tensor(weight), **args)
    _compare_loss(ours, theirs, log_probs, target, rng)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weight_shape", [None, (3,), (2, 1)])
@pytest.mark.parametrize("pos_weight", [False, True])
@pytest.mark.parametrize("shape", [(2, 3), (4, 2, 3), (3,)])
def test_bce_with_logits_matches_torch(reduction, weight_shape, pos_weight, shape):
    if weight_shape is not None and len(weight_shape) > len(shape):
        weight_shape = weight_shape[-1:]
    rng = np.random.default_rng(len(shape))
    logits = rng.normal(scale=4.0, size=shape)
    target = rng.random(shape)
    weight = rng.uniform(0.1, 2, weight_shape) if weight_shape else None
    pw = rng.uniform(0.5, 3, shape[-1]) if pos_weight else None
    ours = scratch.BCEWithLogitsLoss(weight=weight, pos_weight=pw, reduction=reduction)
    theirs = nn.BCEWithLogitsLoss(weight=None if weight is None else torch.tensor(weight),
                                  pos_weight=None if pw is None else torch.tensor(pw),
                                  reduction=reduction)
    _compare_loss(ours, theirs, logits, target, rng)


def test_bce_with_logits_is_stable_for_huge_logits():
    loss = scratch.BCEWithLogitsLoss()
    with np.errstate(over="raise"):
        value = loss(np.array([1e4, -1e4]), np.array([0.0, 1.0]))
        grad = loss.backward()
    assert value == pytest.approx(1e4) and np.allclose(grad, [0.5, -0.5])


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("target_shape", [(3, 4), (4,), (3, 1)])
def test_mse_reductions_and_broadcasting_match_torch(reduction, target_shape):
    rng = np.random.default_rng(3)
    output, target = rng.normal(size=(3, 4)), rng.normal(size=target_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _compare_loss(scratch.MSELoss(reduction=reduction), nn.MSELoss(reduction=reduction),
                      output, target, rng)
    if target_shape != (3, 4):
        with pytest.warns(UserWarning, match="broadcast"):
            scratch.MSELoss()(output, target)


def test_legacy_size_average_and_reduce_map_to_reduction_as_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for size_average, reduce in itertools.product([None, True, False], repeat=2):
            expected = nn.MSELoss(size_average=size_average, reduce=reduce).reduction
            assert scratch.MSELoss(size_average=size_average, reduce=reduce).reduction == expected


PROBABILITIES = np.random.default_rng(5).dirichlet(np.ones(4), size=(3, 2)).transpose(0, 2, 1)
GRADCHECK_LOSSES = {
    "ce k-dim weighted smoothed ignore": lambda z, t: losses.cross_entropy_forward(
        z, t, 0.2, np.array([0.5, 1.0, 2.0, 1.5]), 1, "sum"),
    "ce probabilities weighted": lambda z, t: losses.cross_entropy_forward(
        z, PROBABILITIES, 0.1, np.array([0.5, 1.0, 2.0, 1.5]), -100, "mean"),
    "nll weighted": lambda z, t: losses.nll_loss_forward(z, t, np.array([0.5, 1, 2, 1.5]), 1),
    "bce pos_weight": lambda z, t: losses.bce_with_logits_forward(
        z, (t[:, None] == np.arange(4)[None, :, None]).astype(float), None,
        np.array([1.0, 2.0]), "mean"),
    "mse sum": lambda z, t: losses.mse_forward(z, PROBABILITIES, "sum"),
}
GRADCHECK_BACKWARD = {
    "ce": losses.cross_entropy_backward, "nll": losses.nll_loss_backward,
    "bce": losses.bce_with_logits_backward, "mse": losses.mse_backward,
}


@pytest.mark.parametrize("name", list(GRADCHECK_LOSSES))
def test_loss_gradients_match_central_differences(name):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 4, 2))
    t = rng.integers(0, 4, (3, 2))
    forward = GRADCHECK_LOSSES[name]
    backward = GRADCHECK_BACKWARD[name.split()[0]]
    errors = check_function(lambda z: forward(z, t),
                            lambda dout, cache: {"z": backward(float(dout), cache)}, {"z": z})
    assert errors["z"] < 1e-7, errors


def test_losses_are_importable_where_torch_users_look():
    from cnnlab.scratch import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa

    assert CrossEntropyLoss is losses.CrossEntropyLoss and NLLLoss is losses.NLLLoss
    assert MSELoss is losses.MSELoss and BCEWithLogitsLoss is losses.BCEWithLogitsLoss


@pytest.mark.parametrize("make, args, message", [
    (scratch.CrossEntropyLoss, dict(reduction="avg"), r"reduction must be one of"),
    (scratch.CrossEntropyLoss, dict(ignore_index=0), r"ignore_index=0 cannot be used with "
                                                     r"probability targets"),
    (scratch.CrossEntropyLoss, dict(weight=np.ones(3)), r"weight of shape \(3,\)"),
    (scratch.NLLLoss, dict(), r"class-index targets; got float targets"),
])
def test_loss_errors_say_what_was_received(make, args, message):
    probabilities = np.full((2, 4), 0.25)
    with pytest.raises(ModelError, match=message):
        make(**args)(np.zeros((2, 4)), probabilities)
