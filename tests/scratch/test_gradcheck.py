"""Central-difference gradient checks (float64) for every scratch layer."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from cnnlab import scratch
from cnnlab.errors import ModelError
from cnnlab.scratch import functional as F
from cnnlab.verify.gradcheck import check_function, check_module, numerical_gradient

LAYERS = {
    "Linear": (lambda: scratch.Linear(5, 3), (4, 5)),
    "Conv2d": (lambda: scratch.Conv2d(4, 4, 3, stride=2, padding=1, dilation=1, groups=2),
               (2, 4, 6, 5)),
    "Conv2d-dilated": (lambda: scratch.Conv2d(2, 3, (2, 3), padding=(0, 2), dilation=2),
                       (2, 2, 6, 5)),
    "ConvTranspose2d": (lambda: scratch.ConvTranspose2d(2, 4, 3, stride=2, padding=1,
                                                        output_padding=1, groups=2),
                        (2, 2, 3, 4)),
    "MaxPool2d": (lambda: scratch.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "AvgPool2d": (lambda: scratch.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
                  (2, 2, 7, 6)),
    "AdaptiveAvgPool2d": (lambda: scratch.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 7)),
    "Flatten": (lambda: scratch.Flatten(), (2, 3, 2, 2)),
    "BatchNorm1d": (lambda: scratch.BatchNorm1d(4), (6, 4)),
    "BatchNorm2d": (lambda: scratch.BatchNorm2d(3), (3, 3, 4, 4)),
    "Dropout": (lambda: scratch.Dropout(0.4), (4, 6)),
    "ReLU": (lambda: scratch.ReLU(), (4, 6)),
    "LeakyReLU": (lambda: scratch.LeakyReLU(0.1), (4, 6)),
    "Sigmoid": (lambda: scratch.Sigmoid(), (4, 6)),
    "Tanh": (lambda: scratch.Tanh(), (4, 6)),
    "BasicBlock": (lambda: scratch.BasicBlock(2, 4, stride=2), (2, 2, 5, 5)),
    "Sequential": (lambda: scratch.Sequential(OrderedDict(
        conv=scratch.Conv2d(1, 3, 3, padding=1, bias=False), bn=scratch.BatchNorm2d(3),
        act=scratch.LeakyReLU(), pool=scratch.MaxPool2d(2), flat=scratch.Flatten(),
        fc=scratch.Linear(12, 2))), (3, 1, 4, 4)),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("training", [True, False])
def test_layer_gradients_match_central_differences(name, training):
    make, shape = LAYERS[name]
    layer = make().train(training)
    for param in layer.parameters():  # move BN's gamma/beta off their trivial init
        param.data[...] = np.random.default_rng(1).uniform(0.5, 1.5, param.shape)
    x = np.random.default_rng(0).standard_normal(shape)
    errors = check_module(layer, x, max_entries=25)
    assert set(errors) == {"input"} | {n for n, _, _ in layer.named_parameters()}
    assert max(errors.values()) < 1e-6, errors


def test_roi_pool_gradient_matches_central_differences():
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 7))
    rois = np.array([[0, 0, 0, 6, 5], [1, 2, 1, 5, 4], [1, 8, 8, 9, 9]], float)
    errors = check_module(scratch.RoIPool((2, 3), spatial_scale=0.9), x, rois)
    assert errors["input"] < 1e-6


def test_check_function_on_a_kernel_pair():
    rng = np.random.default_rng(2)
    arrays = {"x": rng.standard_normal((2, 3, 4, 4)), "weight": rng.standard_normal((3, 2, 2, 2)),
              "bias": rng.standard_normal(2)}

    def forward(x, weight, bias):
        return F.conv_transpose2d_forward(x, weight, bias, stride=2, padding=1)

    def backward(dout, cache):
        return dict(zip(("x", "weight", "bias"), F.conv_transpose2d_backward(dout, cache)))

    assert max(check_function(forward, backward, arrays).values()) < 1e-7


def test_the_checker_catches_a_wrong_gradient():
    rng = np.random.default_rng(3)
    arrays = {"x": rng.standard_normal((3, 4))}
    errors = check_function(lambda x: F.tanh_forward(x),
                            lambda dout, cache: {"x": dout * (1 - cache)},  # forgot the square
                            arrays)
    assert errors["x"] > 0.1


def test_numerical_gradient_needs_float64():
    with pytest.raises(ModelError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(3, np.float32))
