"""Thin stateful layers with torch.nn's names, constructor arguments and parameter names.

Each layer checks its input shape (errors name the layer), calls a pure kernel from
`cnnlab.scratch.functional`, keeps the cache of its last forward for one backward, and
accumulates parameter gradients into `Parameter.grad` (like torch; `zero_grad()` clears them).

Input forms follow torch: layers that take images also take one unbatched image (C, H, W),
Linear takes (*, in_features), element-wise layers take any shape including 0-d. The kernels
work on batches; a layer adds the batch dim on the way in and removes it on the way out (and
does the same to the gradients). What the scratch engine refuses, and why, is listed in
docs/scratch_semantics.md.
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


def _float_input(x, like: np.ndarray | None) -> np.ndarray:
    """x as an array in `like`'s dtype (the model's dtype wins, see module.py); without a
    reference array, float inputs keep their dtype and others become float32."""
    x = np.asarray(x)
    if like is not None:
        return x.astype(like.dtype, copy=False)
    return x if x.dtype.kind == "f" else x.astype(DEFAULT_DTYPE)


class _Parametrised(Module):
    """Shared pieces of layers that own parameters.

    `needs_input_grad` (default True): set it to False on a model's first layer and its
    backward returns None instead of computing a gradient for the input images, which
    nobody reads (torch skips it the same way for inputs that do not require grad).

    `self._cache` is (kernel cache, form): `form` is what `_restore_form` needs to give the
    input gradient the shape the user passed in (None for the plain batched case).
    """

    needs_input_grad = True
    # name of the functional kernel (dout, cache, needs_input_grad) -> (dx, dweight, dbias);
    # looked up at call time, so the reference kernels can be swapped in (benchmarks)
    _backward_kernel: str = ""

    def backward(self, grad_out):
        cache, form = self._require_cache(self._cache)
        self._cache = None
        backward_kernel = getattr(F, self._backward_kernel)
        dx, dweight, dbias = backward_kernel(self._batched_grad(grad_out, form), cache,
                                             self.needs_input_grad)
        self._accumulate(self.weight, dweight)
        self._accumulate(self.bias, dbias)
        return None if dx is None else self._restore_form(dx, form)

    @staticmethod
    def _batched_grad(grad_out, form):
        """The output gradient in the kernel's (batched) shape."""
        return np.asarray(grad_out)[None] if form == "unbatched" else grad_out

    @staticmethod
    def _restore_form(dx, form):
        """The input gradient in the shape the user's input had."""
        return dx[0] if form == "unbatched" else dx

    def _input(self, x) -> np.ndarray:
        """x as an array in the layer's dtype (the model's dtype wins, see module.py)."""
        return _float_input(x, self.weight.data if self.weight is not None else None)

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


def _image_batch(layer: Module, x, config: str, channels: int | None):
    """(x as a 4-D batch, form): a 3-D input (C, H, W) is one unbatched image, as in torch;
    form is "unbatched" then, else None."""
    ndim = np.ndim(x)
    if ndim not in (3, 4):
        raise layer._shape_error(f"expects a 4-D input (N, {channels or 'C'}, H, W) or an "
                                 f"unbatched 3-D one ({channels or 'C'}, H, W) but got a "
                                 f"{ndim}-D one", x, config)
    c = x.shape[0] if ndim == 3 else x.shape[1]
    if channels is not None and c != channels:
        raise layer._shape_error(f"got input with {c} channel(s)", x, config)
    if ndim == 3:
        return np.asarray(x)[None], "unbatched"
    return x, None


def _unbatch(out, form):
    """Drop the batch dim the layer added (from each array of a (values, indices) pair)."""
    if form != "unbatched":
        return out
    if isinstance(out, tuple):
        return tuple(part[0] for part in out)
    return out[0]


# ---------------------------------------------------------------------------------------------
# layers with parameters


