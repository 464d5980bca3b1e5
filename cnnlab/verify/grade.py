"""`cnnlab check --impl FILE`: grade a student's own layers against PyTorch, op by op.

Each op the file provides (see `cnnlab.engines.student_layers`) runs a fixed battery of cases
(`BATTERIES`: stride > 1, padding, dilation, odd and non-square sizes, batch 1, train and eval
mode, inputs with ties) next to its torch twin in float64 with the same weights. Every case
compares the forward output, the input gradient, every parameter gradient and, for batch
norm, the running statistics. Per op the report gives pass/fail, the largest relative error,
the first failing case and a diagnosis where the numbers show a known pattern; each diagnosis
is computed by comparing the student's numbers with a variant of torch's (the gradient times
the batch size, its transpose, a sum over other axes, the biased variance, ...).

Each op runs in a thread with a time limit; a hung op is stopped (an exception raised in its
thread at the next Python bytecode) and reported, and the other ops still run. Student code
never produces a traceback: errors become a one-line summary naming the file and line.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from cnnlab.engines.student_layers import (LOSS_KINDS, StudentCodeError, StudentModule,
                                           describe_exception, load_layers, make_module)
from cnnlab.scratch import random as scratch_random
from cnnlab.verify.check import TOLERANCE  # float64 relative error, as cnnlab's own ops
from cnnlab.verify.check import _rel_err

TIME_LIMIT = 10.0  # seconds per op


@dataclass
class Case:
    """One call of an op: constructor arguments, input shape, mode and what it exercises."""

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    shape: tuple = ()
    mode: str = "train"
    tags: tuple = ()
    inputs: str = "normal"  # normal | ties (small integers) | zeros (some exact zeros) | large


def _c(label, args, shape, mode="train", tags=(), inputs="normal", **kwargs) -> Case:
    return Case(label, tuple(args), kwargs, tuple(shape), mode, tuple(tags), inputs)


_ELEMENTWISE = [
    _c("4-D input", (), (2, 3, 5, 4)),
    _c("batch 1, 2-D input", (), (1, 7), tags=("batch 1",)),
    _c("exact zeros in the input", (), (3, 6), inputs="zeros", tags=("zeros",)),
]

BATTERIES: dict[str, list[Case]] = {
    "Conv2d": [
        _c("3x3, odd non-square input", (3, 4, 3), (2, 3, 7, 6), tags=("odd size",)),
        _c("stride 2, padding 1", (2, 3, 3), (2, 2, 9, 8), stride=2, padding=1,
           tags=("stride > 1", "padding")),
        _c("padding 2, 5x5 kernel", (2, 2, 5), (3, 2, 7, 6), padding=2, tags=("padding",)),
        _c("kernel (3, 2), stride (2, 1), padding (1, 2), batch 1", (3, 2, (3, 2)), (1, 3, 8, 7),
           stride=(2, 1), padding=(1, 2), tags=("stride > 1", "padding", "non-square kernel",
                                                 "batch 1")),
        _c("dilation 2, padding 2", (2, 3, 3), (2, 2, 9, 9), dilation=2, padding=2,
           tags=("dilation", "padding")),
        _c("1x1, 5 samples", (4, 2, 1), (5, 4, 3, 5), tags=("1x1",)),
    ],
    "ConvTranspose2d": [
        _c("3x3", (3, 2, 3), (2, 3, 4, 5)),
        _c("stride 2, padding 1, output_padding 1", (2, 3, 3), (2, 2, 4, 3), stride=2,
           padding=1, output_padding=1, tags=("stride > 1", "padding")),
        _c("kernel (2, 3), stride (2, 1), batch 1", (2, 2, (2, 3)), (1, 2, 3, 4), stride=(2, 1),
           tags=("stride > 1", "non-square kernel", "batch 1")),
    ],
    "Linear": [
        _c("7 -> 5, batch 4", (7, 5), (4, 7)),
        _c("3 -> 6, batch 1", (3, 6), (1, 3), tags=("batch 1",)),
        _c("12 -> 2, batch 9", (12, 2), (9, 12)),
    ],
    "MaxPool2d": [
        _c("2x2", (2,), (2, 3, 8, 6)),
        _c("3x3 stride 2 (overlapping), odd size", (3,), (2, 2, 9, 7), stride=2,
           tags=("stride > 1", "overlapping", "odd size")),
        _c("kernel (2, 3), stride (2, 1), padding 1, batch 1", ((2, 3),), (1, 2, 7, 8),
           stride=(2, 1), padding=1, tags=("padding", "non-square kernel", "batch 1")),
        _c("2x2 on an input with ties", (2,), (2, 2, 6, 6), inputs="ties", tags=("ties",)),
        _c("3x3 stride 1 on an input with ties", (3,), (2, 2, 6, 5), stride=1, inputs="ties",
           tags=("ties", "overlapping")),
    ],
    "AvgPool2d": [
        _c("2x2", (2,), (2, 3, 8, 6)),
        _c("3x3 stride 2 padding 1", (3,), (2, 2, 9, 7), stride=2, padding=1,
           tags=("stride > 1", "padding", "odd size")),
        _c("kernel (2, 3), stride (1, 2), batch 1", ((2, 3),), (1, 2, 5, 8), stride=(1, 2),
           tags=("non-square kernel", "batch 1")),
    ],
    "AdaptiveMaxPool2d": [
        _c("to (2, 3)", ((2, 3),), (2, 2, 7, 6)),
        _c("to 1, batch 1", (1,), (1, 3, 5, 5), tags=("batch 1",)),
    ],
    "Upsample": [
        _c("nearest x2", (), (2, 3, 3, 4), scale_factor=2),
        _c("nearest to (5, 7), batch 1", (), (1, 2, 3, 4), size=(5, 7), tags=("batch 1",)),
    ],
    "AdaptiveAvgPool2d": [
        _c("to (2, 3)", ((2, 3),), (2, 2, 7, 6)),
        _c("to 1, batch 1", (1,), (1, 3, 5, 5), tags=("batch 1",)),
    ],
    "BatchNorm2d": [
        _c("train", (3,), (4, 3, 5, 6)),
        _c("eval (running statistics)", (3,), (4, 3, 5, 6), mode="eval", tags=("eval",)),
        _c("train, momentum 0.3, batch 1", (2,), (1, 2, 4, 5), momentum=0.3,
           tags=("batch 1",)),
    ],
    "BatchNorm1d": [
        _c("train", (4,), (6, 4)),
        _c("eval (running statistics)", (4,), (5, 4), mode="eval", tags=("eval",)),
        _c("train, batch 2", (3,), (2, 3), tags=("small batch",)),
    ],
    "GroupNorm": [
        _c("2 groups of 2 channels", (2, 4), (3, 4, 3, 5)),
        _c("1 group, batch 1", (1, 3), (1, 3, 4, 4), tags=("batch 1",)),
    ],
    "LayerNorm": [
        _c("last dim", ((5,),), (3, 5)),
        _c("last two dims", ((4, 3),), (2, 2, 4, 3)),
    ],
    "ReLU": _ELEMENTWISE, "Sigmoid": _ELEMENTWISE, "Tanh": _ELEMENTWISE, "GELU": _ELEMENTWISE,
    "SiLU": _ELEMENTWISE,
    "LeakyReLU": _ELEMENTWISE + [_c("slope 0.2", (0.2,), (2, 3, 4, 4), tags=("slope",))],
    "Softmax": [_c("dim=1", (), (3, 5), dim=1), _c("dim=1, 4-D", (), (2, 3, 2, 2), dim=1)],
    "LogSoftmax": [_c("dim=1", (), (3, 5), dim=1), _c("dim=1, batch 1", (), (1, 6), dim=1)],
    "Flatten": [_c("4-D", (), (2, 3, 4, 5)), _c("batch 1", (), (1, 2, 3, 1), tags=("batch 1",))],
    "Dropout": [_c("p=0.3, train", (0.3,), (50, 80)), _c("p=0.5, eval", (0.5,), (4, 9),
                                                        mode="eval", tags=("eval",))],
    "CrossEntropyLoss": [
        _c("5 samples, 4 classes", (), (5, 4)),
        _c("batch 1", (), (1, 3), tags=("batch 1",)),
        _c("large logits (x 500)", (), (6, 10), inputs="large", tags=("large logits",)),
    ],
    "MSELoss": [_c("(4, 3)", (), (4, 3)), _c("batch 1", (), (1, 5), tags=("batch 1",))],
    "NLLLoss": [_c("5 samples, 4 classes", (), (5, 4)),
                _c("batch 1", (), (1, 3), tags=("batch 1",))],
    "BCEWithLogitsLoss": [
        _c("(4, 3)", (), (4, 3)),
        _c("large logits (x 500)", (), (3, 5), inputs="large", tags=("large logits",)),
    ],
}


# --- numbers ---------------------------------------------------------------------------------


def rel_err(ours, theirs) -> float:
    """`cnnlab check`'s relative error (inf for a shape mismatch), and inf for a non-finite
    value of the student's (a NaN would otherwise compare as no error)."""
    if not np.all(np.isfinite(np.asarray(ours, np.float64))):
        return float("inf")
    return _rel_err(ours, theirs)


