"""Students' own layers: a Python file of classes named like torch.nn's, as scratch modules.

`load_layers(path)` imports the file by path, in a module of its own (nothing of it leaks into
other imports), and finds its ops: a `LAYERS = {"Conv2d": MyConv, ...}` mapping, else the
classes *defined in the file* whose names are op names (`Conv2d`, `ReLU`, `CrossEntropyLoss`,
...). A file that fails to import gives one `StudentCodeError` that names the file, the line
and the error, never a traceback.

`StudentModule` wraps one instance of a student's class into a `cnnlab.scratch.Module`, so the
engine, the optimisers, checkpoints and `cnnlab check --impl` use it unchanged. The student's
class needs `forward(x)` (or `__call__`) and `backward(dout) -> dx`; its parameters and
gradients are found in any of these conventions (docs/student_layers.md):

- attributes `W`/`b` with `dW`/`db` (also `w`, `weight`, `kernel`, `gamma`/`beta`, and
  `grad_W`, `W_grad`, `grad_weight`, `dgamma`, ...);
- dicts `params`/`grads` keyed by those names;
- parameter objects with `.data` and `.grad` (cnnlab's `Parameter` or the student's own);
- a weight in torch's layout (out, in, kh, kw) / (out, in), or (kh, kw, in, out) / (in, out),
  told apart by shape (when both layouts have the same shape, torch's is assumed).

The adapter owns `Parameter`s in torch's layout, named as cnnlab's layer names them (`weight`,
`bias`, BN's `running_mean`, ...), so a student model's state dict loads into cnnlab's own
layers and back. Before each forward it hands the student views of those arrays in the
student's layout (so an optimiser step or `load_state_dict` is seen without copying) and after
each backward it reads the student's gradients back. The initial values are those of cnnlab's
own layer (drawn from the scratch generator), so a run with the student's layers starts from
the same weights as one with cnnlab's, and the two can be compared curve for curve.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import itertools
import sys
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

import cnnlab.scratch as scratch
from cnnlab.engines.build import check_supported, instantiate
from cnnlab.errors import CnnlabError
from cnnlab.scratch.module import Module
from cnnlab.scratch.parameter import Parameter
from cnnlab.utils import did_you_mean

LOSS_KINDS = ("CrossEntropyLoss", "MSELoss", "NLLLoss", "BCEWithLogitsLoss")
# classes of cnnlab.scratch that are not ops a student writes
_NOT_OPS = {"Module", "Parameter", "HookHandle", "Sequential", "BasicBlock", "RoIPool"}

# where each of cnnlab's parameter and buffer names may live in a student's class
PARAM_NAMES = {
    "weight": ("weight", "W", "w", "weights", "kernel", "gamma"),
    "bias": ("bias", "b", "beta"),
}
BUFFER_NAMES = {
    "running_mean": ("running_mean", "running_mu", "moving_mean", "mean_running"),
    "running_var": ("running_var", "running_variance", "moving_var", "var_running"),
}
GRAD_FORMS = ("d{}", "grad_{}", "{}_grad", "d_{}", "grad{}")
PARAM_DICTS = ("params", "parameters_", "param", "weights_")
GRAD_DICTS = ("grads", "gradients", "grad")
MODE_KEYWORDS = ("training", "train", "is_training", "mode")


class StudentCodeError(CnnlabError):
    """The student's file could not be imported, or one of its classes misbehaved."""


def op_names() -> tuple[str, ...]:
    """Every op a student's file may provide: cnnlab.scratch's layers and losses."""
    return tuple(name for name in scratch.__all__ if name not in _NOT_OPS)


# --- messages about the student's code ---------------------------------------------------------


def describe_exception(err: BaseException, path: Path | None = None) -> str:
    """'ValueError: msg (my_layers.py, line 12, in forward: `out = x @ W`)': the error and the
    last frame in the student's file (else the last frame), not a traceback wall."""
    text = f"{type(err).__name__}: {err}".rstrip(": ")
    if isinstance(err, SyntaxError):
        where = f"{Path(err.filename or '?').name}, line {err.lineno}"
        code = (err.text or "").strip()
        return f"SyntaxError: {err.msg} ({where}{': `' + code + '`' if code else ''})"
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return text
    own = [f for f in frames if path is not None and Path(f.filename) == path]
    frame = (own or frames)[-1]
    code = (frame.line or "").strip()
    return (f"{text} ({Path(frame.filename).name}, line {frame.lineno}, in {frame.name}"
            + (f": `{code}`" if code else "") + ")")


