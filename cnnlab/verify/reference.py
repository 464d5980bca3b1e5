"""Readable loop-based reference kernels: the math of conv, pooling and batch norm, spelled out.

These are for reading and for testing the fast kernels in `cnnlab.scratch.functional`
against; they follow the same `*_forward -> (out, cache)` / `*_backward(dout, cache)`
interface and the same torch semantics, but loop over output positions in NCHW like a
textbook. They are slow on purpose: a `small_cnn` training step takes seconds.
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.scratch.functional import conv_output_size
from cnnlab.utils import pair


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """x: (N, C, H, W); weight: (O, C/groups, kh, kw); bias: (O,) -> out: (N, O, Ho, Wo).

    out[n, o, i, j] = bias[o] + sum over c, a, b of
        weight[o, c, a, b] * x_padded[n, g*C/G + c, i*sh + a*dh, j*sw + b*dw]
    where g is the group of output channel o.
    """
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    ho, wo = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n, o, ho, wo), x.dtype)
    for g in range(groups):
        w_g = weight[g * og:(g + 1) * og].reshape(og, -1)  # (O/G, C/G*kh*kw)
        for b in range(n):
            for i in range(ho):
                for j in range(wo):
                    window = xp[b, g * cg:(g + 1) * cg,
                                i * sh:i * sh + dh * (kh - 1) + 1:dh,
                                j * sw:j * sw + dw * (kw - 1) + 1:dw]
                    out[b, g * og:(g + 1) * og, i, j] = w_g @ window.reshape(-1)
    if bias is not None:
        out += bias[None, :, None, None]
    return out, (x, weight, bias is not None, (sh, sw), (ph, pw), (dh, dw), groups)


def conv2d_backward(dout, cache):
    """dout: (N, O, Ho, Wo) -> (dx (N, C, H, W), dweight like weight, dbias (O,) or None).

    Every output position sends dout * weight back to the window it read, and
    dout * window to the weight.
    """
    x, weight, has_bias, (sh, sw), (ph, pw), (dh, dw), groups = cache
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    _, _, ho, wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dweight = np.zeros_like(weight)
    for g in range(groups):
        w_g = weight[g * og:(g + 1) * og].reshape(og, -1)
        for b in range(n):
            for i in range(ho):
                for j in range(wo):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    window = xp[b, g * cg:(g + 1) * cg, rows, cols]
                    grad = dout[b, g * og:(g + 1) * og, i, j]  # (O/G,)
                    dweight[g * og:(g + 1) * og] += np.multiply.outer(grad, window)
                    dxp[b, g * cg:(g + 1) * cg, rows, cols] += (grad @ w_g).reshape(cg, kh, kw)
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dxp[:, :, ph:ph + h, pw:pw + w], dweight, dbias


def _pool_windows(shape, kernel_size, stride, padding):
    kh, kw = pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else pair(stride)
    ph, pw = pair(padding)
    _, _, h, w = shape
    ho, wo = conv_output_size(h, kh, sh, ph, 1), conv_output_size(w, kw, sw, pw, 1)
    for i in range(ho):
        for j in range(wo):
            yield i, j, slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> out: (N, C, Ho, Wo), the max of each window (padding is -inf).

    The cache remembers, per output, the flat position of the first maximum in its window.
    """
    ph, pw = pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    windows = list(_pool_windows(x.shape, kernel_size, stride, padding))
    ho, wo = windows[-1][0] + 1, windows[-1][1] + 1
    n, c = x.shape[:2]
    out = np.zeros((n, c, ho, wo), x.dtype)
    argmax = np.zeros((n, c, ho, wo), np.int64)
    for b in range(n):
        for ch in range(c):
            for i, j, rows, cols in windows:
                window = xp[b, ch, rows, cols]
                k = int(np.argmax(window))  # first maximum, like torch
                argmax[b, ch, i, j] = k
                out[b, ch, i, j] = window.reshape(-1)[k]
    return out, (x.shape, argmax, windows, (ph, pw))


def max_pool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W): each gradient goes to its window's argmax."""
    (n, c, h, w), argmax, windows, (ph, pw) = cache
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dout.dtype)
    for b in range(n):
        for ch in range(c):
            for i, j, rows, cols in windows:
                width = cols.stop - cols.start
                a, k = divmod(int(argmax[b, ch, i, j]), width)
                dxp[b, ch, rows.start + a, cols.start + k] += dout[b, ch, i, j]
    return dxp[:, :, ph:ph + h, pw:pw + w]


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """x: (N, C, H, W) -> out: (N, C, Ho, Wo), the mean of each window.

    With count_include_pad the divisor is kh*kw; otherwise the number of real inputs.
    """
    ph, pw = pair(padding)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    real = np.pad(np.ones((h, w)), ((ph, ph), (pw, pw)))  # 1 where the input is not padding
    windows = list(_pool_windows(x.shape, kernel_size, stride, padding))
    ho, wo = windows[-1][0] + 1, windows[-1][1] + 1
    out = np.zeros((n, c, ho, wo), x.dtype)
    divisors = {}
    for i, j, rows, cols in windows:
        divisor = real[rows, cols].size if count_include_pad else real[rows, cols].sum()
        divisors[i, j] = divisor
        for b in range(n):
            for ch in range(c):
                out[b, ch, i, j] = xp[b, ch, rows, cols].sum() / divisor
    return out, (x.shape, windows, divisors, (ph, pw))