def _close(a, b) -> bool:
    return a is not None and b is not None and rel_err(a, b) < TOLERANCE


def _input(case: Case, rng) -> np.ndarray:
    if case.inputs == "ties":
        return rng.integers(0, 3, case.shape).astype(np.float64)
    x = rng.standard_normal(case.shape) * 2
    if case.inputs == "zeros":
        x.flat[::3] = 0.0
    if case.inputs == "large":
        x *= 250
    return x


@dataclass
class Quantity:
    """One compared array of a case: the student's value (None when missing), torch's, and the
    student's raw gradient before any layout conversion (for the diagnoses)."""

    name: str
    ours: object
    theirs: np.ndarray
    raw: object = None
    note: str = ""
    theirs_student: object = None  # torch's value in the student's layout (parameters)

    @property
    def err(self) -> float:
        if self.ours is None:
            return float("inf")
        return rel_err(self.ours, self.theirs)


@dataclass
class CaseResult:
    case: Case
    quantities: list = field(default_factory=list)
    problem: str = ""  # an error or a wrong shape: the case could not be compared in full
    x: np.ndarray | None = None
    dout: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def worst(self) -> tuple[str, float]:
        if not self.quantities:
            return "", float("inf")
        q = max(self.quantities, key=lambda q: q.err)
        return q.name, q.err

    @property
    def passed(self) -> bool:
        return not self.problem and self.worst[1] < TOLERANCE


