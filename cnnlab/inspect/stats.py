"""Model statistics by instrumenting one real forward pass, for both engines.

A dummy batch of one sample goes through the model in eval mode with a forward hook on every
module; each hook records the shapes its module saw. Parameters and buffers are counted from
the module tree (unique objects, `requires_grad` honoured), MACs per layer come from
`cnnlab.models.flops.layer_macs` (the one place the formulas live), applied to the shapes seen.
Nothing here formats text: see `cnnlab.inspect.formatting`.
"""

from __future__ import annotations

import inspect as pyinspect
from dataclasses import asdict, dataclass, field
from typing import ClassVar
from math import prod

import numpy as np

from cnnlab.errors import ModelError
from cnnlab.models.flops import CONV_LINEAR, layer_macs

# Buffers whose names end like this are BN running statistics; `num_batches_tracked` is a
# step counter, not a statistic, so it is reported on its own and not added to either total.
RUNNING_STAT_SUFFIXES = ("running_mean", "running_var")
COUNTER_SUFFIXES = ("num_batches_tracked",)

COUNTED_OPS = (
    "MACs counted (per sample, from cnnlab.models.flops): Conv2d = output elements x "
    "in_channels/groups x kh x kw; ConvTranspose2d = input elements x out_channels/groups x kh x "
    "kw; Linear = in x out (bias adds not counted, as in torch.utils.flop_counter); BatchNorm = 1 "
    "per element (inference form x*scale+shift); pooling, activations, dropout, flatten and "
    "residual adds = 0. FLOPs = 2 x MACs."
)
MEMORY_CONVENTION = (
    "Sizes in MB (1e6 bytes), torchinfo's convention: forward/backward = 2 x output bytes of "
    "leaf layers with parameters; params excludes buffers; total = input + fwd/bwd + params."
)


@dataclass(frozen=True)
class LayerStats:
    """One module of the model. Counts cover the module's whole subtree; shapes omit the batch."""

    name: str  # dotted path, as in state_dict keys ("layer1.0.conv1")
    kind: str  # class name, the same in both engines ("Conv2d", "BasicBlock")
    depth: int  # 1 for the model's direct children
    is_leaf: bool
    args: dict  # constructor arguments read back from the module
    in_shape: tuple | None  # None when the forward pass never called this module
    out_shape: tuple | None
    params: int
    trainable_params: int
    macs: int  # per sample, summed over all calls of the module and its descendants
    calls: int


@dataclass(frozen=True)
class Summary:
    """Statistics of one model for one input shape; `str()` is the text table."""

    # the conventions behind the numbers, printed under every table
    counted_ops: ClassVar[str] = COUNTED_OPS
    memory_convention: ClassVar[str] = MEMORY_CONVENTION

    model_name: str
    engine: str
    input_shape: tuple
    depth: int  # display depth: rows deeper than this are folded into their ancestor
    layers: tuple[LayerStats, ...]
    total_params: int
    trainable_params: int
    running_stat_values: int  # BN running_mean + running_var elements
    counter_values: int  # num_batches_tracked elements (reported apart, not in other totals)
    other_buffer_values: int
    macs_by_kind: dict = field(default_factory=dict)
    input_bytes: int = 0
    forward_backward_bytes: int = 0
    param_bytes: int = 0

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def macs(self) -> int:
        return sum(self.macs_by_kind.values())

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def conv_linear_macs(self) -> int:
        return sum(m for kind, m in self.macs_by_kind.items() if kind in CONV_LINEAR)

    @property
    def total_bytes(self) -> int:
        return self.input_bytes + self.forward_backward_bytes + self.param_bytes

    def visible_layers(self, depth: int | None = None) -> list[LayerStats]:
        limit = self.depth if depth is None else depth
        return [layer for layer in self.layers if layer.depth <= limit]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = [asdict(layer) for layer in self.layers]
        data.update(
            non_trainable_params=self.non_trainable_params,
            macs=self.macs,
            flops=self.flops,
            conv_linear_macs=self.conv_linear_macs,
            total_bytes=self.total_bytes,
            counted_ops=COUNTED_OPS,
            memory_convention=MEMORY_CONVENTION,
        )
        return data

    def __str__(self) -> str:
        from cnnlab.inspect.formatting import format_text

        return format_text(self)

    def _repr_html_(self) -> str:
        from cnnlab.inspect.formatting import format_html

        return format_html(self)


