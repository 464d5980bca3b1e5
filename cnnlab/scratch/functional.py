"""Pure NumPy kernels: every op as `*_forward(...) -> (out, cache)` and `*_backward(dout, cache)`.

Arrays are NCHW at the interface, like torch. Internally the 4-D kernels work channels-last
(NHWC): im2col then becomes one strided copy and one matmul per chunk of images, and channel
statistics are matmuls of a tall (N*H*W, C) matrix. The 4-D outputs are NCHW-shaped *views* of
NHWC memory (what torch calls channels_last), so chaining kernels costs no transposes: each
kernel's `_nhwc(x)` is free when `x` came from another kernel.

Conventions:
- Shapes in docstrings: N batch, C channels, H/W height/width, O output channels.
- Kernels compute in the dtype of their input (float32 or float64); parameters are expected to
  have the same dtype (the layers take care of that).
- `workspace` (optional dict) lets a caller reuse large scratch buffers between calls; the
  layers pass their own. A buffer from the workspace may be referenced by the returned cache,
  so a workspace belongs to one caller whose previous cache is discarded on the next forward.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnlab.errors import ModelError
from cnnlab.scratch.threads import kernel_threads, one_blas_thread, run_parts, split_range
from cnnlab.utils import pair  # noqa: F401  (the layers use F.pair)


# --------------------------------------------------------------------------------------------
# helpers


def _nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> C-contiguous (N, H, W, C); free when x is a view of NHWC memory."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _nchw_view(x_nhwc: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W) view of the same memory."""
    return x_nhwc.transpose(0, 3, 1, 2)


def _buffer(workspace: dict | None, key: str, shape: tuple, dtype) -> np.ndarray:
    """A zero-initialised scratch array of `shape`, reused from `workspace` when it holds one
    of that shape and dtype (then with whatever the last call left in it)."""
    buf = workspace.get(key) if workspace is not None else None
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.zeros(shape, dtype)
        if workspace is not None:
            workspace[key] = buf
    return buf


def _channel_sum(x2d: np.ndarray) -> np.ndarray:
    """Column sums of a tall (M, C) matrix as a matmul with a ones vector.

    BLAS accumulates in blocks, which is both much faster and far more accurate in float32
    than numpy's axis-0 `sum` over a tall array (measured: 0.16 ms vs 1.8 ms, and exact).
    """
    return np.ones(x2d.shape[0], x2d.dtype) @ x2d


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution or pooling window along one axis (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Read-only sliding windows of a padded NHWC array.

    xp: (N, Hp, Wp, C) -> view (N, Ho, Wo, kh, kw, C) with
    view[n, i, j, a, b, c] = xp[n, i*sh + a*dh, j*sw + b*dw, c].
    """
    n, _, _, c = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    return as_strided(
        xp,
        shape=(n, ho, wo, kh, kw, c),
        strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c),
        writeable=False,
    )


def _window_slice(a: int, b: int, stride, dilation, out_hw) -> tuple[slice, slice]:
    """Rows/cols of a padded array that kernel tap (a, b) touches, one per output position."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    return (
        slice(a * dh, a * dh + sh * (ho - 1) + 1, sh),
        slice(b * dw, b * dw + sw * (wo - 1) + 1, sw),
    )


REDUCTION_PARTS = 2  # a long weight-gradient reduction is summed from this many products
PRODUCT_PARTS = 2  # a large product is computed in this many blocks of rows (or images)
PRODUCT_PARTS_MIN = 1 << 21  # multiply-adds below which a linear layer's product is one piece
PARALLEL_MIN = 1 << 20  # elements per part below which an element-wise pass is not split


