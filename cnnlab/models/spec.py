"""The model spec language and shape inference.

A spec is a list of layers; each layer is a bare word (`relu`) or a one-key mapping
(`conv: {out: 32, k: 3, pad: 1}`), optionally with a `name:` beside it. Input sizes are never
written: they are inferred from the previous layer. In YAML::

    - {conv: {out: 16, k: 3, pad: 1}, name: conv1}
    - {bn: {}, name: bn1}
    - {leaky_relu: 0.01}
    - {maxpool: 2}
    - flatten
    - {linear: 128, name: fc1}
    - {linear: classes, name: fc2}   # `classes` is the number of classes

Layer words (short argument forms in brackets):
  conv (out)          out, k=3, stride=1, pad=0, dilation=1, groups=1, bias=true
  conv_transpose (out) out, k=3, stride=1, pad=0, output_pad=0, dilation=1, groups=1, bias=true
  linear (out)        out, bias=true
  bn                  eps=1e-5, momentum=0.1   (BatchNorm2d after convs, BatchNorm1d on vectors)
  relu, sigmoid, tanh, flatten
  leaky_relu (slope)  slope=0.01
  maxpool (k)         k, stride=k, pad=0
  avgpool (k)         k, stride=k, pad=0, count_include_pad=true
  adaptive_avgpool (size)  size=1
  adaptive_maxpool (size)  size=1
  dropout (p)         p=0.5
  dropout2d (p)       p=0.5   (a whole channel at a time; image inputs)
  gelu (approximate)  approximate=none (or tanh)
  silu
  softmax (dim), logsoftmax (dim)  dim=1 (torch's dim, counting the batch: 1 is the
                      channels/features)
  layernorm (dims)    dims=all, eps=1e-5, affine=true  (normalises the last `dims` dims of a
                      sample: `layernorm: 1` on (C, H, W) is LayerNorm(W))
  groupnorm (groups)  groups, eps=1e-5, affine=true  (groups must divide the channels)
  upsample (scale)    scale or size (exactly one), mode=nearest (or bilinear),
                      align_corners=false (bilinear only)
  block (out)         a ResNet basic block: out, stride=1
  seq                 a named group of layers: `{seq: [...], name: layer1}`

Torch-style argument names (`out_channels`, `kernel_size`, `padding`, ...) are accepted too.
Unnamed layers are named by their index, as in `torch.nn.Sequential`. Parameter names in both
engines follow from these names (`conv1.weight`, `layer1.0.bn1.running_mean`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from math import prod
from typing import Any, Iterator

from cnnlab.errors import ModelError
from cnnlab.models.flops import CONV_LINEAR, layer_buffers, layer_macs, layer_params
from cnnlab.utils import did_you_mean, pair


@dataclass
class Node:
    """One resolved layer: a torch class name, its constructor kwargs and its shapes.

    `in_shape`/`out_shape` exclude the batch dimension: (C, H, W) for images, (F,) for vectors.
    `children` holds the sub-layers of `Sequential` and `BasicBlock` nodes.
    """

    name: str
    kind: str
    args: dict
    in_shape: tuple
    out_shape: tuple
    children: list["Node"] = field(default_factory=list)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, "Node"]]:
        """Yield (dotted path, node) for this node and every descendant, parents first."""
        yield prefix, self
        for child in self.children:
            path = f"{prefix}.{child.name}" if prefix else child.name
            yield from child.walk(path)

    def leaves(self) -> Iterator["Node"]:
        for _, node in self.walk():
            if not node.children:
                yield node

    def params(self) -> int:
        return layer_params(self.kind, self.args)

    def macs(self) -> int:
        return layer_macs(self.kind, self.args, self.in_shape, self.out_shape)

    def total_params(self) -> int:
        return sum(n.params() for n in self.leaves())

    def total_buffers(self) -> int:
        return sum(layer_buffers(n.kind, n.args) for n in self.leaves())

    def total_macs(self) -> int:
        return sum(n.macs() for n in self.leaves())

    def conv_linear_macs(self) -> int:
        return sum(n.macs() for n in self.leaves() if n.kind in CONV_LINEAR)


# spec word -> (torch kind, {spec key: torch kwarg}, short-form key)
_ALIASES = {
    "out": "out", "out_channels": "out", "out_features": "out",
    "k": "k", "kernel_size": "k", "kernel": "k",
    "stride": "stride", "s": "stride",
    "pad": "pad", "padding": "pad",
    "dilation": "dilation", "groups": "groups", "bias": "bias",
    "output_pad": "output_pad", "output_padding": "output_pad",
    "p": "p", "slope": "slope", "negative_slope": "slope",
    "size": "size", "output_size": "size",
    "eps": "eps", "momentum": "momentum", "count_include_pad": "count_include_pad",
    "num_groups": "groups", "approximate": "approximate", "dim": "dim", "dims": "dims",
    "affine": "affine", "elementwise_affine": "affine", "scale": "scale",
    "scale_factor": "scale", "mode": "mode", "align_corners": "align_corners",
}

_LAYER_KEYS = {
    "conv": ("out", {"out": None, "k": 3, "stride": 1, "pad": 0, "dilation": 1, "groups": 1, "bias": True}),
    "conv_transpose": ("out", {"out": None, "k": 3, "stride": 1, "pad": 0, "output_pad": 0,
                               "dilation": 1, "groups": 1, "bias": True}),
    "linear": ("out", {"out": None, "bias": True}),
    "bn": (None, {"eps": 1e-5, "momentum": 0.1}),
    "relu": (None, {}), "sigmoid": (None, {}), "tanh": (None, {}), "flatten": (None, {}),
    "leaky_relu": ("slope", {"slope": 0.01}),
    "maxpool": ("k", {"k": None, "stride": None, "pad": 0}),
    "avgpool": ("k", {"k": None, "stride": None, "pad": 0, "count_include_pad": True}),
    "adaptive_avgpool": ("size", {"size": 1}),
    "adaptive_maxpool": ("size", {"size": 1}),
    "dropout": ("p", {"p": 0.5}),
    "dropout2d": ("p", {"p": 0.5}),
    "gelu": ("approximate", {"approximate": "none"}),
    "silu": (None, {}),
    "softmax": ("dim", {"dim": 1}), "logsoftmax": ("dim", {"dim": 1}),
    "layernorm": ("dims", {"dims": None, "eps": 1e-5, "affine": True}),
    "groupnorm": ("groups", {"groups": None, "eps": 1e-5, "affine": True}),
    "upsample": ("scale", {"scale": None, "size": None, "mode": "nearest", "align_corners": None}),
    "block": ("out", {"out": None, "stride": 1}),
}
_WORD_ALIASES = {
    "Conv2d": "conv", "ConvTranspose2d": "conv_transpose", "convT": "conv_transpose",
    "Linear": "linear", "fc": "linear", "batchnorm": "bn", "BatchNorm": "bn",
    "BatchNorm1d": "bn", "BatchNorm2d": "bn", "ReLU": "relu", "LeakyReLU": "leaky_relu",
    "lrelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Flatten": "flatten",
    "MaxPool2d": "maxpool", "AvgPool2d": "avgpool", "AdaptiveAvgPool2d": "adaptive_avgpool",
    "gap": "adaptive_avgpool", "Dropout": "dropout", "BasicBlock": "block", "basic_block": "block",
    "Sequential": "seq", "group": "seq",
    "AdaptiveMaxPool2d": "adaptive_maxpool", "Dropout2d": "dropout2d", "GELU": "gelu",
    "SiLU": "silu", "swish": "silu", "Softmax": "softmax", "LogSoftmax": "logsoftmax",
    "log_softmax": "logsoftmax", "LayerNorm": "layernorm", "layer_norm": "layernorm",
    "ln": "layernorm", "GroupNorm": "groupnorm", "group_norm": "groupnorm", "gn": "groupnorm",
    "Upsample": "upsample",
}
# arguments that may stay unset (None): the layer derives them or takes one of a pair
_MAY_BE_NONE = ("stride", "dims", "scale", "size", "align_corners")
LAYER_WORDS = sorted(set(_LAYER_KEYS) | {"seq"})


def _parse_item(item: Any, where: str) -> tuple[str, Any, str | None]:
    """Split one spec entry into (word, argument, explicit name)."""
    if isinstance(item, str):
        return _WORD_ALIASES.get(item, item), None, None
    if isinstance(item, dict):
        item = dict(item)
        name = item.pop("name", None)
        if len(item) != 1:
            raise ModelError(
                f"Spec entry {where} must have exactly one layer word (plus an optional 'name'), "
                f"got keys {sorted(item)}. Example: {{conv: {{out: 32, k: 3}}, name: conv1}}."
            )
        (word, arg), = item.items()
        return _WORD_ALIASES.get(word, word), arg, (str(name) if name is not None else None)
    raise ModelError(
        f"Spec entry {where} is {item!r} ({type(item).__name__}); expected a layer word such as "
        f"'relu' or a mapping such as {{conv: {{out: 32, k: 3}}}}."
    )


def _layer_args(word: str, arg: Any, where: str, num_classes: int) -> dict:
    """Fill a layer word's arguments from its short form or mapping, with defaults."""
    short, defaults = _LAYER_KEYS[word]
    given: dict = {}
    if isinstance(arg, dict):
        for key, value in arg.items():
            canonical = _ALIASES.get(key)
            if canonical is None or canonical not in defaults:
                raise ModelError(
                    f"Unknown argument '{key}' for '{word}' at {where}; valid arguments: "
                    f"{', '.join(defaults) or 'none'}.{did_you_mean(key, defaults)}"
                )
            given[canonical] = value
    elif arg is not None:
        if short is None:
            raise ModelError(f"'{word}' at {where} takes no short argument, got {arg!r}.")
        given[short] = arg
    values = {**defaults, **given}
    if values.get("out") in ("classes", "num_classes"):
        values["out"] = num_classes
    missing = [k for k, v in values.items() if v is None and k not in _MAY_BE_NONE]
    if missing:
        raise ModelError(f"'{word}' at {where} needs {', '.join(missing)} (e.g. {{{word}: {{{missing[0]}: ...}}}}).")
    return values


