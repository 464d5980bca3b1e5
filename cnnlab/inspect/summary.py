"""`summary()`: the public entry point for model statistics."""

from __future__ import annotations

from cnnlab.errors import ModelError
from cnnlab.inspect.source import load_model
from cnnlab.inspect.stats import Summary, collect


def summary(model_or_spec, input_shape=None, engine: str | None = None, num_classes: int = 10, depth: int = 3,
            **options) -> Summary:
    """Statistics of a model: per-layer output shapes, params and MACs, totals and memory.

    `model_or_spec` is a zoo name, a spec (list of layers), a YAML spec file, a run folder, a
    torch `nn.Module` or a `cnnlab.scratch` module. `input_shape` is (C, H, W) without the batch;
    zoo models and run folders bring their own default. `options` are a zoo model's options
    (`summary("deep_cnn", bn=False)`). `str()` of the result is the table.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ModelError(f"summary depth must be an integer >= 1 (1 shows the model's direct "
                         f"children; --depth on the command line), got {depth!r}.")
    source = load_model(model_or_spec, input_shape, engine=engine, num_classes=num_classes, options=options)
    return collect(source.model, source.input_shape, model_name=source.name, depth=depth)
