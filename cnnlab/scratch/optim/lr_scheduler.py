"""Learning-rate schedules with torch's semantics, for any optimizer that has `param_groups`.

The fit loop drives torch's optimizers and the scratch ones (`cnnlab.scratch.optim`) with the
same classes: `torch.optim.lr_scheduler` refuses optimizers that are not `torch.optim`
instances, so these are ports of its logic. Each class reproduces torch's `step()` arithmetic,
including its recursive ("chainable") forms, so learning-rate sequences equal torch's to the
last bit:

- construction records `initial_lr` in every group and performs the first step
  (`last_epoch` becomes 0, the group lr is set);
- `step()` advances `last_epoch` by one and writes the new lr into each group;
- `get_last_lr()` is the list of lrs last written; `state_dict()` is plain data (numbers,
  lists, dicts, strings) and `load_state_dict()` restores it, also after a JSON round trip.

`OneCycleLR` can cycle momentum (torch's default) on optimizers whose groups have `momentum`
or `betas`. `cnnlab.engines.optim.build_scheduler` builds the schedule a config names.
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_right
from typing import Any, Sequence

from cnnlab.errors import ConfigError

__all__ = [
    "LRScheduler",
    "StepLR",
    "ConstantLR",
    "LinearLR",
    "CosineAnnealingLR",
    "OneCycleLR",
    "SequentialLR",
]


def _plain(value: Any) -> Any:
    """Numpy scalars/0-d arrays and nested containers as Python numbers, lists and dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def param_groups_of(optimizer: Any) -> list[dict]:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not groups or not all(
        isinstance(g, dict) and "lr" in g for g in groups
    ):
        raise ConfigError(
            "A learning-rate schedule needs an optimizer whose `param_groups` is a non-empty "
            f"list of dicts with an 'lr'; got {type(optimizer).__name__} with param_groups="
            f"{groups!r:.120}."
        )
    return groups


def as_positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner} needs {name} to be an integer >= {minimum}; got {value!r}.")
    return value


def as_number(owner: str, name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner} needs {name} to be a number; got {value!r}.") from None


def _factor(owner: str, name: str, value: Any, low: float, high: float, low_open: bool) -> float:
    number = as_number(owner, name, value)
    if number > high or number < low or (low_open and number == low):
        bracket = "(" if low_open else "["
        raise ConfigError(f"{owner} needs {name} in {bracket}{low}, {high}]; got {value!r}.")
    return number


