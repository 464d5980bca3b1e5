"""Losses for the scratch engine: pure kernels plus thin stateful wrappers (torch's semantics).

Kernels follow the `*_forward` / `*_backward` convention of `cnnlab.scratch.functional`:
`cross_entropy_forward(logits, target, ...) -> (loss, cache)` and
`cross_entropy_backward(dloss, cache) -> dlogits`; likewise `nll_loss_*`, `mse_*` and
`bce_with_logits_*`. The classes (`CrossEntropyLoss`, `NLLLoss`, `MSELoss`,
`BCEWithLogitsLoss`) take torch's constructor arguments and keep the cache between
`forward(output, target)` and `backward(dloss=1.0)`. `forward` returns a float for
reduction 'mean' and 'sum', and an array for 'none' (then `backward` takes an array of that
shape, or a number for all-ones-times-that).

Cross-entropy as `torch.nn.CrossEntropyLoss`, with class dim 1 of logits (N, C, d1, ...)
(or 0 of an unbatched (C,)), log-probabilities lp = log_softmax(z), class weights w (ones
when not given) and label smoothing eps:
- class-index targets y (N, d1, ...), positions equal to ignore_index dropped (mask m):
  l_i = m_i * [(1 - eps) * w[y_i] * (-lp[i, y_i]) + eps / C * sum_c w_c * (-lp[i, c])];
  'mean' divides the sum by sum_i m_i * w[y_i] (torch uses the same denominator for the
  smoothing term, also when weights are given); 'sum' adds, 'none' returns l.
- probability targets t of the logits' shape: q = (1 - eps) * t + eps / C,
  l_i = -sum_c w_c * q[i, c] * lp[i, c]; 'mean' divides by the number of positions
  (N * d1 * ...), not by weights. ignore_index must be negative (torch's rule).
"""

from __future__ import annotations

import warnings

import numpy as np

from cnnlab.errors import ModelError

__all__ = [
    "cross_entropy_forward",
    "cross_entropy_backward",
    "nll_loss_forward",
    "nll_loss_backward",
    "mse_forward",
    "mse_backward",
    "bce_with_logits_forward",
    "bce_with_logits_backward",
    "num_correct",
    "log_softmax",
    "CrossEntropyLoss",
    "NLLLoss",
    "MSELoss",
    "BCEWithLogitsLoss",
]

REDUCTIONS = ("none", "mean", "sum")


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


def _check_reduction(reduction: str, loss: str) -> str:
    if reduction not in REDUCTIONS:
        raise ModelError(f"{loss}: reduction must be one of {list(REDUCTIONS)}; got "
                         f"{reduction!r}.")
    return reduction


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """torch's mapping of the deprecated size_average/reduce flags onto `reduction`."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _as_array(value):
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _to_rows(x: np.ndarray) -> np.ndarray:
    """(C,) -> (1, C); (N, C) as is; (N, C, d1, ...) -> (N*d1*..., C), classes last."""
    if x.ndim == 1:
        return x[None]
    if x.ndim == 2:
        return x
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _from_rows(rows: np.ndarray, shape: tuple) -> np.ndarray:
    """The inverse of `_to_rows` for an array of the logits' `shape`."""
    if len(shape) == 1:
        return rows[0]
    if len(shape) == 2:
        return rows
    moved = rows.reshape((shape[0],) + shape[2:] + (shape[1],))
    return np.ascontiguousarray(np.moveaxis(moved, -1, 1))


def _loss_shape(shape: tuple) -> tuple:
    """The per-position shape: the logits' shape without the class dim."""
    return () if len(shape) == 1 else (shape[0],) + shape[2:]


