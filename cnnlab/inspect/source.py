"""Turn what the user names (zoo name, spec, YAML file, run folder, model object) into a model.

Shared by `summary`, `diagram` and their commands, so all accept the same things.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab import engines, runs
from cnnlab.errors import ModelError


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


def _run_folder_model(path: Path) -> tuple[runs.ModelArgs, str]:
    """A run folder's model arguments and its label (`<name>/v<N>`)."""
    run_dir = runs.find_run_dir(path)
    return runs.read_model_args(run_dir), f"{run_dir.parent.name}/{run_dir.name}"


def load_model(
    model_or_spec,
    input_shape=None,
    *,
    engine: str | None = None,
    num_classes: int = 10,
    options: dict | None = None,
) -> ModelSource:
    """Build (or take) the model to inspect and settle its input shape.

    `engine`: the engine to build in; None means the run's own engine for a run folder, else
    torch. `options` are a zoo model's options (e.g. `{"bn": False}` for `deep_cnn`).
    """
    if engine is not None:
        engines.get(engine)  # an unknown engine is refused before anything is built
    shape = parse_shape(input_shape)
    if _is_module(model_or_spec):
        if shape is None:
            raise ModelError(
                f"An input_shape (C, H, W) is needed to inspect a {type(model_or_spec).__name__} "
                "object; pass e.g. input_shape=(3, 32, 32)."
            )
        return ModelSource(model_or_spec, shape, type(model_or_spec).__name__)

    from cnnlab import models

    options = dict(options or {})
    name = "spec"
    spec = model_or_spec
    if isinstance(model_or_spec, (str, Path)):
        path = Path(model_or_spec)
        if path.is_dir():
            args, name = _run_folder_model(path)
            spec, num_classes, engine = args.ref, args.num_classes, engine or args.engine
            options = {**args.options, **options}
            shape = shape or tuple(args.input_shape)
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
        shape = tuple(models.spec_of(spec, None, **options)[1])
    if shape is None:
        raise ModelError("An input shape is needed for a model spec; pass input_shape=(C, H, W) or --input 3x32x32.")
    model = models.build(spec, input_shape=shape, num_classes=int(num_classes),
                         engine=engine or "torch", **options)
    return ModelSource(model, shape, name)
