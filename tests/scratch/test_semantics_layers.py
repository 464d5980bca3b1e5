"""torch.nn semantics of every constructor argument and input form of the scratch layers.

Each case builds a scratch layer and its torch twin with the same weights (float64) and
compares the output, the input gradient, every parameter gradient and every buffer at a
relative error below 1e-7 (`compare_module`). Arguments the engine refuses are checked for a
clear error; docs/scratch_semantics.md says why.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from _scratch_torch import compare_module, rel_err, tensor
from cnnlab import scratch
from cnnlab.errors import ModelError

TOL = 1e-7
FAST = settings(max_examples=25, deadline=None, derandomize=True)


def _randomise(theirs: nn.Module) -> None:
    """Non-trivial parameters and running statistics on the torch twin."""
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.uniform_(-1.5, 1.5)
        for name, buffer in theirs.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buffer.uniform_(-1, 1)


def _check(ours, theirs, shape, training=True, seed=0):
    rng = np.random.default_rng(seed)
    theirs = theirs.double().train(training)
    ours = ours.to(np.float64).train(training)
    _randomise(theirs)
    errors = compare_module(ours, theirs, rng.standard_normal(shape) * 2, np.float64, rng)
    assert max(errors.values()) < TOL, errors
    return errors


# ---------------------------------------------------------------------------------------------
# convolutions


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kernel, padding, dilation, groups", [
    (3, 1, 1, 1), ((2, 3), "same", 1, 1), (4, "same", (1, 2), 2), (3, "valid", 1, 1),
    ((1, 4), (0, 2), 1, 2), (2, "same", 2, 1),
])
@pytest.mark.parametrize("unbatched", [False, True])
def test_conv2d_padding_and_modes_match_torch(padding_mode, kernel, padding, dilation, groups,
                                              unbatched):
    args = dict(kernel_size=kernel, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode)
    shape = (4, 6, 7) if unbatched else (2, 4, 6, 7)
    _check(scratch.Conv2d(4, 6, **args), nn.Conv2d(4, 6, **args), shape)


def test_conv2d_same_padding_of_an_even_kernel_pads_the_end():
    layer = scratch.Conv2d(1, 1, 4, padding="same", dilation=1)
    assert layer._pads() == (1, 2, 1, 2)  # torch: total 3, one before, two after


@pytest.mark.parametrize("args, message", [
    (dict(padding="same", stride=2), "padding='same' needs stride 1"),
    (dict(padding="full"), "'same' or 'valid'; got 'full'"),
    (dict(padding_mode="mirror"), "padding_mode must be one of"),
])
def test_conv2d_refuses_what_torch_refuses(args, message):
    with pytest.raises(ModelError, match=message):
        scratch.Conv2d(1, 1, 3, **args)


def test_conv2d_reflect_padding_wider_than_the_input_is_refused_like_torch():
    layer = scratch.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")
    with pytest.raises(ModelError, match="reflect padding .* must be smaller than"):
        layer(np.zeros((1, 1, 3, 3)))
    with pytest.raises(RuntimeError):
        nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")(torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("stride, padding, output_padding, groups, dilation", [
    (2, 1, 1, 2, 2), ((3, 2), (0, 1), (2, 1), 3, (1, 2)), (2, 0, 1, 1, 3), (1, 2, 0, 3, 2),
])
@pytest.mark.parametrize("unbatched", [False, True])
def test_conv_transpose2d_groups_dilation_output_padding_together(stride, padding,
                                                                  output_padding, groups,
                                                                  dilation, unbatched):
    args = dict(kernel_size=3, stride=stride, padding=padding, output_padding=output_padding,
                groups=groups, dilation=dilation)
    shape = (6, 4, 5) if unbatched else (2, 6, 4, 5)
    _check(scratch.ConvTranspose2d(6, 6, **args), nn.ConvTranspose2d(6, 6, **args), shape)


def test_conv_transpose2d_output_size_picks_the_output_padding():
    ours, theirs = scratch.ConvTranspose2d(2, 3, 3, stride=3, padding=1).double(), \
        nn.ConvTranspose2d(2, 3, 3, stride=3, padding=1).double()
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 5))
    for size in [(10, 13), (12, 14), (1, 2, 11, 15)]:
        expected = theirs(torch.tensor(x), output_size=size).detach().numpy()
        assert rel_err(ours(x, output_size=size), expected) < TOL
    with pytest.raises(ModelError, match=r"cannot produce output_size \(13, 13\)"):
        ours(x, output_size=(13, 13))
    with pytest.raises(ModelError, match="only zero padding"):
        scratch.ConvTranspose2d(1, 1, 3, padding_mode="reflect")


# ---------------------------------------------------------------------------------------------
# batch norm


BN_CASES = [(scratch.BatchNorm1d, nn.BatchNorm1d, (6, 3)),
            (scratch.BatchNorm1d, nn.BatchNorm1d, (4, 3, 5)),
            (scratch.BatchNorm2d, nn.BatchNorm2d, (3, 3, 4, 2))]


@pytest.mark.parametrize("cls_index", range(len(BN_CASES)))
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track_running_stats", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_options_over_train_and_eval_steps(cls_index, affine, track_running_stats,
                                                     momentum):
    ours_cls, torch_cls, shape = BN_CASES[cls_index]
    args = dict(eps=1e-3, momentum=momentum, affine=affine,
                track_running_stats=track_running_stats)
    ours, theirs = ours_cls(3, **args), torch_cls(3, **args).double()
    _randomise(theirs)
    ours.to(np.float64).load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rng = np.random.default_rng(1)
    for step, training in enumerate((True, True, True, False)):
        ours.train(training)
        theirs.train(training)
        ours.zero_grad()
        theirs.zero_grad()
        # compare_module loads theirs into ours first: the buffers must already agree
        errors = compare_module(ours, theirs, 1 + 2 * rng.standard_normal(shape), np.float64,
                                rng)
        assert max(errors.values()) < TOL, (step, errors)
    if track_running_stats:
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3


def test_batchnorm_running_statistics_accumulate_like_torch_without_reloading():
    ours, theirs = scratch.BatchNorm1d(4, momentum=None).double(), \
        nn.BatchNorm1d(4, momentum=None).double()
    rng = np.random.default_rng(2)
    for _ in range(4):
        x = rng.standard_normal((5, 4, 3)) * 3 + 1
        ours(x)
        theirs(torch.tensor(x))
    assert rel_err(ours.running_mean, theirs.running_mean) < TOL
    assert rel_err(ours.running_var, theirs.running_var) < TOL
    assert int(ours.num_batches_tracked) == 4


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (0, 3, 2, 2)])
def test_batchnorm_on_an_empty_batch_behaves_as_torch(training, shape):
    torch_cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    ours_cls = scratch.BatchNorm2d if len(shape) == 4 else scratch.BatchNorm1d
    ours, theirs = ours_cls(3).double().train(training), torch_cls(3).double().train(training)
    _randomise(theirs)
    ours.load_state_dict(theirs.state_dict())
    tx = tensor(np.zeros(shape))
    t_out = theirs(tx)
    t_out.sum().backward()
    out = ours(np.zeros(shape))
    dx = ours.backward(np.zeros(shape))
    assert out.shape == shape and dx.shape == shape
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, theirs.state_dict()[name].numpy(), err_msg=name)
    np.testing.assert_array_equal(ours.weight.grad, theirs.weight.grad.numpy())


def test_batchnorm1d_errors_show_the_users_shape():
    layer = scratch.BatchNorm1d(3)
    with pytest.raises(ModelError, match=r"input shape \(1, 3, 1\)") as err:
        layer(np.zeros((1, 3, 1)))
    assert "(1, 3, 1, 1)" not in str(err.value)
    with pytest.raises(ModelError, match=r"expects a 2-D or 3-D input .* \(input shape \(3,\)\)"):
        layer(np.zeros(3))


# ---------------------------------------------------------------------------------------------
# pooling


@st.composite
def ceil_pool_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = []
    for axis in range(2):
        # at least one dilated window of input: smaller inputs can leave a window wholly in
        # the padding, where torch's max and index are -inf and arbitrary (not a contract)
        smallest = dilation[axis] * (kernel[axis] - 1) + 1
        size.append(draw(st.integers(smallest, 9)))
    return dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation, size=size,
                ceil_mode=draw(st.booleans()), unbatched=draw(st.booleans()),
                count_include_pad=draw(st.booleans()),
                divisor=draw(st.sampled_from([None, None, 1, 3])),
                ties=draw(st.booleans()), seed=draw(st.integers(0, 10**6)))


def _pool_x(case):
    rng = np.random.default_rng(case["seed"])
    shape = ((2,) if case["unbatched"] else (2, 3)) + tuple(case["size"])
    if case["ties"]:
        return rng.integers(-2, 3, shape).astype(np.float64), rng
    return rng.standard_normal(shape), rng


def _pool_parity(ours, theirs, x, rng, with_indices=False):
    tx = tensor(x)
    t_out = theirs(tx)
    out = ours(x)
    if with_indices:
        (t_out, t_idx), (out, idx) = t_out, out
        np.testing.assert_array_equal(idx, t_idx.numpy())
    dout = rng.standard_normal(out.shape)
    t_out.backward(torch.tensor(dout))
    assert rel_err(out, t_out) < TOL
    assert rel_err(ours.backward(dout), tx.grad) < TOL


@FAST
@given(ceil_pool_cases())
def test_max_pool2d_ceil_mode_and_indices_match_torch(case):
    x, rng = _pool_x(case)
    args = dict(kernel_size=case["kernel"], stride=case["stride"], padding=case["padding"],
                dilation=case["dilation"], ceil_mode=case["ceil_mode"], return_indices=True)
    _pool_parity(scratch.MaxPool2d(**args), nn.MaxPool2d(**args), x, rng, with_indices=True)
    args["return_indices"] = False
    _pool_parity(scratch.MaxPool2d(**args), nn.MaxPool2d(**args), x, rng)


@FAST
@given(ceil_pool_cases())
def test_avg_pool2d_ceil_mode_divisors_match_torch(case):
    x, rng = _pool_x(case)
    args = dict(kernel_size=case["kernel"], stride=case["stride"], padding=case["padding"],
                ceil_mode=case["ceil_mode"], count_include_pad=case["count_include_pad"],
                divisor_override=case["divisor"])
    _pool_parity(scratch.AvgPool2d(**args), nn.AvgPool2d(**args), x, rng)


@pytest.mark.parametrize("size, kernel, stride, padding", [(4, 4, 3, 1), (5, 2, 2, 0),
                                                           (6, 3, 2, 1), (7, 3, 3, 1),
                                                           (8, 4, 3, 2)])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_ceil_mode_windows_past_the_padding(size, kernel, stride, padding,
                                                       count_include_pad):
    # the last window reaches past the right padding: torch counts padding, not beyond it
    args = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=True,
                count_include_pad=count_include_pad)
    rng = np.random.default_rng(size)
    _pool_parity(scratch.AvgPool2d(**args), nn.AvgPool2d(**args),
                 rng.standard_normal((1, 2, size, size + 1)), rng)
    max_args = {k: v for k, v in args.items() if k != "count_include_pad"}
    _pool_parity(scratch.MaxPool2d(**max_args), nn.MaxPool2d(**max_args),
                 rng.standard_normal((1, 2, size, size + 1)), rng)


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    # H=5, k=2, s=2, p=1: ceil gives 4 windows, but the 4th starts at 6 = H + p: dropped
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    out = scratch.MaxPool2d(2, 2, padding=1, ceil_mode=True)(x)
    assert out.shape == nn.MaxPool2d(2, 2, padding=1, ceil_mode=True)(torch.tensor(x)).shape
    assert out.shape == (1, 1, 3, 3)
    assert scratch.MaxPool2d(2, 2, ceil_mode=True)(x).shape == (1, 1, 3, 3)


def test_max_pool2d_indices_are_flat_positions_in_each_plane():
    x = np.zeros((1, 2, 4, 4))
    x[0, 0, 1, 3] = x[0, 1, 2, 0] = 5.0
    out, indices = scratch.MaxPool2d(4, return_indices=True)(x)
    assert indices.ravel().tolist() == [1 * 4 + 3, 2 * 4 + 0] and indices.dtype == np.int64


@pytest.mark.parametrize("output_size", [(2, 3), 1, (None, 2), (5, 4)])
@pytest.mark.parametrize("unbatched", [False, True])
def test_adaptive_pools_match_torch_batched_and_unbatched(output_size, unbatched):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 7) if unbatched else (2, 2, 5, 7))
    _pool_parity(scratch.AdaptiveAvgPool2d(output_size), nn.AdaptiveAvgPool2d(output_size),
                 x, rng)
    _pool_parity(scratch.AdaptiveMaxPool2d(output_size, return_indices=True),
                 nn.AdaptiveMaxPool2d(output_size, return_indices=True), x, rng,
                 with_indices=True)
    ties = rng.integers(-1, 2, x.shape).astype(np.float64)
    _pool_parity(scratch.AdaptiveMaxPool2d(output_size), nn.AdaptiveMaxPool2d(output_size),
                 ties, rng)


# ---------------------------------------------------------------------------------------------
# input forms: unbatched images, (*, features), 0-d element-wise inputs


@pytest.mark.parametrize("shape", [(5,), (2, 3, 5), (2, 1, 2, 5)])
def test_linear_takes_any_leading_dims(shape):
    _check(scratch.Linear(5, 3), nn.Linear(5, 3), shape)


@pytest.mark.parametrize("make", [
    lambda ns: ns.MaxPool2d(2), lambda ns: ns.AvgPool2d(3, 2, 1, count_include_pad=False),
    lambda ns: ns.Flatten(), lambda ns: ns.Flatten(0, 1), lambda ns: ns.Dropout(0.0),
    lambda ns: ns.Conv2d(3, 2, 3, padding=1, bias=False),
])
def test_image_layers_take_one_unbatched_image(make):
    _check(make(scratch), make(nn), (3, 4, 6))


ELEMENTWISE = [lambda ns: ns.ReLU(), lambda ns: ns.LeakyReLU(0.2), lambda ns: ns.LeakyReLU(-1.5),
               lambda ns: ns.Sigmoid(), lambda ns: ns.Tanh(), lambda ns: ns.GELU(),
               lambda ns: ns.GELU(approximate="tanh"), lambda ns: ns.SiLU(),
               lambda ns: ns.Softmax(dim=0), lambda ns: ns.LogSoftmax(dim=-1),
               lambda ns: ns.Dropout(0.3)]


@pytest.mark.parametrize("index", range(len(ELEMENTWISE)))
@pytest.mark.parametrize("shape", [(), (4,), (2, 3, 2)])
def test_elementwise_layers_take_0d_and_any_shape(index, shape):
    ours, theirs = ELEMENTWISE[index](scratch), ELEMENTWISE[index](nn)
    training = not isinstance(ours, scratch.Dropout)  # eval dropout: both are the identity
    _check(ours, theirs, shape, training=training)
    out = ours(np.ones(shape))
    assert isinstance(out, np.ndarray) and out.shape == shape


def test_flatten_refuses_dims_torch_refuses():
    with pytest.raises(ModelError, match="out of range for a 1-D input"):
        scratch.Flatten()(np.zeros(3))
    with pytest.raises(ModelError, match="comes after end_dim"):
        scratch.Flatten(2, 1)(np.zeros((2, 3, 4)))
    assert scratch.Flatten(0)(np.zeros(())).shape == (1,)


def test_layer_errors_show_the_unbatched_shape_the_user_passed():
    with pytest.raises(ModelError, match=r"got input with 2 channel\(s\) .*\(input shape "
                                         r"\(2, 5, 5\)\)"):
        scratch.Conv2d(3, 1, 3)(np.zeros((2, 5, 5)))
    with pytest.raises(ModelError, match=r"4-D input \(N, C, H, W\) or an unbatched 3-D one"):
        scratch.MaxPool2d(2)(np.zeros((5, 5)))
