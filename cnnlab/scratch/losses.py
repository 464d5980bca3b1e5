"""Losses for the scratch engine: pure kernels plus thin stateful wrappers (torch's semantics).

`cross_entropy_forward(logits, target, label_smoothing) -> (loss, cache)` and
`cross_entropy_backward(dloss, cache) -> dlogits` follow the `*_forward` / `*_backward`
convention of `cnnlab.scratch.functional`; `CrossEntropyLoss` and `MSELoss` keep the cache
between `forward(output, target) -> float` and `backward() -> grad`.

Cross-entropy with label smoothing eps over K classes, as `torch.nn.CrossEntropyLoss`:
the target distribution is q = (1 - eps) * onehot(y) + eps / K, the loss is the batch mean of
-sum_k q_k log softmax(z)_k, and its gradient is (softmax(z) - q) / N.
"""

from __future__ import annotations

import numpy as np

from cnnlab.errors import ModelError

__all__ = [
    "cross_entropy_forward",
    "cross_entropy_backward",
    "mse_forward",
    "mse_backward",
    "num_correct",
    "log_softmax",
    "CrossEntropyLoss",
    "MSELoss",
]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (N, K) logits, stable for large values (max subtracted)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def _check_smoothing(label_smoothing: float) -> float:
    value = float(label_smoothing)
    if not 0.0 <= value <= 1.0:
        raise ModelError(f"label_smoothing must lie in [0, 1]; got {label_smoothing!r}.")
    return value


def _target_distribution(target: np.ndarray, num_classes: int, dtype) -> np.ndarray:
    """(N, K) probabilities from class indices (N,) or from probabilities (N, K) as given."""
    if target.ndim == 2:
        return target.astype(dtype, copy=False)
    onehot = np.zeros((target.shape[0], num_classes), dtype=dtype)
    onehot[np.arange(target.shape[0]), target] = 1
    return onehot


def _check_ce_inputs(logits: np.ndarray, target: np.ndarray) -> None:
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ModelError(
            "CrossEntropyLoss expects logits of shape (N, K) with N, K >= 1; got shape "
            f"{logits.shape}."
        )
    n, k = logits.shape
    if target.ndim == 1:
        if target.shape[0] != n or target.dtype.kind not in "iu":
            raise ModelError(
                f"CrossEntropyLoss got logits {logits.shape} and class-index targets of shape "
                f"{target.shape}, dtype {target.dtype}; targets must be {n} integers."
            )
        bad = target[(target < 0) | (target >= k)]
        if bad.size:
            raise ModelError(
                f"CrossEntropyLoss got target class(es) {sorted(set(bad.tolist()))[:10]} outside "
                f"[0, {k}) for logits of shape {logits.shape}; the model has {k} outputs."
            )
    elif target.shape != logits.shape or target.dtype.kind != "f":
        raise ModelError(
            f"CrossEntropyLoss got logits {logits.shape} and targets of shape {target.shape}, "
            f"dtype {target.dtype}; targets must be class indices (N,) or probabilities of "
            "the logits' shape."
        )


def cross_entropy_forward(logits: np.ndarray, target: np.ndarray,
                          label_smoothing: float = 0.0) -> tuple[float, tuple]:
    """Mean cross-entropy of `logits` (N, K) against `target`: int class indices (N,) or
    float probabilities (N, K). Returns (loss as float, cache for the backward)."""
    logits, target = np.asarray(logits), np.asarray(target)
    _check_ce_inputs(logits, target)
    eps = _check_smoothing(label_smoothing)
    n, k = logits.shape
    log_probs = log_softmax(logits)
    if target.ndim == 1:
        nll = -log_probs[np.arange(n), target]
        if eps:
            # (1 - eps) * NLL of the true class + eps * mean over classes of -log p
            nll = (1.0 - eps) * nll - eps * log_probs.mean(axis=1)
        loss = float(nll.mean())
    else:
        q = target if not eps else target * (1.0 - eps) + eps / k
        loss = float(-(q * log_probs).sum(axis=1).mean())
    return loss, (log_probs, target, eps)


def cross_entropy_backward(dloss: float, cache: tuple) -> np.ndarray:
    """Gradient w.r.t. the logits, (N, K): dloss * (softmax - q) / N."""
    log_probs, target, eps = cache
    n, k = log_probs.shape
    grad = np.exp(log_probs)
    if target.ndim == 1 and not eps:
        grad[np.arange(n), target] -= 1  # the common case, without building one-hot targets
    else:
        q = _target_distribution(target, k, grad.dtype)
        grad -= q if not eps else q * (1.0 - eps) + eps / k
    grad *= dloss / n
    return grad


def num_correct(logits: np.ndarray, target: np.ndarray) -> int:
    """How many rows of (N, K) logits have their maximum at the target class (N,)."""
    return int(np.count_nonzero(logits.argmax(axis=1) == target))


def mse_forward(output: np.ndarray, target: np.ndarray) -> tuple[float, tuple]:
    """Mean squared error over all elements; `output` and `target` of the same shape."""
    output, target = np.asarray(output), np.asarray(target)
    if output.shape != target.shape:
        raise ModelError(
            f"MSELoss needs output and target of the same shape; got output {output.shape} and "
            f"target {target.shape}."
        )
    if output.size == 0:
        raise ModelError(f"MSELoss got empty arrays (shape {output.shape}).")
    diff = output - target
    return float(np.mean(diff * diff)), (diff,)


def mse_backward(dloss: float, cache: tuple) -> np.ndarray:
    """Gradient w.r.t. the output: dloss * 2 * (output - target) / numel."""
    (diff,) = cache
    return diff * (2.0 * dloss / diff.size)


class _Loss:
    """Holds the cache between `forward` and `backward`."""

    _cache: tuple | None = None

    def __call__(self, output, target) -> float:
        return self.forward(output, target)

    def _require_cache(self) -> tuple:
        if self._cache is None:
            raise ModelError(
                f"{type(self).__name__}.backward() was called before forward(); compute the "
                "loss with forward(output, target) first."
            )
        return self._cache


class CrossEntropyLoss(_Loss):
    """Mean cross-entropy over the batch, with torch's label smoothing."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        """output: logits (N, K); target: class indices (N,) or probabilities (N, K)."""
        loss, self._cache = cross_entropy_forward(output, target, self.label_smoothing)
        return loss

    def backward(self, dloss: float = 1.0) -> np.ndarray:
        """d loss / d logits, (N, K), in the logits' dtype."""
        return cross_entropy_backward(dloss, self._require_cache())

    def __repr__(self) -> str:
        return f"CrossEntropyLoss(label_smoothing={self.label_smoothing})"


class MSELoss(_Loss):
    """Mean squared error over all elements."""

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        loss, self._cache = mse_forward(output, target)
        return loss

    def backward(self, dloss: float = 1.0) -> np.ndarray:
        """d loss / d output, shaped like the output."""
        return mse_backward(dloss, self._require_cache())

    def __repr__(self) -> str:
        return "MSELoss()"