def _check_class_inputs(loss: str, logits, target, weight, ignore_index, what="logits"):
    """Validate (N, C, ...) / (C,) inputs against index or probability targets; returns
    whether the targets are probabilities."""
    if logits.ndim == 0:
        raise ModelError(f"{loss} expects {what} of shape (N, C, ...) or (C,); got shape "
                         f"{logits.shape}.")
    c = logits.shape[0 if logits.ndim == 1 else 1]
    if weight is not None and weight.shape != (c,):
        raise ModelError(f"{loss} got a class weight of shape {weight.shape}; it needs one "
                         f"weight per class, shape ({c},).")
    if target.shape == logits.shape and target.dtype.kind == "f":
        return True
    expected = _loss_shape(logits.shape)
    if target.shape != expected or target.dtype.kind not in "iu":
        raise ModelError(
            f"{loss} got {what} {logits.shape} and targets of shape {target.shape}, dtype "
            f"{target.dtype}; targets must be class indices of shape {expected} (integers) "
            f"or probabilities of the {what}' shape."
        )
    valid = target[target != ignore_index]
    bad = valid[(valid < 0) | (valid >= c)]
    if bad.size:
        raise ModelError(
            f"{loss} got target class(es) {sorted(set(bad.tolist()))[:10]} outside [0, {c}) "
            f"for {what} of shape {logits.shape}; the model has {c} outputs "
            f"(ignore_index={ignore_index})."
        )
    return False


def _reduce(per_position: np.ndarray, reduction: str, denominator):
    if reduction == "none":
        return per_position
    total = per_position.sum()
    if reduction == "sum":
        return float(total)
    with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as torch
        return float(total / denominator)


def _class_loss_forward(log_probs_rows, shape, target, weight, ignore_index,
                        reduction, eps, dtype):
    """The shared core of cross-entropy and NLL on (M, C) log-probabilities."""
    m, c = log_probs_rows.shape
    w = np.ones(c, dtype) if weight is None else weight.astype(dtype, copy=False)
    y = target.reshape(-1)
    keep = y != ignore_index
    y_safe = np.where(keep, y, 0)
    w_y = np.where(keep, w[y_safe], 0).astype(dtype)
    per = w_y * -log_probs_rows[np.arange(m), y_safe]
    if eps:
        smooth = -(log_probs_rows * w).sum(axis=1) * keep
        per = (1.0 - eps) * per + (eps / c) * smooth
    denominator = w_y.sum()
    value = _reduce(per.reshape(_loss_shape(shape)), reduction, denominator)
    return value, (y_safe, keep, w, w_y, denominator)


