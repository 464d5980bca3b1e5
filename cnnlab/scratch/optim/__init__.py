"""Optimisers for scratch `Parameter`s, with exactly torch's update rules.

`SGD`, `Adam` and `AdamW` follow `torch.optim`'s single-tensor code path step for step
(first-step momentum buffer, nesterov, Adam's bias correction, AdamW's decoupled decay), so
a scratch model and a torch model fed the same gradients follow the same trajectory.
Hyperparameters live in `param_groups` (a list of dicts with `"lr"` and `"params"`, as in
torch) and are read there on every `step()`, so the schedulers in
`cnnlab.scratch.optim.lr_scheduler` (as in torch: `torch.optim.lr_scheduler`) drive these
optimisers and torch's alike.

Updates are in place. Temporaries go to one reusable workspace per optimiser: a fresh
temporary the size of a large weight would be mapped and unmapped by the allocator on every
step.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from cnnlab.errors import ConfigError, ModelError
from cnnlab.scratch.optim import lr_scheduler  # noqa: F401  (as torch.optim.lr_scheduler)
from cnnlab.scratch.parameter import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]


def _check_range(name: str, value: float, low: float, high: float = math.inf,
                 *, high_open: bool = False) -> float:
    """`value` as a float if low <= value <= high (or < high), else a ConfigError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"Optimiser setting {name} must be a number; got {value!r}.") from None
    too_high = number >= high if high_open else number > high
    if not (number >= low) or too_high:  # `not >=` also catches NaN
        bracket = ")" if high_open else "]"
        raise ConfigError(
            f"Optimiser setting {name}={value!r} is out of range; it must lie in "
            f"[{low}, {high}{bracket}."
        )
    return number


