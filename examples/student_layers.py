"""A student's own layers, written plainly: what `cnnlab check --impl` grades and
`cnnlab train --layers` trains with.

    cnnlab check --impl examples/student_layers.py
    cnnlab train --engine scratch --layers examples/student_layers.py --model lenet \
        --dataset mnist --epochs 1

Conventions (docs/student_layers.md): constructor arguments as torch.nn's; `forward(x)`;
`backward(dout) -> dx`, which stores the parameter gradients beside the parameters
(`W`/`b` and `dW`/`db`). The loops run over kernel positions (a handful) and are vectorised
over the batch and the channels, so they stay readable and fast enough to train. Only NumPy.
"""

import numpy as np


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv2d:
    """out[n, o, i, j] = b[o] + sum over c, ki, kj of W[o, c, ki, kj] * x_padded[n, c, i*s + ki*d,
    j*s + kj*d]. W: (out_channels, in_channels, kh, kw), as torch's."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True):
        self.kh, self.kw = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        fan_in = in_channels * self.kh * self.kw
        bound = 1 / np.sqrt(fan_in)
        self.W = np.random.uniform(-bound, bound, (out_channels, in_channels, self.kh, self.kw))
        self.b = np.random.uniform(-bound, bound, out_channels) if bias else None

    def _windows(self, h, w):
        """For each kernel position (ki, kj): the rows and columns of the padded input it
        touches, as slices with the stride."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        ho = (h - dh * (self.kh - 1) - 1) // sh + 1
        wo = (w - dw * (self.kw - 1) - 1) // sw + 1
        for ki in range(self.kh):
            for kj in range(self.kw):
                rows = slice(ki * dh, ki * dh + sh * (ho - 1) + 1, sh)
                cols = slice(kj * dw, kj * dw + sw * (wo - 1) + 1, sw)
                yield ki, kj, rows, cols
        self.out_hw = (ho, wo)

    def forward(self, x):
        ph, pw = self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        self.x_shape, self.xp = x.shape, xp
        out = None
        for ki, kj, rows, cols in self._windows(*xp.shape[2:]):
            # (N, C, Ho, Wo) x (O, C) -> (N, Ho, Wo, O)
            term = np.tensordot(xp[:, :, rows, cols], self.W[:, :, ki, kj], axes=([1], [1]))
            out = term if out is None else out + term
        out = out.transpose(0, 3, 1, 2)
        if self.b is not None:
            out = out + self.b[None, :, None, None]
        return out

    def backward(self, dout):
        xp = self.xp
        dxp = np.zeros_like(xp)
        self.dW = np.zeros_like(self.W)
        for ki, kj, rows, cols in self._windows(*xp.shape[2:]):
            patch = xp[:, :, rows, cols]  # (N, C, Ho, Wo)
            self.dW[:, :, ki, kj] = np.tensordot(dout, patch, axes=([0, 2, 3], [0, 2, 3]))
            # (N, O, Ho, Wo) x (O, C) -> (N, Ho, Wo, C)
            dxp[:, :, rows, cols] += np.tensordot(dout, self.W[:, :, ki, kj],
                                                  axes=([1], [0])).transpose(0, 3, 1, 2)
        if self.b is not None:
            self.db = dout.sum(axis=(0, 2, 3))
        ph, pw = self.padding
        h, w = self.x_shape[2:]
        return dxp[:, :, ph:ph + h, pw:pw + w]


