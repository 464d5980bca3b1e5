"""cnnlab: convolutional image-classification labs and small studies.

The public API is imported lazily so that `import cnnlab` (and the CLI's start) stays fast:
torch and matplotlib load only when a function that needs them is called.
"""

from __future__ import annotations

import importlib
import os

# Idle OpenMP threads sleep instead of spinning. On a shared 2-core machine, spinning threads
# made 2-thread torch training up to 10x slower. This must be set before torch loads OpenMP;
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cnnlab.version import __version__

# public name -> (module, attribute)
_EXPORTS = {
    "train": ("cnnlab.api", "train"),
    "Run": ("cnnlab.training", "Run"),
    "Config": ("cnnlab.config", "Config"),
    "load_config": ("cnnlab.config", "load_config"),
    "summary": ("cnnlab.inspect", "summary"),
    "diagram": ("cnnlab.inspect", "diagram"),
    "predict": ("cnnlab.results", "predict"),
    "run_study": ("cnnlab.study", "run_study"),
    "report": ("cnnlab.study", "report"),
    "compare": ("cnnlab.study", "compare"),
    "CnnlabError": ("cnnlab.errors", "CnnlabError"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


# submodules reachable as attributes after a bare `import cnnlab` (`cnnlab.plot.curves(run)`)
_SUBMODULES = ("api", "config", "data", "engines", "inspect", "models", "plot", "results", "runs",
               "scratch", "study", "training", "verify")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"cnnlab.{name}")
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
