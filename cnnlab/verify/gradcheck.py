"""Central-difference gradient checks for kernels and modules (float64).

The analytic gradient of L = sum(output * R), for a fixed random R, is what `backward(R)`
returns; the numerical one perturbs each checked entry by +-eps and takes
(L(+eps) - L(-eps)) / (2 eps). Dropout masks are made identical across evaluations by
restoring the scratch generator's state before every forward.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cnnlab.errors import ModelError
from cnnlab.scratch import random as scratch_random


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(max |a|, max |n|), 0 when both are zero."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    if scale == 0:
        return 0.0
    return float(np.abs(analytic - numeric).max() / scale)


def _entries(size: int, max_entries: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_entries is None or size <= max_entries:
        return np.arange(size)
    return rng.choice(size, max_entries, replace=False)


def numerical_gradient(loss: Callable[[], float], array: np.ndarray, eps: float = 1e-6,
                       entries: np.ndarray | None = None) -> np.ndarray:
    """d loss / d array at the flat `entries` (all by default), by central differences.

    `array` is perturbed in place and restored; `loss()` must read it. Returns an array of
    the same shape (unchecked entries are 0).
    """
    if array.dtype != np.float64:
        raise ModelError(f"gradient checks need float64 arrays; got {array.dtype}.")
    if not array.flags.c_contiguous:
        raise ModelError("numerical_gradient needs a C-contiguous array to perturb in place.")
    flat = array.reshape(-1)  # a view of `array`
    grad = np.zeros(array.size)
    for index in (range(array.size) if entries is None else entries):
        original = flat[index]
        flat[index] = original + eps
        upper = loss()
        flat[index] = original - eps
        lower = loss()
        flat[index] = original
        grad[index] = (upper - lower) / (2 * eps)
    return grad.reshape(array.shape)


def check_module(module, *inputs, eps: float = 1e-6, max_entries: int | None = 40,
                 seed: int = 0) -> dict[str, float]:
    """Relative errors between backward and central differences for a float64 module.

    inputs: the forward's arguments; the first is differentiated (the rest, e.g. RoIPool's
    boxes, are held fixed). Returns {"input": err, "<param name>": err, ...}; at most
    `max_entries` random entries of each array are checked.
    """
    module.to(np.float64)
    x = np.ascontiguousarray(np.asarray(inputs[0], dtype=np.float64))
    rest = inputs[1:]
    # a stream of its own: R must not coincide with an input drawn from default_rng(seed)
    rng = np.random.default_rng([seed, 0x5EED])
    rng_state = scratch_random.get_state()

    def forward():
        scratch_random.set_state(rng_state)  # the same dropout mask every time
        return module(x, *rest)

    out = forward()
    weights = rng.standard_normal(np.shape(out))

    def loss() -> float:
        return float(np.sum(forward() * weights))

    module.zero_grad()
    forward()
    grad_x = module.backward(weights)
    analytic = {"input": grad_x}
    analytic.update({name: grad for name, _, grad in module.named_parameters()})
    values = {"input": x}
    values.update({name: value for name, value, _ in module.named_parameters()})
    errors = _compare(loss, values, analytic, eps, max_entries, rng)
    scratch_random.set_state(rng_state)
    return errors


def check_function(forward: Callable, backward: Callable, arrays: dict[str, np.ndarray],
                   eps: float = 1e-6, max_entries: int | None = 40, seed: int = 0
                   ) -> dict[str, float]:
    """Gradient check of a pure kernel pair.

    forward(**arrays) -> (out, cache); backward(dout, cache) -> dict name -> gradient for
    every array in `arrays` (float64, contiguous). Returns {name: relative error}.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    out, cache = forward(**arrays)
    weights = rng.standard_normal(np.shape(out))
    analytic = backward(weights, cache)

    def loss() -> float:
        return float(np.sum(forward(**arrays)[0] * weights))

    return _compare(loss, arrays, analytic, eps, max_entries, rng)


def _compare(loss: Callable, values: dict, analytic: dict, eps: float, max_entries, rng
             ) -> dict[str, float]:
    """Relative error between analytic gradients and central differences of `loss`, on a
    random sample of each array's entries: {name: error}."""
    errors = {}
    for name, value in values.items():
        entries = _entries(value.size, max_entries, rng)
        numeric = numerical_gradient(loss, value, eps, entries)
        got = np.asarray(analytic[name], np.float64).reshape(-1)[entries]
        errors[name] = relative_error(got, numeric.reshape(-1)[entries])
    return errors