# --- loading the file ----------------------------------------------------------------------


@dataclass
class StudentLayers:
    """The ops found in a student's file: `classes` {op name: class}, `path` (absolute),
    `sha256` of its text (a resumed run must use the same file)."""

    path: Path
    sha256: str
    classes: dict = field(default_factory=dict)

    def layer_classes(self) -> dict:
        """Factories for the spec's layer kinds, each building a `StudentModule` (or the
        student's class itself when it already is a cnnlab.scratch Module)."""
        return {op: partial(make_module, op, cls, path=self.path)
                for op, cls in self.classes.items() if op not in LOSS_KINDS}

    def describe(self) -> dict:
        return {"file": str(self.path), "sha256": self.sha256, "ops": sorted(self.classes)}


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_layers(path, ops=None) -> StudentLayers:
    """Import the student's file at `path` and find its ops (all of them, or those in `ops`).

    Raises CnnlabError for a missing file, StudentCodeError when the import fails or the file
    provides none of the ops.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise CnnlabError(f"Layers file '{path}' does not exist (or is not a file); give the path "
                          "of a Python file with your classes, e.g. my_layers.py.")
    digest = file_digest(path)
    module_name = f"_cnnlab_student_{path.stem}_{digest[:10]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CnnlabError(f"'{path}' cannot be imported as Python (is it a .py file?).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses in the student's file look themselves up
    sys.path.insert(0, str(path.parent))  # helpers beside the file import as in `python file`
    try:
        spec.loader.exec_module(module)
    except BaseException as err:  # noqa: BLE001 - SystemExit and friends from the file too
        sys.modules.pop(module_name, None)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise StudentCodeError(f"Importing your layers file {path} failed: "
                               f"{describe_exception(err, path)}. Fix it and run again "
                               f"(try `python {path.name}`).") from None
    finally:
        if sys.path and sys.path[0] == str(path.parent):
            sys.path.pop(0)
    classes = _find_classes(module, path)
    if ops is not None:
        missing = [op for op in ops if op not in classes]
        for op in missing:
            if op not in op_names():
                raise CnnlabError(f"--ops names '{op}', which is not an op cnnlab knows."
                                  f"{did_you_mean(op, op_names())} Ops: {', '.join(op_names())}.")
        if missing:
            raise StudentCodeError(f"{path.name} has no {', '.join(missing)} (found: "
                                   f"{', '.join(sorted(classes)) or 'none'}).")
        classes = {op: classes[op] for op in ops}
    return StudentLayers(path, digest, classes)


def _find_classes(module, path: Path) -> dict:
    names = op_names()
    mapping = getattr(module, "LAYERS", None)
    if mapping is not None:
        if not isinstance(mapping, dict):
            raise StudentCodeError(f"LAYERS in {path.name} must be a dict like "
                                   f"{{'Conv2d': MyConv}}; got {type(mapping).__name__}.")
        found = {}
        for op, cls in mapping.items():
            if op not in names:
                raise StudentCodeError(f"LAYERS in {path.name} names '{op}', which is not an op "
                                       f"cnnlab knows.{did_you_mean(str(op), names)} Ops: "
                                       f"{', '.join(names)}.")
            if not inspect.isclass(cls):
                raise StudentCodeError(f"LAYERS['{op}'] in {path.name} must be a class; got "
                                       f"{type(cls).__name__}.")
            found[op] = cls
    else:
        # only classes written in this file: `from torch.nn import ReLU` is not the student's
        found = {name: getattr(module, name) for name in names
                 if inspect.isclass(getattr(module, name, None))
                 and getattr(module, name).__module__ == module.__name__}
    if not found:
        raise StudentCodeError(
            f"{path} defines no class named like a torch.nn op and no LAYERS mapping. Name your "
            f"classes as torch does ({', '.join(names[:8])}, ...) or add LAYERS = "
            "{'Conv2d': MyConv, ...} to the file.")
    for op, cls in found.items():
        if any(base.__module__.startswith("torch.") for base in cls.__mro__[1:]):
            raise StudentCodeError(f"{op} in {path.name} is a torch.nn.Module; this checks and "
                                   "trains NumPy implementations (forward/backward on arrays).")
    return found


# --- constructing a student's class --------------------------------------------------------


def construct(op: str, cls, args: tuple = (), kwargs: dict | None = None, path: Path | None = None):
    """`cls(*args, **kwargs)`, dropping keyword arguments the student's constructor does not
    take when they hold torch's default (Conv2d(..., dilation=1) works for a class without
    `dilation`); a non-default one it does not take is a clear error."""
    kwargs = dict(kwargs or {})
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None and not any(p.kind is p.VAR_KEYWORD
                                         for p in signature.parameters.values()):
        defaults = _torch_defaults(op)
        for key in [k for k in kwargs if k not in signature.parameters]:
            if key in defaults and _same(kwargs[key], defaults[key]):
                del kwargs[key]
            else:
                raise StudentCodeError(
                    f"Your {op} does not take the argument {key}={kwargs[key]!r} (torch's {op} "
                    f"does); add it to {cls.__name__}.__init__.")
    try:
        return cls(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - any error in the student's constructor
        call = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        raise StudentCodeError(f"{op}({call}) raised {describe_exception(err, path)}.") from None


def _torch_defaults(op: str) -> dict:
    reference = getattr(scratch, op, None)
    if reference is None:
        return {}
    return {name: p.default for name, p in inspect.signature(reference).parameters.items()
            if p.default is not p.empty}


def _same(a, b) -> bool:
    if isinstance(b, (int, float)) and isinstance(a, (tuple, list)):
        return all(x == b for x in a)
    return a == b


def make_module(op: str, cls, *args, path: Path | None = None, **kwargs) -> Module:
    """The student's `op` built with torch's arguments, as a cnnlab.scratch Module."""
    if issubclass(cls, Module):
        return construct(op, cls, args, kwargs, path)
    return StudentModule(op, construct(op, cls, args, kwargs, path), args, kwargs, path)


# --- where the student keeps parameters and gradients --------------------------------------


@dataclass
class Slot:
    """One place in the student's object: get() / set(value), and how it reads in messages."""

    owner: object
    key: str
    in_dict: bool = False
    param_object: bool = False  # an object with .data and .grad

    @property
    def label(self) -> str:
        if self.in_dict:
            return f"self.{self.in_dict}['{self.key}']"
        return f"self.{self.key}" + (".data" if self.param_object else "")

    def _raw(self):
        return self.owner[self.key] if self.in_dict else getattr(self.owner, self.key, None)

    def get(self):
        raw = self._raw()
        return raw.data if self.param_object else raw

    def set(self, value) -> None:
        if self.param_object:
            self._raw().data = value
        elif self.in_dict:
            self.owner[self.key] = value
        else:
            setattr(self.owner, self.key, value)