# --- engine-neutral access to values: torch tensors, numpy arrays, scratch Parameters ------


def _array(value):
    """The tensor or array behind a parameter or buffer (torch and scratch both use `.data`)."""
    if isinstance(value, np.ndarray):  # an ndarray's own `.data` is a memoryview
        return value
    inner = getattr(value, "data", value)
    return inner if hasattr(inner, "shape") and hasattr(inner, "dtype") else np.asarray(value)


def _numel(value) -> int:
    return int(prod(_array(value).shape))


def _itemsize(value) -> int:
    arr = _array(value)
    if hasattr(arr, "element_size"):
        return int(arr.element_size())
    return int(arr.dtype.itemsize)


def _shape(value) -> tuple | None:
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    return tuple(int(s) for s in value.shape) if hasattr(value, "shape") else None


def _children(module) -> list:
    if hasattr(module, "named_children"):
        return [child for _, child in module.named_children()]
    return [m for n, m in module.named_modules() if n and "." not in n]


def module_args(module) -> dict:
    """The constructor arguments of `module`, read back from its attributes.

    Torch and scratch layers take the same arguments and keep them under the same attribute
    names; a tensor-valued attribute (e.g. `bias`) is reported as whether it is present.
    """
    try:
        signature = pyinspect.signature(type(module).__init__)
    except (TypeError, ValueError):
        return {}
    args = {}
    for name, param in signature.parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name in ("device", "dtype") or not hasattr(module, name):
            continue
        value = getattr(module, name)
        if value is None or hasattr(value, "shape"):
            value = value is not None
        elif isinstance(value, list):
            value = tuple(value)
        if isinstance(value, (bool, int, float, str, tuple)):
            args[name] = value
    return args


def _is_torch(model) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(model, torch.nn.Module)


def _dummy_input(model, input_shape: tuple, engine: str):
    """A zero batch of one sample in the dtype of the model's first parameter."""
    params = list(model.parameters())
    if engine == "torch":
        import torch

        dtype = params[0].dtype if params else torch.float32
        device = params[0].device if params else "cpu"
        return torch.zeros((1, *input_shape), dtype=dtype, device=device)
    dtype = _array(params[0]).dtype if params else np.float32
    return np.zeros((1, *input_shape), dtype=dtype)


def _format_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")" if shape is not None else "(?)"


class _Recorder:
    """Forward hooks that record what every module saw, and where the forward broke."""

    def __init__(self, modules: dict):
        self.modules = modules
        self.in_shapes: dict[str, tuple] = {}
        self.out_shapes: dict[str, tuple] = {}
        self.calls: dict[str, int] = {name: 0 for name in modules}
        self.leaf_macs: dict[str, int] = {name: 0 for name in modules}
        self.leaf_out_bytes: dict[str, int] = {name: 0 for name in modules}
        self.entered: list[str] = []  # modules whose forward started (pre-hooks, when available)
        self.handles: list = []

    def attach(self) -> None:
        for name, module in self.modules.items():
            self.handles.append(module.register_forward_hook(self._post(name)))
            if hasattr(module, "register_forward_pre_hook"):
                self.handles.append(module.register_forward_pre_hook(self._pre(name)))

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _pre(self, name):
        def hook(module, inputs, *_):
            self.entered.append(name)
            shape = _shape(inputs)
            self.in_shapes[name] = shape[1:] if shape else None

        return hook

    def _post(self, name):
        def hook(module, inputs, output, *_):
            shape, out = _shape(inputs), _shape(output)
            in_shape = shape[1:] if shape else None
            out_shape = out[1:] if out else None
            self.in_shapes[name] = in_shape
            self.out_shapes[name] = out_shape
            self.calls[name] += 1
            if not _children(module) and in_shape is not None and out_shape is not None:
                self.leaf_macs[name] += layer_macs(type(module).__name__, module_args(module), in_shape, out_shape)
                out_value = output[0] if isinstance(output, (tuple, list)) else output
                self.leaf_out_bytes[name] += _numel(out_value) * _itemsize(out_value)

        return hook

    def failure(self, err: Exception, input_shape: tuple) -> ModelError:
        """A ModelError naming the first leaf layer that started but did not finish."""
        leaves = [n for n, m in self.modules.items() if not _children(m)]
        broken = [n for n in self.entered if n in leaves and self.calls[n] == 0]
        if not broken:  # no pre-hooks: the first leaf, in order, that never finished
            broken = [n for n in leaves if self.calls[n] == 0]
        where = "the model's own forward (no layer had started)"
        if broken:
            name = broken[0]
            kind = type(self.modules[name]).__name__
            received = self.in_shapes.get(name)
            where = f"layer '{name}' ({kind})"
            if received is not None:
                where += f", which received input of shape {_format_shape(received)}"
        done = [n for n in leaves if self.calls[n]]
        last = f" The last layer that ran was '{done[-1]}' with output {_format_shape(self.out_shapes[done[-1]])}." if done else ""
        return ModelError(
            f"The model cannot take input shape {_format_shape(input_shape)} (batch of 1): the "
            f"forward pass broke at {where}: {type(err).__name__}: {str(err).rstrip('.')}.{last} Check the input "
            "shape (--input C x H x W) or the layer sizes."
        )


