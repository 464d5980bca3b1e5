"""Fit-loop callbacks: small objects with named no-op hooks and a `logs` dict (Keras style).

The loop sets `callback.state` (a `FitState`: engine, scheduler, history, stop flag) before
`on_train_begin`. A callback ends training only through `self.state.stop(status, reason)`.
Callbacks with something to resume from (best value, patience counter, timings) implement
`state_dict()` / `load_state_dict()` and a `key`; checkpoints store them under `callbacks`.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from pathlib import Path

import numpy as np

from cnnlab.runs import write_metrics
from cnnlab.training.checkpoint import save_checkpoint

class Callback:
    """Base class: every hook is a no-op; override the ones you need."""

    key: str | None = None  # name under which state_dict() is checkpointed (None: stateless)
    state = None  # the FitState, set by fit()

    def on_train_begin(self, logs: dict) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict) -> None: ...
    def on_batch_end(self, step: int, logs: dict) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...
    def on_train_end(self, logs: dict) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class Monitor:
    """Tracks the best value of one metric: `*_loss` is minimised, anything else maximised."""

    def __init__(self, metric: str = "val_acc"):
        self.metric = metric
        self.mode = "min" if metric.endswith("loss") else "max"
        self.best: float | None = None
        self.best_epoch: int | None = None

    def improves(self, value) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def update(self, epoch: int, logs: dict) -> bool:
        """Record `logs[metric]` if it is the best so far; say whether it was."""
        value = logs.get(self.metric)
        if not self.improves(value):
            return False
        self.best, self.best_epoch = float(value), int(epoch)
        return True

    def state_dict(self) -> dict:
        return {"monitor": self.metric, "value": self.best, "epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state.get("value"), state.get("epoch")


def global_rng_state() -> dict:
    """Python's and NumPy's global generator states as plain lists (checkpoint-safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }


def set_global_rng_state(state: dict | None) -> None:
    if not state:
        return
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def checkpoint_payload(state, callbacks, extra: dict | None = None) -> dict:
    """Everything needed to resume after `state.epoch`: engine, scheduler, RNG, callback states."""
    payload = dict(state.engine.state_dict())
    payload["scheduler"] = state.scheduler.state_dict() if state.scheduler is not None else None
    payload["epoch"] = int(state.epoch)
    payload["global_rng"] = global_rng_state()
    payload["callbacks"] = {cb.key: cb.state_dict() for cb in callbacks if cb.key}
    payload["best"] = payload["callbacks"].get("best")
    payload.update(extra or {})
    return payload


def format_epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    """'epoch 3/10  train_loss 0.2113  train_acc 93.41%  val_loss ...  lr 0.05  2.1s'."""
    def pct(v):
        return f"{100 * v:6.2f}%" if math.isfinite(v) else "    nan"

    parts = [f"epoch {epoch}/{epochs}", f"train_loss {logs['train_loss']:.4f}",
             f"train_acc {pct(logs['train_acc'])}"]
    if math.isfinite(logs["val_loss"]) or math.isfinite(logs["val_acc"]):
        parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {pct(logs['val_acc'])}"]
    parts += [f"lr {logs['lr']:.4g}", f"{logs['epoch_s']:.1f}s"]
    return "  ".join(parts)


class EpochLines(Callback):
    """One plain line per epoch (for logs, pipes and notebooks without a terminal)."""

    def __init__(self, stream=None):
        self.stream = stream

    def on_epoch_end(self, epoch, logs):
        print(format_epoch_line(epoch, self.state.epochs, logs), file=self.stream or sys.stdout,
              flush=True)


class TqdmProgress(Callback):
    """A tqdm bar per epoch on a terminal; the epoch's line stays when it closes."""

    def __init__(self, stream=None):
        self.stream = stream
        self._bar = None

    def on_epoch_begin(self, epoch, logs):
        from tqdm import tqdm

        self._bar = tqdm(total=logs.get("steps"), desc=f"epoch {epoch}/{self.state.epochs}",
                         leave=False, file=self.stream or sys.stderr, unit="batch")

    def on_batch_end(self, step, logs):
        self._bar.update(1)

    def on_epoch_end(self, epoch, logs):
        self._close()
        print(format_epoch_line(epoch, self.state.epochs, logs), file=self.stream or sys.stderr,
              flush=True)

    def on_train_end(self, logs):
        self._close()

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_callback(stream=None) -> Callback:
    """tqdm bars on a terminal, plain per-epoch lines otherwise."""
    out = stream or sys.stderr
    return TqdmProgress(out) if getattr(out, "isatty", lambda: False)() else EpochLines(stream)


class LogLines(Callback):
    """Sends each epoch's line to a writer (e.g. the run's log.txt)."""

    def __init__(self, write):
        self.write = write

    def on_epoch_end(self, epoch, logs):
        self.write(format_epoch_line(epoch, self.state.epochs, logs))


