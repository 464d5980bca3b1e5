"""Thin stateful layers with torch.nn's names, constructor arguments and parameter names.

Each layer checks its input shape (errors name the layer), calls a pure kernel from
`cnnlab.scratch.functional`, keeps the cache of its last forward for one backward, and
accumulates parameter gradients into `Parameter.grad` (like torch; `zero_grad()` clears them).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import numpy as np

from cnnlab.errors import ModelError
from cnnlab.scratch import functional as F
from cnnlab.scratch import random as scratch_random
from cnnlab.scratch.module import Module
from cnnlab.scratch.parameter import Parameter

DEFAULT_DTYPE = np.float32


def _uniform(bound: float, shape) -> np.ndarray:
    """U(-bound, bound) from the scratch generator, as float32."""
    values = scratch_random.generator().uniform(-bound, bound, size=shape)
    return values.astype(DEFAULT_DTYPE)


def _kaiming_uniform_init(weight_shape, fan_in: int, bias_features: int | None):
    """torch's default init for conv/linear weights, kaiming_uniform(a=sqrt(5)), which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias (if any) is drawn from the same range."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    weight = Parameter(_uniform(bound, weight_shape))
    bias = Parameter(_uniform(bound, (bias_features,))) if bias_features else None
    return weight, bias


class _Parametrised(Module):
    """Shared pieces of layers that own parameters.

    `needs_input_grad` (default True): set it to False on a model's first layer and its
    backward returns None instead of computing a gradient for the input images, which
    nobody reads (torch skips it the same way for inputs that do not require grad).
    """

    needs_input_grad = True
    # name of the functional kernel (dout, cache, needs_input_grad) -> (dx, dweight, dbias);
    # looked up at call time, so the reference kernels can be swapped in (benchmarks)
    _backward_kernel: str = ""

    def backward(self, grad_out):
        cache = self._require_cache(self._cache)
        self._cache = None
        backward_kernel = getattr(F, self._backward_kernel)
        dx, dweight, dbias = backward_kernel(grad_out, cache, self.needs_input_grad)
        self._accumulate(self.weight, dweight)
        self._accumulate(self.bias, dbias)
        return dx

    def _input(self, x) -> np.ndarray:
        """x as an array in the layer's dtype (the model's dtype wins, see module.py)."""
        x = np.asarray(x)
        return x.astype(self.weight.data.dtype, copy=False)

    @staticmethod
    def _accumulate(param: Parameter | None, grad: np.ndarray | None) -> None:
        if param is None or grad is None or not param.requires_grad:
            return
        if param.grad is None:
            param.grad = grad
        else:
            param.grad = param.grad + grad


def _check_4d(layer: Module, x, config: str, channels: int | None, channel_word="channel(s)"):
    if np.ndim(x) != 4:
        raise layer._shape_error(f"expects a 4-D input (N, {channels or 'C'}, H, W) but got a "
                                 f"{np.ndim(x)}-D one", x, config)
    if channels is not None and x.shape[1] != channels:
        raise layer._shape_error(f"got input with {x.shape[1]} {channel_word}", x, config)


# ---------------------------------------------------------------------------------------------
# layers with parameters


class Linear(_Parametrised):
    """y = x W^T + b. x: (N, in_features) -> (N, out_features)."""

    _backward_kernel = "linear_backward"

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight, self.bias = _kaiming_uniform_init((self.out_features, self.in_features),
                                                       self.in_features,
                                                       self.out_features if bias else None)
        self._cache = None

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def forward(self, x):
        if np.ndim(x) != 2 or x.shape[1] != self.in_features:
            problem = (f"got input with {x.shape[-1]} feature(s)" if np.ndim(x) == 2 else
                       f"expects a 2-D input (N, {self.in_features}) but got a {np.ndim(x)}-D "
                       "one (add a Flatten before it)")
            raise self._shape_error(problem, x, f"in_features={self.in_features}")
        bias = self.bias.data if self.bias is not None else None
        out, self._cache = F.linear_forward(self._input(x), self.weight.data, bias)
        return out


