"""The engine registry: each engine declares here, once, everything the rest of cnnlab needs.

An engine is a way to run a model: `torch` (PyTorch, CPU or CUDA) and `scratch` (the NumPy
engine of `cnnlab.scratch`, CPU). Each `EngineSpec` names

- `name` and a one-line `description`;
- `checkpoint_suffix`: the file format of its checkpoints (`.pt` or `.npz`);
- `resolve_device(requested)`: the device it runs on for a requested `train.device`;
- `build_model(root)`: a resolved model tree (`cnnlab.models.Node`) as a model of the engine;
- `make_adapter(model, train_cfg, optim_cfg, device)`: the object the fit loop drives (the
  engine protocol in docs/ARCHITECTURE.md).

Config validation, the CLI's `--engine` choices, `cnnlab.models.build`, inspection and the run
folder all take engine names and suffixes from here. Importing this module is cheap: torch and
the adapters load only when a spec's functions are called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cnnlab.errors import ModelError
from cnnlab.utils import did_you_mean

__all__ = ["EngineSpec", "get", "names", "checkpoint_suffixes"]


@dataclass(frozen=True)
class EngineSpec:
    name: str
    description: str
    checkpoint_suffix: str
    resolve_device: Callable[[str], str]
    build_model: Callable
    make_adapter: Callable


# --- torch ---------------------------------------------------------------------------------


def _torch_device(requested: str) -> str:
    from cnnlab.engines.torch_engine import pick_device

    return pick_device(requested)


def _torch_model(root):
    from cnnlab.engines.torch_engine import build_model

    return build_model(root)


def _torch_adapter(model, train_cfg, optim_cfg, device: str):
    from cnnlab.engines.torch_engine import TorchEngine

    return TorchEngine(model, optim_cfg, label_smoothing=train_cfg.label_smoothing, device=device,
                       amp=train_cfg.amp, channels_last=train_cfg.channels_last,
                       ema=train_cfg.ema, compile=train_cfg.compile)


# --- scratch -------------------------------------------------------------------------------


def _scratch_device(requested: str) -> str:
    # the NumPy engine has one device; asking it for a GPU is refused by its adapter
    return "cpu"


def _scratch_model(root):
    from cnnlab.engines.scratch_engine import build_model

    return build_model(root)


def _scratch_adapter(model, train_cfg, optim_cfg, device: str):
    from cnnlab.engines.scratch_engine import ScratchEngine

    return ScratchEngine(model, optim_cfg, label_smoothing=train_cfg.label_smoothing, device=device,
                         ema=train_cfg.ema)


_ENGINES = {
    spec.name: spec
    for spec in (
        EngineSpec("torch", "PyTorch, on CPU or CUDA", ".pt", _torch_device, _torch_model,
                   _torch_adapter),
        EngineSpec("scratch", "cnnlab's NumPy engine, on CPU", ".npz", _scratch_device,
                   _scratch_model, _scratch_adapter),
    )
}


def names() -> tuple[str, ...]:
    """Engine names, in the order the CLI and the docs list them."""
    return tuple(_ENGINES)


def get(name: str) -> EngineSpec:
    """The engine called `name`; a ModelError naming the choices otherwise."""
    if name not in _ENGINES:
        raise ModelError(
            f"Unknown engine {name!r}; choose one of: {', '.join(_ENGINES)}."
            f"{did_you_mean(str(name), _ENGINES)}"
        )
    return _ENGINES[name]


def checkpoint_suffixes() -> tuple[str, ...]:
    """Every engine's checkpoint suffix (a run folder holds the files of one of them)."""
    return tuple(spec.checkpoint_suffix for spec in _ENGINES.values())