def avg_pool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W): each window shares its gradient evenly."""
    (n, c, h, w), windows, divisors, (ph, pw) = cache
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dout.dtype)
    for i, j, rows, cols in windows:
        for b in range(n):
            for ch in range(c):
                dxp[b, ch, rows, cols] += dout[b, ch, i, j] / divisors[i, j]
    return dxp[:, :, ph:ph + h, pw:pw + w]


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
                      eps=1e-5):
    """x: (N, C) or (N, C, H, W); gamma, beta, running stats: (C,).

    Per channel c, over all N (and H, W) values v: mean mu, biased variance var,
    xhat = (v - mu) / sqrt(var + eps), out = gamma * xhat + beta. Training updates the running
    stats in place (unbiased variance: var * m / (m - 1)); eval uses them instead.
    """
    out = np.empty_like(x)
    cache = []
    for ch in range(x.shape[1]):
        values = x[:, ch]
        m = values.size
        if training:
            mu = values.sum() / m
            var = ((values - mu) ** 2).sum() / m
            running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mu
            running_var[ch] = (1 - momentum) * running_var[ch] + momentum * var * m / (m - 1)
        else:
            mu, var = running_mean[ch], running_var[ch]
        std = np.sqrt(var + eps)
        xhat = (values - mu) / std
        out[:, ch] = gamma[ch] * xhat + beta[ch]
        cache.append((xhat, std, m))
    return out, (cache, gamma, training)


def batchnorm_backward(dout, cache):
    """dout like x -> (dx, dgamma (C,), dbeta (C,)).

    In training mu and var depend on every input, which adds the two mean terms:
    dx = gamma / std * (dout - mean(dout) - xhat * mean(dout * xhat)).
    """
    per_channel, gamma, training = cache
    dx = np.empty_like(dout)
    dgamma = np.zeros(len(per_channel), dout.dtype)
    dbeta = np.zeros(len(per_channel), dout.dtype)
    for ch, (xhat, std, m) in enumerate(per_channel):
        grad = dout[:, ch]
        dbeta[ch] = grad.sum()
        dgamma[ch] = (grad * xhat).sum()
        if training:
            dx[:, ch] = gamma[ch] / std * (grad - grad.sum() / m - xhat * (grad * xhat).sum() / m)
        else:
            dx[:, ch] = gamma[ch] / std * grad
    return dx, dgamma, dbeta


def _c_round(value: float) -> int:
    """C's round(): halves go away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def roi_pool_forward(x, rois, output_size, spatial_scale=1.0):
    """torchvision's CPU roi_pool as plain loops.

    x: (N, C, H, W); rois: (K, 5) rows [batch_index, x1, y1, x2, y2] -> out (K, C, ph, pw).
    Each RoI is scaled and rounded onto the feature map (at least 1x1), split into ph x pw
    bins of fractional size (start floored, end ceiled, clipped to the map); each output is
    the first maximum of its bin, or 0 for an empty bin.
    """
    pooled_h, pooled_w = pair(output_size)
    n, c, h, w = x.shape
    out = np.zeros((len(rois), c, pooled_h, pooled_w), x.dtype)
    argmax = -np.ones((len(rois), c, pooled_h, pooled_w), np.int64)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        start_w, start_h = _c_round(roi[1] * spatial_scale), _c_round(roi[2] * spatial_scale)
        end_w, end_h = _c_round(roi[3] * spatial_scale), _c_round(roi[4] * spatial_scale)
        bin_h = max(end_h - start_h + 1, 1) / pooled_h
        bin_w = max(end_w - start_w + 1, 1) / pooled_w
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                hs = min(max(math.floor(ph * bin_h) + start_h, 0), h)
                he = min(max(math.ceil((ph + 1) * bin_h) + start_h, 0), h)
                ws = min(max(math.floor(pw * bin_w) + start_w, 0), w)
                we = min(max(math.ceil((pw + 1) * bin_w) + start_w, 0), w)
                empty = he <= hs or we <= ws
                for ch in range(c):
                    best, best_index = (0.0 if empty else -np.finfo(np.float32).max), -1
                    for row in range(hs, he):
                        for col in range(ws, we):
                            if x[b, ch, row, col] > best:
                                best, best_index = x[b, ch, row, col], row * w + col
                    out[k, ch, ph, pw], argmax[k, ch, ph, pw] = best, best_index
    return out, (x.shape, rois, argmax)


def roi_pool_backward(dout, cache):
    """dout: (K, C, ph, pw) -> dx: (N, C, H, W); each output's gradient goes to its argmax."""
    (n, c, h, w), rois, argmax = cache
    dx = np.zeros((n, c, h * w), dout.dtype)
    for k, ch, i, j in np.ndindex(*argmax.shape):
        if argmax[k, ch, i, j] >= 0:
            dx[int(rois[k][0]), ch, argmax[k, ch, i, j]] += dout[k, ch, i, j]
    return dx.reshape(n, c, h, w)