class _ConvGeometry(_Parametrised):
    """What Conv2d and ConvTranspose2d share: channel/group checks and (h, w) pairs."""

    def _set_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      groups) -> None:
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ModelError(
                f"{type(self).__name__}: in_channels ({in_channels}) and out_channels "
                f"({out_channels}) must both be divisible by groups ({groups})."
            )
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride, self.padding = F.pair(stride, "stride"), F.pair(padding, "padding")
        self.dilation = F.pair(dilation, "dilation")

    def _convolve(self, kernel, x, *geometry):
        """Run a forward kernel on x with this layer's weights; shape errors name the layer."""
        _check_4d(self, x, f"in_channels={self.in_channels}", self.in_channels)
        x = self._input(x)
        bias = self.bias.data if self.bias is not None else None
        try:
            out, self._cache = kernel(x, self.weight.data, bias, *geometry)
        except ModelError as err:
            raise self._kernel_error(err, x) from None
        return out


class Conv2d(_ConvGeometry):
    """2-D convolution. x: (N, in_channels, H, W) -> (N, out_channels, Ho, Wo).

    weight: (out_channels, in_channels/groups, kh, kw); bias: (out_channels,).
    """

    _backward_kernel = "conv2d_backward"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__()
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight, self.bias = _kaiming_uniform_init(
            (self.out_channels, self.in_channels // self.groups) + self.kernel_size, fan_in,
            self.out_channels if bias else None)
        self._cache = None
        self._workspace = {}

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")

    def forward(self, x):
        return self._convolve(partial(F.conv2d_forward, workspace=self._workspace), x,
                              self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvGeometry):
    """Transposed convolution. x: (N, in_channels, H, W) -> (N, out_channels, Ho, Wo),
    Ho = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1.

    weight: (in_channels, out_channels/groups, kh, kw), as torch.
    """

    _backward_kernel = "conv_transpose2d_backward"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1):
        super().__init__()
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        self.output_padding = F.pair(output_padding, "output_padding")
        # torch computes fan_in from weight.shape[1] (out_channels/groups) for this layer
        fan_in = self.out_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight, self.bias = _kaiming_uniform_init(
            (self.in_channels, self.out_channels // self.groups) + self.kernel_size, fan_in,
            self.out_channels if bias else None)
        self._cache = None

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")

    def forward(self, x):
        return self._convolve(F.conv_transpose2d_forward, x, self.stride, self.padding,
                              self.output_padding, self.groups, self.dilation)


class _BatchNorm(_Parametrised):
    """Batch statistics in training (running stats updated with the unbiased variance, as
    torch), running statistics in eval. weight (gamma), bias (beta), running_mean,
    running_var: (num_features,); num_batches_tracked: 0-d int64."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        if not affine or not track_running_stats:
            raise ModelError(
                f"{type(self).__name__}: only affine=True, track_running_stats=True is "
                f"supported; got affine={affine}, track_running_stats={track_running_stats}."
            )
        self.num_features, self.eps = int(num_features), float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.weight = Parameter(np.ones(self.num_features, DEFAULT_DTYPE))
        self.bias = Parameter(np.zeros(self.num_features, DEFAULT_DTYPE))
        self.register_buffer("running_mean", np.zeros(self.num_features, DEFAULT_DTYPE))
        self.register_buffer("running_var", np.ones(self.num_features, DEFAULT_DTYPE))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        self._cache = None
        self._workspace = {}

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def _check(self, x):
        raise NotImplementedError

    def forward(self, x):
        self._check(x)
        x = self._input(x)
        squeeze = x.ndim == 3  # BatchNorm1d on (N, C, L): normalise over N and L
        if squeeze:
            x = x[..., None]
        try:
            out, cache = F.batchnorm_forward(
                x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
                self.num_batches_tracked, self.training, self.momentum, self.eps,
                workspace=self._workspace)
        except ModelError as err:
            raise self._kernel_error(err, x) from None
        self._cache = (cache, squeeze)
        return out[..., 0] if squeeze else out

    def backward(self, grad_out):
        cache, squeeze = self._require_cache(self._cache)
        self._cache = None
        dx, dgamma, dbeta = F.batchnorm_backward(grad_out[..., None] if squeeze else grad_out,
                                                 cache, workspace=self._workspace)
        self._accumulate(self.weight, dgamma)
        self._accumulate(self.bias, dbeta)
        return dx[..., 0] if squeeze else dx


class BatchNorm1d(_BatchNorm):
    """x: (N, num_features) or (N, num_features, L)."""

    def _check(self, x):
        if np.ndim(x) not in (2, 3) or x.shape[1] != self.num_features:
            problem = (f"got input with {x.shape[1]} feature(s)" if np.ndim(x) in (2, 3) else
                       f"expects a 2-D or 3-D input (N, {self.num_features}[, L]) but got a "
                       f"{np.ndim(x)}-D one")
            raise self._shape_error(problem, x, f"num_features={self.num_features}")


class BatchNorm2d(_BatchNorm):
    """x: (N, num_features, H, W)."""

    def _check(self, x):
        _check_4d(self, x, f"num_features={self.num_features}", self.num_features)


# ---------------------------------------------------------------------------------------------
# layers without parameters


class _Stateless(Module):
    """A layer without parameters: `_forward(x) -> (out, cache)`, `_backward(dout, cache)`."""

    def forward(self, x):
        out, cache = self._forward(np.asarray(x))
        self._cache = (cache,)  # wrapped: a kernel's cache may itself be None (eval dropout)
        return out

    def backward(self, grad_out):
        (cache,) = self._require_cache(getattr(self, "_cache", None))
        self._cache = None
        return self._backward(grad_out, cache)


class _Pool(_Stateless):
    def _checked(self, x, kernel_call):
        _check_4d(self, x, f"kernel_size={self.kernel_size}", None)
        try:
            return kernel_call()
        except ModelError as err:
            raise self._kernel_error(err, x) from None


def _refuse_ceil_mode(layer: Module, ceil_mode) -> None:
    if ceil_mode:
        raise ModelError(
            f"{type(layer).__name__}: ceil_mode=True is not supported by the scratch engine; "
            "use ceil_mode=False (the default) or pad the input."
        )


class MaxPool2d(_Pool):
    """x: (N, C, H, W) -> (N, C, Ho, Wo); ties go to the first max in the window, as torch."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        _refuse_ceil_mode(self, ceil_mode)
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F.pair(stride, "stride")
        self.padding, self.dilation = F.pair(padding, "padding"), F.pair(dilation, "dilation")

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}")

    def _forward(self, x):
        return self._checked(x, lambda: F.max_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.dilation))

    def _backward(self, dout, cache):
        return F.max_pool2d_backward(dout, cache)


