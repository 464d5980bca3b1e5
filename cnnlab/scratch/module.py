"""`Module`: the stateful shell around the pure kernels, with torch.nn's bookkeeping API.

A module holds parameters (`Parameter`), buffers (plain arrays such as BN running stats) and
named children in insertion order; `named_parameters`, `state_dict` and friends walk them in
the same order as torch, so keys and `parameters()` order match the torch model built from
the same spec.

dtype rule: modules are created float32. `model.to(np.float64)` (or `model.double()`) casts
every floating parameter and buffer in place; layers with parameters cast their input to the
parameter dtype, so a float64 model computes in float64 end to end (what gradient checks
need) and a float32 model accepts float64 or uint8 input.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterator

import numpy as np

from cnnlab.errors import ModelError
from cnnlab.scratch.parameter import Parameter


class HookHandle:
    """Returned by `register_forward_hook`; `remove()` detaches the hook."""

    _next_id = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = HookHandle._next_id
        HookHandle._next_id += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _to_numpy(value) -> np.ndarray:
    """numpy arrays, torch tensors (any device) and numbers as numpy arrays."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class Module:
    """Base class of every scratch layer; subclasses implement `forward` and `backward`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_name", None)

    # -- registration ------------------------------------------------------------------------

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self.add_module(name, value)
        elif name in self.__dict__.get("_buffers", {}):
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only called when normal lookup fails: parameters, buffers and children live in dicts
        for store in ("_parameters", "_buffers", "_modules"):
            items = self.__dict__.get(store)
            if items is not None and name in items:
                return items[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def add_module(self, name: str, module: "Module | None") -> None:
        """Register a named child; its layers are renamed `name.sub` for error messages."""
        self._modules[name] = module
        if module is not None:
            for sub_name, sub in module.named_modules():
                sub._name = f"{name}.{sub_name}" if sub_name else name

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value

    # -- calling -----------------------------------------------------------------------------

    def forward(self, *inputs):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def __call__(self, *inputs, **kwargs):
        out = self.forward(*inputs, **kwargs)  # keywords as torch: ConvTranspose2d's output_size
        for hook in list(self._forward_hooks.values()):
            result = hook(self, inputs, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook: Callable) -> HookHandle:
        """hook(module, inputs_tuple, output) runs after every forward; returns a handle."""
        handle = HookHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # -- modes and dtype ---------------------------------------------------------------------

    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def to(self, dtype) -> "Module":
        """Cast floating parameters, gradients and buffers to `dtype` (np.float32/np.float64)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ModelError(f"a scratch model can only be cast to a float dtype; got {dtype}.")
        for _, module in self.named_modules():
            for param in module._parameters.values():
                param.data = param.data.astype(dtype)
                if param.grad is not None:
                    param.grad = param.grad.astype(dtype)
            for name, buf in module._buffers.items():
                if buf is not None and buf.dtype.kind == "f":
                    module._buffers[name] = buf.astype(dtype)
            module._drop_state()
        return self

    def double(self) -> "Module":
        return self.to(np.float64)

    def float(self) -> "Module":
        return self.to(np.float32)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the first parameter (float32 for a model without parameters)."""
        for param in self.parameters():
            return param.data.dtype
        return np.dtype(np.float32)

    def _drop_state(self) -> None:
        """Forget cached activations and work buffers (after a dtype change)."""
        for name in ("_cache", "_workspace"):
            if name in self.__dict__:
                object.__setattr__(self, name, None if name == "_cache" else {})

    # -- traversal ---------------------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(qualified name, module) for this module ('' or prefix) and every descendant."""
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self) -> Iterator["Module"]:
        return (m for m in self._modules.values() if m is not None)

    def _named_members(self, store: str):
        for module_name, module in self.named_modules():
            for name, value in getattr(module, store).items():
                if value is not None:
                    yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
        """(name, value, grad) in torch's order; grad is None before the first backward."""
        for name, param in self._named_members("_parameters"):
            yield name, param.data, param.grad

    def parameters(self) -> list[Parameter]:
        """The Parameter objects, in the same order as torch's `model.parameters()`."""
        return [param for _, param in self._named_members("_parameters")]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        yield from self._named_members("_buffers")

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer, keyed and ordered as torch's state_dict."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                state[prefix + name] = param.data.copy()
            for name, buf in module._buffers.items():
                if buf is not None:
                    state[prefix + name] = np.array(buf, copy=True)
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values (numpy arrays or torch tensors) into this model, keeping its dtypes.

        Missing, unexpected (when strict) and mis-shaped keys are all reported in one
        ModelError. Returns (missing_keys, unexpected_keys) like torch.
        """
        targets = {}
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name in module._parameters:
                targets[prefix + name] = (module, name, "_parameters")
            for name, buf in module._buffers.items():
                if buf is not None:
                    targets[prefix + name] = (module, name, "_buffers")
        missing = [key for key in targets if key not in state_dict]
        unexpected = [key for key in state_dict if key not in targets]
        values, mismatched = {}, []
        for key, (module, name, store) in targets.items():
            if key not in state_dict:
                continue
            value = _to_numpy(state_dict[key])
            current = getattr(module, store)[name]
            current = current.data if store == "_parameters" else current
            if value.shape != current.shape:
                mismatched.append(f"{key}: expected {current.shape}, got {value.shape}")
            values[key] = value
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mismatched:
            problems.append(f"mis-shaped keys [{'; '.join(mismatched)}]")
        if problems:
            raise ModelError(
                f"Cannot load the state dict into {type(self).__name__}: " + ", ".join(problems)
                + f". The model has {len(targets)} entries ({', '.join(list(targets)[:6])}"
                + (", ..." if len(targets) > 6 else "") + "); check that the state dict comes "
                "from a model built from the same spec."
            )
        for key, value in values.items():
            module, name, store = targets[key]
            if store == "_parameters":
                param = module._parameters[name]
                param.data[...] = value
            else:
                buf = module._buffers[name]
                module._buffers[name] = np.array(value, dtype=buf.dtype, copy=True)
        return missing, unexpected

    # -- display and errors ------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"\n  ({name}): {child_repr}")
            lines.append("\n")
        lines.append(")")
        return "".join(lines)

    def _where(self) -> str:
        return f" at layer '{self._name}'" if self._name else ""

    def _shape_error(self, problem: str, x, config: str = "") -> ModelError:
        """ModelError like "Conv2d(in_channels=3) got input with 1 channel(s) at layer 'conv1'
        (input shape (8, 1, 28, 28))": the layer, what it expected, where, what it received."""
        return ModelError(
            f"{type(self).__name__}({config}) {problem}{self._where()} "
            f"(input shape {tuple(np.shape(x))})."
        )

    def _kernel_error(self, err: ModelError, x) -> ModelError:
        """A kernel's ModelError, prefixed with this layer and its name."""
        return ModelError(
            f"{type(self).__name__}({self.extra_repr()}){self._where()}, input shape "
            f"{tuple(np.shape(x))}: {err}"
        )

    def _require_cache(self, cache):
        if cache is None:
            raise ModelError(
                f"{type(self).__name__}{self._where()}: backward() was called without a "
                "forward() before it (a forward's cache serves one backward); run forward first."
            )
        return cache