class Linear(_Parametrised):
    """y = x W^T + b. x: (*, in_features) -> (*, out_features); (in_features,) is one sample."""

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
        ndim = np.ndim(x)
        if ndim == 0 or x.shape[-1] != self.in_features:
            problem = (f"got input with {x.shape[-1]} feature(s)" if ndim else
                       f"expects an input (*, {self.in_features}) but got a 0-D one")
            if ndim > 2:
                problem += " in its last dim (add a Flatten before it?)"
            raise self._shape_error(problem, x, f"in_features={self.in_features}")
        bias = self.bias.data if self.bias is not None else None
        x = self._input(x)
        form = None if ndim == 2 else x.shape  # other ranks run as a (-1, in_features) batch
        out, cache = F.linear_forward(x if form is None else x.reshape(-1, self.in_features),
                                      self.weight.data, bias)
        self._cache = (cache, form)
        return out if form is None else out.reshape(form[:-1] + (self.out_features,))

    def _batched_grad(self, grad_out, form):
        return grad_out if form is None else np.asarray(grad_out).reshape(-1, self.out_features)

    @staticmethod
    def _restore_form(dx, form):
        return dx if form is None else dx.reshape(form)


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvGeometry(_Parametrised):
    """What Conv2d and ConvTranspose2d share: channel/group checks and (h, w) pairs."""

    def _set_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      groups, padding_mode) -> None:
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ModelError(
                f"{type(self).__name__}: in_channels ({in_channels}) and out_channels "
                f"({out_channels}) must both be divisible by groups ({groups})."
            )
        if padding_mode not in _PADDING_MODES:
            raise ModelError(f"{type(self).__name__}: padding_mode must be one of "
                             f"{list(_PADDING_MODES)}; got {padding_mode!r}.")
        self.padding_mode = padding_mode
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride = F.pair(stride, "stride")
        self.dilation = F.pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ModelError(f"{type(self).__name__}: padding must be an int, a pair, "
                                 f"'same' or 'valid'; got {padding!r}.")
            if padding == "same" and self.stride != (1, 1):
                raise ModelError(f"{type(self).__name__}: padding='same' needs stride 1 (as in "
                                 f"torch); got stride={self.stride}.")
            self.padding = padding
        else:
            self.padding = F.pair(padding, "padding")

    def _pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right). 'same' pads dilation*(k-1) in all, the odd one at the
        end (bottom/right), as torch does for even kernels."""
        if self.padding == "valid":
            return 0, 0, 0, 0
        if self.padding == "same":
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        (ph, pw) = self.padding
        return ph, ph, pw, pw

    def _convolve(self, kernel, x, *geometry):
        """Run a forward kernel on x with this layer's weights; shape errors name the layer."""
        x, form = _image_batch(self, x, f"in_channels={self.in_channels}", self.in_channels)
        x = self._input(x)
        bias = self.bias.data if self.bias is not None else None
        try:
            out, cache = kernel(x, self.weight.data, bias, *geometry)
        except ModelError as err:
            raise self._kernel_error(err, x if form is None else x[0]) from None
        self._cache = (cache, form)
        return _unbatch(out, form)