# --- running one case ------------------------------------------------------------------------


def _torch_twin(torch, op: str, case: Case):
    module = getattr(torch.nn, op)(*case.args, **case.kwargs).double()
    with torch.no_grad():  # non-trivial weights and running statistics
        gen = torch.Generator().manual_seed(int(case.shape[0] * 7919 + len(case.label)))
        for parameter in module.parameters():
            parameter.copy_(torch.rand(parameter.shape, generator=gen, dtype=torch.float64) * 3
                            - 1.5)
        for name, buffer in module.named_buffers():
            if buffer.is_floating_point():
                buffer.copy_(torch.rand(buffer.shape, generator=gen, dtype=torch.float64) + 0.5)
    module.train(case.mode == "train")
    return module


def _as_array(value, what: str, path) -> np.ndarray:
    if value is None:
        raise StudentCodeError(f"{what} returned None")
    if hasattr(value, "detach"):
        raise StudentCodeError(f"{what} returned a torch tensor; return a NumPy array")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StudentCodeError(f"{what} returned {type(value).__name__}, not an array") from None
    return array


def _run_layer_case(op, cls, case: Case, rng, torch, path) -> CaseResult:
    result = CaseResult(case)
    theirs = _torch_twin(torch, op, case)
    ours = make_module(op, cls, *case.args, path=path, **case.kwargs)
    state = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    ours.to(np.float64)  # first: load_state_dict keeps the model's dtype
    ours.load_state_dict(state, strict=False)
    ours.train(case.mode == "train")
    x = _input(case, rng)
    result.x, result.extra["state"] = x, state
    tx = torch.tensor(x, requires_grad=True)
    t_out = theirs(tx)
    try:
        out = _as_array(ours(x.copy()), "forward", path)
    except StudentCodeError as err:
        result.problem = _short(str(err), op)
        return result
    except Exception as err:  # noqa: BLE001 - the student's forward
        result.problem = f"forward raised {describe_exception(err, path)}"
        return result
    if out.shape != tuple(t_out.shape):
        result.problem = (f"forward returned shape {out.shape}; torch's {op} gives "
                          f"{tuple(t_out.shape)} for input {x.shape}")
        return result
    result.quantities.append(Quantity("output", out, t_out.detach().numpy()))
    if op == "Dropout":  # no torch twin draws the same mask: check the definition instead
        return _dropout_case(ours, case, x, out, rng, result, path)
    dout = rng.standard_normal(out.shape)
    result.dout = dout
    t_out.backward(torch.tensor(dout))
    t_params = dict(theirs.named_parameters())
    try:
        if isinstance(ours, StudentModule):
            dx, grads = ours.student_backward(dout.copy())
        else:
            dx = ours.backward(dout.copy())
            grads = {name: (grad, f"{name}.grad") for name, _, grad in ours.named_parameters()}
    except StudentCodeError as err:
        result.problem = _short(str(err), op)
        return result
    except Exception as err:  # noqa: BLE001 - the student's backward
        result.problem = f"backward raised {describe_exception(err, path)}"
        return result
    if dx is None:
        result.problem = "backward returned None; it must return the input gradient dx"
        return result
    dx = _as_array(dx, "backward", path)
    result.quantities.append(Quantity("input gradient", dx, tx.grad.numpy(),
                                      note="" if dx.shape == x.shape else
                                      f"backward returned shape {dx.shape}, input is {x.shape}"))
    for name, (raw, where) in grads.items():
        converted = None
        if raw is not None:
            converted = (ours.gradient_in_torch_layout(name, raw)
                         if isinstance(ours, StudentModule) else raw)
        note = f"no gradient found ({where})" if raw is None else (
            "" if converted is not None else f"{where} has shape {np.shape(raw)}")
        theirs_grad = t_params[name].grad.numpy()
        in_student_layout = (ours.layouts[name].to_student(theirs_grad)
                             if isinstance(ours, StudentModule) else theirs_grad)
        result.quantities.append(Quantity(f"{name} gradient", converted, theirs_grad, raw=raw,
                                          note=note, theirs_student=in_student_layout))
    if case.mode == "train":
        t_buffers = dict(theirs.named_buffers())
        for name, value in ours.named_buffers():
            if name in ("running_mean", "running_var"):
                if isinstance(ours, StudentModule) and name not in ours.buffer_slots:
                    note = f"no {name} found in your {op}"
                    result.quantities.append(Quantity(name, None, t_buffers[name].numpy(),
                                                      note=note))
                    continue
                result.quantities.append(Quantity(name, value, t_buffers[name].numpy()))
    elif case.mode == "eval" and op.startswith("BatchNorm") and isinstance(ours, StudentModule) \
            and "running_mean" not in ours.buffer_slots:
        result.quantities[0].note = "no running statistics found in your class"
    return result


