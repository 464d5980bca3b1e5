"""Weight averaging for either engine: an exponential moving average (`WeightAverage`),
Lookahead's slow weights (`Lookahead`), and `WeightAveraging`, the one object through which an
engine drives both (so the engines share these calls rather than each repeating them).

`WeightAverage` works on a model's live state: a dict `name -> tensor or array` whose values
are the model's own storage (torch's `state_dict()` tensors share it; the NumPy engine's
parameters and buffers are updated in place). After every optimiser step

    average = decay * average + (1 - decay) * weights

for floating-point entries (parameters and BN running statistics); integer buffers
(`num_batches_tracked`) are copied. For evaluation the engine swaps the average into the
model (`swap_in`) and the training weights back afterwards (`swap_out`), so the fit loop, the
evaluation and the checkpoints stay engine-agnostic.

`Lookahead` (Zhang et al., 2019) keeps slow copies of the parameters: every `steps` optimiser
steps `slow += alpha * (fast - slow)` and the fast (training) weights restart from `slow`.
"""

from __future__ import annotations


def _copy(value):
    return value.clone() if hasattr(value, "clone") else value.copy()


def _is_float(value) -> bool:
    check = getattr(value, "is_floating_point", None)
    return bool(check()) if callable(check) else value.dtype.kind == "f"


def _assign(target, source) -> None:
    target[...] = source  # in place: numpy arrays and torch tensors alike


class WeightAverage:
    """EMA of `live` (name -> tensor/array), updated by `update(live)` after each step."""

    def __init__(self, live: dict, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"an EMA decay must lie in (0, 1); got {decay!r}")
        self.decay = float(decay)
        self.average = {name: _copy(value) for name, value in live.items()}
        self._training: dict | None = None  # the training weights while the average is swapped in

    @property
    def swapped_in(self) -> bool:
        return self._training is not None

    def update(self, live: dict) -> None:
        d = self.decay
        for name, average in self.average.items():
            weights = live[name]
            if _is_float(average):
                average *= d
                average += (1.0 - d) * weights
            else:
                _assign(average, weights)

    def swap_in(self, live: dict) -> None:
        """Put the average into the model, keeping the training weights aside."""
        if self._training is None:
            self._training = {name: _copy(value) for name, value in live.items()}
            for name, average in self.average.items():
                _assign(live[name], average)

    def swap_out(self, live: dict) -> None:
        """Put the training weights back."""
        if self._training is not None:
            for name, weights in self._training.items():
                _assign(live[name], weights)
            self._training = None

    def training_state(self, live: dict) -> dict:
        """Copies of the training weights, whether or not the average is swapped in."""
        source = self._training if self._training is not None else live
        return {name: _copy(value) for name, value in source.items()}

    def average_state(self) -> dict:
        return {name: _copy(value) for name, value in self.average.items()}

    def load_average(self, state: dict) -> None:
        for name, average in self.average.items():
            _assign(average, state[name])

    def checkpoint_entries(self, live: dict) -> dict:
        """A checkpoint's `model` (the average: what evaluation, `Run.model` and export use) and
        `train_model` (the training weights, so a resume continues exactly)."""
        return {"model": self.average_state(), "train_model": self.training_state(live)}

    def restore(self, state: dict, live: dict, load_model) -> None:
        """Load a checkpoint's weights: training ones into the model through `load_model`, the
        average into this; a checkpoint written without EMA gives both from its `model`."""
        self.swap_out(live)
        load_model(state.get("train_model", state["model"]))
        self.load_average(state["model"])


class Lookahead:
    """Lookahead over `live` (parameter name -> the model's own tensor/array), after each step."""

    def __init__(self, live: dict, steps: int, alpha: float):
        if int(steps) < 1 or not 0 < alpha <= 1:
            raise ValueError(f"Lookahead needs steps >= 1 and alpha in (0, 1]; got {steps!r}, {alpha!r}")
        self.steps, self.alpha = int(steps), float(alpha)
        self.slow = {name: _copy(value) for name, value in live.items()}
        self.count = 0  # optimiser steps taken; a sync every `steps`

    def step(self, live: dict) -> None:
        self.count += 1
        if self.count % self.steps:
            return
        for name, slow in self.slow.items():
            fast = live[name]
            slow += self.alpha * (fast - slow)
            _assign(fast, slow)

    def checkpoint_entries(self) -> dict:
        return {"lookahead": {"slow": {name: _copy(v) for name, v in self.slow.items()},
                              "count": self.count}}

    def restore(self, state: dict, live: dict) -> None:
        """From a checkpoint's `lookahead` entry; one written without it restarts from `live`."""
        saved = state.get("lookahead")
        if saved is None:
            self.slow, self.count = {name: _copy(v) for name, v in live.items()}, 0
            return
        for name, slow in self.slow.items():
            _assign(slow, saved["slow"][name])
        self.count = int(saved["count"])


class WeightAveraging:
    """The weight averages an engine keeps beside its optimiser (an EMA, Lookahead, either or
    neither), behind the five calls every engine makes: `after_step`, `for_training`,
    `for_evaluation`, `checkpoint_entries` and `restore`.

    `parameters` and `live` are callables returning the model's storage (name -> tensor or
    array): its parameters (what Lookahead moves) and its parameters with its buffers (what the
    EMA averages). Called afresh each time, so they see the model's current storage."""

    def __init__(self, parameters, live, ema_decay: float | None, lookahead: Lookahead | None):
        self._parameters, self._live = parameters, live
        self.lookahead = lookahead
        self.ema = WeightAverage(live(), ema_decay) if ema_decay else None

    def after_step(self) -> None:
        """After each optimiser step: Lookahead first (it may reset the fast weights), then
        the EMA of the weights the next step starts from."""
        if self.lookahead is not None:
            self.lookahead.step(self._parameters())
        if self.ema is not None:
            self.ema.update(self._live())

    def for_training(self) -> None:
        if self.ema is not None:
            self.ema.swap_out(self._live())

    def for_evaluation(self) -> None:
        if self.ema is not None:
            self.ema.swap_in(self._live())

    def checkpoint_entries(self) -> dict:
        """Entries to add to the engine's state dict (the EMA's replace its `model`)."""
        entries = {}
        if self.ema is not None:
            entries.update(self.ema.checkpoint_entries(self._live()))
        if self.lookahead is not None:
            entries.update(self.lookahead.checkpoint_entries())
        return entries

    def restore(self, state: dict, load_model) -> None:
        """Load a checkpoint's weights through `load_model` and the averages' own entries."""
        if self.ema is not None:
            self.ema.restore(state, self._live(), load_model)
        else:
            load_model(state["model"])
        if self.lookahead is not None:
            self.lookahead.restore(state, self._parameters())