def _in_parts(rows: int, size: int, work) -> None:
    """Call `work(s)` for consecutive slices `s` covering range(rows), one per kernel thread
    when the pass touches `size` elements in all and each part gets PARALLEL_MIN of them.
    For NumPy's element-wise passes and copies, which run on one thread however large."""
    parts = split_range(rows, min(kernel_threads(), rows, max(1, size // PARALLEL_MIN)))
    run_parts([lambda s=s: work(s) for s in parts])


def _pad_nhwc(x_nhwc: np.ndarray, padding, workspace=None, key="pad", fill=0.0,
              extra=(0, 0)) -> np.ndarray:
    """Zero- (or `fill`-) padded copy (N, H+2ph+eh, W+2pw+ew, C); x itself when there is no
    padding. `extra` (eh, ew) pads the bottom/right only (ceil_mode windows of pooling)."""
    ph, pw = padding
    if ph == 0 and pw == 0 and extra == (0, 0):
        return x_nhwc
    n, h, w, c = x_nhwc.shape
    shape = (n, h + 2 * ph + extra[0], w + 2 * pw + extra[1], c)
    if fill == 0.0:
        # a reused buffer keeps its zero border: only the interior is ever written
        xp = _buffer(workspace, key, shape, x_nhwc.dtype)
    else:
        xp = np.full(shape, fill, x_nhwc.dtype)
    xp[:, ph:ph + h, pw:pw + w, :] = x_nhwc
    return xp


def _gather_columns(xp, kernel, stride, dilation, out_hw, groups, workspace=None, key="cols"):
    """im2col: padded NHWC input (N, Hp, Wp, C) -> columns (G, N*Ho*Wo, kh*kw*C/G).

    One strided copy; the column order (kh, kw, C/G) matches `_conv_weight_matrix`.
    """
    n, _, _, c = xp.shape
    (kh, kw), (ho, wo), cg = kernel, out_hw, c // groups
    if c == 1:
        # one input channel (a grey-scale first layer): copy tap by tap into a (K, M) buffer,
        # whole image rows at a time (6x faster than 9-element rows), and hand out its
        # transpose; BLAS reads it without a copy
        buf = _buffer(workspace, key, (kh * kw, n * ho * wo), xp.dtype)
        taps = buf.reshape(kh, kw, n, ho, wo)
        for a in range(kh):
            for b in range(kw):
                taps[a, b] = xp[(slice(None),) + _window_slice(a, b, stride, dilation, out_hw)
                                + (0,)]
        return buf.T[None]
    view = _windows(xp, kernel, stride, dilation, out_hw)  # (N, Ho, Wo, kh, kw, C)
    view = view.reshape(n, ho, wo, kh, kw, groups, cg).transpose(5, 0, 1, 2, 3, 4, 6)
    cols = _buffer(workspace, key, (groups, n * ho * wo, kh * kw * cg), xp.dtype)
    target = cols.reshape(groups, n, ho, wo, kh, kw, cg)
    _in_parts(n, cols.size, lambda s: np.copyto(target[:, s], view[:, s]))
    return cols


def _matmul_scatter(a, tap_weights, canvas, stride, dilation, in_hw):
    """col2im fused with its matmul: canvas += sum over taps of (a @ tap_weight) placed at the
    tap's window positions.

    a: (G, N*Hi*Wi, P); tap_weights: (kh, kw, G, P, Q); canvas: padded NHWC (N, Hp, Wp, G*Q).
    One (M, P) @ (P, Q) product per tap lands in a contiguous buffer that is added to a
    strided slice of the canvas whose rows are contiguous: measured 3x faster than one big
    matmul followed by a scatter of its (kh*kw*Q)-strided columns.
    """
    n, hp, wp, c = canvas.shape
    kh, kw, groups, _, q = tap_weights.shape
    hi, wi = in_hw
    grouped_canvas = canvas.reshape(n, hp, wp, groups, q)  # a view: canvas is contiguous
    product = np.empty((groups, a.shape[1], q), canvas.dtype)
    for i in range(kh):
        for j in range(kw):
            if groups == 1:
                np.matmul(a[0], tap_weights[i, j, 0], out=product[0])
            else:
                np.matmul(a, tap_weights[i, j], out=product)
            rows, columns = _window_slice(i, j, stride, dilation, in_hw)
            grouped_canvas[:, rows, columns] += \
                product.reshape(groups, n, hi, wi, q).transpose(1, 2, 3, 0, 4)
    return canvas


def _reduction_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`_grouped_matmul` for weight gradients (G, P, M) @ (G, M, Q), M = N*Ho*Wo. When the
    result is small and the reduction long, OpenBLAS's own threads synchronise too often (see
    `one_blas_thread`): the reduction is cut into REDUCTION_PARTS parts, each a product on one
    BLAS thread, run side by side on the kernel threads and summed. The number of parts is
    fixed, not the thread count, so the sum's rounding (and a run's numbers) do not depend on
    the machine's cores."""
    p, m, q = a.shape[1], a.shape[2], b.shape[2]
    if p * q <= 65536 and m >= 64 * max(p, q):
        parts = split_range(m, REDUCTION_PARTS if m >= REDUCTION_PARTS * 64 * max(p, q) else 1)
        with one_blas_thread():
            products = run_parts([lambda s=s: _grouped_matmul(a[:, :, s], b[:, s]) for s in parts])
        total = products[0]
        for product in products[1:]:
            total += product
        return total
    return _grouped_matmul(a, b)


def _grouped_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(G, M, K) @ (G, K, P) -> (G, M, P); a plain 2-D BLAS call when G == 1."""
    if a.shape[0] == 1:
        return (a[0] @ b[0])[None]
    return np.matmul(a, b)


def _ungroup(y: np.ndarray) -> np.ndarray:
    """(G, M, P) -> (M, G*P), the channel order torch uses for grouped outputs."""
    if y.shape[0] == 1:
        return y[0]
    return np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(y.shape[1], -1)


def _group(y2d: np.ndarray, groups: int) -> np.ndarray:
    """(M, G*P) -> (G, M, P)."""
    if groups == 1:
        return y2d[None]
    m = y2d.shape[0]
    return np.ascontiguousarray(y2d.reshape(m, groups, -1).transpose(1, 0, 2))


# --------------------------------------------------------------------------------------------
# convolution


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                   workspace=None):
    """2-D convolution (cross-correlation), torch.nn.functional.conv2d semantics.

    x: (N, C, H, W); weight: (O, C/groups, kh, kw); bias: (O,) or None.
    Returns out: (N, O, Ho, Wo) with Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1, and the cache.
    """
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), \
        pair(dilation, "dilation")
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if c != cg * groups or o % groups:
        raise ModelError(
            f"conv2d: input has {c} channel(s) but the weight {weight.shape} with groups={groups} "
            f"expects {cg * groups}."
        )
    ho = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ModelError(
            f"conv2d: input of spatial size {(h, w)} is too small for kernel {(kh, kw)} with "
            f"padding {padding} and dilation {dilation} (output would be {(ho, wo)})."
        )
    xp = _pad_nhwc(_nhwc(x), padding, workspace)
    wmat = _conv_weight_matrix(weight, groups)
    if groups == 1:
        # the columns exist a few images at a time (see _image_chunks); the backward pass
        # gathers them again from the padded input the cache keeps
        out = np.empty((n * ho * wo, o), x.dtype)
        _columns_matmul(xp, (kh, kw), stride, dilation, (ho, wo), wmat[0], out, workspace)
        saved = xp
    else:
        saved = _gather_columns(xp, (kh, kw), stride, dilation, (ho, wo), groups, workspace)
        out = _ungroup(_grouped_matmul(saved, wmat))  # (N*Ho*Wo, O), contiguous
    if bias is not None:
        r = _wide_rows(out.shape[0], o)
        out.reshape(-1, r * o)[...] += _per_channel(out, r, bias)
    cache = (saved, wmat, (n, c, h, w), weight.shape, bias is not None, stride, padding,
             dilation, groups, (ho, wo), workspace)
    return _nchw_view(out.reshape(n, ho, wo, o)), cache


CHUNK_BYTES = 2 << 20  # im2col columns per chunk: a part's working set stays in the CPU caches


def _image_chunks(n: int, image_bytes: int) -> list[slice]:
    """Consecutive runs of whole images whose im2col columns take about CHUNK_BYTES, as even
    as integers allow, in a multiple of REDUCTION_PARTS runs (so the parts are balanced).

    The columns of a whole batch are kh*kw times the input (75 MB for a 16-channel 32x32
    layer at batch 128): written once and read back by the matmul from main memory, they made
    that product run at a third of the machine's matmul speed. Chunks of 1-2.5 MiB measured
    fastest (forward 17 -> 7.5 ms for that layer, 2 threads); the chunks do not depend on the
    thread count, so neither do the results."""
    count = -(-n * max(1, image_bytes) // CHUNK_BYTES)
    count = min(n, -(-count // REDUCTION_PARTS) * REDUCTION_PARTS)
    return split_range(n, max(1, count))


def _chunk_key(key: str, part: int, chunk: slice) -> str:
    """A workspace key per part and chunk size (chunks differ by at most one image, so each
    part keeps at most two buffers, none reallocated from step to step, and a padded buffer
    keeps its zero border)."""
    return f"{key}{part}:{chunk.stop - chunk.start}"


def _chunk_parts(chunks: list[slice], parts: int) -> list[list[slice]]:
    return [chunks[s] for s in split_range(len(chunks), min(parts, len(chunks)))]


def _run_side_by_side(works: list):
    """Run the zero-argument functions side by side on the kernel threads, each on one BLAS
    thread, and return their results (a single one runs with BLAS's own threads)."""
    if len(works) == 1:
        return [works[0]()]
    with one_blas_thread():
        return run_parts(works)


def _columns_matmul(xp, kernel, stride, dilation, out_hw, wmat2d, out2d, workspace=None):
    """out2d (N*Ho*Wo, O) = im2col(xp) @ wmat2d, a chunk of images at a time; the chunks are
    shared out among the kernel threads."""
    n, (ho, wo), k = xp.shape[0], out_hw, wmat2d.shape[0]
    rows = ho * wo
    chunks = _image_chunks(n, rows * k * xp.itemsize)

    def work(part, run):
        for chunk in run:
            cols = _gather_columns(xp[chunk], kernel, stride, dilation, out_hw, 1, workspace,
                                   _chunk_key("cols", part, chunk))[0]
            np.matmul(cols, wmat2d, out=out2d[chunk.start * rows:chunk.stop * rows])

    runs = _chunk_parts(chunks, kernel_threads())
    _run_side_by_side([lambda p=p, r=r: work(p, r) for p, r in enumerate(runs)])


def _conv_weight_matrix(weight, groups):
    """(O, C/G, kh, kw) -> (G, kh*kw*C/G, O/G), rows in im2col column order."""
    o, cg, kh, kw = weight.shape
    wg = weight.reshape(groups, o // groups, cg, kh, kw).transpose(0, 3, 4, 2, 1)
    return np.ascontiguousarray(wg).reshape(groups, kh * kw * cg, o // groups)


def conv2d_backward(dout, cache, need_input_grad=True):
    """Gradients of `conv2d_forward`.

    dout: (N, O, Ho, Wo). Returns (dx (N, C, H, W) or None, dweight (O, C/G, kh, kw),
    dbias (O,) or None).
    """
    (saved, wmat, (n, c, h, w), wshape, has_bias, stride, padding, dilation, groups, out_hw,
     workspace) = cache
    o, cg, kh, kw = wshape
    d2 = _nhwc(dout).reshape(-1, o)  # (N*Ho*Wo, O)
    dbias = _channel_sum(d2) if has_bias else None
    if groups == 1:
        dwmat, dx = _conv_backward_by_chunks(saved, d2, wmat[0], (h, w), (kh, kw), stride,
                                             padding, dilation, out_hw, need_input_grad,
                                             workspace)
        dwmat = dwmat[None]
    else:
        dg = _group(d2, groups)  # (G, M, O/G)
        dwmat = _reduction_matmul(saved.transpose(0, 2, 1), dg)  # (G, kh*kw*Cg, O/G)
        dx = None
        if need_input_grad:
            canvas = np.zeros((n, h + 2 * padding[0], w + 2 * padding[1], c), d2.dtype)
            _matmul_scatter(dg, _tap_weights(wmat, kh, kw), canvas, stride, dilation, out_hw)
            dx = canvas[:, padding[0]:padding[0] + h, padding[1]:padding[1] + w, :]
    dweight = dwmat.reshape(groups, kh, kw, cg, o // groups).transpose(0, 4, 3, 1, 2)
    dweight = np.ascontiguousarray(dweight).reshape(o, cg, kh, kw)
    return (None if dx is None else _nchw_view(dx)), dweight, dbias


def _tap_weights(wmat, kh, kw):
    """(G, kh*kw*C/G, O/G) -> (kh, kw, G, O/G, C/G): tap (i, j)'s block of group g."""
    groups, _, og = wmat.shape
    return wmat.reshape(groups, kh, kw, -1, og).transpose(1, 2, 0, 4, 3)


def _conv_backward_by_chunks(xp, d2, wmat2d, in_hw, kernel, stride, padding, dilation,
                             out_hw, need_input_grad, workspace):
    """Weight gradient (kh*kw*C, O) and input gradient (N, H, W, C) or None of a groups-1
    conv, a chunk of images at a time: each chunk's columns are gathered again from the
    padded input and multiplied while they are in the cache.

    The weight gradient is summed over REDUCTION_PARTS parts, each the running sum of its
    chunks' products: the same parts and order on any number of threads."""
    n, (h, w), (kh, kw), (ho, wo) = xp.shape[0], in_hw, kernel, out_hw
    c, o = wmat2d.shape[0] // (kh * kw), wmat2d.shape[1]
    rows = ho * wo
    by_gather = need_input_grad and _dx_by_gather(c, o, 1, stride, padding, dilation, kernel)
    chunk_bytes = rows * kh * kw * max(c, o if by_gather else 0) * xp.itemsize
    chunks = _image_chunks(n, chunk_bytes)
    d4 = d2.reshape(n, ho, wo, o)
    dx = canvas = None
    if by_gather:
        # dx is the 'full' convolution of dout with the flipped kernel: pad dout by
        # d*(k-1) - p, gather its columns, multiply by the weight matrix with its taps
        # reversed and its in/out channels swapped
        flipped = wmat2d.reshape(kh, kw, c, o)[::-1, ::-1].transpose(0, 1, 3, 2)
        flipped = np.ascontiguousarray(flipped).reshape(kh * kw * o, c)
        full_pad = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
        dx = np.empty((n, h, w, c), d2.dtype)
    elif need_input_grad:
        canvas = np.zeros((n, h + 2 * padding[0], w + 2 * padding[1], c), d2.dtype)
        taps = _tap_weights(wmat2d[None], kh, kw)

    def work(part, run):
        dw = product = None
        for chunk in run:
            cols = _gather_columns(xp[chunk], kernel, stride, dilation, out_hw, 1, workspace,
                                   _chunk_key("cols", part, chunk))[0]
            d_rows = d2[chunk.start * rows:chunk.stop * rows]
            if len(chunks) == 1:  # the whole batch in one product: a long reduction is split
                dw = _reduction_matmul(cols.T[None], d_rows[None])[0]
            elif dw is None:
                dw = cols.T @ d_rows
                product = np.empty_like(dw)
            else:
                dw += np.matmul(cols.T, d_rows, out=product)
            if by_gather:
                padded = _pad_nhwc(d4[chunk], full_pad, workspace,
                                   _chunk_key("dx_pad", part, chunk))
                dcols = _gather_columns(padded, kernel, (1, 1), dilation, in_hw, 1, workspace,
                                        _chunk_key("dx_cols", part, chunk))[0]
                np.matmul(dcols, flipped, out=dx[chunk].reshape(-1, c))
            elif canvas is not None:
                _matmul_scatter(d_rows[None], taps, canvas[chunk], stride, dilation, out_hw)
        return dw

    parts = _run_side_by_side([lambda p=p, r=r: work(p, r)
                              for p, r in enumerate(_chunk_parts(chunks, REDUCTION_PARTS))])
    dwmat = parts[0]
    for part in parts[1:]:
        dwmat += part
    if canvas is not None:
        dx = canvas[:, padding[0]:padding[0] + h, padding[1]:padding[1] + w, :]
    return dwmat, dx


def _dx_by_gather(c, o, groups, stride, padding, dilation, kernel) -> bool:
    """Whether a conv's input gradient is cheaper as a forward conv of dout (gather) than as
    the per-tap matmul scatter. Stride 1 and groups 1 only; measured (batch 128, 3x3, one
    BLAS thread): 1.5x faster at C = O = 16, 1.3x at 32, 1.4x at 64, equal at 128; slower when
    C < O (a wider gather for a narrower product)."""
    return (groups == 1 and tuple(stride) == (1, 1) and c >= o and c >= 16
            and all(padding[i] <= dilation[i] * (kernel[i] - 1) for i in range(2)))


def conv_transpose2d_output_size(size, kernel, stride, padding, output_padding, dilation):
    """Output length of a transposed convolution along one axis (torch's formula)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                             groups=1, dilation=1):
    """Transposed convolution, torch.nn.functional.conv_transpose2d semantics.

    x: (N, C, H, W); weight: (C, O/groups, kh, kw); bias: (O,) or None.
    out: (N, O, Ho, Wo) with Ho = (H-1)*sh - 2*ph + dh*(kh-1) + oph + 1.
    It is the input-gradient of conv2d: one matmul to columns, then col2im into the output.
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    output_padding, dilation = pair(output_padding, "output_padding"), pair(dilation, "dilation")
    n, c, h, w = x.shape
    c_w, og, kh, kw = weight.shape
    if c != c_w or c % groups:
        raise ModelError(
            f"conv_transpose2d: input has {c} channel(s) but the weight {weight.shape} expects "
            f"{c_w} (groups={groups})."
        )
    for axis in range(2):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ModelError(
                f"conv_transpose2d: output_padding {output_padding} must be smaller than "
                f"stride {stride} or dilation {dilation}."
            )
    o = og * groups
    ho = conv_transpose2d_output_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = conv_transpose2d_output_size(w, kw, stride[1], padding[1], output_padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ModelError(f"conv_transpose2d: output size would be {(ho, wo)} for input {(h, w)}.")
    x2 = _nhwc(x).reshape(-1, c)
    xg = _group(x2, groups)  # (G, M, Cg)
    wmat = _transpose_weight_matrix(weight, groups)  # (G, Cg, kh*kw*Og)
    # the full canvas covers every tap; padding crops it, output_padding extends the end
    canvas_hw = (ho + 2 * padding[0], wo + 2 * padding[1])
    canvas = np.zeros((n, canvas_hw[0], canvas_hw[1], o), x.dtype)
    tap_weights = wmat.reshape(groups, c // groups, kh, kw, og).transpose(2, 3, 0, 1, 4)
    rows = h * w

    def scatter(s):  # images s: their rows of xg land on their own canvases only
        _matmul_scatter(xg[:, s.start * rows:s.stop * rows], tap_weights, canvas[s], stride,
                        dilation, (h, w))
    # fixed blocks (not one per thread), so the products and the bits do not depend on the
    # thread count; they run side by side on the kernel threads
    _run_side_by_side([lambda s=s: scatter(s) for s in split_range(n, min(n, PRODUCT_PARTS))])
    out = canvas[:, padding[0]:padding[0] + ho, padding[1]:padding[1] + wo, :]
    out = out + bias if bias is not None else np.ascontiguousarray(out)
    cache = (xg, wmat, (n, c, h, w), weight.shape, bias is not None, stride, padding, dilation,
             groups, canvas_hw)
    return _nchw_view(out), cache


def _transpose_weight_matrix(weight, groups):
    """(C, O/G, kh, kw) -> (G, C/G, kh*kw*O/G), columns in im2col order (kh, kw, O/G)."""
    c, og, kh, kw = weight.shape
    wg = weight.reshape(groups, c // groups, og, kh, kw).transpose(0, 1, 3, 4, 2)
    return np.ascontiguousarray(wg).reshape(groups, c // groups, kh * kw * og)


def conv_transpose2d_backward(dout, cache, need_input_grad=True):
    """Gradients of `conv_transpose2d_forward`.

    dout: (N, O, Ho, Wo). Returns (dx (N, C, H, W) or None, dweight (C, O/G, kh, kw),
    dbias (O,) or None).
    """
    xg, wmat, (n, c, h, w), wshape, has_bias, stride, padding, dilation, groups, canvas_hw = cache
    _, og, kh, kw = wshape
    o = og * groups
    dout_nhwc = _nhwc(dout)
    dcanvas = _pad_nhwc(dout_nhwc, padding)
    # output_padding rows/cols past the padded end received no taps: windows never read them
    dcols = _gather_columns(dcanvas, (kh, kw), stride, dilation, (h, w), groups)  # (G, M, K)
    dwmat = _reduction_matmul(xg.transpose(0, 2, 1), dcols)  # (G, Cg, kh*kw*Og)
    dweight = dwmat.reshape(groups, c // groups, kh, kw, og).transpose(0, 1, 4, 2, 3)
    dweight = np.ascontiguousarray(dweight).reshape(c, og, kh, kw)
    dbias = _channel_sum(dout_nhwc.reshape(-1, o)) if has_bias else None
    dx = None
    if need_input_grad:
        dx2 = np.empty((groups, dcols.shape[1], c // groups), dcols.dtype)

        def input_gradient(s):  # a fixed block of rows, as in the forward's scatter
            dx2[:, s] = _grouped_matmul(dcols[:, s], wmat.transpose(0, 2, 1))
        parts = split_range(dcols.shape[1], min(dcols.shape[1], PRODUCT_PARTS))
        _run_side_by_side([lambda s=s: input_gradient(s) for s in parts])
        dx = _nchw_view(_ungroup(dx2).reshape(n, h, w, c))
    return dx, dweight, dbias


# --------------------------------------------------------------------------------------------
# linear, flatten


def _parted_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b of 2-D arrays in PRODUCT_PARTS blocks of a's rows, run side by side on the kernel
    threads, each on one BLAS thread.

    The engine keeps BLAS at one thread (see ScratchEngine.train_batch), under which a
    (128 x 9216) @ (9216 x 100) layer's forward and backward took 9.2 ms against 5.0 ms on two
    BLAS threads (5.8 ms in two blocks). The blocks are fixed, not the thread count, so the
    bits are too."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] * a.shape[1] * b.shape[1] < PRODUCT_PARTS_MIN:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    parts = split_range(a.shape[0], min(PRODUCT_PARTS, a.shape[0]))
    _run_side_by_side([lambda s=s: np.matmul(a[s], b, out=out[s]) for s in parts])
    return out


def linear_forward(x, weight, bias=None):
    """x: (N, in); weight: (out, in); bias: (out,) or None -> out: (N, out)."""
    out = _parted_matmul(x, weight.T)
    if bias is not None:
        out += bias
    return out, (x, weight, bias is not None)


def linear_backward(dout, cache, need_input_grad=True):
    """dout: (N, out) -> (dx (N, in) or None, dweight (out, in), dbias (out,) or None)."""
    x, weight, has_bias = cache
    dweight = _parted_matmul(dout.T, x)
    dbias = _channel_sum(dout) if has_bias else None
    dx = _parted_matmul(dout, weight) if need_input_grad else None
    return dx, dweight, dbias


def flatten_forward(x, start_dim=1, end_dim=-1):
    """Merge dims start_dim..end_dim in C (NCHW) order, like torch.flatten.

    x: (N, C, H, W) -> (N, C*H*W) with the defaults. Channels-last memory is copied into
    NCHW order here, so a following Linear sees torch's feature order.
    """
    size = max(x.ndim, 1)  # torch counts a 0-d tensor as one dim here
    if not (-size <= start_dim < size and -size <= end_dim < size):
        raise ModelError(f"flatten: start_dim={start_dim}, end_dim={end_dim} are out of range "
                         f"for a {x.ndim}-D input of shape {x.shape}.")
    start, end = start_dim % size, end_dim % size
    if start > end:
        raise ModelError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim} for a "
                         f"{x.ndim}-D input.")
    if x.ndim == 0:
        return x.reshape(1), x.shape
    shape = x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:]
    return np.ascontiguousarray(x).reshape(shape), x.shape


def flatten_backward(dout, cache):
    """dout: the flattened shape -> the input shape (cache)."""
    return dout.reshape(cache)


# --------------------------------------------------------------------------------------------
# pooling


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length of a pooling window along one axis, torch's rule.

    With ceil_mode the division rounds up, but the last window must start inside the input or
    its left padding: a window starting in the right padding (or past it) is dropped.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_geometry(x, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """kernel, stride, padding, dilation pairs, (Ho, Wo) and the extra bottom/right padding
    that ceil_mode windows reach past the padded input."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding, dilation = pair(padding, "padding"), pair(dilation, "dilation")
    for axis in range(2):
        if padding[axis] * 2 > kernel[axis]:
            raise ModelError(
                f"pooling: padding {padding} must be at most half the kernel size {kernel}."
            )
    _, _, h, w = x.shape
    ho = pool_output_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    wo = pool_output_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    if ho < 1 or wo < 1:
        raise ModelError(
            f"pooling: input of spatial size {(h, w)} is too small for kernel {kernel} with "
            f"padding {padding} (output would be {(ho, wo)})."
        )
    extra = tuple(max(0, (out - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
                      - (size + 2 * padding[i]))
                  for i, (out, size) in enumerate(((ho, h), (wo, w))))
    return kernel, stride, padding, dilation, (ho, wo), extra


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       return_indices=False):
    """Max pooling, torch semantics (-inf padding; ceil_mode as `pool_output_size`).

    x: (N, C, H, W) -> out: (N, C, Ho, Wo). The max is a running `np.maximum` over the kh*kw
    strided views of the input (one per kernel tap), far faster than reshape + max.
    With return_indices, out is (values, indices): indices (N, C, Ho, Wo) int64 are flat
    positions h*W + w in each input plane of the first maximum (of the last NaN, if any), as
    torch's CPU kernel picks them.
    """
    kernel, stride, padding, dilation, out_hw, extra = _pool_geometry(
        x, kernel_size, stride, padding, dilation, ceil_mode)
    xp = _pad_nhwc(_nhwc(x), padding, fill=-np.inf, extra=extra)
    taps = [xp[(slice(None),) + _window_slice(a, b, stride, dilation, out_hw)]
            for a in range(kernel[0]) for b in range(kernel[1])]
    cache_tail = (x.shape, kernel, stride, padding, dilation, out_hw)
    if return_indices:
        out, indices = _max_with_indices(taps, x.shape[3], kernel, stride, padding, dilation,
                                         out_hw)
        return (_nchw_view(out), _nchw_view(indices)), (xp, out) + cache_tail
    out = np.maximum(taps[0], taps[1]) if len(taps) > 1 else taps[0].copy()
    for tap in taps[2:]:
        np.maximum(out, tap, out=out)
    return _nchw_view(out), (xp, out) + cache_tail


def _max_with_indices(taps, width, kernel, stride, padding, dilation, out_hw):
    """Running max over taps (row-major) and the flat input index of the chosen tap; a tap
    replaces the max when strictly greater or NaN (torch's `val > max || isnan(val)`)."""
    rows = np.arange(out_hw[0]) * stride[0] - padding[0]
    cols = np.arange(out_hw[1]) * stride[1] - padding[1]
    out = taps[0].copy()
    indices = np.empty(out.shape, np.int64)
    indices[...] = (rows[:, None] * width + cols[None, :])[None, :, :, None]
    for t, tap in enumerate(taps[1:], start=1):
        a, b = divmod(t, kernel[1])
        flat = ((rows + a * dilation[0])[:, None] * width
                + (cols + b * dilation[1])[None, :])[None, :, :, None]
        better = (tap > out) | np.isnan(tap)
        np.copyto(out, tap, where=better)
        np.copyto(indices, np.broadcast_to(flat, indices.shape), where=better)
    return out, indices


def max_pool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W).

    Each output's gradient goes to the first input in its window (row-major tap order) that
    equals the max, like torch's CPU kernel, so ties are routed identically.
    """
    xp, out, (n, c, h, w), kernel, stride, padding, dilation, out_hw = cache
    dout_nhwc = _nhwc(dout)
    if _windows_tile(kernel, stride, padding, dilation, xp.shape[1:3], (h, w)):
        dx = _tiled_max_pool_backward(xp, out, dout_nhwc, kernel, out_hw)
        if dx is not None:
            return _nchw_view(dx)
    dxp = np.zeros(xp.shape, dout_nhwc.dtype)
    overlapping = any(stride[i] < (kernel[i] - 1) * dilation[i] + 1 for i in range(2))
    taken = np.zeros(out.shape, bool)
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            window = (slice(None),) + _window_slice(a, b, stride, dilation, out_hw)
            hit = xp[window] == out
            hit &= ~taken
            taken |= hit
            if overlapping:
                dxp[window] += dout_nhwc * hit
            else:
                np.multiply(dout_nhwc, hit, out=dxp[window])
    ph, pw = padding
    return _nchw_view(dxp[:, ph:ph + h, pw:pw + w, :])


def _windows_tile(kernel, stride, padding, dilation, padded_hw, hw) -> bool:
    """Whether pooling windows tile the input without overlap or padding (the common 2x2/2
    pool), so max_pool2d_backward can take `_tiled_max_pool_backward`."""
    return (tuple(stride) == tuple(kernel) and tuple(padding) == (0, 0)
            and tuple(dilation) == (1, 1) and tuple(padded_hw) == tuple(hw))


def _tiled_max_pool_backward(x_nhwc, out, dout_nhwc, kernel, out_hw):
    """max_pool2d_backward for windows that tile x (stride = kernel, no padding, dilation 1),
    on x viewed as (N, Ho, kh, Wo, kw, C): dx = dout * (x == its window's max).

    When every window's max occurs once that is one comparison and one multiply (1.5-1.8x
    faster than the tap loop at 16-64 channels). Ties (common: ReLU's zeros) keep only the
    first maximum in row-major tap order, one pass per tap over output-sized views (1.2-1.5x
    faster). The views have C-element runs, so below 16 channels the tap loop is as fast or
    faster and None is returned. NaN windows pass no gradient (no element equals a NaN max),
    as in the tap loop.
    """
    n, h, w, c = x_nhwc.shape
    if c < 16:
        return None
    (kh, kw), (ho, wo) = kernel, out_hw
    blocks = x_nhwc[:, :ho * kh, :wo * kw].reshape(n, ho, kh, wo, kw, c)
    hit = blocks == out.reshape(n, ho, 1, wo, 1, c)
    unique = np.count_nonzero(hit) == out.size and not np.isnan(out).any()
    if not unique:
        taken = hit[:, :, 0, :, 0, :].copy()
        for t in range(1, kh * kw):
            tap = hit[:, :, t // kw, :, t % kw, :]
            np.greater(tap, taken, out=tap)  # for booleans: a hit no earlier tap has taken
            if t < kh * kw - 1:
                taken |= tap
    exact = ho * kh == h and wo * kw == w  # else the rows/columns no window reads get 0
    dx = (np.empty if exact else np.zeros)((n, h, w, c), dout_nhwc.dtype)
    np.multiply(hit, dout_nhwc.reshape(n, ho, 1, wo, 1, c),
                out=dx[:, :ho * kh, :wo * kw].reshape(n, ho, kh, wo, kw, c))
    return dx


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True,
                       ceil_mode=False, divisor_override=None):
    """Average pooling, torch semantics (zero padding; ceil_mode as `pool_output_size`).

    x: (N, C, H, W) -> out: (N, C, Ho, Wo). A window's divisor is, as in torch's kernel:
    `divisor_override` when given; else with count_include_pad the window's size clipped to
    the padded input (ceil_mode windows reaching past the padding count only up to it); else
    the number of real (unpadded) inputs in it.
    """
    kernel, stride, padding, dilation, out_hw, extra = _pool_geometry(
        x, kernel_size, stride, padding, 1, ceil_mode)
    xp = _pad_nhwc(_nhwc(x), padding, extra=extra)
    out = None
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            tap = xp[(slice(None),) + _window_slice(a, b, stride, dilation, out_hw)]
            out = tap.copy() if out is None else np.add(out, tap, out=out)
    divisor = _avg_divisor(x.shape[2:], kernel, stride, padding, out_hw, count_include_pad,
                           x.dtype, extra, divisor_override)
    out /= divisor
    return _nchw_view(out), (x.shape, kernel, stride, padding, out_hw, divisor, extra)


def _avg_divisor(hw, kernel, stride, padding, out_hw, count_include_pad, dtype, extra=(0, 0),
                 divisor_override=None):
    """Scalar divisor, or a (1, Ho, Wo, 1) map of per-window divisors."""
    if divisor_override is not None:
        return dtype.type(divisor_override)
    if extra == (0, 0) and (count_include_pad or padding == (0, 0)):
        return dtype.type(kernel[0] * kernel[1])
    counts = []
    for axis in range(2):
        starts = np.arange(out_hw[axis]) * stride[axis] - padding[axis]
        ends = np.minimum(starts + kernel[axis], hw[axis] + padding[axis])
        if not count_include_pad:
            ends, starts = np.minimum(ends, hw[axis]), np.maximum(starts, 0)
        counts.append(ends - starts)
    return np.multiply.outer(counts[0], counts[1]).astype(dtype)[None, :, :, None]


def avg_pool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W): each output spreads its gradient evenly."""
    (n, c, h, w), kernel, stride, padding, out_hw, divisor, extra = cache
    share = _nhwc(dout) / divisor
    dxp = np.zeros((n, h + 2 * padding[0] + extra[0], w + 2 * padding[1] + extra[1], c),
                   share.dtype)
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            dxp[(slice(None),) + _window_slice(a, b, stride, (1, 1), out_hw)] += share
    ph, pw = padding
    return _nchw_view(dxp[:, ph:ph + h, pw:pw + w, :])


def adaptive_bins(size: int, out_size: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling bins: [floor(i*size/out), ceil((i+1)*size/out)) for each i."""
    return [((i * size) // out_size, -((-(i + 1) * size) // out_size)) for i in range(out_size)]


def adaptive_avg_pool2d_forward(x, output_size):
    """x: (N, C, H, W) -> out: (N, C, Ho, Wo); bins may overlap when H is not a multiple."""
    n, c, h, w = x.shape
    ho, wo = _adaptive_size(x, output_size)
    rows, cols = adaptive_bins(h, ho), adaptive_bins(w, wo)
    out = np.empty((n, c, ho, wo), x.dtype)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out, (x.shape, rows, cols)


def adaptive_avg_pool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W)."""
    shape, rows, cols = cache
    dx = np.zeros(shape, dout.dtype)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            share = dout[:, :, i, j] / ((r1 - r0) * (c1 - c0))
            dx[:, :, r0:r1, c0:c1] += share[:, :, None, None]
    return dx


def _adaptive_size(x, output_size) -> tuple[int, int]:
    """output_size (int, pair, None entries = keep the input's size) -> (Ho, Wo)."""
    h, w = x.shape[2:]
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    return (h if output_size[0] is None else int(output_size[0]),
            w if output_size[1] is None else int(output_size[1]))


def adaptive_max_pool2d_forward(x, output_size, return_indices=False):
    """Adaptive max pooling, torch semantics: bins as `adaptive_bins`, the first maximum in
    row-major order wins (a NaN wins over numbers, the last NaN over earlier ones).

    x: (N, C, H, W) -> out: (N, C, Ho, Wo), or (out, indices) with return_indices; indices
    (N, C, Ho, Wo) int64 are flat positions h*W + w in each input plane.
    """
    n, c, h, w = x.shape
    ho, wo = _adaptive_size(x, output_size)
    out = np.empty((n, c, ho, wo), x.dtype)
    indices = np.empty((n, c, ho, wo), np.int64)
    for i, (r0, r1) in enumerate(adaptive_bins(h, ho)):
        for j, (c0, c1) in enumerate(adaptive_bins(w, wo)):
            flat_pos = (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)[None, :]).ravel()
            region = x[:, :, r0:r1, c0:c1].reshape(n, c, -1)
            nan = np.isnan(region)
            # argmax returns the first maximum; a NaN bin reports its last NaN, like torch
            first = region.argmax(axis=2)
            last_nan = nan.shape[2] - 1 - nan[:, :, ::-1].argmax(axis=2)
            pick = np.where(nan.any(axis=2), last_nan, first)
            indices[:, :, i, j] = flat_pos[pick]
            out[:, :, i, j] = np.take_along_axis(region, pick[..., None], axis=2)[..., 0]
    cache = (x.shape, indices)
    return ((out, indices) if return_indices else out), cache


def adaptive_max_pool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W); each output's gradient goes to its index."""
    (n, c, h, w), indices = cache
    dx = np.zeros((n, c, h * w), dout.dtype)
    nn_, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for i in range(indices.shape[2]):
        for j in range(indices.shape[3]):
            np.add.at(dx, (nn_, cc, indices[:, :, i, j]), dout[:, :, i, j])
    return dx.reshape(n, c, h, w)


def _round_half_away(value: float) -> int:
    """C's round(): halves go away from zero (numpy rounds them to even)."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def roi_pool_forward(x, rois, output_size, spatial_scale=1.0):
    """Region-of-interest max pooling with torchvision.ops.roi_pool semantics.

    x: (N, C, H, W); rois: (K, 5) rows [batch_index, x1, y1, x2, y2] in input coordinates,
    scaled by spatial_scale and rounded (half away from zero) to feature-map cells.
    out: (K, C, ph, pw); an empty bin is 0 and passes no gradient.
    """
    ph, pw = pair(output_size, "output_size")
    n, c, h, w = x.shape
    rois = np.asarray(rois)
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ModelError(f"roi_pool: rois must have shape (K, 5); got {rois.shape}.")
    scale = x.dtype.type(spatial_scale)
    out = np.zeros((len(rois), c, ph, pw), x.dtype)
    argmax = np.full((len(rois), c, ph, pw), -1, np.int64)  # flat index into H*W
    for k, roi in enumerate(rois.astype(x.dtype)):
        b = int(roi[0])
        if not 0 <= b < n:
            raise ModelError(f"roi_pool: roi {k} has batch index {b}; the batch has {n} images.")
        x0, y0, x1, y1 = (_round_half_away(float(v * scale)) for v in roi[1:])
        bin_h = x.dtype.type(max(y1 - y0 + 1, 1)) / x.dtype.type(ph)
        bin_w = x.dtype.type(max(x1 - x0 + 1, 1)) / x.dtype.type(pw)
        plane = x[b].reshape(c, h * w)
        for i in range(ph):
            hs = min(max(int(math.floor(i * bin_h)) + y0, 0), h)
            he = min(max(int(math.ceil((i + 1) * bin_h)) + y0, 0), h)
            for j in range(pw):
                ws = min(max(int(math.floor(j * bin_w)) + x0, 0), w)
                we = min(max(int(math.ceil((j + 1) * bin_w)) + x0, 0), w)
                if he <= hs or we <= ws:
                    continue
                flat = (np.arange(hs, he)[:, None] * w + np.arange(ws, we)[None, :]).ravel()
                region = plane[:, flat]
                first = region.argmax(axis=1)  # first max in row-major order, as torchvision
                argmax[k, :, i, j] = flat[first]
                out[k, :, i, j] = region[np.arange(c), first]
    return out, (x.shape, rois[:, 0].astype(np.int64), argmax)


def roi_pool_backward(dout, cache):
    """dout: (K, C, ph, pw) -> dx: (N, C, H, W); each bin's gradient goes to its argmax."""
    (n, c, h, w), batch_index, argmax = cache
    dx = np.zeros((n, c, h * w), dout.dtype)
    valid = argmax >= 0
    kk, cc, _, _ = np.nonzero(valid)
    np.add.at(dx, (batch_index[kk], cc, argmax[valid]), dout[valid])
    return dx.reshape(n, c, h, w)


# --------------------------------------------------------------------------------------------
# batch norm


def _channels_matrix(x):
    """(N, C), (N, C, L) or (N, C, H, W) -> (rows, C) matrix over the same memory (a copy for
    3-D), and a function back."""
    if x.ndim == 2:
        return np.ascontiguousarray(x), lambda y: y
    if x.ndim == 3:
        n, c, length = x.shape
        return (np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(-1, c),
                lambda y: y.reshape(n, length, c).transpose(0, 2, 1))
    x_nhwc = _nhwc(x)
    shape = x_nhwc.shape
    return x_nhwc.reshape(-1, shape[3]), lambda y: _nchw_view(y.reshape(shape))


def _wide_rows(m: int, c: int, target: int = 4096) -> int:
    """The largest r dividing m with r*c <= target: (m, c) viewed as (m/r, r*c).

    Broadcasting a (C,) vector over a tall (M, C) array runs numpy's inner loop C elements at
    a time; on rows r times longer, with the vector tiled r times, it ran 2.5x faster (C=16).
    """
    r = max(1, min(m, target // max(c, 1)))
    while m % r:
        r -= 1
    return r


def _per_channel(x2: np.ndarray, r: int, vector: np.ndarray) -> np.ndarray:
    """A (C,) vector tiled to match the wide view x2.reshape(-1, r*C)."""
    return np.tile(vector.astype(x2.dtype, copy=False), r)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, num_batches_tracked=None,
                      training=True, momentum=0.1, eps=1e-5, workspace=None):
    """Batch normalisation over N (and H, W), torch.nn.BatchNorm1d/2d semantics.

    x: (N, C), (N, C, L) or (N, C, H, W); gamma, beta, running_mean, running_var: (C,).
    Training normalises with the batch mean and biased variance and updates the running
    statistics in place with the *unbiased* variance (M/(M-1)), as torch does; `momentum=None`
    means a cumulative average (uses and increments `num_batches_tracked`, a 0-d int array).
    Without running statistics (None) the statistics are not tracked. Eval normalises with
    the running statistics. An empty batch gives an empty output and, as torch, leaves the
    running statistics alone but still counts the batch in `num_batches_tracked`.
    Returns (out like x, cache); the cache holds x - mean, in a `workspace` buffer when one
    is given.
    """
    x2, back = _channels_matrix(x)
    m, c = x2.shape
    if m == 0:
        if training and num_batches_tracked is not None:
            num_batches_tracked += 1
        return back(x2.copy()), None
    r = _wide_rows(m, c)
    centered = _buffer(workspace, "centered", (m // r, r * c), x2.dtype)
    if training:
        if m < 2:
            raise ModelError(
                f"batchnorm: training needs more than one value per channel; got input shape "
                f"{x.shape}. Use a batch of at least 2 or call eval()."
            )
        mean = _channel_sum(x2) / m
        wide, tiled_mean = x2.reshape(-1, r * c), _per_channel(x2, r, mean)
        out = np.empty_like(centered)  # the squares' buffer becomes the output below

        def center_and_square(s):
            np.subtract(wide[s], tiled_mean, out=centered[s])
            np.multiply(centered[s], centered[s], out=out[s])
        _in_parts(len(centered), 2 * centered.size, center_and_square)
        var = _channel_sum(out.reshape(m, c)) / m
        if num_batches_tracked is not None:
            num_batches_tracked += 1
        if running_mean is not None:
            factor = momentum if momentum is not None else 1.0 / float(num_batches_tracked)
            running_mean *= 1 - factor
            running_mean += factor * mean
            running_var *= 1 - factor
            running_var += factor * var * (m / (m - 1))
    else:
        var = running_var
        np.subtract(x2.reshape(-1, r * c), _per_channel(x2, r, running_mean), out=centered)
        out = np.empty_like(centered)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x2.dtype, copy=False)
    scale, shift = _per_channel(x2, r, gamma * inv_std), _per_channel(x2, r, beta)

    def normalise(s):
        np.multiply(centered[s], scale, out=out[s])
        out[s] += shift
    _in_parts(len(centered), 2 * centered.size, normalise)
    return back(out.reshape(m, c)), (centered, gamma, inv_std, training, r)


def batchnorm_backward(dout, cache, workspace=None):
    """dout like x -> (dx like x, dgamma (C,), dbeta (C,)).

    With xhat = (x - mean) * inv_std, in training
    dx = gamma * inv_std * (dout - mean(dout) - xhat * mean(dout * xhat)),
    evaluated as k1 * dout + k2 * (x - mean) + k3 with per-channel k's (fewer full passes).
    """
    d2, back = _channels_matrix(dout)
    if cache is None:  # an empty batch: nothing flows back
        return back(d2.copy()), np.zeros(d2.shape[1], d2.dtype), np.zeros(d2.shape[1], d2.dtype)
    centered, gamma, inv_std, training, r = cache
    m, c = d2.shape
    wide = d2.reshape(-1, r * c)
    dbeta = _channel_sum(d2)
    # the product's buffer is reused below for the second term
    product = _buffer(workspace, "product", wide.shape, d2.dtype)
    _in_parts(len(wide), wide.size, lambda s: np.multiply(wide[s], centered[s], out=product[s]))
    dgamma = _channel_sum(product.reshape(m, c)) * inv_std
    k1 = gamma * inv_std
    k1_tiled = _per_channel(d2, r, k1)
    k2_tiled = _per_channel(d2, r, -k1 * inv_std * dgamma / m)
    k3_tiled = _per_channel(d2, r, -k1 * dbeta / m)
    dx = np.empty(wide.shape, d2.dtype)

    def input_gradient(s):
        np.multiply(wide[s], k1_tiled, out=dx[s])
        if training:
            dx[s] += np.multiply(centered[s], k2_tiled, out=product[s])
            dx[s] += k3_tiled
    _in_parts(len(wide), 3 * wide.size, input_gradient)
    return back(dx.reshape(m, c)), dgamma, dbeta


# --------------------------------------------------------------------------------------------
# dropout and activations


def dropout_forward(x, p, training=True, rng=None):
    """Inverted dropout: zero each input with probability p and scale the rest by 1/(1-p).

    x: any shape. In eval (or p == 0) it is the identity. rng: a numpy Generator.
    """
    if not training or p == 0:
        return x, None
    if p >= 1:
        return np.zeros_like(x), np.zeros_like(x)
    keep = rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) >= p
    mask = np.asarray(keep, x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return np.asarray(x * mask), mask


def dropout_backward(dout, cache):
    return dout if cache is None else dout * cache


def relu_forward(x):
    """Elementwise max(x, 0); any shape."""
    if x.ndim == 0:  # nothing to split (and np.maximum of a 0-d array returns a scalar)
        out = np.maximum(x, 0)
        return out, out
    out = np.empty_like(x)  # like x: an NCHW view of NHWC memory stays one
    _in_parts(len(x), x.size, lambda s: np.maximum(x[s], 0, out=out[s]))
    return out, out


def relu_backward(dout, cache):
    """The gradient passes where the output is positive (torch's rule)."""
    if dout.ndim == 0 or dout.shape != cache.shape or dout.dtype != cache.dtype:
        return dout * (cache > 0)  # broadcasting or mixed dtypes: NumPy's rules, unsplit
    dx = np.empty_like(cache)
    zero = cache.dtype.type(0)

    def part(s):
        np.greater(cache[s], zero, out=dx[s])  # 1.0 where positive, in the output's dtype
        np.multiply(dx[s], dout[s], out=dx[s])
    _in_parts(len(cache), cache.size, part)
    return dx


def leaky_relu_forward(x, negative_slope=0.01):
    """Elementwise x if x > 0 else slope*x; `np.maximum(x, a*x)` is the fast form for 0<=a<=1."""
    if 0 <= negative_slope <= 1:
        # out= keeps a 0-d input an array (np.multiply alone returns a scalar for it)
        out = np.multiply(x, x.dtype.type(negative_slope), out=np.empty_like(x))
        np.maximum(x, out, out=out)
    else:
        out = np.where(x > 0, x, x * negative_slope)
    return out, (x, negative_slope)


def leaky_relu_backward(dout, cache):
    """dx = dout where x > 0, slope*dout elsewhere.

    Written as dout * (mask * (1 - slope) + slope): plain arithmetic on a bool mask, measured
    20x faster than `np.where` or a masked `np.copyto` on these layouts.
    """
    x, slope = cache
    scale = (x > 0).astype(dout.dtype)
    scale *= dout.dtype.type(1 - slope)
    scale += dout.dtype.type(slope)
    scale *= dout
    return scale


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return out, out


def sigmoid_backward(dout, cache):
    return dout * cache * (1 - cache)


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    return dout * (1 - cache * cache)


def feature_dropout_forward(x, p, training=True, rng=None):
    """Channel-wise dropout (torch.nn.Dropout2d): zero whole channels with probability p and
    scale the rest by 1/(1-p).

    x: (N, C, ...) with at least 2 dims; one draw per (n, c), shared over the other dims, as
    torch's feature_dropout (a 3-D input is (N, C, L), as torch 2.x still reads it).
    """
    if x.ndim < 2:
        raise ModelError(f"feature dropout needs an input with at least 2 dims (N, C, ...); "
                         f"got shape {x.shape}.")
    if not training or p == 0:
        return x, None
    mask_shape = x.shape[:2] + (1,) * (x.ndim - 2)
    if p >= 1:
        return np.zeros_like(x), np.zeros(mask_shape, x.dtype)
    keep = rng.random(mask_shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


# --------------------------------------------------------------------------------------------
# more activations, softmax


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise: scipy's when installed, else math.erf per element
    (exact either way; NumPy itself has none)."""
    try:
        from scipy.special import erf
    except ImportError:  # scipy is a test dependency only
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return erf(x).astype(x.dtype, copy=False)


def gelu_forward(x, approximate="none"):
    """GELU, torch.nn.GELU: x * Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2, or with
    approximate='tanh' x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2. Any shape."""
    x = np.asarray(x)
    if approximate == "none":
        cdf = 0.5 * (1.0 + _erf(x * x.dtype.type(1 / math.sqrt(2.0))))
        return np.asarray(x * cdf), (x, approximate, cdf)
    if approximate == "tanh":
        inner = x.dtype.type(_SQRT_2_OVER_PI) * (x + x.dtype.type(0.044715) * x * x * x)
        t = np.tanh(inner)
        return np.asarray(0.5 * x * (1.0 + t)), (x, approximate, t)
    raise ModelError(f"gelu: approximate must be 'none' or 'tanh'; got {approximate!r}.")


def gelu_backward(dout, cache):
    """d/dx x*Phi(x) = Phi(x) + x*phi(x); for 'tanh', the derivative of its formula."""
    x, approximate, saved = cache
    if approximate == "none":
        pdf = np.exp(-0.5 * x * x) * x.dtype.type(1 / math.sqrt(2 * math.pi))
        return np.asarray(dout * (saved + x * pdf))
    t = saved
    d_inner = x.dtype.type(_SQRT_2_OVER_PI) * (1.0 + x.dtype.type(3 * 0.044715) * x * x)
    return np.asarray(dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner))


def silu_forward(x):
    """SiLU (swish): x * sigmoid(x); any shape."""
    sig, _ = sigmoid_forward(np.asarray(x))
    return np.asarray(x * sig), (x, sig)


def silu_backward(dout, cache):
    x, sig = cache
    return np.asarray(dout * sig * (1.0 + x * (1.0 - sig)))


def softmax_dim(ndim: int, dim) -> int:
    """The softmax axis: `dim` (negative counts from the end), or torch's legacy choice when
    dim is None (0 for 0-, 1- and 3-D inputs, else 1)."""
    if dim is None:
        dim = 0 if ndim in (0, 1, 3) else 1
    size = max(ndim, 1)
    if not -size <= dim < size:
        raise ModelError(f"softmax: dim {dim} is out of range for a {ndim}-D input.")
    return dim % size


def _softmax_input(x, dim):
    """(x as an array of >= 1 dims, axis, the 0-d shape to restore or None): torch treats a
    0-d input as one element."""
    x = np.asarray(x)
    if x.ndim == 0:
        return x.reshape(1), 0, ()
    return x, softmax_dim(x.ndim, dim), None


def log_softmax_forward(x, dim=None):
    """log softmax along `dim` (None: torch's legacy choice, see `softmax_dim`), stable (the
    max is subtracted first). Any shape."""
    x2, axis, shape = _softmax_input(x, dim)
    shifted = x2 - x2.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return (shifted.reshape(shape) if shape is not None else shifted), (shifted, axis, shape)


def log_softmax_backward(dout, cache):
    """dx = dout - softmax * sum(dout) along the axis."""
    out, axis, shape = cache
    dout = np.asarray(dout).reshape(out.shape)
    dx = dout - np.exp(out) * dout.sum(axis=axis, keepdims=True)
    return dx.reshape(shape) if shape is not None else dx


def softmax_forward(x, dim=None):
    """softmax along `dim` (None: torch's legacy choice, see `softmax_dim`). Any shape."""
    x2, axis, shape = _softmax_input(x, dim)
    e = np.exp(x2 - x2.max(axis=axis, keepdims=True))
    out = e / e.sum(axis=axis, keepdims=True)
    return (out.reshape(shape) if shape is not None else out), (out, axis, shape)


def softmax_backward(dout, cache):
    """dx = y * (dout - sum(dout * y)) along the axis."""
    out, axis, shape = cache
    dout = np.asarray(dout).reshape(out.shape)
    dx = out * (dout - (dout * out).sum(axis=axis, keepdims=True))
    return dx.reshape(shape) if shape is not None else dx


# --------------------------------------------------------------------------------------------
# layer norm, group norm


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation, torch.nn.functional.layer_norm semantics.

    x: (*, *normalized_shape); statistics (mean, biased variance) over the trailing
    len(normalized_shape) dims; weight, bias: normalized_shape or None.
    """
    x = np.asarray(x)
    normalized_shape = tuple(int(d) for d in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or x.shape[x.ndim - k:] != normalized_shape or x.ndim < k:
        raise ModelError(f"layer_norm: input shape {x.shape} does not end with "
                         f"normalized_shape {normalized_shape}.")
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = centered * inv_std
    out = xhat * weight if weight is not None else xhat.copy()
    if bias is not None:
        out += bias
    return out, (xhat, inv_std, weight, axes, bias is not None)


def _normalise_backward(dxhat, xhat, inv_std, axes):
    """dx of xhat = (x - mean) * inv_std, statistics over `axes`:
    inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))."""
    return inv_std * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                      - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))


def layer_norm_backward(dout, cache, need_input_grad=True):
    """dout like x -> (dx or None, dweight or None, dbias or None), parameters shaped
    normalized_shape."""
    xhat, inv_std, weight, axes, has_bias = cache
    batch_axes = tuple(range(xhat.ndim - len(axes)))
    dweight = (dout * xhat).sum(axis=batch_axes) if weight is not None else None
    dbias = dout.sum(axis=batch_axes) if has_bias else None
    if not need_input_grad:
        return None, dweight, dbias
    dxhat = dout * weight if weight is not None else dout
    return _normalise_backward(dxhat, xhat, inv_std, axes), dweight, dbias


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation, torch.nn.functional.group_norm semantics.

    x: (N, C, *); the C channels are split into num_groups consecutive groups, each
    normalised over its channels and all other dims (biased variance); weight, bias: (C,).
    """
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise ModelError(f"group_norm: expects an input (N, C, ...) with C divisible by "
                         f"num_groups={num_groups}; got shape {x.shape}.")
    n, c = x.shape[:2]
    xg = x.reshape(n, num_groups, -1)
    mean = xg.mean(axis=2, keepdims=True)
    centered = xg - mean
    var = (centered * centered).mean(axis=2, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = (centered * inv_std).reshape(x.shape)
    channel = (1, c) + (1,) * (x.ndim - 2)
    out = xhat * weight.reshape(channel) if weight is not None else xhat.copy()
    if bias is not None:
        out += bias.reshape(channel)
    return out, (xhat, inv_std, weight, num_groups, bias is not None)


def group_norm_backward(dout, cache, need_input_grad=True):
    """dout like x -> (dx or None, dweight (C,) or None, dbias (C,) or None)."""
    xhat, inv_std, weight, groups, has_bias = cache
    n, c = xhat.shape[:2]
    other = (0,) + tuple(range(2, xhat.ndim))
    dweight = (dout * xhat).sum(axis=other) if weight is not None else None
    dbias = dout.sum(axis=other) if has_bias else None
    if not need_input_grad:
        return None, dweight, dbias
    channel = (1, c) + (1,) * (xhat.ndim - 2)
    dxhat = dout * weight.reshape(channel) if weight is not None else dout
    dx = _normalise_backward(dxhat.reshape(n, groups, -1), xhat.reshape(n, groups, -1),
                             inv_std, (2,))
    return dx.reshape(xhat.shape), dweight, dbias


# --------------------------------------------------------------------------------------------
# padding


_PAD_MODES = {"zeros": "constant", "constant": "constant", "reflect": "reflect",
              "replicate": "edge", "circular": "wrap"}


def pad2d_forward(x, pads, mode="zeros"):
    """Pad the last two dims of x (N, C, H, W): pads = (top, bottom, left, right), mode one of
    zeros, reflect, replicate, circular (torch.nn.functional.pad's constant/reflect/replicate/
    circular). Torch's limits hold: reflect needs each pad < that size, circular <= it."""
    if mode not in _PAD_MODES:
        raise ModelError(f"pad2d: mode must be one of {sorted(_PAD_MODES)}; got {mode!r}.")
    top, bottom, left, right = (int(p) for p in pads)
    h, w = x.shape[-2:]
    for before, after, size in ((top, bottom, h), (left, right, w)):
        if (mode == "reflect" and max(before, after) >= size) or \
                (mode == "circular" and max(before, after) > size):
            rule = "smaller than" if mode == "reflect" else "at most"
            raise ModelError(
                f"pad2d: {mode} padding {pads} must be {rule} the input's spatial size "
                f"{(h, w)} along each axis (torch's rule)."
            )
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return np.pad(x, widths, mode=_PAD_MODES[mode]), (x.shape, (top, bottom, left, right), mode)


def _pad_source_index(size, before, after, mode):
    """For each padded position along one axis, the input position it copies."""
    return np.pad(np.arange(size), (before, after), mode=_PAD_MODES[mode])


def pad2d_backward(dout, cache):
    """dout: the padded shape -> dx: the input shape. Zero padding crops; the other modes add
    each padded position's gradient to the input position it copied."""
    shape, (top, bottom, left, right), mode = cache
    h, w = shape[-2:]
    if _PAD_MODES[mode] == "constant":
        return np.ascontiguousarray(dout[..., top:top + h, left:left + w])
    rows = _pad_source_index(h, top, bottom, mode)
    cols = _pad_source_index(w, left, right, mode)
    dx_rows = np.zeros(dout.shape[:-2] + (h, dout.shape[-1]), dout.dtype)
    np.add.at(dx_rows, (Ellipsis, rows, slice(None)), dout)
    dx = np.zeros(shape, dout.dtype)
    np.add.at(dx, (Ellipsis, cols), dx_rows)
    return dx


# --------------------------------------------------------------------------------------------
# upsampling


def _nearest_matrix(in_size, out_size, scale, exact, dtype):
    """(out, in) 0/1 matrix of torch's nearest (or nearest-exact) source index, computed in
    float32 as torch's CPU kernel does."""
    if not exact and out_size == in_size:
        src = np.arange(out_size)
    elif not exact and out_size == 2 * in_size:
        src = np.arange(out_size) >> 1
    else:
        ratio = np.float32(1.0 / scale) if scale is not None and scale > 0 else \
            np.float32(in_size) / np.float32(out_size)
        dst = np.arange(out_size)
        if exact:  # (dst + 0.5) is a double times the float scale, then cast to float
            pos = (dst + 0.5) * np.float64(ratio)
            src = np.floor(pos.astype(np.float32)).astype(np.int64)
        else:
            src = np.floor(dst.astype(np.float32) * ratio).astype(np.int64)
        src = np.minimum(src, in_size - 1)
    matrix = np.zeros((out_size, in_size), dtype)
    matrix[np.arange(out_size), src] = 1
    return matrix


def _linear_matrix(in_size, out_size, scale, align_corners, dtype):
    """(out, in) matrix of torch's linear interpolation weights along one axis
    (area_pixel_compute_source_index with the input dtype's arithmetic)."""
    t = np.dtype(dtype).type
    if align_corners:
        ratio = t(in_size - 1) / t(out_size - 1) if out_size > 1 else t(0)
        src = ratio * np.arange(out_size).astype(dtype)
    else:
        ratio = t(1.0 / scale) if scale is not None and scale > 0 else t(in_size) / t(out_size)
        src = ratio * (np.arange(out_size).astype(dtype) + t(0.5)) - t(0.5)
        src = np.maximum(src, t(0))
    index0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam1 = np.clip(src - index0, 0, 1).astype(dtype)
    index1 = index0 + (index0 < in_size - 1)
    matrix = np.zeros((out_size, in_size), dtype)
    rows = np.arange(out_size)
    matrix[rows, index0] += 1 - lam1
    matrix[rows, index1] += lam1
    return matrix


def upsample_output_size(in_hw, size=None, scale_factor=None):
    """Output (H, W) of torch.nn.functional.interpolate: `size`, else floor(in * scale)."""
    if size is not None:
        return tuple(int(s) for s in size)
    return tuple(int(math.floor(float(i) * float(s))) for i, s in zip(in_hw, scale_factor))


def upsample2d_forward(x, out_hw, mode="nearest", align_corners=None, scales=(None, None)):
    """Resample x (N, C, H, W) to (N, C, *out_hw), torch.nn.functional.interpolate semantics
    for mode 'nearest', 'nearest-exact' and 'bilinear' (align_corners True/False).

    scales: the user's scale factors per axis, or None (then in/out); torch uses them, not
    the rounded size ratio, to place source positions. Each axis is one (out, in)
    interpolation matrix, so out = A_h @ x @ A_w^T and the backward is its transpose.
    """
    h, w = x.shape[2:]
    ho, wo = out_hw
    if ho < 1 or wo < 1:
        raise ModelError(f"upsample: output size {out_hw} for input {x.shape} is empty.")
    if mode in ("nearest", "nearest-exact"):
        a_h = _nearest_matrix(h, ho, scales[0], mode == "nearest-exact", x.dtype)
        a_w = _nearest_matrix(w, wo, scales[1], mode == "nearest-exact", x.dtype)
    elif mode == "bilinear":
        a_h = _linear_matrix(h, ho, scales[0], bool(align_corners), x.dtype)
        a_w = _linear_matrix(w, wo, scales[1], bool(align_corners), x.dtype)
    else:
        raise ModelError(f"upsample: mode {mode!r} is not supported; use 'nearest', "
                         "'nearest-exact' or 'bilinear'.")
    return a_h @ x @ a_w.T, (a_h, a_w)


def upsample2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W) = A_h^T @ dout @ A_w."""
    a_h, a_w = cache
    return a_h.T @ dout @ a_w
