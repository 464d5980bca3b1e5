"""Helpers shared by the scratch engine's parity tests: torch copies and error measures."""

from __future__ import annotations

import numpy as np
import torch

TOLERANCE = {np.float64: 1e-7, np.float32: 1e-4}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def rel_err(ours, theirs) -> float:
    """max |ours - theirs| / max |theirs| (absolute when theirs is all zero)."""
    if hasattr(theirs, "detach"):
        theirs = theirs.detach().numpy()
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = np.abs(theirs).max(initial=0.0)
    diff = np.abs(ours - theirs).max(initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def tensor(array, requires_grad=True) -> torch.Tensor:
    # np.array, not np.ascontiguousarray: the latter turns a 0-d array into a 1-d one
    return torch.tensor(np.array(array, order="C"), requires_grad=requires_grad)


def compare_module(ours, theirs, x, dtype, rng, extra_inputs=()):
    """Run the same input and output gradient through a scratch and a torch module (same
    weights) and return {what: relative error} for output, input grad, every parameter grad
    and every buffer."""
    ours.load_state_dict(theirs.state_dict())
    ours.zero_grad()
    theirs.zero_grad(set_to_none=True)
    x = np.asarray(x, dtype)
    tx = tensor(x)
    t_out = theirs(tx, *extra_inputs)
    out = ours(x, *[np.asarray(e.detach().numpy() if hasattr(e, "detach") else e)
                    for e in extra_inputs])
    dout = rng.standard_normal(out.shape).astype(dtype)
    t_out.backward(torch.tensor(dout))
    dx = ours.backward(dout)
    errors = {"output": rel_err(out, t_out), "input_grad": rel_err(dx, tx.grad)}
    assert out.dtype == dtype and dx.dtype == dtype, (out.dtype, dx.dtype)
    t_params = dict(theirs.named_parameters())
    for name, _, grad in ours.named_parameters():
        errors[name] = rel_err(grad, t_params[name].grad)
    t_buffers = dict(theirs.named_buffers())
    for name, value in ours.named_buffers():
        errors[name] = rel_err(value, t_buffers[name])
    return errors
