"""Model specs, the zoo, and builders for both engines.

    >>> from cnnlab import models
    >>> models.names()[:3]
    ['mlp', 'lenet', 'lenet_nopool']
    >>> net = models.build("small_cnn")                      # torch.nn.Module
    >>> np_net = models.build("small_cnn", engine="scratch")  # cnnlab.scratch module
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import ModelError
from cnnlab.models.flops import layer_macs
from cnnlab.models.match import match_widths, scale_widths
from cnnlab.models.spec import LAYER_WORDS, Node, resolve_spec
from cnnlab.models.zoo import ZooEntry, get, names

__all__ = [
    "LAYER_WORDS", "Node", "ZooEntry", "build", "count_params", "get", "layer_macs",
    "load_spec", "match_params", "names", "resolve", "resolve_spec", "scale_widths", "spec_of",
]


def load_spec(path: str | Path) -> tuple[list, tuple | None]:
    """Read a YAML spec file: a list of layers, or a mapping with `layers:` and `input_shape:`."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelError(f"Cannot read model spec '{path}': {err.strerror or err}.") from None
    except yaml.YAMLError as err:
        raise ModelError(f"Model spec '{path}' is not valid YAML: {err}".replace("\n", " ")) from None
    if isinstance(data, dict) and "layers" in data:
        shape = data.get("input_shape")
        return data["layers"], (tuple(shape) if shape else None)
    if isinstance(data, list):
        return data, None
    raise ModelError(f"Model spec '{path}' must be a list of layers or a mapping with 'layers:'; got {type(data).__name__}.")


def spec_of(name_or_spec: Any, input_shape: tuple | None = None, **options) -> tuple[list, tuple]:
    """The spec (list of layers) and input shape for a zoo name, a spec file or a spec list."""
    if isinstance(name_or_spec, (str, Path)) and str(name_or_spec) in names():
        entry = get(str(name_or_spec))
        return entry.spec(**options), tuple(input_shape or entry.input_shape)
    if options:
        raise ModelError(f"Options {sorted(options)} apply to zoo models only, not to a spec.")
    if isinstance(name_or_spec, (str, Path)):
        path = Path(name_or_spec)
        if path.suffix in (".yaml", ".yml") or path.is_file():
            spec, file_shape = load_spec(path)
            shape = input_shape or file_shape
        else:
            get(str(name_or_spec))  # raises the unknown-model error with suggestions
    else:
        spec, shape = name_or_spec, input_shape
    if shape is None:
        raise ModelError("A model spec needs an input_shape (C, H, W), e.g. input_shape=(1, 28, 28).")
    return list(spec), tuple(shape)


def resolve(name_or_spec: Any, input_shape: tuple | None = None, num_classes: int = 10, **options) -> Node:
    """The resolved model tree (shapes, constructor kwargs, costs) for a name or a spec."""
    spec, shape = spec_of(name_or_spec, input_shape, **options)
    try:
        return resolve_spec(spec, shape, num_classes)
    except ModelError as err:
        if len(shape) != 3:
            raise
        smallest = _smallest_square_input(spec, shape[0], num_classes)
        if smallest is None or smallest <= min(shape[1:]):
            raise
        label = f"Model '{name_or_spec}'" if isinstance(name_or_spec, str) else "This model"
        raise ModelError(
            f"{label} needs at least {smallest}x{smallest} input but was given "
            f"{'x'.join(map(str, shape))}. {err}"
        ) from None


def _smallest_square_input(spec: list, channels: int, num_classes: int, limit: int = 512) -> int | None:
    """The smallest H = W for which the spec resolves, to say what input a model needs."""
    for size in range(1, limit + 1):
        try:
            resolve_spec(spec, (channels, size, size), num_classes)
            return size
        except ModelError:
            continue
    return None


def build(name_or_spec: Any, input_shape: tuple | None = None, num_classes: int = 10,
          engine: str = "torch", **options):
    """Build a model in one engine: a `torch.nn.Module` or a `cnnlab.scratch` module.

    The same spec gives the same parameter names and shapes in both engines, so a scratch
    model can load a torch `state_dict()` directly.
    """
    from cnnlab import engines

    builder = engines.get(engine).build_model
    return builder(resolve(name_or_spec, input_shape, num_classes, **options))


def count_params(model) -> int:
    """Number of unique trainable values in a torch or scratch model."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel() if hasattr(p, "numel") else p.data.size
    return total


def match_params(name_or_spec: Any, target: Any, input_shape: tuple | None = None,
                 num_classes: int = 10, tolerance: float = 0.05, **options) -> dict:
    """Scale the widths of a model so its parameter count is within `tolerance` of `target`.

    `target` is a zoo name, a spec, or a number of parameters. Returns a model config fragment:
    `{"name": ..., "spec": scaled layers, "input_shape": ..., "width": factor, "params": n,
    "target_params": t}`; `spec` can be used as `model.spec` in a training config.
    """
    spec, shape = spec_of(name_or_spec, input_shape, **options)
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        target_params = int(target)
    else:
        target_params = resolve(target, shape, num_classes).total_params()
    scaled, factor, params = match_widths(spec, target_params, shape, num_classes, tolerance)
    name = str(name_or_spec) if isinstance(name_or_spec, str) else "custom"
    return {"name": name, "spec": scaled, "input_shape": list(shape), "width": round(factor, 4),
            "params": params, "target_params": target_params}