def _short(message: str, op: str) -> str:
    """'forward raised ...' from the adapter's 'Your ReLU: forward raised ...' (the report's
    row already names the op)."""
    prefix = f"Your {op}: "
    return message[len(prefix):].rstrip(".") if message.startswith(prefix) else message


def _dropout_case(ours, case, x, out, rng, result, path) -> CaseResult:
    p = float(case.args[0])
    result.quantities.clear()
    if case.mode == "eval":
        result.quantities.append(Quantity("output (eval: identity)", out, x))
    else:
        kept = out != 0
        result.quantities.append(Quantity("output", out, np.where(kept, x / (1 - p), 0.0)))
        result.extra["dropped_fraction"] = float(1 - kept.mean())
        result.extra["unscaled"] = bool(np.allclose(out[kept], x[kept]))
    dout = rng.standard_normal(out.shape)
    try:
        dx = _as_array(ours.backward(dout.copy()), "backward", path)
    except StudentCodeError as err:
        result.problem = str(err)
        return result
    except Exception as err:  # noqa: BLE001
        result.problem = f"backward raised {describe_exception(err, path)}"
        return result
    expected = dout if case.mode == "eval" else np.where(out != 0, dout / (1 - p), 0.0)
    result.quantities.append(Quantity("input gradient", dx, expected))
    frac = result.extra.get("dropped_fraction")
    if frac is not None and abs(frac - p) > 5 * np.sqrt(p * (1 - p) / x.size) + 1e-9:
        result.problem = f"dropped {frac:.3f} of the inputs; p={p} should drop about {p}"
    return result


def _run_loss_case(op, cls, case: Case, rng, torch, path) -> CaseResult:
    from cnnlab.engines.student_layers import construct

    result = CaseResult(case)
    n, k = case.shape
    logits = _input(case, rng)
    if op in ("CrossEntropyLoss", "NLLLoss"):
        target = rng.integers(0, k, n)
    elif op == "BCEWithLogitsLoss":  # probabilities, some exactly 0 or 1
        target = np.clip(rng.uniform(-0.3, 1.3, (n, k)), 0, 1)
    else:
        target = rng.standard_normal((n, k))
    result.x, result.extra["target"] = logits, target
    loss = construct(op, cls, case.args, case.kwargs, path)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = getattr(torch.nn, op)(*case.args, **case.kwargs)(t_logits, torch.tensor(target))
    t_loss.backward()
    try:
        method = getattr(loss, "forward", None) or loss
        value = _as_array(method(logits.copy(), target.copy()), "forward", path)
        grad = _as_array(loss.backward(), "backward()", path)
    except StudentCodeError as err:
        result.problem = str(err)
        return result
    except Exception as err:  # noqa: BLE001
        result.problem = f"raised {describe_exception(err, path)}"
        return result
    if value.size != 1:
        result.problem = f"forward returned shape {value.shape}; a loss is one number (mean)"
        return result
    result.quantities.append(Quantity("loss", value.reshape(()), t_loss.detach().numpy()))
    result.quantities.append(Quantity("logits gradient", grad, t_logits.grad.numpy(),
                                      note="" if grad.shape == logits.shape else
                                      f"backward() returned shape {grad.shape}"))
    return result


# --- diagnoses -------------------------------------------------------------------------------


def _ratio(ours, theirs):
    """r when ours == r * theirs (to the tolerance), else None."""
    if ours is None:
        return None
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape or not np.all(np.isfinite(ours)):
        return None
    denominator = float((theirs * theirs).sum())
    if denominator == 0:
        return None
    r = float((ours * theirs).sum() / denominator)
    return r if rel_err(ours, r * theirs) < 1e-6 and abs(r - 1) > 1e-6 else None


def _factor_text(r: float, n: int) -> str:
    if n > 1 and abs(r - n) < 1e-6 * n:
        return (f"is {n} times torch's: off by the batch size N={n} (sum where torch takes the "
                "mean over the batch, or a missing division by N)")
    if n > 1 and abs(r - 1 / n) < 1e-6:
        return (f"is 1/{n} of torch's: off by the batch size N={n} (divided by N once too "
                "often: torch's gradient of a sum over the batch is not averaged)")
    return f"is {r:.6g} times torch's (a constant factor)"


def _axes_name(axes, ndim) -> str:
    names = ("N", "C", "H", "W") if ndim == 4 else ("N", "features") if ndim == 2 else \
        tuple(f"axis {i}" for i in range(ndim))
    return "(" + ", ".join(names[a] for a in axes) + ")" if axes else "no axes"