class AvgPool2d(_Pool):
    """x: (N, C, H, W) -> (N, C, Ho, Wo)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        _refuse_ceil_mode(self, ceil_mode)
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F.pair(stride, "stride")
        self.padding = F.pair(padding, "padding")
        self.count_include_pad = bool(count_include_pad)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"count_include_pad={self.count_include_pad}")

    def _forward(self, x):
        return self._checked(x, lambda: F.avg_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.count_include_pad))

    def _backward(self, dout, cache):
        return F.avg_pool2d_backward(dout, cache)


class AdaptiveAvgPool2d(_Pool):
    """x: (N, C, H, W) -> (N, C, *output_size) with torch's bin boundaries."""

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (int, np.integer)) or output_size is None:
            output_size = (output_size, output_size)
        self.output_size = tuple(None if s is None else int(s) for s in output_size)
        self.kernel_size = self.output_size  # for the shared error message

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def _forward(self, x):
        return self._checked(x, lambda: F.adaptive_avg_pool2d_forward(x, self.output_size))

    _backward = staticmethod(F.adaptive_avg_pool2d_backward)


class RoIPool(Module):
    """torchvision.ops.RoIPool: forward(x (N, C, H, W), rois (K, 5)) -> (K, C, *output_size).

    rois rows are [batch_index, x1, y1, x2, y2] in input-image coordinates; spatial_scale maps
    them onto the feature map. backward returns the gradient for x only.
    """

    def __init__(self, output_size, spatial_scale=1.0):
        super().__init__()
        self.output_size = F.pair(output_size, "output_size")
        self.spatial_scale = float(spatial_scale)
        self._cache = None

    def extra_repr(self):
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"

    def forward(self, x, rois):
        _check_4d(self, x, f"output_size={self.output_size}", None)
        try:
            out, self._cache = F.roi_pool_forward(np.asarray(x), _as_array(rois),
                                                  self.output_size, self.spatial_scale)
        except ModelError as err:
            raise self._kernel_error(err, x) from None
        return out

    def backward(self, grad_out):
        cache = self._require_cache(self._cache)
        self._cache = None
        return F.roi_pool_backward(grad_out, cache)