def collect(model, input_shape: tuple, *, model_name: str = "model", depth: int = 3) -> Summary:
    """Instrument one forward pass of `model` (torch or scratch) on a zero batch of one sample.

    The model's train/eval mode is restored and every hook removed afterwards, also when the
    forward fails; the forward runs in eval mode so BN running statistics are not touched.
    """
    input_shape = tuple(int(s) for s in input_shape)
    engine = "torch" if _is_torch(model) else "scratch"
    modules = {name: module for name, module in model.named_modules() if name}
    recorder = _Recorder(modules)
    was_training = {name: m.training for name, m in model.named_modules()}
    x = _dummy_input(model, input_shape, engine)
    try:
        recorder.attach()
        model.eval()
        try:
            if engine == "torch":
                import torch

                with torch.no_grad():
                    model(x)
            else:
                model(x)
        except Exception as err:  # any failure inside the model is a shape/model problem
            raise recorder.failure(err, input_shape) from err
    finally:
        recorder.detach()
        for name, module in model.named_modules():  # parents first, so children win
            module.train(was_training[name])

    layers = [_layer_stats(name, module, recorder) for name, module in modules.items()]
    params = _unique(model.parameters())
    buffers = list(model.named_buffers())
    macs_by_kind: dict[str, int] = {}
    for layer in layers:
        if layer.is_leaf and layer.macs:
            macs_by_kind[layer.kind] = macs_by_kind.get(layer.kind, 0) + layer.macs
    return Summary(
        model_name=model_name,
        engine=engine,
        input_shape=input_shape,
        depth=int(depth),
        layers=tuple(layers),
        total_params=sum(_numel(p) for p in params),
        trainable_params=sum(_numel(p) for p in params if getattr(p, "requires_grad", True)),
        running_stat_values=sum(_numel(b) for n, b in buffers if n.endswith(RUNNING_STAT_SUFFIXES)),
        counter_values=sum(_numel(b) for n, b in buffers if n.endswith(COUNTER_SUFFIXES)),
        other_buffer_values=sum(
            _numel(b) for n, b in buffers if not n.endswith(RUNNING_STAT_SUFFIXES + COUNTER_SUFFIXES)
        ),
        macs_by_kind=dict(sorted(macs_by_kind.items())),
        input_bytes=_numel(x) * _itemsize(x),
        forward_backward_bytes=2 * sum(
            recorder.leaf_out_bytes[layer.name] for layer in layers if layer.is_leaf and layer.params
        ),
        param_bytes=sum(_numel(p) * _itemsize(p) for p in params),
    )


def _unique(values) -> list:
    """Parameters shared between layers are counted once."""
    seen, unique = set(), []
    for value in values:
        if id(value) not in seen:
            seen.add(id(value))
            unique.append(value)
    return unique


def _layer_stats(name: str, module, recorder: _Recorder) -> LayerStats:
    params = _unique(module.parameters())
    prefix = name + "."
    subtree = [n for n in recorder.modules if n == name or n.startswith(prefix)]
    return LayerStats(
        name=name,
        kind=type(module).__name__,
        depth=name.count(".") + 1,
        is_leaf=not _children(module),
        args=module_args(module),
        in_shape=recorder.in_shapes.get(name) if recorder.calls[name] else None,
        out_shape=recorder.out_shapes.get(name),
        params=sum(_numel(p) for p in params),
        trainable_params=sum(_numel(p) for p in params if getattr(p, "requires_grad", True)),
        macs=sum(recorder.leaf_macs[n] for n in subtree),
        calls=recorder.calls[name],
    )