def _row_scale(dloss, reduction, shape, denominator, dtype):
    """d loss / d per-position loss as an (M,) array."""
    if reduction == "none":
        return np.broadcast_to(np.asarray(dloss, dtype), _loss_shape(shape)).reshape(-1)
    if reduction == "sum":
        return np.asarray(dloss, dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(dloss / denominator, dtype)


# --------------------------------------------------------------------------------------------
# cross-entropy


def cross_entropy_forward(logits: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0,
                          weight=None, ignore_index: int = -100, reduction: str = "mean"):
    """Cross-entropy of `logits` (N, C, d1, ...) or (C,) against class indices (N, d1, ...) /
    () or probabilities of the logits' shape (formulas in the module docstring).
    Returns (loss: float, or an array of shape (N, d1, ...) for reduction='none'; cache)."""
    logits, target, weight = np.asarray(logits), np.asarray(target), _as_array(weight)
    eps = _check_smoothing(label_smoothing)
    _check_reduction(reduction, "CrossEntropyLoss")
    probabilities = _check_class_inputs("CrossEntropyLoss", logits, target, weight, ignore_index)
    if (logits.ndim == 2 and logits.shape[0] and not probabilities and weight is None
            and reduction == "mean" and not np.any(target == ignore_index)):
        return _cross_entropy_plain(logits, target, eps)
    if probabilities and ignore_index >= 0:
        raise ModelError(f"CrossEntropyLoss: ignore_index={ignore_index} cannot be used with "
                         "probability targets (torch's rule); leave it at its default.")
    shape, dtype = logits.shape, logits.dtype
    log_probs = log_softmax(_to_rows(logits))
    c = log_probs.shape[1]
    if probabilities:
        q = _to_rows(target).astype(dtype, copy=False)
        if eps:
            q = q * (1.0 - eps) + eps / c
        a = q if weight is None else q * weight.astype(dtype, copy=False)
        per = -(a * log_probs).sum(axis=1)
        denominator = per.size
        value = _reduce(per.reshape(_loss_shape(shape)), reduction, denominator)
        return value, ("probabilities", log_probs, a, shape, reduction, denominator)
    value, parts = _class_loss_forward(log_probs, shape, target, weight,
                                       ignore_index, reduction, eps, dtype)
    return value, ("indices", log_probs, parts, shape, reduction, eps)


def _cross_entropy_plain(logits, target, eps):
    """The training path: (N, K) logits, class indices, no weights, mean over the batch."""
    n, k = logits.shape
    log_probs = log_softmax(logits)
    nll = -log_probs[np.arange(n), target]
    if eps:
        # (1 - eps) * NLL of the true class + eps * mean over classes of -log p
        nll = (1.0 - eps) * nll - eps * log_probs.mean(axis=1)
    return float(nll.mean()), ("plain", log_probs, target, eps)


def cross_entropy_backward(dloss, cache) -> np.ndarray:
    """Gradient w.r.t. the logits, shaped like them.

    Index targets: dz_i = s_i * m_i * [(1 - eps) * w[y_i] * (p_i - onehot(y_i)) +
    eps / C * (sum(w) * p_i - w)], with s_i = d loss / d l_i; probability targets with
    a = w * q: dz_i = s_i * (sum(a_i) * p_i - a_i).
    """
    kind, log_probs = cache[0], cache[1]
    if kind == "plain":
        _, _, target, eps = cache
        n, k = log_probs.shape
        grad = np.exp(log_probs)
        if not eps:
            grad[np.arange(n), target] -= 1  # the common case, without building one-hot rows
        else:
            grad -= eps / k
            grad[np.arange(n), target] -= 1.0 - eps
        grad *= dloss / n
        return grad
    dtype = log_probs.dtype
    probs = np.exp(log_probs)
    if kind == "probabilities":
        _, _, a, shape, reduction, denominator = cache
        grad = a.sum(axis=1, keepdims=True) * probs - a
    else:
        _, _, (y, keep, w, w_y, denominator), shape, reduction, eps = cache
        m, c = probs.shape
        grad = probs * w_y[:, None]
        grad[np.arange(m), y] -= w_y
        if eps:
            grad *= 1.0 - eps
            grad += (eps / c) * (w.sum() * probs - w) * keep[:, None]
    scale = _row_scale(dloss, reduction, shape, denominator, dtype)
    with np.errstate(invalid="ignore"):  # every position ignored: nan, as the loss
        grad *= scale.reshape(-1, 1) if reduction == "none" else scale
    return _from_rows(grad.astype(dtype, copy=False), shape)


# --------------------------------------------------------------------------------------------
# negative log-likelihood


def nll_loss_forward(log_probs: np.ndarray, target: np.ndarray, weight=None,
                     ignore_index: int = -100, reduction: str = "mean"):
    """torch.nn.NLLLoss: l_i = -w[y_i] * input[i, y_i] over log-probabilities (N, C, d1, ...)
    or (C,), positions with y == ignore_index dropped; 'mean' divides by sum of w[y_i]."""
    log_probs, target, weight = np.asarray(log_probs), np.asarray(target), _as_array(weight)
    _check_reduction(reduction, "NLLLoss")
    if target.shape == log_probs.shape and target.dtype.kind == "f":
        raise ModelError(f"NLLLoss takes class-index targets; got float targets of the input's "
                         f"shape {target.shape} (use CrossEntropyLoss for probabilities).")
    _check_class_inputs("NLLLoss", log_probs, target, weight, ignore_index, what="input")
    shape = log_probs.shape
    rows = _to_rows(log_probs)
    value, parts = _class_loss_forward(rows, shape, target, weight, ignore_index,
                                       reduction, 0.0, log_probs.dtype)
    return value, (rows.shape, parts, shape, reduction, log_probs.dtype)


def nll_loss_backward(dloss, cache) -> np.ndarray:
    """d loss / d input: -s_i * w[y_i] at the target class of each position, 0 elsewhere."""
    (m, c), (y, keep, w, w_y, denominator), shape, reduction, dtype = cache
    grad = np.zeros((m, c), dtype)
    scale = _row_scale(dloss, reduction, shape, denominator, dtype)
    with np.errstate(invalid="ignore"):  # every position ignored: nan, as the loss
        grad[np.arange(m), y] = -w_y * scale
    return _from_rows(grad, shape)


def num_correct(logits: np.ndarray, target: np.ndarray) -> int:
    """How many rows of (N, K) logits have their maximum at the target class (N,)."""
    return int(np.count_nonzero(logits.argmax(axis=1) == target))


# --------------------------------------------------------------------------------------------
# regression and binary losses


def _sum_to(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast gradient back to `shape` (the adjoint of broadcasting)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead))) if lead else grad
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def mse_forward(output: np.ndarray, target: np.ndarray, reduction: str = "mean"):
    """Squared error (output - target)^2, torch.nn.MSELoss: 'mean' over all elements, 'sum',
    or 'none' (elementwise). Shapes that differ but broadcast are broadcast, as torch does
    (with its warning: it is usually a mistake such as (N, 1) against (N,))."""
    output, target = np.asarray(output), np.asarray(target)
    _check_reduction(reduction, "MSELoss")
    if output.shape != target.shape:
        try:
            shape = np.broadcast_shapes(output.shape, target.shape)
        except ValueError:
            raise ModelError(
                f"MSELoss needs output and target of the same (or broadcastable) shape; got "
                f"output {output.shape} and target {target.shape}."
            ) from None
        warnings.warn(f"MSELoss: target shape {target.shape} differs from output shape "
                      f"{output.shape}; they are broadcast to {shape}, which is likely not "
                      "what you want (torch warns the same).", UserWarning, stacklevel=3)
    diff = output - target
    squared = diff * diff
    value = squared if reduction == "none" else _reduce(squared, reduction, squared.size)
    return value, (diff, output.shape, reduction)


