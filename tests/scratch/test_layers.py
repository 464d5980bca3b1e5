"""Scratch layers against their torch.nn twins: same state_dict keys, same numbers, clear errors."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

from _scratch_torch import TOLERANCE, TORCH_DTYPE, compare_module
from cnnlab.errors import ModelError
from cnnlab import scratch
from cnnlab.scratch import random as scratch_random
from cnnlab.verify.check import torch_basic_block


def _layer_pairs():
    """(scratch layer, torch layer, input shape) for every layer type."""
    return [
        (scratch.Linear(7, 5), nn.Linear(7, 5), (4, 7)),
        (scratch.Linear(in_features=6, out_features=3, bias=False), nn.Linear(6, 3, bias=False),
         (2, 6)),
        (scratch.Conv2d(in_channels=3, out_channels=4, kernel_size=3, stride=1, padding=1,
                        dilation=1, groups=1, bias=True), nn.Conv2d(3, 4, 3, 1, 1), (2, 3, 7, 6)),
        (scratch.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
                        bias=False),
         nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
                   bias=False), (3, 4, 9, 8)),
        (scratch.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
         nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 5, 4)),
        (scratch.MaxPool2d(kernel_size=2, stride=2, padding=0), nn.MaxPool2d(2, 2, 0),
         (2, 3, 7, 9)),
        (scratch.MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d(3, 2, 1), (2, 2, 8, 7)),
        (scratch.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
         nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 2, 8, 7)),
        (scratch.AdaptiveAvgPool2d(output_size=(1, 1)), nn.AdaptiveAvgPool2d((1, 1)),
         (2, 5, 3, 3)),
        (scratch.AdaptiveAvgPool2d(3), nn.AdaptiveAvgPool2d(3), (2, 2, 7, 5)),
        (scratch.Flatten(), nn.Flatten(), (2, 3, 4, 5)),
        (scratch.BatchNorm1d(num_features=5, eps=1e-5, momentum=0.1), nn.BatchNorm1d(5),
         (6, 5)),
        (scratch.BatchNorm1d(3), nn.BatchNorm1d(3), (4, 3, 6)),
        (scratch.BatchNorm2d(4, eps=1e-3, momentum=0.3), nn.BatchNorm2d(4, 1e-3, 0.3),
         (3, 4, 5, 5)),
        (scratch.ReLU(), nn.ReLU(), (3, 8)),
        (scratch.LeakyReLU(negative_slope=0.2), nn.LeakyReLU(0.2), (3, 2, 4, 4)),
        (scratch.Sigmoid(), nn.Sigmoid(), (3, 8)),
        (scratch.Tanh(), nn.Tanh(), (3, 8)),
        (scratch.Dropout(p=0.0), nn.Dropout(0.0), (3, 8)),
        (scratch.BasicBlock(4, 4), torch_basic_block(4, 4), (2, 4, 6, 6)),
        (scratch.BasicBlock(3, 6, stride=2), torch_basic_block(3, 6, stride=2), (2, 3, 7, 7)),
    ]


PAIRS = _layer_pairs()
IDS = [f"{type(pair[0]).__name__}-{i}" for i, pair in enumerate(PAIRS)]


@pytest.mark.parametrize("index", range(len(PAIRS)), ids=IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False])
def test_layer_matches_torch(index, dtype, training):
    ours, theirs, shape = _layer_pairs()[index]
    rng = np.random.default_rng(index)
    ours.to(dtype).train(training)
    theirs.to(TORCH_DTYPE[dtype]).train(training)
    for parameter in theirs.parameters():  # non-trivial BN affine parameters
        parameter.data.uniform_(-1.5, 1.5)
    for name, buffer in theirs.named_buffers():
        if name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
        elif name.endswith("running_mean"):
            buffer.uniform_(-1, 1)
    x = rng.standard_normal(shape) * 2
    errors = compare_module(ours, theirs, x, dtype, rng)
    assert max(errors.values()) < TOLERANCE[dtype], errors


def test_state_dict_keys_shapes_and_parameter_order_match_torch():
    for ours, theirs, _ in _layer_pairs():
        sd, tsd = ours.state_dict(), theirs.state_dict()
        assert list(sd) == list(tsd)
        assert [v.shape for v in sd.values()] == [tuple(v.shape) for v in tsd.values()]
        assert [p.shape for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
    block = scratch.BasicBlock(3, 6, stride=2)
    assert block.state_dict()["bn1.num_batches_tracked"].dtype == np.int64
    assert [name for name, _ in block.named_modules()] == [
        "", "conv1", "bn1", "conv2", "bn2", "downsample", "downsample.0", "downsample.1"]


def test_sequential_with_names_matches_torch_end_to_end():
    def build(ns):
        return ns.Sequential(OrderedDict(
            conv1=ns.Conv2d(1, 4, 3, padding=1, bias=False), bn1=ns.BatchNorm2d(4), act1=ns.LeakyReLU(0.01),
            pool1=ns.MaxPool2d(2), block=ns.Sequential(ns.Conv2d(4, 4, 3, padding=1),
                                                       ns.ReLU()),
            flatten=ns.Flatten(), fc=ns.Linear(4 * 4 * 4, 10)))

    ours, theirs = build(scratch), build(nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "block.0.weight" in ours.state_dict()  # (a bias before BN has a zero gradient)
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        errors = compare_module(ours.to(dtype), theirs.to(TORCH_DTYPE[dtype]),
                                rng.standard_normal((5, 1, 8, 8)), dtype, rng)
        assert max(errors.values()) < TOLERANCE[dtype], errors
    assert len(ours) == 7 and isinstance(ours[4], scratch.Sequential)


def test_load_state_dict_accepts_torch_tensors_and_keeps_dtype():
    ours, theirs = scratch.BatchNorm2d(3), nn.BatchNorm2d(3)
    theirs.running_mean.fill_(2.0)
    theirs.num_batches_tracked.fill_(7)
    missing, unexpected = ours.load_state_dict(theirs.state_dict())
    assert missing == [] and unexpected == []
    assert ours.running_mean.tolist() == [2.0, 2.0, 2.0]
    assert ours.running_mean.dtype == np.float32
    assert int(ours.num_batches_tracked) == 7


def test_load_state_dict_lists_every_problem_in_one_error():
    model = scratch.Sequential(OrderedDict(conv1=scratch.Conv2d(1, 2, 3),
                                           fc=scratch.Linear(4, 2)))
    state = model.state_dict()
    del state["fc.bias"]
    state["conv1.weight"] = np.zeros((2, 1, 5, 5))
    state["extra.weight"] = np.zeros(3)
    with pytest.raises(ModelError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    assert "fc.bias" in message and "extra.weight" in message
    assert "conv1.weight: expected (2, 1, 3, 3), got (2, 1, 5, 5)" in message
    state["conv1.weight"] = np.zeros((2, 1, 3, 3))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["fc.bias"] and unexpected == ["extra.weight"]


def test_shape_errors_name_the_layer_and_both_shapes():
    model = scratch.Sequential(OrderedDict(conv1=scratch.Conv2d(3, 8, 3)))
    with pytest.raises(ModelError) as err:
        model(np.zeros((8, 1, 28, 28), np.float32))
    assert str(err.value) == ("Conv2d(in_channels=3) got input with 1 channel(s) at layer "
                              "'conv1' (input shape (8, 1, 28, 28)).")
    outer = scratch.Sequential(OrderedDict(
        features=scratch.Sequential(scratch.Flatten(), scratch.Linear(10, 2))))
    with pytest.raises(ModelError, match=r"Linear\(in_features=10\) got input with 12 "
                                         r"feature\(s\) at layer 'features.1'"):
        outer(np.zeros((2, 3, 2, 2)))
    with pytest.raises(ModelError, match="4-D input"):
        scratch.BatchNorm2d(3)(np.zeros((2, 3)))
    with pytest.raises(ModelError, match="too small"):
        scratch.MaxPool2d(4)(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ModelError, match="divisor_override must not be zero"):
        scratch.AvgPool2d(2, divisor_override=0)
    with pytest.raises(ModelError, match="kernel_size must be an int or a pair"):
        scratch.Conv2d(1, 1, kernel_size=(1, 2, 3))


def test_backward_before_forward_is_a_clear_error():
    layer = scratch.Sequential(OrderedDict(fc=scratch.Linear(3, 2)))
    with pytest.raises(ModelError, match="at layer 'fc': backward\\(\\) was called without"):
        layer.backward(np.zeros((1, 2)))
    layer(np.zeros((1, 3)))
    layer.backward(np.zeros((1, 2)))
    with pytest.raises(ModelError, match="without a forward"):  # one backward per forward
        layer.backward(np.zeros((1, 2)))


def test_gradients_accumulate_until_zero_grad():
    layer = scratch.Linear(3, 2)
    x, dout = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    layer(x)
    layer.backward(dout)
    first = layer.weight.grad.copy()
    layer(x)
    layer.backward(dout)
    np.testing.assert_allclose(layer.weight.grad, 2 * first)
    layer.zero_grad()
    assert all(grad is None for _, _, grad in layer.named_parameters())


def test_forward_hooks_see_inputs_and_outputs_and_can_be_removed():
    model = scratch.Sequential(scratch.Conv2d(1, 2, 3), scratch.Flatten())
    seen = []
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.append(
        (type(mod).__name__, inp[0].shape, out.shape))) for m in model.children()]
    model(np.zeros((2, 1, 5, 5), np.float32))
    assert seen == [("Conv2d", (2, 1, 5, 5), (2, 2, 3, 3)), ("Flatten", (2, 2, 3, 3), (2, 18))]
    for handle in handles:
        handle.remove()
    model(np.zeros((2, 1, 5, 5), np.float32))
    assert len(seen) == 2


def test_train_eval_modes_and_dtype_rule():
    model = scratch.Sequential(scratch.Linear(4, 4), scratch.BatchNorm1d(4), scratch.Dropout(0.5))
    assert model.training and all(m.training for _, m in model.named_modules())
    model.eval()
    assert not any(m.training for _, m in model.named_modules())
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert model(x).dtype == np.float32  # float32 model: float64 input is cast
    model.to(np.float64)
    assert model(x).dtype == np.float64
    assert model.state_dict()["1.num_batches_tracked"].dtype == np.int64
    with pytest.raises(ModelError):
        model.to(np.int32)


def test_init_follows_torch_bounds_and_the_scratch_generator():
    scratch_random.seed(5)
    conv = scratch.Conv2d(8, 4, 3)
    bound = 1 / np.sqrt(8 * 9)
    assert conv.weight.data.dtype == np.float32
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.8 * bound
    assert np.abs(conv.bias.data).max() <= bound
    scratch_random.seed(5)
    np.testing.assert_array_equal(scratch.Conv2d(8, 4, 3).weight.data, conv.weight.data)


def test_dropout_masks_are_reproducible_from_a_json_round_tripped_state():
    layer = scratch.Dropout(0.5)
    x = np.ones((10, 10), np.float32)
    scratch_random.seed(3)
    state = json.loads(json.dumps(scratch_random.get_state()))
    first = layer(x)
    second = layer(x)
    assert not np.array_equal(first, second)
    scratch_random.set_state(state)
    np.testing.assert_array_equal(layer(x), first)
    np.testing.assert_array_equal(layer.backward(x), first)


def test_roi_pool_layer_backward_matches_torch_autograd_of_the_same_max():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    rois = np.array([[0, 0, 0, 5, 5], [1, 1, 2, 4, 5]], float)
    layer = scratch.RoIPool(output_size=(2, 2), spatial_scale=1.0)
    out = layer(x, rois)
    assert out.shape == (2, 3, 2, 2)
    # RoI 0 covers the whole map in 3x3 bins: compare with torch's adaptive max pool
    expected = nn.AdaptiveMaxPool2d(2)(torch.tensor(x[:1])).numpy()
    np.testing.assert_array_equal(out[:1], expected)
    dx = layer.backward(np.ones_like(out))
    assert dx.shape == x.shape and dx.sum() == out.size


def test_first_layer_can_skip_the_input_gradient():
    model = scratch.Sequential(scratch.Conv2d(1, 2, 3), scratch.Flatten(), scratch.Linear(18, 2))
    x, dout = np.ones((2, 1, 5, 5), np.float32), np.ones((2, 2), np.float32)
    model(x)
    assert model.backward(dout).shape == x.shape
    weight_grad = model[0].weight.grad.copy()
    model.zero_grad()
    model[0].needs_input_grad = False
    model(x)
    assert model.backward(dout) is None
    np.testing.assert_array_equal(model[0].weight.grad, weight_grad)


def test_conv_work_buffers_are_reused_without_leaking_between_calls():
    ours, theirs = scratch.Conv2d(3, 4, 3, padding=2, dilation=2), nn.Conv2d(3, 4, 3, padding=2,
                                                                              dilation=2)
    ours.load_state_dict(theirs.state_dict())
    rng = np.random.default_rng(0)
    for batch in (2, 2, 5, 2):  # same shape reuses the buffers; a new one replaces them
        x = rng.standard_normal((batch, 3, 6, 7)).astype(np.float32)
        expected = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(ours(x), expected, rtol=1e-4, atol=1e-5)
        buffers = dict(ours._workspace)
        # the padded input and each part's chunk columns (keyed by part and chunk images)
        assert "pad" in buffers and "cols0:1" in buffers
        dout = np.ones(expected.shape, np.float32)
        ours.backward(dout)
        assert all(ours._workspace[key] is buffer for key, buffer in buffers.items())
