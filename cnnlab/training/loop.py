"""The one fit loop. It knows only the engine protocol, loaders and callbacks.

Engines: `train()`, `eval()`, `train_batch(x, y) -> (loss_sum, correct)`,
`eval_batch(x, y) -> (loss_sum, correct)`, `optimizer.param_groups`, `state_dict()`.
Loaders: iterable of `(x, y)` batches, `len()`, optional `set_epoch(e)` (the loader re-seeds
its order and augmentation from the epoch, so a resumed epoch sees the same batches).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from cnnlab.data.augment import tta_views
from cnnlab.runs import METRIC_COLUMNS
from cnnlab.training.callbacks import Callback

__all__ = ["FitState", "evaluate", "fit", "METRIC_COLUMNS"]


@dataclass
class FitState:
    """What callbacks can see and change: the engine, the history and the stop flag.

    `stop_training` is the one way to end the loop early; `status` says why
    (`completed`, `diverged`, ...). `history` holds one logs dict per finished epoch.
    """

    engine: object
    scheduler: object
    epochs: int
    epoch: int = 0
    history: list = field(default_factory=list)
    stop_training: bool = False
    status: str = "running"
    stop_reason: str = ""

    def stop(self, status: str, reason: str) -> None:
        self.stop_training = True
        self.status = status
        self.stop_reason = reason


class ClassCounts:
    """Per-class totals and correct predictions, filled by `evaluate(..., class_counts=)`."""

    def __init__(self, classes):
        self.classes = tuple(classes)
        self.total = np.zeros(len(self.classes), np.int64)
        self.correct = np.zeros(len(self.classes), np.int64)

    def add(self, labels, predicted) -> None:
        labels = labels.cpu().numpy() if hasattr(labels, "cpu") else np.asarray(labels)
        np.add.at(self.total, labels, 1)
        np.add.at(self.correct, labels, np.asarray(predicted) == labels)

    def accuracy(self) -> dict:
        """{class name: accuracy (None for a class without samples)}."""
        return {str(c): (float(self.correct[i] / self.total[i]) if self.total[i] else None)
                for i, c in enumerate(self.classes)}


def evaluate(engine, loader, tta=(), class_counts: ClassCounts | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of `engine` over `loader`, in eval mode, without updates.

    tta: test-time augmentation views (`cnnlab.data.augment.tta_views`); with any, each batch
    is scored on the mean of its views' logits (`engine.eval_views`). class_counts: filled with
    per-class results in the same pass (the test set is evaluated once).
    """
    engine.eval()
    loss_total, correct_total, seen = 0.0, 0, 0
    for x, y in loader:
        if tta or class_counts is not None:
            loss_sum, correct, predicted = engine.eval_views(tta_views(x, tta), y)
            if class_counts is not None:
                class_counts.add(y, predicted)
        else:
            loss_sum, correct = engine.eval_batch(x, y)
        loss_total += loss_sum
        correct_total += correct
        seen += y.shape[0]
    if seen == 0:
        return math.nan, math.nan
    return float(loss_total) / seen, float(correct_total) / seen


def _overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)


def _train_epoch(engine, loader, scheduler, batch_callbacks) -> tuple[float, float, int]:
    engine.train()
    loss_total, correct_total, seen = 0.0, 0, 0
    for step, (x, y) in enumerate(loader):
        loss_sum, correct = engine.train_batch(x, y)
        if scheduler is not None:
            scheduler.step()
        loss_total += loss_sum
        correct_total += correct
        seen += y.shape[0]
        if batch_callbacks:
            batch_logs = {"loss_sum": loss_sum, "correct": correct, "size": y.shape[0]}
            for cb in batch_callbacks:
                cb.on_batch_end(step, batch_logs)
    if seen == 0:
        return math.nan, math.nan, 0
    return float(loss_total) / seen, float(correct_total) / seen, seen


def fit(engine, train_loader, val_loader, epochs: int, scheduler=None, callbacks=(), *,
        initial_epoch: int = 0, history=None, tta=()) -> FitState:
    """Train `engine` for epochs `initial_epoch + 1 .. epochs`; return the final FitState.

    Each epoch: `set_epoch`, one pass of `train_batch` (the scheduler steps once per batch),
    then `evaluate` on `val_loader` (skipped when None). The epoch's logs dict has the
    `METRIC_COLUMNS` plus `train_s` (training pass only) and `samples`; callbacks get it in
    `on_epoch_end`. The loop stops when a callback calls `state.stop(...)`. `tta`: the
    validation pass's test-time augmentation views (see `evaluate`).
    """
    state = FitState(engine=engine, scheduler=scheduler, epochs=epochs, epoch=initial_epoch,
                     history=list(history or []))
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.state = state
    batch_callbacks = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
    for cb in callbacks:
        cb.on_train_begin({"initial_epoch": initial_epoch, "epochs": epochs})
    try:
        for epoch in range(initial_epoch + 1, epochs + 1):
            state.epoch = epoch
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {"steps": len(train_loader)})
            logs = _run_epoch(engine, train_loader, val_loader, scheduler, epoch, batch_callbacks, tta)
            state.history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if state.stop_training:
                break
        if state.status == "running":
            state.status = "completed"
    except KeyboardInterrupt:
        state.stop("interrupted", "stopped by Ctrl-C or SIGTERM")
        raise
    except BaseException as err:
        state.stop("failed", f"{type(err).__name__}: {err}")
        raise
    finally:
        for cb in callbacks:
            cb.on_train_end({"status": state.status})
    return state


def _run_epoch(engine, train_loader, val_loader, scheduler, epoch, batch_callbacks, tta) -> dict:
    if hasattr(train_loader, "set_epoch"):
        train_loader.set_epoch(epoch)
    lr = float(engine.optimizer.param_groups[0]["lr"])
    start = time.perf_counter()
    train_loss, train_acc, samples = _train_epoch(engine, train_loader, scheduler, batch_callbacks)
    train_s = time.perf_counter() - start
    val_loss, val_acc = (evaluate(engine, val_loader, tta) if val_loader is not None
                         else (math.nan, math.nan))
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": lr,
        "epoch_s": time.perf_counter() - start,
        "train_s": train_s,
        "samples": samples,
    }