def mse_backward(dloss, cache) -> np.ndarray:
    """Gradient w.r.t. the output: 2 * (output - target) * d loss / d element."""
    diff, shape, reduction = cache
    if reduction == "mean":
        grad = diff * (2.0 * dloss / diff.size)
    else:
        grad = diff * (2.0 * np.asarray(dloss, diff.dtype))
    return _sum_to(grad, shape)


def bce_with_logits_forward(logits, target, weight=None, pos_weight=None,
                            reduction: str = "mean"):
    """Binary cross-entropy on logits, torch.nn.BCEWithLogitsLoss:
    l = -weight * [pos_weight * t * log sigmoid(x) + (1 - t) * log(1 - sigmoid(x))],
    computed as weight * ((1 - t) * x + (1 + (pos_weight - 1) * t) * softplus(-x)) with a
    stable softplus. target: the logits' shape; weight broadcasts to it; pos_weight (C,)
    broadcasts along the last dim (the classes)."""
    x, t = np.asarray(logits), np.asarray(target)
    weight, pos_weight = _as_array(weight), _as_array(pos_weight)
    _check_reduction(reduction, "BCEWithLogitsLoss")
    if x.shape != t.shape:
        raise ModelError(f"BCEWithLogitsLoss needs target of the logits' shape; got logits "
                         f"{x.shape} and target {t.shape}.")
    t = t.astype(x.dtype, copy=False)
    try:
        log_weight = 1.0 if pos_weight is None else 1.0 + (pos_weight.astype(x.dtype) - 1) * t
        np.broadcast_shapes(x.shape, () if weight is None else weight.shape)
    except ValueError:
        raise ModelError(
            f"BCEWithLogitsLoss: weight {None if weight is None else weight.shape} or "
            f"pos_weight {None if pos_weight is None else pos_weight.shape} does not broadcast "
            f"against logits {x.shape} (pos_weight runs along the last dim)."
        ) from None
    softplus_neg = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)
    per = (1 - t) * x + log_weight * softplus_neg
    if weight is not None:
        per = per * weight.astype(x.dtype)
    value = np.asarray(per) if reduction == "none" else _reduce(per, reduction, per.size)
    return value, (x, t, log_weight, weight, reduction, per.size)