class Conv2d(_ConvGeometry):
    """2-D convolution. x: (N, in_channels, H, W) or (in_channels, H, W) ->
    (N, out_channels, Ho, Wo) or (out_channels, Ho, Wo).

    weight: (out_channels, in_channels/groups, kh, kw); bias: (out_channels,).
    padding: int, pair, 'valid' or 'same'; padding_mode: zeros, reflect, replicate, circular.
    Symmetric zero padding runs inside the convolution kernel (the fast path); other padding
    is done first by `F.pad2d_forward`, whose backward folds the gradient back.
    """

    _backward_kernel = "conv2d_backward"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros"):
        super().__init__()
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation,
                           groups, padding_mode)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight, self.bias = _kaiming_uniform_init(
            (self.out_channels, self.in_channels // self.groups) + self.kernel_size, fan_in,
            self.out_channels if bias else None)
        self._cache = None
        self._workspace = {}

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")
        return text + (f", padding_mode={self.padding_mode}" if self.padding_mode != "zeros"
                       else "")

    def forward(self, x):
        top, bottom, left, right = self._pads()
        kernel = partial(F.conv2d_forward, workspace=self._workspace)
        geometry = (self.stride, (top, left), self.dilation, self.groups)
        if self.padding_mode == "zeros" and top == bottom and left == right:
            return self._convolve(kernel, x, *geometry)
        # padding first (asymmetric 'same', or a non-zero mode), then a valid convolution

        def padded_conv(xb, weight, bias, *_):
            xp, pad_cache = F.pad2d_forward(xb, (top, bottom, left, right), self.padding_mode)
            out, conv_cache = kernel(xp, weight, bias, self.stride, 0, self.dilation,
                                     self.groups)
            return out, (conv_cache, pad_cache)

        return self._convolve(padded_conv, x)

    def backward(self, grad_out):
        cache, form = self._require_cache(self._cache)
        if not (isinstance(cache, tuple) and len(cache) == 2):
            return super().backward(grad_out)
        conv_cache, pad_cache = cache
        self._cache = None
        dx, dweight, dbias = getattr(F, self._backward_kernel)(
            self._batched_grad(grad_out, form), conv_cache, self.needs_input_grad)
        self._accumulate(self.weight, dweight)
        self._accumulate(self.bias, dbias)
        if dx is None:
            return None
        return self._restore_form(F.pad2d_backward(np.asarray(dx), pad_cache), form)


class ConvTranspose2d(_ConvGeometry):
    """Transposed convolution. x: (N, in_channels, H, W) or unbatched (in_channels, H, W) ->
    (N, out_channels, Ho, Wo), Ho = (H-1)*stride - 2*padding + dilation*(k-1) +
    output_padding + 1. `forward(x, output_size)` picks output_padding for a wanted size.

    weight: (in_channels, out_channels/groups, kh, kw), as torch.
    """

    _backward_kernel = "conv_transpose2d_backward"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros"):
        super().__init__()
        if padding_mode != "zeros" or isinstance(padding, str):
            raise ModelError(
                f"ConvTranspose2d: only zero padding given as an int or pair is supported, as "
                f"in torch; got padding={padding!r}, padding_mode={padding_mode!r}."
            )
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation,
                           groups, padding_mode)
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

    def _output_padding(self, x, output_size) -> tuple[int, int]:
        """torch's rule: output_size (the last two entries count) must lie between the
        smallest output and that plus stride - 1; the difference is the output padding."""
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in tuple(output_size)[-2:])
        hw = np.shape(x)[-2:]
        result = []
        for axis in range(2):
            smallest = F.conv_transpose2d_output_size(
                hw[axis], self.kernel_size[axis], self.stride[axis], self.padding[axis], 0,
                self.dilation[axis])
            if not smallest <= size[axis] <= smallest + self.stride[axis] - 1:
                raise self._shape_error(
                    f"cannot produce output_size {size}: along axis {axis} it must lie in "
                    f"[{smallest}, {smallest + self.stride[axis] - 1}]", x,
                    f"in_channels={self.in_channels}")
            result.append(size[axis] - smallest)
        return tuple(result)

    def forward(self, x, output_size=None):
        return self._convolve(F.conv_transpose2d_forward, x, self.stride, self.padding,
                              self._output_padding(x, output_size), self.groups, self.dilation)