class CSVLogger(Callback):
    """Rewrites metrics.csv (every epoch so far, including resumed ones) atomically each epoch."""

    def __init__(self, path):
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs):
        write_metrics(self.path, self.state.history)


class NaNGuard(Callback):
    """Stops with status `diverged` when a loss is NaN or infinite; the epoch's row is kept."""

    def on_epoch_end(self, epoch, logs):
        has_val = math.isfinite(logs.get("val_acc", math.nan))  # accuracy stays finite
        bad = [k for k in ("train_loss", "val_loss")
               if not math.isfinite(logs[k]) and (k == "train_loss" or has_val)]
        if bad:
            values = ", ".join(f"{k}={logs[k]}" for k in bad)
            self.state.stop("diverged", f"non-finite loss at epoch {epoch} ({values}); "
                            "try a smaller optim.lr")


class BestCheckpoint(Callback):
    """Saves the full training state whenever the monitored metric improves."""

    key = "best"

    def __init__(self, path, monitor: str = "val_acc", extra: dict | None = None):
        self.path = Path(path)
        self.monitor = Monitor(monitor)
        self.extra = extra or {}
        self.callbacks: list = []  # the run's callbacks, whose states go into the payload

    def on_epoch_end(self, epoch, logs):
        if self.monitor.update(epoch, logs):
            save_checkpoint(self.path, checkpoint_payload(self.state, self.callbacks, self.extra))

    def state_dict(self):
        return self.monitor.state_dict()

    def load_state_dict(self, state):
        self.monitor.load_state_dict(state)


class LastCheckpoint(Callback):
    """Saves the full training state after every epoch (and the initial state at epoch 0).

    Put it last so the other callbacks' states for the epoch are final. A run stopped in the
    middle of an epoch resumes from the last finished one.
    """

    def __init__(self, path, extra: dict | None = None):
        self.path = Path(path)
        self.extra = extra or {}
        self.callbacks: list = []

    def on_train_begin(self, logs):
        if logs.get("initial_epoch", 0) == 0:
            self._save()

    def on_epoch_end(self, epoch, logs):
        self._save()

    def _save(self):
        save_checkpoint(self.path, checkpoint_payload(self.state, self.callbacks, self.extra))


class EarlyStopping(Callback):
    """Stops after `patience` epochs without improvement of `monitor`.

    With `restore_best`, keeps an in-memory copy of the engine state at the best epoch and
    loads it back when training ends. (`train()` restores from best.pt instead, which also
    survives a resume, so it passes `restore_best=False`.)
    """

    key = "early_stopping"

    def __init__(self, monitor: str = "val_acc", patience: int = 5, restore_best: bool = True):
        self.monitor = Monitor(monitor)
        self.patience = int(patience)
        self.restore_best = restore_best
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state = None

    def on_epoch_end(self, epoch, logs):
        if self.monitor.update(epoch, logs):
            self.wait = 0
            if self.restore_best:
                self._best_state = copy.deepcopy(self.state.engine.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience and not self.state.stop_training:
            self.stopped_epoch = epoch
            self.state.stop("completed", f"early stop: no {self.monitor.metric} improvement for "
                            f"{self.patience} epochs (best at epoch {self.monitor.best_epoch})")

    def on_train_end(self, logs):
        if self.restore_best and self._best_state is not None and logs.get("status") != "failed":
            self.state.engine.load_state_dict(self._best_state)

    def state_dict(self):
        return {**self.monitor.state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        self.monitor.load_state_dict(state)
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = state.get("stopped_epoch")


class Timer(Callback):
    """Records seconds per epoch and training images per second (cumulative across resumes)."""

    key = "timer"

    def __init__(self):
        self.epochs = 0
        self.epoch_s = 0.0
        self.train_s = 0.0
        self.samples = 0

    def on_epoch_end(self, epoch, logs):
        self.epochs += 1
        self.epoch_s += logs["epoch_s"]
        self.train_s += logs["train_s"]
        self.samples += logs["samples"]

    def summary(self) -> dict:
        return {
            "s_per_epoch": self.epoch_s / self.epochs if self.epochs else None,
            "img_per_s": self.samples / self.train_s if self.train_s > 0 else None,
            "train_s": self.train_s,
        }

    def state_dict(self):
        return {"epochs": self.epochs, "epoch_s": self.epoch_s, "train_s": self.train_s,
                "samples": self.samples}

    def load_state_dict(self, state):
        self.epochs = int(state.get("epochs", 0))
        self.epoch_s = float(state.get("epoch_s", 0.0))
        self.train_s = float(state.get("train_s", 0.0))
        self.samples = int(state.get("samples", 0))