def _diagnose_case(op: str, r: CaseResult) -> list[str]:
    notes = []
    n = r.x.shape[0] if r.x is not None and r.x.ndim else 1
    for q in r.quantities:
        if q.err < TOLERANCE:
            continue
        specific = _quantity_notes(op, q, r, n)
        notes += specific or ([f"{q.name}: {q.note}."] if q.note else [])
    if op in ("Conv2d", "MaxPool2d", "AvgPool2d") and r.quantities:
        notes += _border_only(op, r)
    if op.startswith("BatchNorm"):
        notes += _batchnorm_notes(op, r)
    if op == "MaxPool2d" and r.case.inputs == "ties":
        notes += _tie_notes(r)
    if op in ("CrossEntropyLoss", "BCEWithLogitsLoss") and r.quantities and \
            not np.all(np.isfinite(r.quantities[0].ours)):
        notes.append("the loss is not finite on large logits: subtract the row's max logit "
                     "before exp (log-sum-exp), as torch does.")
    if op == "Dropout" and r.extra.get("unscaled"):
        notes.append("kept values are not scaled by 1/(1-p): torch's dropout is inverted "
                     "dropout (train output x/(1-p), eval output x).")
    return notes


def _quantity_notes(op: str, q: Quantity, r: CaseResult, n: int) -> list[str]:
    """What the numbers of one wrong quantity say: missing, a constant factor (the batch
    size), transposed, summed over the wrong axes."""
    theirs_nonzero = np.abs(q.theirs).max(initial=0) > 0
    for name, symbol in (("bias gradient", "db"), ("weight gradient", "dW")):
        if q.name == name and theirs_nonzero and (q.raw is None or not np.any(np.asarray(q.raw))):
            state = "never set" if q.raw is None else "all zeros"
            where = (f" (db = dout summed over {_axes_name(_bias_axes(r.dout), r.dout.ndim)})"
                     if symbol == "db" and r.dout is not None else "")
            return [f"missing {name}: {symbol} is {state} while torch's is not{where}."]
    ratio = _ratio(q.ours, q.theirs)
    if ratio is not None:
        return [f"{q.name} {_factor_text(ratio, n)}."]
    notes = []
    if q.raw is not None and q.name.endswith("gradient") and q.name != "input gradient":
        notes += _permuted(q, r) or _wrong_axes(op, q, r)
    return notes


def _bias_axes(dout) -> tuple:
    return tuple(a for a in range(dout.ndim) if a != 1)


def _permuted(q: Quantity, r: CaseResult) -> list[str]:
    """The student's gradient equals torch's with its axes in another order (transposed)."""
    raw = np.asarray(q.raw, np.float64)
    expected = np.asarray(q.theirs_student if q.theirs_student is not None else q.theirs)
    if raw.ndim != expected.ndim or raw.ndim < 2:
        return []
    for perm in itertools.permutations(range(raw.ndim)):
        if perm == tuple(range(raw.ndim)):
            continue
        candidate = raw.transpose(perm)
        if candidate.shape == expected.shape and rel_err(candidate, expected) < TOLERANCE:
            return [f"{q.name} is transposed: it holds the right values with the axes in the "
                    f"wrong order (shape {raw.shape}, transpose {perm} of the right one); "
                    f"it must have the parameter's own shape and layout {expected.shape}."]
    return []


def _summed_terms(op: str, q: Quantity, r: CaseResult):
    """(terms, names, torch's axes): the per-element terms whose sum over torch's axes is this
    parameter gradient, for the ops where that is one product (None for the others)."""
    dout, x = r.dout, r.x
    if dout is None:
        return None
    if q.name == "bias gradient":
        names = ("N", "C", "H", "W") if dout.ndim == 4 else ("N", "features")
        return dout, names, tuple(a for a in range(dout.ndim) if a != 1)
    if q.name == "weight gradient" and op == "Linear":  # dW[o, i] = sum_n dout[n, o] x[n, i]
        return dout[:, :, None] * x[:, None, :], ("N", "out", "in"), (0,)
    if q.name == "weight gradient" and op.startswith("BatchNorm") and r.case.mode == "train":
        axes = (0, 2, 3) if x.ndim == 4 else (0,)
        xhat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True)
                                                                + 1e-5)
        names = ("N", "C", "H", "W") if x.ndim == 4 else ("N", "features")
        return dout * xhat, names, axes
    return None


def _wrong_axes(op: str, q: Quantity, r: CaseResult) -> list[str]:
    """A parameter gradient summed over another set of axes than torch's (db over the
    features instead of the batch, dgamma over N only, ...)."""
    found = _summed_terms(op, q, r)
    if found is None:
        return []
    terms, names, right = found
    raw = np.asarray(q.raw, np.float64)

    def label(axes) -> str:
        return "(" + ", ".join(names[a] for a in axes) + ")" if axes else "no axes"

    for k in range(terms.ndim + 1):
        for axes in itertools.combinations(range(terms.ndim), k):
            if axes == right:
                continue
            total = terms.sum(axis=axes) if axes else terms
            candidates = [total] + ([total.T] if total.ndim == 2 else [])
            if any(c.size == raw.size and rel_err(raw.reshape(c.shape), c) < TOLERANCE
                   for c in candidates):
                return [f"{q.name} summed over the wrong axes: it is the sum over "
                        f"{label(axes)} (shape {total.shape}); torch sums over {label(right)}."]
    return []