def _array_like(value) -> bool:
    return isinstance(value, np.ndarray) or (np.isscalar(value) and not isinstance(value, str))


def _is_param_object(value) -> bool:
    return (not isinstance(value, np.ndarray) and hasattr(value, "data") and hasattr(value, "grad")
            and isinstance(getattr(value, "data"), np.ndarray))


def find_slot(instance, candidates) -> Slot | None:
    """The first candidate name holding an array: an attribute, a parameter object or an
    entry of a `params`-like dict."""
    for name in candidates:
        value = getattr(instance, name, None)
        if _is_param_object(value):
            return Slot(instance, name, param_object=True)
        if isinstance(value, np.ndarray):
            return Slot(instance, name)
    for dict_name in PARAM_DICTS:
        store = getattr(instance, dict_name, None)
        if isinstance(store, dict):
            for name in candidates:
                if isinstance(store.get(name), np.ndarray):
                    return Slot(store, name, in_dict=dict_name)
    return None


def find_gradient(instance, slot: Slot, canonical: str):
    """(gradient array or None, where it was looked for) for the parameter in `slot`."""
    if slot.param_object:
        return slot._raw().grad, f"self.{slot.key}.grad"
    keys = [form.format(k) for k in (slot.key, canonical) for form in GRAD_FORMS]
    keys = list(dict.fromkeys(keys))
    stores = [(None, instance)] + [(d, getattr(instance, d, None)) for d in GRAD_DICTS]
    if slot.in_dict:  # params['W'] -> grads['W'] (CS231n) or grads['dW']
        keys = [slot.key] + keys
    for dict_name, store in stores:
        for key in keys:
            value = (getattr(store, key, None) if dict_name is None
                     else store.get(key) if isinstance(store, dict) else None)
            if value is not None and _array_like(value):
                return np.asarray(value), (f"self.{key}" if dict_name is None
                                           else f"self.{dict_name}['{key}']")
    tried = ", ".join(f"self.{k}" for k in keys[:6])
    return None, f"{tried}, ... or self.grads[...]"


