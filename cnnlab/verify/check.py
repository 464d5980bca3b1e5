"""`cnnlab check`: every scratch op against PyTorch on fresh random shapes, as a table.

Each check builds the scratch layer and its torch twin with the same weights (float64), runs
one forward and one backward with the same random output gradient, and records the largest
relative error of the output (forward) and of every gradient: input, parameters and, for
batch norm, the running statistics (backward). RoIPool is compared with the loop
transcription of torchvision's kernel in `cnnlab.verify.reference` (torchvision is not a
dependency). A check passes when both errors are below `TOLERANCE`.
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch import layers as L
from cnnlab.scratch import random as scratch_random
from cnnlab.verify import reference

TOLERANCE = 1e-7  # float64 relative error


def _rel_err(ours, theirs) -> float:
    if hasattr(theirs, "detach"):
        theirs = theirs.detach().numpy()
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return float("inf")
    scale = np.abs(theirs).max(initial=0.0)
    diff = np.abs(ours - theirs).max(initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def _row(op: str, case: str, forward_err: float, backward_err: float) -> dict:
    return {"op": op, "case": case, "forward_err": forward_err, "backward_err": backward_err,
            "passed": bool(forward_err < TOLERANCE and backward_err < TOLERANCE)}


def _compare(op, ours, theirs, shape, rng, torch) -> dict:
    """One forward/backward of a scratch module and its torch twin on the same weights."""
    theirs = theirs.double()
    with torch.no_grad():  # non-trivial affine parameters and running statistics
        for parameter in theirs.parameters():
            parameter.uniform_(-1.5, 1.5)
        for name, buffer in theirs.named_buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    ours.to(np.float64).load_state_dict(theirs.state_dict())
    x = rng.standard_normal(shape) * 2
    tx = torch.tensor(x, requires_grad=True)
    t_out = theirs(tx)
    out = ours(x)
    dout = rng.standard_normal(out.shape)
    t_out.backward(torch.tensor(dout))
    backward = [_rel_err(ours.backward(dout), tx.grad)]
    t_params = dict(theirs.named_parameters())
    backward += [_rel_err(grad, t_params[name].grad) for name, _, grad in ours.named_parameters()]
    t_buffers = dict(theirs.named_buffers())
    backward += [_rel_err(value, t_buffers[name]) for name, value in ours.named_buffers()]
    case = ", ".join(part for part in (f"input {tuple(shape)}", ours.extra_repr()) if part)
    return _row(op, case, _rel_err(out, t_out), max(backward))


def _layer_cases(rng, torch):
    """(op, scratch module, torch module, input shape) on random geometry."""
    nn = torch.nn
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    n = r(1, 4)
    groups = r(1, 3)
    cin, cout = groups * r(1, 3), groups * r(1, 3)
    k, s, p, d = (r(1, 4), r(1, 4)), (r(1, 3), r(1, 3)), (r(0, 2), r(0, 2)), (r(1, 2), r(1, 2))
    h = max(r(4, 12), d[0] * (k[0] - 1) + 1)  # at least as large as every kernel
    w = max(r(4, 12), d[1] * (k[1] - 1) + 1)
    conv = dict(kernel_size=k, stride=s, padding=p, dilation=d, groups=groups)
    yield "Conv2d", L.Conv2d(cin, cout, **conv), nn.Conv2d(cin, cout, **conv), (n, cin, h, w)
    op = tuple(r(0, max(si, di) - 1) for si, di in zip(s, d))
    yield ("ConvTranspose2d", L.ConvTranspose2d(cin, cout, output_padding=op, **conv),
           nn.ConvTranspose2d(cin, cout, output_padding=op, **conv), (n, cin, h, w))
    features, outputs = r(1, 20), r(1, 10)
    yield "Linear", L.Linear(features, outputs), nn.Linear(features, outputs), (n, features)
    pk = (r(1, 4), r(1, 4))
    pool = dict(kernel_size=pk, stride=(r(1, 3), r(1, 3)), padding=(r(0, pk[0] // 2),
                                                                    r(0, pk[1] // 2)))
    c = r(1, 5)
    yield "MaxPool2d", L.MaxPool2d(**pool), nn.MaxPool2d(**pool), (n, c, h, w)
    include = bool(r(0, 1))
    yield ("AvgPool2d", L.AvgPool2d(count_include_pad=include, **pool),
           nn.AvgPool2d(count_include_pad=include, **pool), (n, c, h, w))
    size = (r(1, h), r(1, w))
    yield "AdaptiveAvgPool2d", L.AdaptiveAvgPool2d(size), nn.AdaptiveAvgPool2d(size), (n, c, h, w)
    yield "BatchNorm1d", L.BatchNorm1d(c), nn.BatchNorm1d(c), (n + 2, c)
    yield "BatchNorm2d", L.BatchNorm2d(c), nn.BatchNorm2d(c), (n + 1, c, h, w)
    slope = float(rng.uniform(0.0, 0.5))
    for name, ours, theirs in (("ReLU", L.ReLU(), nn.ReLU()),
                               ("LeakyReLU", L.LeakyReLU(slope), nn.LeakyReLU(slope)),
                               ("Sigmoid", L.Sigmoid(), nn.Sigmoid()),
                               ("Tanh", L.Tanh(), nn.Tanh()),
                               ("Flatten", L.Flatten(), nn.Flatten())):
        yield name, ours, theirs, (n, c, h, w)
    yield from _course_op_cases(rng, torch, n, c, h, w)
    stride = r(1, 2)
    yield ("BasicBlock", L.BasicBlock(c, c * stride, stride),
           torch_basic_block(c, c * stride, stride), (n + 1, c, h, w))


def _course_op_cases(rng, torch, n, c, h, w):
    """The ops CNN courses add (issue 10 item 2), with their edge cases."""
    nn = torch.nn
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    for approximate in ("none", "tanh"):
        yield ("GELU", L.GELU(approximate), nn.GELU(approximate), (n, c, h, w))
    yield "SiLU", L.SiLU(), nn.SiLU(), (n, c, h, w)
    dim = r(-4, 3)
    yield "Softmax", L.Softmax(dim), nn.Softmax(dim), (n, c, h, w)
    yield "LogSoftmax", L.LogSoftmax(dim), nn.LogSoftmax(dim), (n, c, h, w)
    yield "LogSoftmax", L.LogSoftmax(1), nn.LogSoftmax(1), (n + 1, r(2, 10))  # logits (N, K)
    # LayerNorm over the last one, two and three dims, and without the affine parameters
    for dims, affine in ((1, True), (2, True), (3, True), (int(rng.integers(1, 4)), False)):
        shape = (c, h, w)[3 - dims:]
        yield ("LayerNorm", L.LayerNorm(shape, elementwise_affine=affine),
               nn.LayerNorm(shape, elementwise_affine=affine), (n, c, h, w))
    channels = c * r(1, 3) * 2
    divisors = [g for g in range(1, channels + 1) if channels % g == 0]
    # one group (LayerNorm over C, H, W), a channel per group (InstanceNorm) and one between
    for groups, affine in ((1, True), (channels, True), (int(rng.choice(divisors)), bool(r(0, 1)))):
        yield ("GroupNorm", L.GroupNorm(groups, channels, affine=affine),
               nn.GroupNorm(groups, channels, affine=affine), (n, channels, h, w))
    odd_h, odd_w = 2 * r(2, 6) + 1, 2 * r(2, 6) + 1  # bins of unequal sizes that overlap
    size = (r(1, odd_h), r(2, odd_w))
    yield ("AdaptiveMaxPool2d", L.AdaptiveMaxPool2d(size), nn.AdaptiveMaxPool2d(size),
           (n, c, odd_h, odd_w))
    p = float(rng.uniform(0.1, 0.7))
    yield "Dropout2d", L.Dropout2d(p).eval(), nn.Dropout2d(p).eval(), (n, c, h, w)  # identity
    scale = r(2, 3)
    yield ("Upsample", L.Upsample(scale_factor=scale, mode="nearest"),
           nn.Upsample(scale_factor=scale, mode="nearest"), (n, c, h, w))
    out_size = (r(1, 2 * h), r(1, 2 * w))
    yield ("Upsample", L.Upsample(size=out_size, mode="nearest"),
           nn.Upsample(size=out_size, mode="nearest"), (n, c, h, w))
    for align in (False, True):
        yield ("Upsample", L.Upsample(size=out_size, mode="bilinear", align_corners=align),
               nn.Upsample(size=out_size, mode="bilinear", align_corners=align), (n, c, h, w))


def torch_basic_block(in_channels, out_channels, stride=1):
    """The torch twin of `cnnlab.scratch.BasicBlock`: the block the torch engine builds."""
    from cnnlab.engines.torch_engine import BasicBlock

    return BasicBlock(in_channels, out_channels, stride)


def _check_dropout(rng) -> dict:
    """Dropout has no torch twin with the same mask: check the inverted-dropout definition."""
    p = float(rng.uniform(0.1, 0.7))
    shape = (int(rng.integers(2, 6)), int(rng.integers(20, 60)))
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    layer = L.Dropout(p)
    out = layer(x)
    kept = out != 0
    forward_err = _rel_err(out, np.where(kept, x / (1 - p), 0.0))
    backward_err = _rel_err(layer.backward(dout), np.where(kept, dout / (1 - p), 0.0))
    return _row("Dropout", f"input {shape}, p={p:.3f}", forward_err, backward_err)


def _check_dropout2d(rng) -> dict:
    """Dropout2d in training: the mask read back from the output must zero whole channels, and
    output and gradient must be the channel-wise inverted-dropout definition with that mask."""
    p = float(rng.uniform(0.2, 0.7))
    shape = (int(rng.integers(2, 5)), int(rng.integers(8, 20)), int(rng.integers(2, 6)),
             int(rng.integers(2, 6)))
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    layer = L.Dropout2d(p)
    out = layer(x)
    kept = (out != 0).any(axis=(2, 3), keepdims=True)  # one draw per (sample, channel)
    forward_err = _rel_err(out, np.where(kept, x / (1 - p), 0.0))
    backward_err = _rel_err(layer.backward(dout), np.where(kept, dout / (1 - p), 0.0))
    if not ((out != 0) == np.broadcast_to(kept, shape)).all():
        forward_err = float("inf")  # an element was dropped alone, not with its channel
    return _row("Dropout2d", f"input {shape}, p={p:.3f}, train (mask from the output)",
                forward_err, backward_err)


def _check_roi_pool(rng) -> dict:
    n, c, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(4, 10)), \
        int(rng.integers(4, 10))
    size, scale = (int(rng.integers(1, 4)), int(rng.integers(1, 4))), float(rng.uniform(0.3, 1))
    k = int(rng.integers(1, 5))
    corners = np.sort(rng.uniform(-1, max(h, w) / scale, (k, 2, 2)), axis=1)
    rois = np.column_stack([rng.integers(0, n, k), corners[:, 0, 0], corners[:, 0, 1],
                            corners[:, 1, 0], corners[:, 1, 1]])
    x = rng.standard_normal((n, c, h, w))
    layer = L.RoIPool(size, scale)
    out = layer(x, rois)
    ref_out, ref_cache = reference.roi_pool_forward(x, rois, size, scale)
    dout = rng.standard_normal(out.shape)
    backward_err = _rel_err(layer.backward(dout), reference.roi_pool_backward(dout, ref_cache))
    return _row("RoIPool", f"input {(n, c, h, w)}, {k} RoIs, output_size={size}, "
                f"spatial_scale={scale:.3f}", _rel_err(out, ref_out), backward_err)


def _check_losses(rng, torch) -> list[dict]:
    try:
        from cnnlab.scratch import losses
    except ImportError:  # written separately; the table says so instead of failing
        return [{"op": "losses", "case": "cnnlab.scratch.losses is not available", "passed": True,
                 "forward_err": float("nan"), "backward_err": float("nan"), "skipped": True}]
    n, k = int(rng.integers(1, 9)), int(rng.integers(2, 11))
    logits, target = rng.standard_normal((n, k)) * 3, rng.integers(0, k, n)
    smoothing = float(rng.uniform(0, 0.3))
    loss = losses.CrossEntropyLoss(label_smoothing=smoothing)
    value = loss.forward(logits, target)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(target),
                                               label_smoothing=smoothing)
    t_loss.backward()
    rows = [_row("CrossEntropyLoss", f"logits {(n, k)}, label_smoothing={smoothing:.3f}",
                 _rel_err(value, t_loss), _rel_err(loss.backward(), t_logits.grad))]
    output, goal = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    mse = losses.MSELoss()
    value = mse.forward(output, goal)
    t_output = torch.tensor(output, requires_grad=True)
    t_loss = torch.nn.functional.mse_loss(t_output, torch.tensor(goal))
    t_loss.backward()
    rows.append(_row("MSELoss", f"output {(n, k)}", _rel_err(value, t_loss),
                     _rel_err(mse.backward(), t_output.grad)))
    return rows + _check_course_losses(rng, torch, losses, n, k)


def _loss_row(op, case, ours, their_fn, output, target, torch) -> dict:
    """One loss forward/backward against torch's functional form; a `none` reduction's
    per-element losses get a random upstream gradient."""
    value = ours.forward(output, target)
    t_output = torch.tensor(output, requires_grad=True)
    t_value = their_fn(t_output, torch.tensor(target))
    dloss = np.random.default_rng(len(case)).standard_normal(np.shape(value)) if np.ndim(value) else 1.0
    t_value.backward(torch.tensor(dloss))
    return _row(op, case, _rel_err(value, t_value), _rel_err(ours.backward(dloss), t_output.grad))


def _check_course_losses(rng, torch, losses, n, k) -> list[dict]:
    """NLLLoss and BCEWithLogitsLoss in every reduction, with class weights, ignore_index
    (NLL, with a target that uses it) and pos_weight (BCE)."""
    functional = torch.nn.functional
    rows = []
    log_probs = functional.log_softmax(torch.tensor(rng.standard_normal((n + 1, k)) * 2), 1).numpy()
    target = rng.integers(0, k, n + 1)
    # the ignored class 0 occurs, but not everywhere: an all-ignored mean is NaN (in torch too)
    target[0], target[1] = 0, int(rng.integers(1, k))
    weight = rng.uniform(0.2, 2.0, k)
    for reduction in ("mean", "sum", "none"):
        for use_weight, ignore in ((False, -100), (True, 0)):
            kwargs = dict(reduction=reduction, ignore_index=ignore,
                          weight=weight if use_weight else None)
            t_kwargs = dict(kwargs, weight=torch.tensor(weight) if use_weight else None)
            case = (f"log-probs {log_probs.shape}, reduction={reduction}"
                    f"{', class weight, ignore_index=0' if use_weight else ''}")
            rows.append(_loss_row("NLLLoss", case, losses.NLLLoss(**kwargs),
                                  lambda o, t, kw=t_kwargs: functional.nll_loss(o, t, **kw),
                                  log_probs, target, torch))
    logits = rng.standard_normal((n, k)) * 3
    goal = rng.uniform(0, 1, (n, k))  # soft targets, as torch allows
    element_weight, pos_weight = rng.uniform(0.2, 2.0, (1, k)), rng.uniform(0.2, 3.0, k)
    for reduction in ("mean", "sum", "none"):
        for with_weights in (False, True):
            kwargs = dict(reduction=reduction, weight=element_weight if with_weights else None,
                          pos_weight=pos_weight if with_weights else None)
            t_kwargs = {key: torch.tensor(v) if isinstance(v, np.ndarray) else v
                        for key, v in kwargs.items()}
            case = (f"logits {logits.shape}, reduction={reduction}"
                    f"{', weight (1, C), pos_weight (C,)' if with_weights else ''}")
            rows.append(_loss_row(
                "BCEWithLogitsLoss", case, losses.BCEWithLogitsLoss(**kwargs),
                lambda o, t, kw=t_kwargs: functional.binary_cross_entropy_with_logits(o, t, **kw),
                logits, goal, torch))
    return rows


def run_checks(seed: int | None = None) -> list[dict]:
    """Check every op once on random shapes drawn from `seed` (fresh entropy when None).

    Returns rows {op, case, forward_err, backward_err, passed}; a row with `skipped` marks a
    check that could not run (its `case` says why).
    """
    import torch

    rng = np.random.default_rng(seed)
    saved_rng = scratch_random.get_state()
    scratch_random.seed(int(rng.integers(2**31)))
    try:
        rows = [_compare(op, ours, theirs, shape, rng, torch)
                for op, ours, theirs, shape in _layer_cases(rng, torch)]
        rows += [_check_dropout(rng), _check_dropout2d(rng), _check_roi_pool(rng)]
        rows += _check_losses(rng, torch)
    finally:
        scratch_random.set_state(saved_rng)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table (op, forward max error, backward max error, result, case)."""
    header = ("op", "forward max err", "backward max err", "result", "case")
    lines = [[header[0], header[1], header[2], header[3], header[4]]]
    for row in rows:
        result = "skipped" if row.get("skipped") else ("pass" if row["passed"] else "FAIL")
        lines.append([row["op"], f"{row['forward_err']:.2e}", f"{row['backward_err']:.2e}",
                      result, row.get("case", "")])
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    text = []
    for i, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [line[j].rjust(widths[j]) for j in (1, 2)]
        text.append("  ".join(cells + [line[3].ljust(widths[3]), line[4]]).rstrip())
        if i == 0:
            text.append("  ".join("-" * width for width in widths) + "  " + "-" * 4)
    failed = sum(1 for row in rows if not row["passed"])
    text.append("")
    text.append(f"{len(rows) - failed}/{len(rows)} checks passed "
                f"(relative error < {TOLERANCE:g} in float64 against PyTorch)")
    return "\n".join(text)