def _window_touches_padding(size, out_size, k, s, p, d) -> np.ndarray:
    starts = np.arange(out_size) * s - p
    return (starts < 0) | (starts + d * (k - 1) >= size)


def _border_only(op: str, r: CaseResult) -> list[str]:
    """Forward errors only at outputs whose window overlaps the padding."""
    kw = r.case.kwargs
    pad = kw.get("padding", 0)
    pad = (pad, pad) if isinstance(pad, int) else tuple(pad)
    if not any(pad):
        return []
    out_q = r.quantities[0]
    if out_q.err < TOLERANCE or out_q.ours is None or np.shape(out_q.ours) != out_q.theirs.shape:
        return []
    if op == "Conv2d":
        k = r.case.args[2]
    else:
        k = r.case.args[0]
    k = (k, k) if isinstance(k, int) else tuple(k)
    s = kw.get("stride", 1 if op == "Conv2d" else k)
    s = (s, s) if isinstance(s, int) else tuple(s)
    d = kw.get("dilation", 1)
    d = (d, d) if isinstance(d, int) else tuple(d)
    h, w = r.x.shape[2:]
    ho, wo = out_q.theirs.shape[2:]
    border = (_window_touches_padding(h, ho, k[0], s[0], pad[0], d[0])[:, None]
              | _window_touches_padding(w, wo, k[1], s[1], pad[1], d[1])[None, :])
    scale = np.abs(out_q.theirs).max()
    bad = (np.abs(np.asarray(out_q.ours) - out_q.theirs) > TOLERANCE * scale).any(axis=(0, 1))
    if bad.any() and not (bad & ~border).any() and (~border).any():
        value = "-inf for max pooling" if op == "MaxPool2d" else "0"
        return [f"forward is wrong only at the padded borders ({int(bad.sum())} of "
                f"{int(border.sum())} border positions, none of the {int((~border).sum())} "
                f"interior ones): check the padding (value {value}, width and offset)."]
    return []


def _batchnorm_notes(op: str, r: CaseResult) -> list[str]:
    notes = []
    quantities = {q.name: q for q in r.quantities}
    state = r.extra.get("state", {})
    axes = (0, 2, 3) if r.x.ndim == 4 else (0,)
    running_var = quantities.get("running_var")
    if r.case.mode == "train" and running_var is not None and running_var.err >= TOLERANCE \
            and running_var.ours is not None:
        m = r.case.kwargs.get("momentum", 0.1)
        n = int(np.prod([r.x.shape[a] for a in axes]))
        before = state["running_var"]
        biased = (1 - m) * before + m * r.x.var(axis=axes)
        if _close(running_var.ours, biased):
            notes.append(f"biased running variance: running_var is updated with the biased batch "
                         f"variance (divided by n={n}); torch uses the unbiased one (divided by "
                         f"n-1={n - 1}, the biased one times n/(n-1)), while normalising with the "
                         "biased one.")
    output = quantities.get("output")
    if r.case.mode == "eval" and output is not None and output.err >= TOLERANCE and \
            output.ours is not None and "weight" in state:
        shape = (1, -1) + (1,) * (r.x.ndim - 2)
        mean = r.x.mean(axis=axes, keepdims=True)
        var = r.x.var(axis=axes, keepdims=True)
        with_batch_stats = (state["weight"].reshape(shape) * (r.x - mean) / np.sqrt(var + 1e-5)
                            + state["bias"].reshape(shape))
        if _close(output.ours, with_batch_stats):
            notes.append("eval mode normalises with the batch statistics; in eval torch uses "
                         "running_mean and running_var.")
    return notes


def _pool_windows(x, k, s):
    n, c, h, w = x.shape
    ho, wo = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    for i in range(ho):
        for j in range(wo):
            yield i, j, (slice(i * s[0], i * s[0] + k[0]), slice(j * s[1], j * s[1] + k[1]))


def _tie_notes(r: CaseResult) -> list[str]:
    """Which rule the student's max-pool gradient follows on tied maxima."""
    dx_q = next((q for q in r.quantities if q.name == "input gradient"), None)
    if dx_q is None or dx_q.err < TOLERANCE or dx_q.ours is None:
        return []
    k = r.case.args[0]
    k = (k, k) if isinstance(k, int) else tuple(k)
    s = r.case.kwargs.get("stride", k)
    s = (s, s) if isinstance(s, int) else tuple(s)
    x, dout = r.x, r.dout
    every, split, last = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for i, j, (rows, cols) in _pool_windows(x, k, s):
        window = x[:, :, rows, cols]
        top = window == window.max(axis=(2, 3), keepdims=True)
        g = dout[:, :, i, j][:, :, None, None]
        every[:, :, rows, cols] += top * g
        split[:, :, rows, cols] += top * g / top.sum(axis=(2, 3), keepdims=True)
        flat = top.reshape(*top.shape[:2], -1)
        last_index = flat.shape[-1] - 1 - np.argmax(flat[..., ::-1], axis=-1)
        onehot = np.zeros_like(flat, dtype=np.float64)
        np.put_along_axis(onehot, last_index[..., None], 1.0, axis=-1)
        last[:, :, rows, cols] += onehot.reshape(top.shape) * g
    ours = np.asarray(dx_q.ours)
    rule = ("every tied maximum gets the full gradient" if _close(ours, every) else
            "the gradient is split among tied maxima" if _close(ours, split) else
            "the gradient goes to the last tied maximum" if _close(ours, last) else None)
    if rule is None:
        return []
    return [f"wrong max-pool tie handling: {rule}; torch sends each window's gradient to its "
            "first maximum only (in row-major order within the window)."]