@dataclass(frozen=True)
class Layout:
    """How the student's array maps to torch's: torch = student.transpose(perm).reshape(shape)."""

    perm: tuple | None
    torch_shape: tuple
    student_shape: tuple

    def to_torch(self, array):
        array = np.asarray(array)
        if self.perm is not None:
            array = array.transpose(self.perm)
        return array.reshape(self.torch_shape)

    def to_student(self, array):
        if self.perm is not None:
            shape = tuple(self.student_shape[i] for i in self.perm)
            return array.reshape(shape).transpose(np.argsort(self.perm))
        return array.reshape(self.student_shape)

    @property
    def name(self) -> str:
        if self.perm is None or self.perm == tuple(range(len(self.perm))):
            return "torch"
        return {(3, 2, 0, 1): "(kh, kw, in, out)", (1, 0): "(in, out)"}.get(self.perm,
                                                                          f"axes {self.perm}")


# the layouts students use besides torch's, most common first
_KNOWN_PERMS = {4: [(3, 2, 0, 1)], 2: [(1, 0)]}


def detect_layout(student_shape, torch_shape) -> Layout | None:
    student_shape, torch_shape = tuple(student_shape), tuple(torch_shape)
    if student_shape == torch_shape:
        return Layout(None, torch_shape, student_shape)
    n = len(student_shape)
    if n == len(torch_shape):
        perms = _KNOWN_PERMS.get(n, []) + list(itertools.permutations(range(n)))
        for perm in perms:
            if tuple(student_shape[i] for i in perm) == torch_shape:
                return Layout(tuple(perm), torch_shape, student_shape)
    if int(np.prod(student_shape)) == int(np.prod(torch_shape)) and \
            sorted(s for s in student_shape if s != 1) == sorted(s for s in torch_shape if s != 1):
        return Layout(None, torch_shape, student_shape)  # a bias kept as (1, out) or (out, 1)
    return None


# --- the adapter ---------------------------------------------------------------------------


