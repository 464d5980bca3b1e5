"""The zoo: named models as data. Each entry turns its options into a spec (a list of layers).

Entries are registered by name; `names()` lists them and `get(name)` returns the entry, whose
`options` are the keys a config may set under `model:` (e.g. `model.bn: false`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from cnnlab.errors import ModelError
from cnnlab.utils import did_you_mean


@dataclass(frozen=True)
class ZooEntry:
    name: str
    make_spec: Callable[..., list]
    input_shape: tuple
    description: str
    options: dict = field(default_factory=dict)

    def spec(self, **options) -> list:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ModelError(
                f"Model '{self.name}' has no option '{unknown[0]}'; its options are: "
                f"{', '.join(self.options) or 'none'}.{did_you_mean(unknown[0], self.options)}"
            )
        return self.make_spec(**{**self.options, **options})


_REGISTRY: dict[str, ZooEntry] = {}


def register(name: str, input_shape: tuple, description: str, **options):
    """Decorator: add a spec-making function to the zoo under `name`."""

    def wrap(make_spec: Callable[..., list]) -> Callable[..., list]:
        _REGISTRY[name] = ZooEntry(name, make_spec, tuple(input_shape), description, dict(options))
        return make_spec

    return wrap


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> ZooEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"Unknown model '{name}'; the zoo has: {', '.join(_REGISTRY)}.{did_you_mean(name, _REGISTRY)} "
            "A spec file (YAML list of layers) can be given instead of a name."
        ) from None


# --- building blocks ---------------------------------------------------------------------
def _fc_head(widths: list[int], act="relu", bn_first: bool = False, bn: bool = True) -> list:
    """Linear layers `fc1..` of `widths`, each with an activation and BN (in the order asked),
    then the classifier `fc<n+1>`."""
    layers = []
    for i, width in enumerate(widths, start=1):
        layers.append({"linear": width, "name": f"fc{i}"})
        norm = [{"bn": {}, "name": f"bn_fc{i}"}] if bn else []
        layers += (norm + [act]) if bn_first else ([act] + norm)
    layers.append({"linear": "classes", "name": f"fc{len(widths) + 1}"})
    return layers


# --- the zoo -------------------------------------------------------------------------------
@register("mlp", (1, 28, 28), "Flatten, Linear 120, ReLU, BN, Linear 84, ReLU, BN, Linear")
def mlp() -> list:
    return ["flatten"] + _fc_head([120, 84])


def _lenet(pool: bool) -> list:
    layers = [{"conv": {"out": 6, "k": 5}, "name": "conv1"}, "relu"]
    layers += [{"maxpool": 2, "name": "pool1"}] if pool else []
    layers += [{"conv": {"out": 16, "k": 3}, "name": "conv2"}, "relu"]
    layers += [{"maxpool": 2, "name": "pool2"}] if pool else []
    return layers + ["flatten"] + _fc_head([120, 84])


@register("lenet", (1, 28, 28), "LeNet-style: conv 6 k5, pool, conv 16 k3, pool, MLP head with BN")
def lenet() -> list:
    return _lenet(pool=True)


@register("lenet_nopool", (1, 28, 28), "lenet without the two pooling layers")
def lenet_nopool() -> list:
    return _lenet(pool=False)


@register("deep_cnn", (1, 28, 28), "conv blocks (6, 12, 24) with BN and dropout, then an FC head",
          bn=True, dropout=0.75, conv_blocks=3, fc_layers=3)
def deep_cnn(bn: bool, dropout: float, conv_blocks: int, fc_layers: int) -> list:
    if conv_blocks not in (2, 3) or fc_layers not in (2, 3):
        raise ModelError(f"deep_cnn takes conv_blocks 2 or 3 and fc_layers 2 or 3, got {conv_blocks} and {fc_layers}.")
    layers = []
    for i, (width, pad) in enumerate([(6, 1), (12, 0), (24, 0)][:conv_blocks], start=1):
        layers.append({"conv": {"out": width, "k": 3, "pad": pad}, "name": f"conv{i}"})
        layers += [{"bn": {}, "name": f"bn{i}"}] if bn else []
        layers += [{"dropout": dropout, "name": f"drop{i}"}] if dropout > 0 else []
        layers.append("relu")
        if i <= 2:
            layers.append({"maxpool": 2, "name": f"pool{i}"})
    return layers + ["flatten"] + _fc_head([128, 48][: fc_layers - 1], bn_first=True, bn=bn)


@register("small_cnn", (1, 28, 28), "2 conv blocks (16, 32) with BN, LeakyReLU, pooling; FC 128")
def small_cnn() -> list:
    layers = []
    for i, width in enumerate((16, 32), start=1):
        layers += [
            {"conv": {"out": width, "k": 3, "pad": 1}, "name": f"conv{i}"},
            {"bn": {}, "name": f"bn{i}"},
            {"leaky_relu": 0.01},
            {"maxpool": 2, "name": f"pool{i}"},
        ]
    return layers + ["flatten"] + _fc_head([128], act={"leaky_relu": 0.01}, bn_first=True)


@register("simple_cnn", (3, 32, 32), "3 conv blocks (32, 64, 128) with BN, ReLU, pooling; dropout, linear",
          dropout=0.5)
def simple_cnn(dropout: float) -> list:
    layers = []
    for i, width in enumerate((32, 64, 128), start=1):
        layers += [
            {"conv": {"out": width, "k": 3, "pad": 1}, "name": f"conv{i}"},
            {"bn": {}, "name": f"bn{i}"},
            "relu",
            {"maxpool": 2, "name": f"pool{i}"},
        ]
    layers += [{"dropout": dropout, "name": "drop"}] if dropout > 0 else []
    return layers + ["flatten", {"linear": "classes", "name": "fc"}]


def _vgg8(bn: bool) -> list:
    layers, index = [], 0
    for stage, width in enumerate((16, 32, 64, 128), start=1):
        for _ in range(2):
            index += 1
            layers.append({"conv": {"out": width, "k": 3, "pad": 1}, "name": f"conv{index}"})
            layers += [{"bn": {}, "name": f"bn{index}"}] if bn else []
            layers.append("relu")
        layers.append({"maxpool": 2, "name": f"pool{stage}"} if stage < 4 else {"avgpool": 4, "name": "avgpool"})
    return layers + ["flatten", {"linear": "classes", "name": "fc"}]


@register("vgg8", (3, 32, 32), "VGG-style: conv pairs (16, 32, 64, 128), max pools, avg pool 4, linear")
def vgg8() -> list:
    return _vgg8(bn=False)


@register("vgg8_bn", (3, 32, 32), "vgg8 with BN after each conv")
def vgg8_bn() -> list:
    return _vgg8(bn=True)


def _resnet18(stem: list) -> list:
    stages = []
    for index, (width, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        blocks = [{"block": {"out": width, "stride": stride}}, {"block": {"out": width}}]
        stages.append({"seq": blocks, "name": f"layer{index}"})
    head = [{"adaptive_avgpool": 1, "name": "avgpool"}, "flatten", {"linear": "classes", "name": "fc"}]
    return stem + stages + head


@register("resnet18", (3, 32, 32), "ResNet-18, torchvision layout (7x7/2 stem, max pool 3/2)")
def resnet18() -> list:
    stem = [
        {"conv": {"out": 64, "k": 7, "stride": 2, "pad": 3, "bias": False}, "name": "conv1"},
        {"bn": {}, "name": "bn1"}, {"relu": None, "name": "relu"},
        {"maxpool": {"k": 3, "stride": 2, "pad": 1}, "name": "maxpool"},
    ]
    return _resnet18(stem)


@register("resnet18_cifar", (3, 32, 32), "ResNet-18 for 32x32 inputs: 3x3/1 stem, no max pool")
def resnet18_cifar() -> list:
    stem = [
        {"conv": {"out": 64, "k": 3, "stride": 1, "pad": 1, "bias": False}, "name": "conv1"},
        {"bn": {}, "name": "bn1"}, {"relu": None, "name": "relu"},
    ]
    return _resnet18(stem)


@register("fast_cnn", (3, 32, 32), "airbench-style: 2x2 whitening stem (24), 3 blocks conv-pool-BN-ReLU-"
          "conv-BN-ReLU (64, 256, 256 x width), global max pool, linear; use with model.whiten",
          width=1.0)
def fast_cnn(width: float) -> list:
    # the stem is meant to be initialised by patch whitening (model.whiten: true): 24 filters
    # hold the 12 whitened 2x2x3 patch components and their negatives
    layers = [{"conv": {"out": 24, "k": 2, "bias": True}, "name": "whiten"}, "relu"]
    for index, base in enumerate((64, 256, 256), start=1):
        channels = max(1, round(base * width))
        layers.append({"seq": [
            {"conv": {"out": channels, "k": 3, "pad": 1, "bias": False}, "name": "conv1"},
            {"maxpool": 2, "name": "pool"},
            {"bn": {}, "name": "bn1"}, "relu",
            {"conv": {"out": channels, "k": 3, "pad": 1, "bias": False}, "name": "conv2"},
            {"bn": {}, "name": "bn2"}, "relu",
        ], "name": f"block{index}"})
    return layers + [{"maxpool": 3, "name": "pool"}, "flatten",
                     {"linear": {"out": "classes", "bias": False}, "name": "head"}]