def _pattern_note(results: list[CaseResult]) -> list[str]:
    """'fails only in cases with stride > 1': a tag every failing case has and no passing one."""
    failing = [r for r in results if not r.passed]
    passing = [r for r in results if r.passed]
    if not failing or not passing:
        return []
    common = set(failing[0].case.tags).intersection(*(r.case.tags for r in failing[1:]))
    for tag in sorted(common):
        if not any(tag in r.case.tags for r in passing):
            return [f"fails only in the cases with {tag} ({len(failing)} of {len(results)}); "
                    f"the others pass."]
    return []


# --- grading one op, with a time limit -------------------------------------------------------


def _grade_op(op, cls, seed, path, torch) -> dict:
    rng = np.random.default_rng([seed, sum(op.encode())])
    run_case = _run_loss_case if op in LOSS_KINDS else _run_layer_case
    results = []
    for case in BATTERIES[op]:
        try:
            with np.errstate(all="ignore"):  # overflow in the student's exp is a finding, not noise
                result = run_case(op, cls, case, rng, torch, path)
        except StudentCodeError as err:
            result = CaseResult(case, problem=str(err))
        except Exception as err:  # noqa: BLE001 - student code reached outside our guards
            result = CaseResult(case, problem=describe_exception(err, path))
        results.append(result)
    worst = max((r.worst[1] for r in results if r.quantities), default=float("inf"))
    first = next((r for r in results if not r.passed), None)
    diagnosis = _merge_notes([_diagnose_case(op, r) for r in results
                              if not r.passed and r.quantities], len(results))
    diagnosis += _pattern_note(results)
    row = {"op": op, "passed": first is None, "max_rel_err": worst,
           "cases": len(results), "cases_passed": sum(r.passed for r in results),
           "first_failure": None, "diagnosis": diagnosis, "error": None}
    if first is not None:
        quantity, err = first.worst
        row["first_failure"] = {"case": first.case.label, "mode": first.case.mode,
                                "quantity": None if first.problem else quantity,
                                "rel_err": None if first.problem else err,
                                "message": first.problem or _differences(first)}
        if first.problem:
            row["error"] = first.problem
    return row


def _differences(result: CaseResult) -> str:
    """'output: relative error 2.1e-01; bias gradient: no gradient found (self.db, ...)'."""
    return "; ".join(f"{q.name}: {q.note or f'relative error {q.err:.2e}'}"
                     for q in result.quantities if q.err >= TOLERANCE)


def _merge_notes(per_case: list[list[str]], total: int) -> list[str]:
    """One sentence per pattern (the first case's numbers), with how many cases showed it."""
    import re

    first, counts = {}, {}
    for notes in per_case:
        for note in dict.fromkeys(notes):
            key = re.sub(r"[\d.]+", "#", note)
            first.setdefault(key, note)
            counts[key] = counts.get(key, 0) + 1
    return [first[key] + (f" [{counts[key]} of {total} cases]" if counts[key] > 1 else "")
            for key in first]


class _OpTimedOut(BaseException):
    """Raised inside a hung op's thread; not an Exception, so no `except Exception` of ours
    or the student's swallows it."""