class Optimizer:
    """Holds `param_groups` and per-parameter `state`; subclasses define `_update`.

    `params` is an iterable of `Parameter`, or of dicts `{"params": [...], "lr": ...}` for
    per-group settings (as in torch). Missing group settings come from `defaults`.
    """

    def __init__(self, params: Iterable[Parameter] | Iterable[dict], defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        items = list(params)
        if not items:
            raise ModelError(
                f"{type(self).__name__} got an empty parameter list; pass model.parameters() "
                "of a model that has trainable weights."
            )
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for index, group in enumerate(groups):
            if not isinstance(group, dict) or "params" not in group:
                raise ModelError(
                    f"{type(self).__name__} param group {index} must be a dict with 'params'; "
                    f"got {type(group).__name__}."
                )
            group = {**self.defaults, **group, "params": list(group["params"])}
            for param in group["params"]:
                if not isinstance(param, Parameter):
                    raise ModelError(
                        f"{type(self).__name__} expects cnnlab.scratch Parameters; got "
                        f"{type(param).__name__} in param group {index}. Pass "
                        "model.parameters() of a scratch model."
                    )
                if id(param) in seen:
                    raise ModelError(
                        f"{type(self).__name__} got the same Parameter {param!r} twice; "
                        "each parameter may appear only once."
                    )
                seen.add(id(param))
            self._validate_group(group)
            self.param_groups.append(group)
        self.state: dict[int, dict[str, Any]] = {}  # keyed by id(param)
        self._workspace = np.empty(0, dtype=np.float64)

    # --- hooks for subclasses -------------------------------------------------------------
    def _validate_group(self, group: dict[str, Any]) -> None:
        group["lr"] = _check_range("lr", group["lr"], 0.0)
        group["weight_decay"] = _check_range("weight_decay", group["weight_decay"], 0.0)

    def _update(self, param: Parameter, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- public API ---------------------------------------------------------------------
    def step(self) -> None:
        """Update every parameter that requires grad and has a gradient, in place."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None or not param.requires_grad:
                    continue
                if param.grad.shape != param.data.shape:
                    raise ModelError(
                        f"{type(self).__name__}.step: {param!r} has a gradient of shape "
                        f"{param.grad.shape}; it must match the parameter's shape."
                    )
                state = self.state.get(id(param))
                if state is None:
                    state = self.state[id(param)] = {}
                self._update(param, state, group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (None, as torch's default), or fill them with zeros."""
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none or param.grad is None:
                    param.grad = None
                else:
                    param.grad.fill(0)

    def _params(self) -> list[Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """`{"state": {index: {name: array or number}}, "param_groups": [...]}`, as torch.

        Parameters are referred to by their index in the flat parameter order; groups hold
        their settings (plain numbers, tuples) and `"params"`: the indices. Arrays are copies,
        so the dict stays valid while training goes on.
        """
        index_of = {id(p): i for i, p in enumerate(self._params())}
        state = {
            index_of[key]: {
                name: value.copy() if isinstance(value, np.ndarray) else value
                for name, value in entry.items()
            }
            for key, entry in self.state.items()
        }
        groups = [
            {**{k: v for k, v in group.items() if k != "params"},
             "params": [index_of[id(p)] for p in group["params"]]}
            for group in self.param_groups
        ]
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict()` output, also after a trip through `.npz`/JSON (string keys,
        lists for tuples, 0-d arrays for numbers). Arrays are cast to each parameter's dtype."""
        params = self._params()
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if groups is None or "state" not in state_dict:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ModelError(
                f"{type(self).__name__}.load_state_dict expects a dict with 'state' and "
                f"'param_groups'; got {got}."
            )
        sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [len(g["params"]) for g in groups]
        if sizes != saved_sizes:
            raise ModelError(
                f"{type(self).__name__} state has param groups of sizes {saved_sizes}, but this "
                f"optimiser has {sizes}; the checkpoint belongs to a different model."
            )
        new_state: dict[int, dict[str, Any]] = {}
        problems = []
        for key, entry in state_dict["state"].items():
            index = int(key)
            if not 0 <= index < len(params):
                problems.append(f"state for parameter {index} (only {len(params)} exist)")
                continue
            param = params[index]
            restored = {}
            for name, value in entry.items():
                value = np.asarray(value)
                if value.ndim == 0 and name == "step":
                    restored[name] = int(value)
                elif value.shape != param.data.shape:
                    problems.append(
                        f"'{name}' of parameter {index} has shape {value.shape}, "
                        f"parameter has {param.data.shape}"
                    )
                else:
                    restored[name] = np.array(value, dtype=param.data.dtype, copy=True)
            new_state[id(param)] = restored
        if problems:
            raise ModelError(
                f"{type(self).__name__}.load_state_dict: the saved state does not fit the "
                f"parameters: {'; '.join(problems)}."
            )
        for group, saved in zip(self.param_groups, groups):
            for name, value in saved.items():
                if name == "params":
                    continue
                value = np.asarray(value).tolist() if not isinstance(value, str) else value
                group[name] = tuple(value) if isinstance(value, list) else value
        self.state = new_state

    def _scratch(self, like: np.ndarray, slot: int) -> np.ndarray:
        """A reusable temporary shaped and typed like `like` (slot 0 or 1: two may coexist)."""
        size = like.size
        itemsize = like.dtype.itemsize
        needed = 2 * size * itemsize
        if self._workspace.nbytes < needed:
            self._workspace = np.empty(needed, dtype=np.uint8)
        start = slot * size * itemsize
        return self._workspace[start:start + size * itemsize].view(like.dtype).reshape(like.shape)

    def __repr__(self) -> str:
        settings = ", ".join(
            f"{k}={v}" for k, v in self.param_groups[0].items() if k != "params"
        )
        count = sum(len(g["params"]) for g in self.param_groups)
        return f"{type(self).__name__}({count} params, {settings})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, nesterov and L2 decay.

    Per step, as torch: `g = grad + weight_decay * p`; `buf = g` on the first step, else
    `buf = momentum * buf + (1 - dampening) * g`; `g = g + momentum * buf` (nesterov) or
    `g = buf`; `p -= lr * g`.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=bool(nesterov), weight_decay=weight_decay))

    def _validate_group(self, group):
        super()._validate_group(group)
        group["momentum"] = _check_range("momentum", group["momentum"], 0.0)
        group["dampening"] = _check_range("dampening", group["dampening"], 0.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ConfigError(
                "SGD with nesterov=True needs momentum > 0 and dampening = 0; got "
                f"momentum={group['momentum']}, dampening={group['dampening']}."
            )

    def _update(self, param, state, group):
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        data = param.data
        grad, owned = param.grad, False  # owned: `grad` is our workspace and may be overwritten
        if weight_decay != 0:
            decayed = np.multiply(data, weight_decay, out=self._scratch(data, 0))
            grad, owned = np.add(param.grad, decayed, out=decayed), True
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(grad, dtype=data.dtype, copy=True)
            else:
                buf *= momentum
                buf += grad if group["dampening"] == 0 else (1.0 - group["dampening"]) * grad
            if group["nesterov"]:
                ahead = np.multiply(buf, momentum, out=self._scratch(data, 1))
                grad, owned = np.add(grad, ahead, out=ahead), True
            else:
                grad, owned = buf, False
        update = np.multiply(grad, lr, out=grad if owned else self._scratch(data, 0))
        np.subtract(data, update, out=data)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch's bias correction; `weight_decay` is L2 added to the grad.

    Per step t, as torch: `m = lerp(m, g, 1 - beta1)`, `v = beta2 * v + (1 - beta2) * g * g`,
    `p -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)`.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _validate_group(self, group):
        super()._validate_group(group)
        betas = tuple(group["betas"])
        if len(betas) != 2:
            raise ConfigError(f"Optimiser setting betas must be two numbers; got {group['betas']!r}.")
        group["betas"] = tuple(_check_range(f"betas[{i}]", b, 0.0, 1.0, high_open=True)
                               for i, b in enumerate(betas))
        group["eps"] = _check_range("eps", group["eps"], 0.0)

    def _update(self, param, state, group):
        lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        data, grad = param.data, param.grad
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(data)
            state["exp_avg_sq"] = np.zeros_like(data)
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        work = self._scratch(data, 0)
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                data *= 1.0 - lr * weight_decay
            else:
                grad = np.add(grad, np.multiply(data, weight_decay, out=self._scratch(data, 1)),
                              out=self._scratch(data, 1))
        # exp_avg.lerp_(grad, 1 - beta1), with the two formulas torch's lerp kernel uses
        weight = 1.0 - beta1
        diff = np.subtract(grad, exp_avg, out=work)
        if weight < 0.5:
            diff *= weight
            exp_avg += diff
        else:
            diff *= 1.0 - weight
            np.subtract(grad, diff, out=exp_avg)
        # exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
        square = np.multiply(grad, 1.0 - beta2, out=work)
        square *= grad
        exp_avg_sq *= beta2
        exp_avg_sq += square
        step_size = lr / (1.0 - beta1**step)
        bias_correction2_sqrt = (1.0 - beta2**step) ** 0.5
        denom = np.sqrt(exp_avg_sq, out=work)
        denom /= bias_correction2_sqrt
        denom += eps
        ratio = np.divide(exp_avg, denom, out=work)
        ratio *= step_size
        np.subtract(data, ratio, out=data)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): `p *= 1 - lr * weight_decay`
    before the Adam step, instead of adding `weight_decay * p` to the gradient."""

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