class StudentModule(Module):
    """A student's layer instance as a cnnlab.scratch Module (see the module docstring)."""

    def __init__(self, op: str, instance, args=(), kwargs=None, path: Path | None = None):
        super().__init__()
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "instance", instance)
        object.__setattr__(self, "path", path)
        for method in ("backward",):
            if not callable(getattr(instance, method, None)):
                raise StudentCodeError(f"Your {op} ({type(instance).__name__}) has no "
                                       f"{method}(dout) method; see docs/student_layers.md.")
        if not callable(getattr(instance, "forward", None)) and not callable(instance):
            raise StudentCodeError(f"Your {op} ({type(instance).__name__}) has no forward(x).")
        # cnnlab's own layer of that op: the parameter names, torch's shapes, the initial values
        reference = getattr(scratch, op)(*args, **(kwargs or {}))
        object.__setattr__(self, "slots", {})
        object.__setattr__(self, "layouts", {})
        object.__setattr__(self, "buffer_slots", {})
        for name, value, _ in reference.named_parameters():
            if "." in name:
                continue
            slot = find_slot(instance, PARAM_NAMES.get(name, (name,)))
            if slot is None:
                raise StudentCodeError(
                    f"Your {op} keeps no {name} that cnnlab can find: looked for "
                    f"{', '.join('self.' + n for n in PARAM_NAMES.get(name, (name,)))} and "
                    "self.params[...] (arrays); see docs/student_layers.md.")
            layout = detect_layout(np.shape(slot.get()), value.shape)
            if layout is None:
                raise StudentCodeError(
                    f"Your {op}'s {slot.label} has shape {np.shape(slot.get())}; torch's {name} "
                    f"is {value.shape} (or {tuple(reversed(value.shape))}-like layouts).")
            self.slots[name], self.layouts[name] = slot, layout
            setattr(self, name, Parameter(np.array(value)))
        for name, value in reference.named_buffers():
            if "." in name:
                continue
            self.register_buffer(name, np.array(value))
            slot = find_slot(instance, BUFFER_NAMES.get(name, (name,)))
            if slot is not None:
                self.buffer_slots[name] = slot
        object.__setattr__(self, "_grad_places", {})

    # -- the student's view of our arrays --------------------------------------------------

    def _push(self) -> None:
        """Hand the student our values (views in their layout) and the mode."""
        for name, slot in self.slots.items():
            slot.set(self.layouts[name].to_student(self._parameters[name].data))
        for name, slot in self.buffer_slots.items():
            current = np.asarray(slot.get())
            slot.set(np.array(self._buffers[name], dtype=current.dtype
                              if current.dtype.kind == "f" else None).reshape(current.shape))
        instance = self.instance
        try:
            instance.training = self.training
        except AttributeError:
            pass
        mode_method = getattr(instance, "train" if self.training else "eval", None)
        if callable(mode_method) and callable(getattr(instance, "eval", None)):
            mode_method()
        if isinstance(getattr(instance, "mode", None), str):
            instance.mode = "train" if self.training else "test"

    def _pull_buffers(self) -> None:
        for name, slot in self.buffer_slots.items():
            value = np.asarray(slot.get(), dtype=self._buffers[name].dtype)
            self._buffers[name] = value.reshape(self._buffers[name].shape).copy()
        if self.training and "num_batches_tracked" in self._buffers and \
                "num_batches_tracked" not in self.buffer_slots:
            self._buffers["num_batches_tracked"] = self._buffers["num_batches_tracked"] + 1

    def _mode_keyword(self, method) -> str | None:
        """The name of the forward's mode parameter (training, train, is_training, mode), once."""
        if "_mode_key" not in self.__dict__:
            try:
                params = inspect.signature(method).parameters
            except (TypeError, ValueError):
                params = {}
            object.__setattr__(self, "_mode_key", next((k for k in MODE_KEYWORDS if k in params),
                                                       None))
        return self._mode_key

    def _student_error(self, what: str, err: Exception) -> StudentCodeError:
        return StudentCodeError(f"Your {self.op}{self._where()}: {what} raised "
                                f"{describe_exception(err, self.path)}.")

    def forward(self, x):
        self._push()
        method = getattr(self.instance, "forward", None) or self.instance
        key = self._mode_keyword(method)
        kwargs = {} if key is None else {
            key: ("train" if self.training else "test") if key == "mode" else self.training}
        try:
            out = method(x, **kwargs)
        except Exception as err:  # noqa: BLE001 - the student's code: one clear line
            raise self._student_error("forward", err) from None
        if self.training:
            self._pull_buffers()
        if isinstance(out, tuple):
            raise StudentCodeError(f"Your {self.op}{self._where()}: forward returned a tuple of "
                                   f"{len(out)}; return only the output array and keep what "
                                   "backward needs (the cache) on self.")
        if out is None or hasattr(out, "detach"):
            raise StudentCodeError(f"Your {self.op}{self._where()}: forward returned "
                                   f"{'None' if out is None else 'a torch tensor'}; return the "
                                   "output as a NumPy array.")
        return np.asarray(out)

    def student_backward(self, grad_out):
        """(dx, {name: (the student's gradient as they left it, or None; where)})."""
        try:
            dx = self.instance.backward(grad_out)
        except Exception as err:  # noqa: BLE001 - the student's code
            raise self._student_error("backward", err) from None
        grads = {}
        for name, slot in self.slots.items():
            grads[name] = find_gradient(self.instance, slot, name)
        return dx, grads

    def gradient_in_torch_layout(self, name: str, grad):
        """The student's gradient of `name` in torch's layout, or None if its shape fits
        neither the parameter's layout nor torch's."""
        grad = np.asarray(grad)
        layout = self.layouts[name]
        if grad.shape == layout.student_shape:  # a transposed gradient is a bug, not a layout
            return layout.to_torch(grad)
        if grad.size == int(np.prod(layout.torch_shape)) and len(layout.torch_shape) == 1:
            return grad.reshape(layout.torch_shape)
        return None

    def backward(self, grad_out):
        dx, grads = self.student_backward(grad_out)
        for name, (grad, where) in grads.items():
            param = self._parameters[name]
            if grad is None:
                raise StudentCodeError(
                    f"Your {self.op}{self._where()} computed no gradient for its {name} in "
                    f"backward(): cnnlab looked for {where}. Store it there (same shape as "
                    f"{self.slots[name].label}).")
            converted = self.gradient_in_torch_layout(name, grad)
            if converted is None:
                raise StudentCodeError(
                    f"Your {self.op}{self._where()}'s gradient {where} has shape {grad.shape}; "
                    f"its parameter {self.slots[name].label} has shape "
                    f"{self.layouts[name].student_shape}: they must match.")
            converted = np.array(converted, dtype=param.data.dtype)
            param.grad = converted if param.grad is None else param.grad + converted
        if dx is None:
            return None
        return np.asarray(dx)

    def extra_repr(self) -> str:
        return f"student {type(self.instance).__name__} from {self.path.name if self.path else '?'}"