class LRScheduler:
    """Base class: torch's `LRScheduler` step protocol; subclasses define `get_lr`."""

    def __init__(self, optimizer: Any, last_epoch: int = -1):
        self.optimizer = optimizer
        groups = param_groups_of(optimizer)
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            missing = [i for i, g in enumerate(groups) if "initial_lr" not in g]
            if missing:
                raise ConfigError(
                    f"{type(self).__name__}(last_epoch={last_epoch}) resumes a schedule, but "
                    f"param groups {missing} have no 'initial_lr'; load the optimizer state "
                    "first or start with last_epoch=-1."
                )
        self.base_lrs: list[float] = [group["initial_lr"] for group in groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        """Reset the step count and take the first step (torch marks it as 'initial')."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The next lr of each group, from `last_epoch` (already advanced) and the group lrs."""
        raise NotImplementedError

    def _closed_form_lr(self) -> list[float]:
        """The lr at `last_epoch` from `base_lrs` alone (used when jumping to an epoch)."""
        return self.get_lr()

    def step(self) -> None:
        """Advance one step (one batch, in cnnlab's fit loop) and set the groups' lr."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._closed_form_lr()
        groups = self.optimizer.param_groups
        for group, lr in zip(groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer, as plain data (a deep copy)."""
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "optimizer"})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict()` output and put its last lrs back into the optimizer, so the
        order of loading optimizer and scheduler state does not matter."""
        state = _plain(dict(state_dict))
        unknown = sorted(set(state) - set(self.__dict__))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__}.load_state_dict got keys {unknown} it does not have "
                f"(it has {sorted(k for k in self.__dict__ if k != 'optimizer')}); the saved "
                "schedule is of another kind."
            )
        self.__dict__.update(state)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"


class StepLR(LRScheduler):
    """Multiply the lr by `gamma` every `step_size` steps."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = as_positive_int("StepLR", "step_size", step_size)
        self.gamma = as_number("StepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in groups]
        return [group["lr"] * self.gamma for group in groups]

    def _closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """Multiply the lr by `factor` for the first `total_iters` steps, then restore it."""

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1):
        self.factor = _factor("ConstantLR", "factor", factor, 0.0, 1.0, low_open=False)
        self.total_iters = as_positive_int("ConstantLR", "total_iters", total_iters, minimum=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in groups]
        if self.last_epoch != self.total_iters:
            return [group["lr"] for group in groups]
        return [group["lr"] * (1.0 / self.factor) for group in groups]

    def _closed_form_lr(self) -> list[float]:
        reached = self.last_epoch >= self.total_iters
        return [base * (self.factor + reached * (1 - self.factor)) for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the lr linearly from `start_factor` to `end_factor` over `total_iters` steps
    (a linear warm-up when start_factor < 1), then hold it."""

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        self.start_factor = _factor("LinearLR", "start_factor", start_factor, 0.0, 1.0,
                                    low_open=True)
        self.end_factor = _factor("LinearLR", "end_factor", end_factor, 0.0, 1.0, low_open=False)
        self.total_iters = as_positive_int("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return [group["lr"] for group in groups]
        slope = self.end_factor - self.start_factor
        ratio = 1.0 + slope / (self.total_iters * self.start_factor + (self.last_epoch - 1) * slope)
        return [group["lr"] * ratio for group in groups]

    def _closed_form_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Anneal the lr from its initial value to `eta_min` along a half cosine over `T_max`
    steps: lr_t = eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2 (computed
    recursively, as torch does)."""

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = as_positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = as_number("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and t > 0:
            return [eta_min + (base - eta_min) * (1 + math.cos(t * math.pi / T)) / 2
                    for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [group["lr"] + (base - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (group["lr"] - eta_min) + eta_min for group in groups]

    def _closed_form_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]


def _anneal(strategy: str, start: float, end: float, pct: float) -> float:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith): warm up from max_lr/div_factor to `max_lr` over
    `pct_start` of `total_steps`, then anneal to initial_lr/final_div_factor.

    With `cycle_momentum` (torch's default) the groups' `momentum`, or the first of their
    `betas`, moves inversely between `max_momentum` and `base_momentum`.
    """

    def __init__(self, optimizer: Any, max_lr: float | Sequence[float], total_steps: int,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85,
                 max_momentum: float = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1):
        groups = param_groups_of(optimizer)
        self.total_steps = as_positive_int("OneCycleLR", "total_steps", total_steps)
        pct_start = _factor("OneCycleLR", "pct_start", pct_start, 0.0, 1.0, low_open=False)
        if anneal_strategy not in ("cos", "linear"):
            raise ConfigError(
                f"OneCycleLR anneal_strategy must be 'cos' or 'linear'; got {anneal_strategy!r}."
            )
        self.anneal_strategy = anneal_strategy
        up_end = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._schedule_phases = [
                dict(end_step=up_end, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=float(2 * pct_start * self.total_steps) - 2, start_lr="max_lr",
                     end_lr="initial_lr", start_momentum="base_momentum",
                     end_momentum="max_momentum"),
                dict(end_step=self.total_steps - 1, start_lr="initial_lr", end_lr="min_lr",
                     start_momentum="max_momentum", end_momentum="max_momentum"),
            ]
        else:
            self._schedule_phases = [
                dict(end_step=up_end, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=self.total_steps - 1, start_lr="max_lr", end_lr="min_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
            ]
        max_lrs = self._per_group("max_lr", max_lr, groups)
        if last_epoch == -1:
            for group, top in zip(groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            self.use_beta1 = "betas" in groups[0]
            if not self.use_beta1 and "momentum" not in groups[0]:
                raise ConfigError(
                    "OneCycleLR(cycle_momentum=True) needs an optimizer with 'momentum' or "
                    f"'betas' in its param groups; got keys {sorted(groups[0])}. Pass "
                    "cycle_momentum=False."
                )
            tops = self._per_group("max_momentum", max_momentum, groups)
            bases = self._per_group("base_momentum", base_momentum, groups)
            if last_epoch == -1:
                for group, top, base in zip(groups, tops, bases):
                    if self.use_beta1:
                        group["betas"] = (top, *group["betas"][1:])
                    else:
                        group["momentum"] = top
                    group["max_momentum"] = top
                    group["base_momentum"] = base
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _per_group(name: str, value: Any, groups: list[dict]) -> list[float]:
        if isinstance(value, (list, tuple)):
            if len(value) != len(groups):
                raise ConfigError(
                    f"OneCycleLR got {len(value)} values for {name} but the optimizer has "
                    f"{len(groups)} param groups; give one value or one per group."
                )
            return [as_number("OneCycleLR", name, v) for v in value]
        return [as_number("OneCycleLR", name, value)] * len(groups)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ConfigError(
                f"OneCycleLR was stepped {step} times but total_steps is {self.total_steps}; "
                "step it once per batch and size it as epochs x batches per epoch."
            )
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(_anneal(self.anneal_strategy, group[phase["start_lr"]],
                                       group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        momentum = _anneal(self.anneal_strategy, group[phase["start_momentum"]],
                                           group[phase["end_momentum"]], pct)
                        if self.use_beta1:
                            group["betas"] = (momentum, *group["betas"][1:])
                        else:
                            group["momentum"] = momentum
                    break
                start_step = phase["end_step"]
        return lrs


class SequentialLR:
    """Run `schedulers` one after another, switching at the step counts in `milestones`.

    At a milestone the next scheduler restarts from its closed form at step 0, as torch does.
    """

    def __init__(self, optimizer: Any, schedulers: Sequence[Any], milestones: Sequence[int],
                 last_epoch: int = -1):
        groups = param_groups_of(optimizer)
        if not schedulers:
            raise ConfigError("SequentialLR needs at least one scheduler; got none.")
        for index, scheduler in enumerate(schedulers):
            if getattr(scheduler, "optimizer", None) is not optimizer:
                raise ConfigError(
                    f"SequentialLR: scheduler {index} ({type(scheduler).__name__}) drives another "
                    "optimizer; all must share the one passed to SequentialLR."
                )
        if len(milestones) != len(schedulers) - 1:
            raise ConfigError(
                f"SequentialLR needs one milestone fewer than schedulers; got {len(schedulers)} "
                f"schedulers and milestones {list(milestones)}."
            )
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = last_epoch + 1
        for group in groups:
            group["lr"] = group["initial_lr"]
        self._undo_initial_steps(self)
        first = bisect_right(self._milestones, 0)
        self._schedulers[first]._initial_step()
        self._last_lr = self._schedulers[first].get_last_lr()

    @classmethod
    def _undo_initial_steps(cls, scheduler: Any) -> None:
        # each child already took its initial step on construction; only the first one counts
        children = getattr(scheduler, "_schedulers", None)
        if children is not None:
            for child in children:
                cls._undo_initial_steps(child)
        else:
            scheduler.last_epoch -= 1

    def _initial_step(self) -> None:  # so a SequentialLR can nest inside another
        first = bisect_right(self._milestones, 0)
        self._schedulers[first]._initial_step()
        self._last_lr = self._schedulers[first].get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "_milestones": list(self._milestones),
            "_last_lr": list(self._last_lr),
            "_schedulers": [s.state_dict() for s in self._schedulers],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = _plain(dict(state_dict))
        children = state.pop("_schedulers", None)
        if children is None or len(children) != len(self._schedulers):
            raise ConfigError(
                f"SequentialLR.load_state_dict expects '_schedulers' with {len(self._schedulers)} "
                f"entries; got {None if children is None else len(children)}."
            )
        for scheduler, child in zip(self._schedulers, children):
            scheduler.load_state_dict(child)
        self.last_epoch = int(state["last_epoch"])
        self._milestones = [int(m) for m in state["_milestones"]]
        self._last_lr = list(state["_last_lr"])
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for s in self._schedulers)
        return f"SequentialLR([{names}], milestones={self._milestones}, lr={self._last_lr})"