class MaxPool2d:
    """The max of each window; the gradient goes to the first maximum of the window (row-major
    order), as torch's. Padding counts as -inf."""

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kh, self.kw = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else (self.kh, self.kw)
        self.padding = _pair(padding)

    def _windows(self, h, w):
        sh, sw = self.stride
        ho, wo = (h - self.kh) // sh + 1, (w - self.kw) // sw + 1
        for ki in range(self.kh):
            for kj in range(self.kw):
                yield ki * self.kw + kj, (slice(ki, ki + sh * (ho - 1) + 1, sh),
                                          slice(kj, kj + sw * (wo - 1) + 1, sw))

    def forward(self, x):
        ph, pw = self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
        self.x_shape, self.xp_shape = x.shape, xp.shape
        best = where = None
        for position, (rows, cols) in self._windows(*xp.shape[2:]):
            values = xp[:, :, rows, cols]
            if best is None:
                best, where = values.copy(), np.zeros(values.shape, dtype=int)
            else:
                bigger = values > best  # strictly: on ties the first maximum stays
                best[bigger], where[bigger] = values[bigger], position
        self.where = where
        return best

    def backward(self, dout):
        dxp = np.zeros(self.xp_shape)
        for position, (rows, cols) in self._windows(*self.xp_shape[2:]):
            dxp[:, :, rows, cols] += dout * (self.where == position)
        ph, pw = self.padding
        h, w = self.x_shape[2:]
        return dxp[:, :, ph:ph + h, pw:pw + w]


class ReLU:
    def __init__(self, inplace=False):
        pass

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class Linear:
    """out = x @ W + b with W: (in_features, out_features), the CS231n layout (cnnlab maps it
    to torch's (out, in) by its shape)."""

    def __init__(self, in_features, out_features, bias=True):
        bound = 1 / np.sqrt(in_features)
        self.W = np.random.uniform(-bound, bound, (in_features, out_features))
        self.b = np.random.uniform(-bound, bound, out_features) if bias else None

    def forward(self, x):
        self.x = x
        out = x @ self.W
        return out + self.b if self.b is not None else out

    def backward(self, dout):
        self.dW = self.x.T @ dout
        if self.b is not None:
            self.db = dout.sum(axis=0)
        return dout @ self.W.T


class BatchNorm2d:
    """Normalise each channel over (N, H, W); in training with the batch's statistics (and
    update the running ones, the variance unbiased as torch's), in eval with the running ones.
    gamma, beta: (C,); cnnlab sets `self.training` before each forward."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.eps, self.momentum = eps, momentum
        self.gamma, self.beta = np.ones(num_features), np.zeros(num_features)
        self.running_mean, self.running_var = np.zeros(num_features), np.ones(num_features)
        self.training = True

    def forward(self, x):
        axes, shape = (0, 2, 3), (1, -1, 1, 1)
        if self.training:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            n = x.size // x.shape[1]
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            self.running_var = ((1 - self.momentum) * self.running_var
                                + self.momentum * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1 / np.sqrt(var.reshape(shape) + self.eps)
        self.xhat = (x - mean.reshape(shape)) * self.inv_std
        return self.gamma.reshape(shape) * self.xhat + self.beta.reshape(shape)

    def backward(self, dout):
        axes, shape = (0, 2, 3), (1, -1, 1, 1)
        self.dgamma = (dout * self.xhat).sum(axis=axes)
        self.dbeta = dout.sum(axis=axes)
        dxhat = dout * self.gamma.reshape(shape)
        if not self.training:  # the running statistics are constants
            return dxhat * self.inv_std
        # the batch mean and variance depend on x too
        return self.inv_std * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                               - self.xhat * (dxhat * self.xhat).mean(axis=axes, keepdims=True))


class Flatten:
    def __init__(self, start_dim=1, end_dim=-1):
        pass

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.shape)


class CrossEntropyLoss:
    """Mean over the batch of -log softmax(logits)[target], with optional label smoothing."""

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = label_smoothing

    def forward(self, logits, target):
        shifted = logits - logits.max(axis=1, keepdims=True)  # exp cannot overflow
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        n, k = logits.shape
        wanted = np.zeros_like(log_probs)
        wanted[np.arange(n), target] = 1.0
        wanted = wanted * (1 - self.label_smoothing) + self.label_smoothing / k
        self.probs, self.wanted = np.exp(log_probs), wanted
        return -(wanted * log_probs).sum() / n

    def backward(self):
        return (self.probs - self.wanted) / self.probs.shape[0]