# --- value rules: checked before any shape arithmetic or building ------------------------------
# spec key -> (smallest allowed value, what the key means); keys that are pairs are checked per side
_VALUE_RULES = {
    "out": (1, "the number of output channels/features"),
    "k": (1, "the kernel size"),
    "stride": (1, "the stride"),
    "pad": (0, "the padding"),
    "dilation": (1, "the dilation"),
    "groups": (1, "the number of groups"),
    "output_pad": (0, "the output padding"),
    "size": (1, "the output size"),
}
_KINDS = {"conv": "Conv2d", "conv_transpose": "ConvTranspose2d", "linear": "Linear", "bn": "BatchNorm",
          "maxpool": "MaxPool2d", "avgpool": "AvgPool2d", "adaptive_avgpool": "AdaptiveAvgPool2d",
          "dropout": "Dropout", "block": "BasicBlock", "leaky_relu": "LeakyReLU",
          "adaptive_maxpool": "AdaptiveMaxPool2d", "dropout2d": "Dropout2d", "gelu": "GELU",
          "softmax": "Softmax", "logsoftmax": "LogSoftmax", "layernorm": "LayerNorm",
          "groupnorm": "GroupNorm", "upsample": "Upsample"}


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_layer_values(word: str, a: dict, path: str) -> None:
    """Raise ModelError naming the layer and the value for any argument out of its range.

    Runs before shape inference, so `stride: 0` or `k: -3` never reach a division or a
    negative tensor dimension.
    """
    kind = _KINDS.get(word, word)

    def fail(key, value, rule):
        raise ModelError(f"{kind} at layer '{path}': '{key}' must be {rule}, got {value!r}.")

    for key, (low, meaning) in _VALUE_RULES.items():
        value = a.get(key)
        if key not in a or (value is None and key in _MAY_BE_NONE):
            continue
        parts = list(value) if isinstance(value, (list, tuple)) else [value]
        pair_ok = isinstance(value, (list, tuple)) and len(value) == 2 and key != "out"
        rule = f"an integer >= {low} ({meaning})" + (" or a pair of them" if key not in ("out", "groups") else "")
        if isinstance(value, (list, tuple)) and not pair_ok:
            fail(key, value, rule)
        if not all(_is_int(v) and v >= low for v in parts):
            fail(key, value, rule)
        if key == "groups" and isinstance(value, (list, tuple)):
            fail(key, value, rule)
    if word in ("dropout", "dropout2d") and not (_is_number(a["p"]) and 0 <= a["p"] < 1):
        fail("p", a["p"], "a number in [0, 1) (the probability of zeroing an element)")
    if word == "leaky_relu" and not _is_number(a["slope"]):
        fail("slope", a["slope"], "a number")
    if word in ("bn", "layernorm", "groupnorm") and not (_is_number(a["eps"]) and a["eps"] > 0):
        fail("eps", a["eps"], "a number > 0")
    if word in ("layernorm", "groupnorm") and not isinstance(a["affine"], bool):
        fail("affine", a["affine"], "true or false (learned per-element scale and shift)")
    if word == "bn":
        if not (_is_number(a["momentum"]) and 0 <= a["momentum"] <= 1):
            fail("momentum", a["momentum"], "a number in [0, 1]")
    if word == "gelu" and a["approximate"] not in ("none", "tanh"):
        fail("approximate", a["approximate"], "'none' (the exact erf form) or 'tanh'")
    if word in ("softmax", "logsoftmax") and not _is_int(a["dim"]):
        fail("dim", a["dim"], "an integer (torch's dim, counting the batch dimension)")
    if word == "layernorm" and a["dims"] is not None and not (_is_int(a["dims"]) and a["dims"] >= 1):
        fail("dims", a["dims"], "an integer >= 1 (how many trailing dims of a sample to normalise)")
    if word == "upsample":
        if (a["scale"] is None) == (a["size"] is None):
            fail("scale", a["scale"], f"given alone: set exactly one of 'scale' and 'size' (size is {a['size']!r})")
        scales = a["scale"] if isinstance(a["scale"], (list, tuple)) else [a["scale"]]
        if a["scale"] is not None and not (len(scales) in (1, 2) and all(_is_number(v) and v > 0 for v in scales)):
            fail("scale", a["scale"], "a number > 0 or a pair of them")
        if a["mode"] not in ("nearest", "bilinear"):
            fail("mode", a["mode"], "'nearest' or 'bilinear'")
        if a["align_corners"] is not None and (a["mode"] != "bilinear" or not isinstance(a["align_corners"], bool)):
            fail("align_corners", a["align_corners"], "true or false, and only with mode bilinear (as in torch)")
    if word in ("maxpool", "avgpool"):
        k, p = pair(a["k"]), pair(a["pad"])
        if any(p[i] > k[i] // 2 for i in range(2)):
            fail("pad", a["pad"], f"at most half the kernel size {a['k']!r}")
    if word == "conv_transpose":
        s, d, op = pair(a["stride"]), pair(a["dilation"]), pair(a["output_pad"])
        if any(op[i] >= max(s[i], d[i]) for i in range(2)):
            fail("output_pad", a["output_pad"], "smaller than the stride or the dilation")


def _conv_out(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _shape_str(shape: tuple) -> str:
    return "x".join(str(s) for s in shape)


class _Resolver:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def sequence(self, items: list, in_shape: tuple, name: str, path: str) -> Node:
        if not isinstance(items, (list, tuple)) or not items:
            raise ModelError(f"A spec must be a non-empty list of layers; got {items!r} at '{path or 'model'}'.")
        children, shape, used = [], tuple(in_shape), set()
        for index, item in enumerate(items):
            where = f"'{path}[{index}]'" if path else f"entry {index}"
            word, arg, child_name = _parse_item(item, where)
            child_name = child_name or str(index)
            if child_name in used:
                raise ModelError(f"Layer name '{child_name}' is used twice in '{path or 'model'}'.")
            used.add(child_name)
            child_path = f"{path}.{child_name}" if path else child_name
            node = self.layer(word, arg, shape, child_name, child_path, where)
            children.append(node)
            shape = node.out_shape
        return Node(name, "Sequential", {}, tuple(in_shape), shape, children)

    def layer(self, word: str, arg: Any, shape: tuple, name: str, path: str, where: str) -> Node:
        if word == "seq":
            layers = arg.get("layers") if isinstance(arg, dict) else arg
            return self.sequence(layers, shape, name, path)
        if word not in _LAYER_KEYS:
            raise ModelError(
                f"Unknown layer '{word}' at {where}; known layers: {', '.join(LAYER_WORDS)}."
                f"{did_you_mean(word, LAYER_WORDS)}"
            )
        a = _layer_args(word, arg, where, self.num_classes)
        check_layer_values(word, a, path)
        builder = getattr(self, f"_{word}")
        return builder(a, tuple(shape), name, path)

    # --- shape rules, one per layer word -------------------------------------------------
    def _need_image(self, shape, kind, path):
        if len(shape) != 3:
            raise ModelError(
                f"{kind} at layer '{path}' needs an image input (C, H, W) but receives shape "
                f"({_shape_str(shape)}); it cannot follow a flatten or linear layer."
            )

    def _spatial(self, shape, kind, path, k, stride, pad, dilation=(1, 1)):
        out = tuple(_conv_out(shape[i + 1], k[i], stride[i], pad[i], dilation[i]) for i in range(2))
        if min(out) < 1:
            need = tuple(dilation[i] * (k[i] - 1) + 1 - 2 * pad[i] for i in range(2))
            raise ModelError(
                f"{kind}(kernel_size={k[0] if k[0] == k[1] else k}) at layer '{path}' needs a "
                f"spatial size of at least {need[0]}x{need[1]} but receives {shape[1]}x{shape[2]} "
                f"(input shape {_shape_str(shape)}). The input images are too small for this "
                "model: use larger inputs or a model with fewer downsampling layers."
            )
        return out

    def _conv(self, a, shape, name, path):
        self._need_image(shape, "Conv2d", path)
        k, s, p, d = pair(a["k"]), pair(a["stride"]), pair(a["pad"]), pair(a["dilation"])
        c_in, groups = shape[0], int(a["groups"])
        if c_in % groups or int(a["out"]) % groups:
            raise ModelError(f"Conv2d at layer '{path}': groups={groups} must divide in_channels={c_in} and out_channels={a['out']}.")
        hw = self._spatial(shape, "Conv2d", path, k, s, p, d)
        args = dict(in_channels=c_in, out_channels=int(a["out"]), kernel_size=k, stride=s,
                    padding=p, dilation=d, groups=groups, bias=bool(a["bias"]))
        return Node(name, "Conv2d", args, shape, (int(a["out"]),) + hw)

    def _conv_transpose(self, a, shape, name, path):
        self._need_image(shape, "ConvTranspose2d", path)
        k, s, p, d = pair(a["k"]), pair(a["stride"]), pair(a["pad"]), pair(a["dilation"])
        op = pair(a["output_pad"])
        groups = int(a["groups"])
        if shape[0] % groups or int(a["out"]) % groups:
            raise ModelError(f"ConvTranspose2d at layer '{path}': groups={groups} must divide in_channels={shape[0]} and out_channels={a['out']}.")
        hw = tuple((shape[i + 1] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i in range(2))
        if min(hw) < 1:
            raise ModelError(f"ConvTranspose2d at layer '{path}' gives an empty output for input {_shape_str(shape)}.")
        args = dict(in_channels=shape[0], out_channels=int(a["out"]), kernel_size=k, stride=s,
                    padding=p, output_padding=op, groups=int(a["groups"]), bias=bool(a["bias"]),
                    dilation=d)
        return Node(name, "ConvTranspose2d", args, shape, (int(a["out"]),) + hw)

    def _linear(self, a, shape, name, path):
        if len(shape) != 1:
            raise ModelError(
                f"Linear at layer '{path}' needs a flat input (features,) but receives shape "
                f"({_shape_str(shape)}); add 'flatten' before it."
            )
        args = dict(in_features=shape[0], out_features=int(a["out"]), bias=bool(a["bias"]))
        return Node(name, "Linear", args, shape, (int(a["out"]),))

    def _bn(self, a, shape, name, path):
        kind = "BatchNorm2d" if len(shape) == 3 else "BatchNorm1d"
        args = dict(num_features=shape[0], eps=float(a["eps"]), momentum=float(a["momentum"]))
        return Node(name, kind, args, shape, shape)

    def _simple(kind):  # noqa: N805 - a factory for shape-preserving layers
        def build(self, a, shape, name, path):
            return Node(name, kind, {}, shape, shape)
        return build

    _relu, _sigmoid, _tanh = _simple("ReLU"), _simple("Sigmoid"), _simple("Tanh")
    _silu = _simple("SiLU")

    def _gelu(self, a, shape, name, path):
        return Node(name, "GELU", dict(approximate=a["approximate"]), shape, shape)

    def _softmax_kind(self, kind, a, shape, name, path):
        dim, ndim = int(a["dim"]), len(shape) + 1
        if not -ndim <= dim < ndim:
            raise ModelError(
                f"{kind} at layer '{path}': 'dim' must be in [{-ndim}, {ndim - 1}] for its "
                f"input (batch, {_shape_str(shape)}), got {dim}.")
        return Node(name, kind, dict(dim=dim), shape, shape)

    def _softmax(self, a, shape, name, path):
        return self._softmax_kind("Softmax", a, shape, name, path)

    def _logsoftmax(self, a, shape, name, path):
        return self._softmax_kind("LogSoftmax", a, shape, name, path)

    def _layernorm(self, a, shape, name, path):
        dims = len(shape) if a["dims"] is None else int(a["dims"])
        if dims > len(shape):
            raise ModelError(
                f"LayerNorm at layer '{path}': 'dims' is {dims} but its input has {len(shape)} "
                f"dim(s) per sample ({_shape_str(shape)}).")
        args = dict(normalized_shape=tuple(shape[len(shape) - dims:]), eps=float(a["eps"]),
                    elementwise_affine=bool(a["affine"]))
        return Node(name, "LayerNorm", args, shape, shape)

    def _groupnorm(self, a, shape, name, path):
        groups, channels = int(a["groups"]), shape[0]
        if channels % groups:
            raise ModelError(
                f"GroupNorm at layer '{path}': groups={groups} must divide the {channels} "
                f"channel(s) of its input ({_shape_str(shape)}).")
        args = dict(num_groups=groups, num_channels=channels, eps=float(a["eps"]),
                    affine=bool(a["affine"]))
        return Node(name, "GroupNorm", args, shape, shape)

    def _dropout2d(self, a, shape, name, path):
        self._need_image(shape, "Dropout2d", path)
        return Node(name, "Dropout2d", dict(p=float(a["p"])), shape, shape)

    def _upsample(self, a, shape, name, path):
        self._need_image(shape, "Upsample", path)
        args = dict(mode=a["mode"])
        if a["size"] is not None:
            hw = pair(a["size"])
            args["size"] = hw
        else:
            scale = a["scale"]
            scales = tuple(scale) if isinstance(scale, (list, tuple)) else (scale, scale)
            if len(scales) == 1:
                scales = scales * 2
            hw = tuple(int(shape[i + 1] * float(scales[i])) for i in range(2))  # torch floors
            args["scale_factor"] = tuple(float(v) for v in scales) if scales[0] != scales[1] \
                else float(scales[0])
            if min(hw) < 1:
                raise ModelError(
                    f"Upsample at layer '{path}': scale {scale!r} gives an empty output for input "
                    f"{_shape_str(shape)}.")
        if a["mode"] == "bilinear":
            args["align_corners"] = bool(a["align_corners"])
        return Node(name, "Upsample", args, shape, (shape[0],) + tuple(hw))

    def _leaky_relu(self, a, shape, name, path):
        return Node(name, "LeakyReLU", dict(negative_slope=float(a["slope"])), shape, shape)

    def _dropout(self, a, shape, name, path):
        p = float(a["p"])
        if not 0.0 <= p < 1.0:
            raise ModelError(f"Dropout at layer '{path}' needs 0 <= p < 1, got {p}.")
        return Node(name, "Dropout", dict(p=p), shape, shape)

    def _flatten(self, a, shape, name, path):
        return Node(name, "Flatten", {}, shape, (prod(shape),))

    def _pool(self, kind, a, shape, name, path):
        self._need_image(shape, kind, path)
        k = pair(a["k"])
        s = pair(a["stride"]) if a["stride"] is not None else k
        p = pair(a["pad"])
        hw = self._spatial(shape, kind, path, k, s, p)
        args = dict(kernel_size=k, stride=s, padding=p)
        if kind == "AvgPool2d":
            args["count_include_pad"] = bool(a["count_include_pad"])
        return Node(name, kind, args, shape, (shape[0],) + hw)

    def _maxpool(self, a, shape, name, path):
        return self._pool("MaxPool2d", a, shape, name, path)

    def _avgpool(self, a, shape, name, path):
        return self._pool("AvgPool2d", a, shape, name, path)

    def _adaptive_avgpool(self, a, shape, name, path):
        self._need_image(shape, "AdaptiveAvgPool2d", path)
        size = pair(a["size"])
        return Node(name, "AdaptiveAvgPool2d", dict(output_size=size), shape, (shape[0],) + size)

    def _adaptive_maxpool(self, a, shape, name, path):
        self._need_image(shape, "AdaptiveMaxPool2d", path)
        size = pair(a["size"])
        return Node(name, "AdaptiveMaxPool2d", dict(output_size=size), shape, (shape[0],) + size)

    def _block(self, a, shape, name, path):
        self._need_image(shape, "BasicBlock", path)
        c_in, c_out, stride = shape[0], int(a["out"]), int(a["stride"])
        inner = [
            {"conv": {"out": c_out, "k": 3, "stride": stride, "pad": 1, "bias": False}, "name": "conv1"},
            {"bn": {}, "name": "bn1"},
            {"conv": {"out": c_out, "k": 3, "stride": 1, "pad": 1, "bias": False}, "name": "conv2"},
            {"bn": {}, "name": "bn2"},
        ]
        body = self.sequence(inner, shape, name, path)
        children = body.children
        if stride != 1 or c_in != c_out:
            shortcut = [{"conv": {"out": c_out, "k": 1, "stride": stride, "bias": False}}, {"bn": {}}]
            children.append(self.sequence(shortcut, shape, "downsample", f"{path}.downsample"))
        args = dict(in_channels=c_in, out_channels=c_out, stride=stride)
        return Node(name, "BasicBlock", args, shape, body.out_shape, children)


def resolve_spec(spec: list, input_shape: tuple, num_classes: int = 10) -> Node:
    """Infer every layer's shapes and constructor arguments; the root is a `Sequential` Node.

    Raises ModelError naming the layer where the shapes stop fitting.
    """
    if not _is_int(num_classes) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer (the number of classes; --classes on the "
                         f"command line), got {num_classes!r}.")
    if not all(_is_int(s) for s in input_shape):
        raise ModelError(f"input_shape must be (C, H, W) or (features,) with positive integer sizes, got {input_shape!r}.")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ModelError(f"input_shape must be (C, H, W) or (features,) with positive sizes, got {input_shape!r}.")
    return _Resolver(int(num_classes)).sequence(spec, shape, "", "")