def bce_with_logits_backward(dloss, cache) -> np.ndarray:
    """d l / d x = weight * ((1 - t) - log_weight * sigmoid(-x))."""
    x, t, log_weight, weight, reduction, size = cache
    e = np.exp(-np.abs(x))
    sigmoid_neg = np.where(x >= 0, e / (1 + e), 1 / (1 + e))
    grad = (1 - t) - log_weight * sigmoid_neg
    if weight is not None:
        grad = grad * weight.astype(x.dtype)
    scale = dloss / size if reduction == "mean" else np.asarray(dloss, x.dtype)
    return _sum_to(np.asarray(grad * scale, x.dtype), x.shape)


# --------------------------------------------------------------------------------------------
# stateful wrappers


class _Loss:
    """Holds the cache between `forward` and `backward`."""

    _cache: tuple | None = None

    def __call__(self, output, target):
        return self.forward(output, target)

    def _require_cache(self) -> tuple:
        if self._cache is None:
            raise ModelError(
                f"{type(self).__name__}.backward() was called before forward(); compute the "
                "loss with forward(output, target) first."
            )
        return self._cache


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss: class weights, ignore_index, reduction, label smoothing,
    index or probability targets, (N, C, d1, ...) and unbatched (C,) logits."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        self.weight = _as_array(weight)
        self.ignore_index = int(ignore_index)
        self.reduction = _check_reduction(_legacy_reduction(size_average, reduce, reduction),
                                          "CrossEntropyLoss")
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, output: np.ndarray, target: np.ndarray):
        """output: logits (N, C, ...) or (C,); target: class indices or probabilities."""
        loss, self._cache = cross_entropy_forward(output, target, self.label_smoothing,
                                                  self.weight, self.ignore_index,
                                                  self.reduction)
        return loss

    def backward(self, dloss=1.0) -> np.ndarray:
        """d loss / d logits, shaped and typed like the logits."""
        return cross_entropy_backward(dloss, self._require_cache())

    def __repr__(self) -> str:
        return (f"CrossEntropyLoss(reduction='{self.reduction}', ignore_index="
                f"{self.ignore_index}, label_smoothing={self.label_smoothing}"
                f"{', weight=...' if self.weight is not None else ''})")


class NLLLoss(_Loss):
    """torch.nn.NLLLoss on log-probabilities (N, C, d1, ...) or (C,)."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        self.weight = _as_array(weight)
        self.ignore_index = int(ignore_index)
        self.reduction = _check_reduction(_legacy_reduction(size_average, reduce, reduction),
                                          "NLLLoss")

    def forward(self, output, target):
        loss, self._cache = nll_loss_forward(output, target, self.weight, self.ignore_index,
                                             self.reduction)
        return loss

    def backward(self, dloss=1.0) -> np.ndarray:
        return nll_loss_backward(dloss, self._require_cache())

    def __repr__(self) -> str:
        return f"NLLLoss(reduction='{self.reduction}', ignore_index={self.ignore_index})"


class MSELoss(_Loss):
    """Squared error with torch's reductions ('mean' over all elements by default)."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        self.reduction = _check_reduction(_legacy_reduction(size_average, reduce, reduction),
                                          "MSELoss")

    def forward(self, output: np.ndarray, target: np.ndarray):
        loss, self._cache = mse_forward(output, target, self.reduction)
        return loss

    def backward(self, dloss=1.0) -> np.ndarray:
        """d loss / d output, shaped like the output."""
        return mse_backward(dloss, self._require_cache())

    def __repr__(self) -> str:
        return f"MSELoss(reduction='{self.reduction}')"


class BCEWithLogitsLoss(_Loss):
    """torch.nn.BCEWithLogitsLoss: sigmoid + binary cross-entropy in one stable step."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight=None):
        self.weight, self.pos_weight = _as_array(weight), _as_array(pos_weight)
        self.reduction = _check_reduction(_legacy_reduction(size_average, reduce, reduction),
                                          "BCEWithLogitsLoss")

    def forward(self, output, target):
        loss, self._cache = bce_with_logits_forward(output, target, self.weight, self.pos_weight,
                                                    self.reduction)
        return loss

    def backward(self, dloss=1.0) -> np.ndarray:
        return bce_with_logits_backward(dloss, self._require_cache())

    def __repr__(self) -> str:
        return f"BCEWithLogitsLoss(reduction='{self.reduction}')"
