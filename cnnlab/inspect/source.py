"""Turn what the user names (zoo name, spec, YAML file, run folder, model object) into a model.

Shared by `summary`, `diagram` and their commands, so all accept the same things.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnlab.errors import ConfigError, ModelError

ENGINES = ("torch", "scratch")


@dataclass(frozen=True)
class ModelSource:
    model: object  # a torch.nn.Module or a cnnlab.scratch Module
    input_shape: tuple
    name: str


def parse_shape(text: str | tuple | list | None) -> tuple | None:
    """'3x32x32' (or '3,32,32', or a sequence) -> (3, 32, 32)."""
    if text is None or isinstance(text, (tuple, list)):
        return tuple(int(s) for s in text) if text is not None else None
    parts = str(text).lower().replace(",", "x").replace("*", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        shape = ()
    if len(shape) not in (1, 3) or min(shape, default=0) < 1:
        raise ModelError(
            f"Input shape '{text}' is not C x H x W (or a feature count) with positive sizes; "
            "write it like 3x32x32 or 1x28x28."
        )
    return shape


def _is_module(obj) -> bool:
    return hasattr(obj, "named_modules") and hasattr(obj, "parameters") and callable(obj)


def _run_folder_model(path: Path) -> tuple[object, dict, tuple | None, int | None]:
    """(spec or name, options, input shape, classes) from a run folder's config and result."""
    config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    result = {}
    if (path / "result.json").is_file():
        from cnnlab.utils import read_json

        result = read_json(path / "result.json")
    model_cfg = dict(config.get("model") or {})
    spec = model_cfg.pop("spec", None)
    name = model_cfg.pop("name", None)
    if spec is None and name is None:
        raise ConfigError(f"Run folder {path} has no model.name or model.spec in its config.yaml.")
    options = {k: v for k, v in model_cfg.items() if v is not None}
    shape = result.get("input_shape")
    return (spec if spec is not None else name), options, (tuple(shape) if shape else None), result.get("num_classes")


def load_model(
    model_or_spec,
    input_shape=None,
    *,
    engine: str = "torch",
    num_classes: int = 10,
) -> ModelSource:
    """Build (or take) the model to inspect and settle its input shape."""
    if engine not in ENGINES:
        raise ModelError(f"Unknown engine '{engine}'; choose one of {', '.join(ENGINES)}.")
    shape = parse_shape(input_shape)
    if _is_module(model_or_spec):
        if shape is None:
            raise ModelError(
                f"An input_shape (C, H, W) is needed to inspect a {type(model_or_spec).__name__} "
                "object; pass e.g. input_shape=(3, 32, 32)."
            )
        return ModelSource(model_or_spec, shape, type(model_or_spec).__name__)

    from cnnlab import models

    options: dict = {}
    name = "spec"
    spec = model_or_spec
    if isinstance(model_or_spec, (str, Path)):
        path = Path(model_or_spec)
        if path.is_dir():
            if not (path / "config.yaml").is_file():
                raise ConfigError(f"{path} is a folder but not a run folder: it has no config.yaml.")
            spec, options, run_shape, run_classes = _run_folder_model(path)
            shape = shape or run_shape
            num_classes = run_classes or num_classes
            name = path.name if path.name not in ("", ".") else str(path)
            if path.name.startswith("v") and path.parent.name:
                name = f"{path.parent.name}/{path.name}"
        elif path.suffix.lower() in (".yaml", ".yml"):
            spec, shape = models.spec_of(path, shape)  # the file may name its input shape
            name = path.stem
        elif str(model_or_spec) in models.names():
            name = str(model_or_spec)
        else:
            from cnnlab.utils import did_you_mean

            raise ModelError(
                f"'{model_or_spec}' is not a zoo model, a .yaml spec file or a run folder. Zoo "
                f"models: {', '.join(models.names())}.{did_you_mean(str(model_or_spec), models.names())}"
            )
    if isinstance(spec, str) and shape is None:
        shape = tuple(models.get(spec).input_shape)
    if shape is None:
        raise ModelError("An input shape is needed for a model spec; pass input_shape=(C, H, W) or --input 3x32x32.")
    model = models.build(spec, input_shape=shape, num_classes=int(num_classes), engine=engine, **options)
    return ModelSource(model, shape, name)