class _BatchNorm(_Parametrised):
    """Batch statistics in training (running stats updated with the unbiased variance, as
    torch), running statistics in eval. weight (gamma), bias (beta), running_mean,
    running_var: (num_features,); num_batches_tracked: 0-d int64.

    affine=False: no weight or bias. track_running_stats=False: no buffers, and batch
    statistics in eval too (torch's rule). momentum=None: a cumulative average.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        self.num_features, self.eps = int(num_features), float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, DEFAULT_DTYPE))
            self.bias = Parameter(np.zeros(self.num_features, DEFAULT_DTYPE))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, DEFAULT_DTYPE))
            self.register_buffer("running_var", np.ones(self.num_features, DEFAULT_DTYPE))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._cache = None
        self._workspace = {}

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def _check(self, x):
        raise NotImplementedError

    def _input(self, x) -> np.ndarray:
        like = self.weight.data if self.weight is not None else self.running_mean
        return _float_input(x, like)

    def forward(self, x):
        self._check(x)
        x = self._input(x)
        c = self.num_features
        gamma = self.weight.data if self.weight is not None else np.ones(c, x.dtype)
        beta = self.bias.data if self.bias is not None else np.zeros(c, x.dtype)
        try:
            out, cache = F.batchnorm_forward(
                x, gamma, beta, self.running_mean, self.running_var,
                self.num_batches_tracked, self.training or self.running_mean is None,
                self.momentum, self.eps, workspace=self._workspace)
        except ModelError as err:
            raise self._kernel_error(err, x) from None
        self._cache = (cache, None)
        return out

    def backward(self, grad_out):
        cache, _ = self._require_cache(self._cache)
        self._cache = None
        dx, dgamma, dbeta = F.batchnorm_backward(grad_out, cache, workspace=self._workspace)
        self._accumulate(self.weight, dgamma)
        self._accumulate(self.bias, dbeta)
        return dx


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


class LayerNorm(_Parametrised):
    """Normalise over the trailing dims `normalized_shape` of x (*, *normalized_shape), with
    the biased variance; weight (ones) and bias (zeros) of shape normalized_shape."""

    _backward_kernel = "layer_norm_backward"

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(d) for d in normalized_shape)
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        shape = self.normalized_shape
        self.weight = Parameter(np.ones(shape, DEFAULT_DTYPE)) if elementwise_affine else None
        self.bias = (Parameter(np.zeros(shape, DEFAULT_DTYPE)) if elementwise_affine and bias
                     else None)
        self._cache = None

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

    def forward(self, x):
        k = len(self.normalized_shape)
        if np.ndim(x) < k or tuple(np.shape(x)[np.ndim(x) - k:]) != self.normalized_shape:
            raise self._shape_error(f"expects an input ending in {self.normalized_shape}", x,
                                    f"normalized_shape={self.normalized_shape}")
        x = self._input(x)
        out, cache = F.layer_norm_forward(
            x, self.normalized_shape, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, self.eps)
        self._cache = (cache, None)
        return out


class GroupNorm(_Parametrised):
    """x: (N, num_channels, *) normalised per sample over groups of num_channels/num_groups
    consecutive channels; weight (ones) and bias (zeros): (num_channels,)."""

    _backward_kernel = "group_norm_backward"

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        if self.num_groups < 1 or self.num_channels % self.num_groups:
            raise ModelError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups}).")
        self.eps, self.affine = float(eps), bool(affine)
        c = self.num_channels
        self.weight = Parameter(np.ones(c, DEFAULT_DTYPE)) if affine else None
        self.bias = Parameter(np.zeros(c, DEFAULT_DTYPE)) if affine else None
        self._cache = None

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"

    def forward(self, x):
        if np.ndim(x) < 2 or x.shape[1] != self.num_channels:
            problem = (f"got input with {x.shape[1]} channel(s)" if np.ndim(x) >= 2 else
                       f"expects an input (N, {self.num_channels}, *) but got a "
                       f"{np.ndim(x)}-D one")
            raise self._shape_error(problem, x, f"num_channels={self.num_channels}")
        x = self._input(x)
        out, cache = F.group_norm_forward(
            x, self.num_groups, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, self.eps)
        self._cache = (cache, None)
        return out


# ---------------------------------------------------------------------------------------------
# layers without parameters


class _Stateless(Module):
    """A layer without parameters: `_forward(x) -> (out, cache)`, `_backward(dout, cache)`.

    Outputs and gradients are always arrays: NumPy turns 0-d results into scalars, which
    would break the next layer's in-place work.
    """

    def forward(self, x):
        out, cache = self._forward(np.asarray(x))
        self._cache = (cache,)  # wrapped: a kernel's cache may itself be None (eval dropout)
        return out if isinstance(out, (np.ndarray, tuple)) else np.asarray(out)

    def backward(self, grad_out):
        (cache,) = self._require_cache(getattr(self, "_cache", None))
        self._cache = None
        grad = self._backward(grad_out, cache)
        return grad if isinstance(grad, np.ndarray) else np.asarray(grad)


class _Pool(_Stateless):
    """Pooling over (N, C, H, W) or one unbatched (C, H, W); `_pool(x4d) -> (out, cache)` and
    `_unpool(dout4d, cache) -> dx4d` do the work."""

    def _forward(self, x):
        x4, form = _image_batch(self, x, f"kernel_size={self.kernel_size}", None)
        try:
            out, cache = self._pool(x4)
        except ModelError as err:
            raise self._kernel_error(err, x) from None
        return _unbatch(out, form), (cache, form)

    def _backward(self, dout, cache):
        cache, form = cache
        dx = self._unpool(np.asarray(dout)[None] if form else dout, cache)
        return dx[0] if form else dx


class MaxPool2d(_Pool):
    """x: (N, C, H, W) or (C, H, W) -> (N, C, Ho, Wo); ties go to the first max in the window,
    as torch. With return_indices the output is (values, indices): flat h*W + w positions in
    each input plane, as torch's."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F.pair(stride, "stride")
        self.padding, self.dilation = F.pair(padding, "padding"), F.pair(dilation, "dilation")
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def _pool(self, x):
        if not (self.ceil_mode or self.return_indices):  # the default path, as benchmarked
            return F.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                        self.dilation)
        return F.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                    self.dilation, ceil_mode=self.ceil_mode,
                                    return_indices=self.return_indices)

    def _unpool(self, dout, cache):
        return F.max_pool2d_backward(dout, cache)