def _as_array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class Flatten(_Stateless):
    """(N, d1, d2, ...) -> (N, d1*d2*...) in NCHW order, as torch.nn.Flatten()."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def _forward(self, x):
        return F.flatten_forward(x, self.start_dim, self.end_dim)

    _backward = staticmethod(F.flatten_backward)


class Dropout(_Stateless):
    """Inverted dropout: zeroes with probability p in training, identity in eval.

    Masks come from `cnnlab.scratch.random`, so seeded runs are reproducible and resumable.
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ModelError(f"Dropout: p must be in [0, 1]; got {p}.")
        self.p = float(p)

    def extra_repr(self):
        return f"p={self.p}"

    def _forward(self, x):
        return F.dropout_forward(x, self.p, self.training, scratch_random.generator())

    _backward = staticmethod(F.dropout_backward)


class ReLU(_Stateless):
    def __init__(self, inplace=False):
        super().__init__()

    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


class LeakyReLU(_Stateless):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def _forward(self, x):
        return F.leaky_relu_forward(x, self.negative_slope)

    _backward = staticmethod(F.leaky_relu_backward)


class Sigmoid(_Stateless):
    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


class Tanh(_Stateless):
    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)


# ---------------------------------------------------------------------------------------------
# containers


class Sequential(Module):
    """Layers applied in order; `Sequential(a, b)` names them '0', '1'; an OrderedDict keeps
    its names (used in state_dict keys and error messages)."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (OrderedDict, dict)):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            if not isinstance(layer, Module):
                raise ModelError(
                    f"Sequential: entry '{name}' is a {type(layer).__name__}, not a scratch "
                    "layer (cnnlab.scratch.Module)."
                )
            self.add_module(str(name), layer)

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(list(self.children())):
            grad_out = layer.backward(grad_out)
        return grad_out

    def append(self, layer: Module) -> "Sequential":
        self.add_module(str(len(self._modules)), layer)
        return self

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            names = list(self._modules)[index]
            return Sequential(OrderedDict((n, self._modules[n]) for n in names))
        return layers[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class BasicBlock(Module):
    """ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    conv1: 3x3 stride `stride`, conv2: 3x3, both padding 1 without bias. The shortcut is the
    identity, or `downsample` = Sequential(1x1 conv with `stride`, no bias; BatchNorm2d) when
    the stride is not 1 or the channel count changes.
    x: (N, in_channels, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = int(in_channels), int(out_channels), \
            int(stride)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(
                Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                BatchNorm2d(out_channels),
            )
        else:
            self.downsample = None
        self._cache = None

    def extra_repr(self):
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, " \
               f"stride={self.stride}"

    def forward(self, x):
        _check_4d(self, x, f"in_channels={self.in_channels}", self.in_channels)
        hidden, relu1_cache = F.relu_forward(self.bn1(self.conv1(x)))
        main = self.bn2(self.conv2(hidden))
        shortcut = self.downsample(x) if self.downsample is not None else x
        out, relu2_cache = F.relu_forward(main + shortcut)
        self._cache = (relu1_cache, relu2_cache)
        return out

    def backward(self, grad_out):
        relu1_cache, relu2_cache = self._require_cache(self._cache)
        self._cache = None
        grad_sum = F.relu_backward(grad_out, relu2_cache)
        grad_hidden = self.conv2.backward(self.bn2.backward(grad_sum))
        grad_x = self.conv1.backward(self.bn1.backward(F.relu_backward(grad_hidden, relu1_cache)))
        if self.downsample is not None:
            return grad_x + self.downsample.backward(grad_sum)
        return grad_x + grad_sum
