"""Inspection: model summaries (params, MACs/FLOPs, memory), diagrams, run plots, predictions.

Imported lazily: matplotlib loads only when a plot or diagram is asked for.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "summary": ("cnnlab.inspect.summary", "summary"),
    "Summary": ("cnnlab.inspect.stats", "Summary"),
    "LayerStats": ("cnnlab.inspect.stats", "LayerStats"),
    "diagram": ("cnnlab.inspect.diagram", "diagram"),
    "curves": ("cnnlab.inspect.plots", "curves"),
    "confusion": ("cnnlab.inspect.plots", "confusion"),
    "predictions": ("cnnlab.inspect.plots", "predictions"),
    "plot_run": ("cnnlab.inspect.plots", "plot_run"),
    "predict": ("cnnlab.inspect.predict", "predict"),
    "Predictions": ("cnnlab.inspect.predict", "Predictions"),
    "write_csv": ("cnnlab.inspect.predict", "write_csv"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab.inspect' has no attribute {name!r}")