class StudentLoss:
    """A student's loss class with cnnlab's loss interface: forward(logits, target) -> float,
    backward() -> dlogits."""

    def __init__(self, op: str, instance):
        self.op, self.instance = op, instance

    def forward(self, output, target) -> float:
        method = getattr(self.instance, "forward", None) or self.instance
        return float(np.asarray(method(output, target)))

    __call__ = forward

    def backward(self):
        return np.asarray(self.instance.backward())


# --- building a model ----------------------------------------------------------------------


def build_model(root, layers: StudentLayers):
    """The resolved model tree with the student's classes in place of cnnlab's where the file
    provides them (BasicBlock's inner layers stay cnnlab's: the block builds its own)."""
    from cnnlab.engines.scratch_engine import layer_classes

    classes = {**layer_classes(), **layers.layer_classes()}
    check_supported(root, classes, "scratch")
    return instantiate(root, classes, "scratch")


def ops_used(root, layers: StudentLayers) -> list[str]:
    """The student's ops that a model tree builds (outside BasicBlocks), sorted."""
    kinds = set()

    def visit(node):
        kinds.add(node.kind)
        if node.kind == "Sequential":
            for child in node.children:
                visit(child)

    visit(root)
    return sorted(op for op in layers.classes if op in kinds and op not in LOSS_KINDS)


def make_loss(layers: StudentLayers, label_smoothing: float = 0.0):
    """The student's CrossEntropyLoss as the engine's loss, or None when the file has none."""
    cls = layers.classes.get("CrossEntropyLoss")
    if cls is None:
        return None
    kwargs = {"label_smoothing": label_smoothing} if label_smoothing else {}
    return StudentLoss("CrossEntropyLoss", construct("CrossEntropyLoss", cls, (), kwargs,
                                                     layers.path))


def make_adapter(model, layers: StudentLayers, train_cfg, optim_cfg, device: str):
    """The ScratchEngine for a student model, with the student's loss when the file has one."""
    from cnnlab.engines.scratch_engine import ScratchEngine

    return ScratchEngine(model, optim_cfg, label_smoothing=train_cfg.label_smoothing,
                         device=device, ema=train_cfg.ema,
                         loss_fn=make_loss(layers, train_cfg.label_smoothing))