class AvgPool2d(_Pool):
    """x: (N, C, H, W) or (C, H, W) -> (N, C, Ho, Wo); divisors as torch's (see
    `F.avg_pool2d_forward`)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F.pair(stride, "stride")
        self.padding = F.pair(padding, "padding")
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        if divisor_override is not None and int(divisor_override) == 0:
            raise ModelError("AvgPool2d: divisor_override must not be zero (torch's rule); "
                             "use None for the window's own count.")
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}, "
                f"divisor_override={self.divisor_override}")

    def _pool(self, x):
        return F.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                    self.count_include_pad, self.ceil_mode,
                                    self.divisor_override)

    def _unpool(self, dout, cache):
        return F.avg_pool2d_backward(dout, cache)


def _output_size_pair(output_size):
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    return tuple(None if s is None else int(s) for s in output_size)


class AdaptiveAvgPool2d(_Pool):
    """x: (N, C, H, W) or (C, H, W) -> (N, C, *output_size) with torch's bin boundaries."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _output_size_pair(output_size)
        self.kernel_size = self.output_size  # for the shared error message

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def _pool(self, x):
        return F.adaptive_avg_pool2d_forward(x, self.output_size)

    def _unpool(self, dout, cache):
        return F.adaptive_avg_pool2d_backward(dout, cache)