def _stop_thread(thread: threading.Thread) -> None:
    """Raise _OpTimedOut inside a hung op's thread (at its next Python bytecode)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                   ctypes.py_object(_OpTimedOut))


def run_with_limit(work, time_limit: float, name: str):
    """work() in a daemon thread: ("done", value), ("error", exception) or ("timeout", still
    running: bool). A timed-out thread is stopped by an exception at its next bytecode."""
    box = {}

    def target():
        try:
            box["value"] = work()
        except BaseException as err:  # noqa: BLE001 - also the _OpTimedOut we raise in it
            box["error"] = err

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(time_limit)
    if thread.is_alive():
        _stop_thread(thread)
        thread.join(1.0)
        return "timeout", thread.is_alive()
    if "error" in box:
        return "error", box["error"]
    return "done", box["value"]


def _timeout_text(time_limit: float, still_running: bool) -> str:
    return (f"did not finish within the time limit of {time_limit:g} s (an endless loop, or far "
            "too slow: loop over kernel positions and vectorise over the batch and channels)"
            + ("; it is still running in the background (stuck inside one long NumPy call)"
               if still_running else ""))


def _grade_with_limit(op, cls, seed, path, torch, time_limit) -> dict:
    start = time.perf_counter()
    outcome, value = run_with_limit(lambda: _grade_op(op, cls, seed, path, torch), time_limit,
                                    f"grade-{op}")
    if outcome == "timeout":
        row = _failed_row(op, _timeout_text(time_limit, value))
        row["timed_out"] = True
    elif outcome == "error":
        row = _failed_row(op, describe_exception(value, path))
    else:
        row = value
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _load_with_limit(path, ops, time_limit: float):
    """load_layers under the time limit too: code at the top of a file (a training script
    without `if __name__ == "__main__":`) runs on import."""
    outcome, value = run_with_limit(lambda: load_layers(path, ops), time_limit, "grade-import")
    if outcome == "timeout":
        raise StudentCodeError(f"Importing your layers file {path} "
                               f"{_timeout_text(time_limit, value)}"
                               "; code at the top level of the file runs on import: put scripts "
                               "under `if __name__ == \"__main__\":`.")
    if outcome == "error":
        raise value
    return value


def _failed_row(op: str, message: str) -> dict:
    return {"op": op, "passed": False, "max_rel_err": float("inf"), "cases": len(BATTERIES[op]),
            "cases_passed": 0, "first_failure": {"case": None, "mode": None, "quantity": None,
                                                 "rel_err": None, "message": message},
            "diagnosis": [], "error": message}


def _warm_up(torch) -> None:
    """torch's first convolution and first backward with an output gradient import and set up
    a lot (seconds on a busy machine): do it here, outside every op's time limit."""
    x = torch.ones((1, 1, 3, 3), dtype=torch.float64, requires_grad=True)
    out = torch.nn.functional.conv2d(x, torch.ones((1, 1, 2, 2), dtype=torch.float64))
    out.backward(torch.ones_like(out))


def grade(path, ops=None, seed: int | None = None, time_limit: float = TIME_LIMIT) -> dict:
    """Grade the ops in the student's file `path` (all it provides, or those named in `ops`).

    Returns {"file", "seed", "tolerance", "passed", "ops": [row per op], "not_graded": [...]};
    a row has op, passed, max_rel_err, cases, cases_passed, first_failure {case, mode,
    quantity, rel_err, message}, diagnosis (list of sentences), error, seconds. A file that
    does not import raises StudentCodeError (its message names the file and line).
    """
    import torch

    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    layers = _load_with_limit(path, ops, time_limit)
    graded = [op for op in layers.classes if op in BATTERIES]
    _warm_up(torch)
    saved = scratch_random.get_state()
    scratch_random.seed(seed)
    try:
        rows = [_grade_with_limit(op, layers.classes[op], seed, layers.path, torch, time_limit)
                for op in graded]
    finally:
        scratch_random.set_state(saved)
    return {"file": str(layers.path), "seed": seed, "tolerance": TOLERANCE,
            "passed": bool(rows) and all(row["passed"] for row in rows), "ops": rows,
            "not_graded": sorted(op for op in layers.classes if op not in BATTERIES)}


# --- formatting ------------------------------------------------------------------------------


def _err_text(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.2e}"


def _shown_path(path: str) -> str:
    """The file relative to the working directory when it is under it (as the user typed it)."""
    import os

    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def format_report(report: dict, fmt: str = "text") -> str:
    """The report as `text` (a table and the diagnoses), `markdown` or `json`."""
    if fmt == "json":
        import json

        def clean(value):
            if isinstance(value, float) and not np.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return json.dumps(clean(report), indent=2)
    rows = report["ops"]
    header = ["op", "result", "max rel err", "cases", "first failing case"]
    table = []
    for row in rows:
        first = row["first_failure"]
        where = "" if first is None else (f"{first['case']}: {first['message']}"
                                          if first["case"] else first["message"])
        table.append([row["op"], "pass" if row["passed"] else "FAIL",
                      _err_text(row["max_rel_err"]), f"{row['cases_passed']}/{row['cases']}",
                      where])
    seed = report["seed"]
    lines = [f"Grading {_shown_path(report['file'])} against PyTorch (float64, seed {seed}; "
             f"reproduce with --seed {seed})", ""]
    if fmt == "markdown":
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |"
                  for line in table]
    else:
        widths = [max(len(line[i]) for line in [header] + table) for i in range(4)]
        for i, line in enumerate([header] + table):
            lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(line[:4]))
                         + "  " + line[4])
            if i == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 18)
    notes = [(row["op"], note) for row in rows for note in row["diagnosis"]]
    if notes:
        lines += ["", "Diagnosis:" if fmt == "text" else "**Diagnosis**", ""]
        lines += [f"- {op}: {note}" for op, note in notes]
    if report["not_graded"]:
        lines += ["", f"Not graded (no battery yet): {', '.join(report['not_graded'])}"]
    passed = sum(row["passed"] for row in rows)
    lines += ["", f"{passed}/{len(rows)} ops passed (relative error < {report['tolerance']:g} "
              "in float64 against PyTorch, forward and backward)"]
    return "\n".join(lines)