class AdaptiveMaxPool2d(_Pool):
    """x: (N, C, H, W) or (C, H, W) -> (N, C, *output_size), max over torch's adaptive bins;
    with return_indices the output is (values, indices) as MaxPool2d's."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = _output_size_pair(output_size)
        self.kernel_size = self.output_size  # for the shared error message
        self.return_indices = bool(return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def _pool(self, x):
        return F.adaptive_max_pool2d_forward(x, self.output_size, self.return_indices)

    def _unpool(self, dout, cache):
        return F.adaptive_max_pool2d_backward(dout, cache)


class Upsample(_Stateless):
    """torch.nn.Upsample for x (N, C, H, W), or (N, C, L) with 1-D modes.

    mode: 'nearest' (torch's legacy floor rule, float32 index arithmetic as its kernel),
    'nearest-exact', 'bilinear' (4-D) / 'linear' (3-D) with align_corners True or False.
    Exactly one of size and scale_factor; the scale factor itself (not the size ratio) places
    the source pixels unless recompute_scale_factor=True, as in torch.
    """

    _MODES = {3: ("nearest", "nearest-exact", "linear"), 4: ("nearest", "nearest-exact",
                                                              "bilinear")}

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ModelError(f"Upsample: give exactly one of size and scale_factor; got "
                             f"size={size!r}, scale_factor={scale_factor!r}.")
        known = ("nearest", "nearest-exact", "linear", "bilinear")
        if mode not in known:
            raise ModelError(
                f"Upsample: mode {mode!r} is not supported by the scratch engine; it has "
                f"{list(known)} (see docs/scratch_semantics.md for why bicubic, area and "
                "trilinear are not there).")
        if align_corners is not None and mode not in ("linear", "bilinear"):
            raise ModelError(f"Upsample: align_corners can only be set with an interpolating "
                             f"mode (linear, bilinear), as in torch; got mode={mode!r}.")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners = None if align_corners is None else bool(align_corners)
        self.recompute_scale_factor = recompute_scale_factor

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        return f"{what}, mode='{self.mode}'"

    def _forward(self, x):
        ndim = x.ndim
        if ndim not in (3, 4) or self.mode not in self._MODES[ndim]:
            raise self._shape_error(
                f"with mode '{self.mode}' expects a "
                f"{'3-D (N, C, L)' if self.mode == 'linear' else '4-D (N, C, H, W)'}"
                f"{' or 3-D (N, C, L)' if self.mode.startswith('nearest') else ''} input but "
                f"got a {ndim}-D one", x, f"mode='{self.mode}'")
        spatial = ndim - 2
        x4 = x[:, :, None, :] if ndim == 3 else x  # 1-D as 2-D with a height of one
        if self.size is not None:
            size = (self.size,) * spatial if isinstance(self.size, (int, np.integer)) else \
                tuple(self.size)
            if len(size) != spatial:
                raise self._shape_error(f"got size {self.size} for {spatial} spatial dim(s)",
                                        x, f"mode='{self.mode}'")
            scales = (None,) * spatial
        else:
            scales = (self.scale_factor,) * spatial if np.ndim(self.scale_factor) == 0 else \
                tuple(self.scale_factor)
            size = F.upsample_output_size(x.shape[2:], None, scales)
            if self.recompute_scale_factor:
                scales = (None,) * spatial
        if ndim == 3:
            size, scales = (1,) + tuple(size), (None,) + tuple(scales)
        mode = "bilinear" if self.mode == "linear" else self.mode
        try:
            out, cache = F.upsample2d_forward(x4, size, mode, self.align_corners, scales)
        except ModelError as err:
            raise self._kernel_error(err, x) from None
        return (out[:, :, 0] if ndim == 3 else out), (cache, ndim)

    def _backward(self, dout, cache):
        cache, ndim = cache
        dout = np.asarray(dout)
        dx = F.upsample2d_backward(dout[:, :, None] if ndim == 3 else dout, cache)
        return dx[:, :, 0] if ndim == 3 else dx


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


class Dropout2d(_Stateless):
    """Channel-wise dropout: each channel of each sample is zeroed with probability p (the
    rest scaled by 1/(1-p)) in training, identity in eval. x: (N, C, H, W), or any (N, C, ...)
    with one draw per (n, c) as torch's feature dropout (3-D is read as (N, C, L), as torch
    2.x still does)."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ModelError(f"Dropout2d: p must be in [0, 1]; got {p}.")
        self.p = float(p)

    def extra_repr(self):
        return f"p={self.p}"

    def _forward(self, x):
        try:
            return F.feature_dropout_forward(x, self.p, self.training, scratch_random.generator())
        except ModelError as err:
            raise self._kernel_error(err, x) from None

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


class GELU(_Stateless):
    """x * Phi(x) (approximate='none') or its tanh approximation (approximate='tanh')."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ModelError(f"GELU: approximate must be 'none' or 'tanh'; got {approximate!r}.")
        self.approximate = approximate

    def extra_repr(self):
        return f"approximate='{self.approximate}'"

    def _forward(self, x):
        return F.gelu_forward(x, self.approximate)

    _backward = staticmethod(F.gelu_backward)


class SiLU(_Stateless):
    def __init__(self, inplace=False):
        super().__init__()

    _forward = staticmethod(F.silu_forward)
    _backward = staticmethod(F.silu_backward)


class _SoftmaxBase(_Stateless):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = None if dim is None else int(dim)

    def extra_repr(self):
        return f"dim={self.dim}"

    def _forward(self, x):
        try:
            return self._kernel(x, self.dim)
        except ModelError as err:
            raise self._kernel_error(err, x) from None


class Softmax(_SoftmaxBase):
    """softmax along `dim`; dim=None picks torch's legacy axis (0 for 0/1/3-D, else 1)."""

    _kernel = staticmethod(F.softmax_forward)
    _backward = staticmethod(F.softmax_backward)


class LogSoftmax(_SoftmaxBase):
    """log softmax along `dim`; dim=None as Softmax."""

    _kernel = staticmethod(F.log_softmax_forward)
    _backward = staticmethod(F.log_softmax_backward)


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


# layer name -> (forward kernel, backward kernel) in cnnlab.scratch.functional, for tables
# such as `cnnlab check` and the spec language; containers (Sequential, BasicBlock) and
# RoIPool's two-input forward are left out
LAYER_KERNELS = {
    "Linear": ("linear_forward", "linear_backward"),
    "Conv2d": ("conv2d_forward", "conv2d_backward"),  # + pad2d_* for other padding
    "ConvTranspose2d": ("conv_transpose2d_forward", "conv_transpose2d_backward"),
    "MaxPool2d": ("max_pool2d_forward", "max_pool2d_backward"),
    "AvgPool2d": ("avg_pool2d_forward", "avg_pool2d_backward"),
    "AdaptiveAvgPool2d": ("adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward"),
    "AdaptiveMaxPool2d": ("adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward"),
    "Flatten": ("flatten_forward", "flatten_backward"),
    "BatchNorm1d": ("batchnorm_forward", "batchnorm_backward"),
    "BatchNorm2d": ("batchnorm_forward", "batchnorm_backward"),
    "LayerNorm": ("layer_norm_forward", "layer_norm_backward"),
    "GroupNorm": ("group_norm_forward", "group_norm_backward"),
    "Dropout": ("dropout_forward", "dropout_backward"),
    "Dropout2d": ("feature_dropout_forward", "dropout_backward"),
    "ReLU": ("relu_forward", "relu_backward"),
    "LeakyReLU": ("leaky_relu_forward", "leaky_relu_backward"),
    "Sigmoid": ("sigmoid_forward", "sigmoid_backward"),
    "Tanh": ("tanh_forward", "tanh_backward"),
    "GELU": ("gelu_forward", "gelu_backward"),
    "SiLU": ("silu_forward", "silu_backward"),
    "Softmax": ("softmax_forward", "softmax_backward"),
    "LogSoftmax": ("log_softmax_forward", "log_softmax_backward"),
    "Upsample": ("upsample2d_forward", "upsample2d_backward"),
}
