"""The fit loop and callbacks on a tiny linear model (no data files, no run folder)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from cnnlab.config import OptimConfig
from cnnlab.training import (Callback, EarlyStopping, EpochLines, Monitor, NaNGuard, Timer,
                             TqdmProgress, evaluate, fit, progress_callback)
from cnnlab.engines.torch_engine import TorchEngine


def _batches(n_batches=4, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_batches, batch, 1, 4, 4, generator=g)
    ys = (xs.flatten(2).sum(2).squeeze(1) > 0).long()  # a learnable rule
    return [(x, y) for x, y in zip(xs, ys)]


def _engine(lr=0.1, name="sgd"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    return TorchEngine(model, OptimConfig(name=name, lr=lr, weight_decay=0.0), device="cpu")


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", logs["initial_epoch"]))

    def on_epoch_begin(self, epoch, logs):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, step, logs):
        self.calls.append(("batch", step))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch))

    def on_train_end(self, logs):
        self.calls.append(("train_end", logs["status"]))


def test_fit_calls_hooks_in_order_and_learns(one_thread):
    engine, data, recorder = _engine(), _batches(), Recorder()
    before = evaluate(engine, data)
    state = fit(engine, data, data, epochs=3, callbacks=[recorder])
    assert state.status == "completed" and [r["epoch"] for r in state.history] == [1, 2, 3]
    assert recorder.calls[:3] == [("train_begin", 0), ("epoch_begin", 1), ("batch", 0)]
    assert recorder.calls.count(("batch", 3)) == 3 and recorder.calls[-1] == ("train_end", "completed")
    last = state.history[-1]
    assert last["val_loss"] < before[0] and 0.0 <= last["train_acc"] <= 1.0
    assert last["samples"] == 32 and last["epoch_s"] >= last["train_s"] > 0


def test_scheduler_steps_once_per_batch_and_lr_is_logged_at_epoch_start(one_thread):
    engine = _engine(lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(engine.optimizer, step_size=1, gamma=0.5)
    state = fit(engine, _batches(n_batches=2), None, epochs=2, scheduler=scheduler)
    assert [r["lr"] for r in state.history] == [1.0, 0.25]
    assert math.isnan(state.history[0]["val_acc"])


def test_only_callbacks_that_override_on_batch_end_are_called_per_batch(one_thread):
    class EpochOnly(Callback):
        def on_batch_end(self, step, logs):  # pragma: no cover - must not run
            raise AssertionError

    class Plain(Callback):
        pass

    state = fit(_engine(), _batches(), None, epochs=1, callbacks=[Plain(), Timer()])
    assert state.status == "completed"
    with pytest.raises(AssertionError):
        fit(_engine(), _batches(), None, epochs=1, callbacks=[EpochOnly()])


def test_nan_guard_stops_with_diverged_and_keeps_the_row(one_thread):
    data = _batches()
    data[1][0][0, 0, 0, 0] = float("nan")  # one poisoned input makes the weights NaN
    state = fit(_engine(), data, _batches(seed=1), epochs=5, callbacks=[NaNGuard()])
    assert state.status == "diverged" and "non-finite" in state.stop_reason
    assert len(state.history) == 1
    assert math.isnan(state.history[-1]["train_loss"]) and math.isnan(state.history[-1]["val_loss"])


class ScriptedMetrics(Callback):
    """Overwrites val_acc with scripted values so early stopping sees a known curve."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs):
        logs["val_acc"] = self.values[epoch - 1]


def test_early_stopping_waits_patience_epochs_and_restores_the_best(one_thread):
    engine = _engine()
    snapshots = {}

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots[epoch] = engine.model[1].weight.detach().clone()

    stopper = EarlyStopping("val_acc", patience=2)
    callbacks = [ScriptedMetrics([0.5, 0.7, 0.6, 0.65, 0.9, 0.9]), Snapshot(), stopper]
    state = fit(engine, _batches(), _batches(seed=1), epochs=6, callbacks=callbacks)
    assert [r["epoch"] for r in state.history] == [1, 2, 3, 4]
    assert state.status == "completed" and "early stop" in state.stop_reason
    assert stopper.stopped_epoch == 4 and stopper.monitor.best_epoch == 2
    assert torch.equal(engine.model[1].weight, snapshots[2])


def test_monitor_minimises_losses_and_ignores_nan():
    loss, acc = Monitor("val_loss"), Monitor("val_acc")
    assert loss.update(1, {"val_loss": 2.0}) and loss.update(2, {"val_loss": 1.0})
    assert not loss.update(3, {"val_loss": 1.5}) and not loss.update(4, {"val_loss": float("nan")})
    assert acc.update(1, {"val_acc": 0.1}) and not acc.update(2, {"val_acc": 0.05})
    assert loss.state_dict() == {"monitor": "val_loss", "value": 1.0, "epoch": 2}


def test_exceptions_in_the_loop_mark_failed_and_propagate(one_thread):
    class Boom(Callback):
        def on_epoch_end(self, epoch, logs):
            raise RuntimeError("boom")

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        fit(_engine(), _batches(), None, epochs=2, callbacks=[Boom(), recorder])
    assert recorder.calls[-1] == ("train_end", "failed")


def test_engine_state_round_trip_is_exact(one_thread):
    engine, data = _engine(name="adam"), _batches()
    fit(engine, data, None, epochs=1)
    saved = {k: v for k, v in engine.state_dict().items()}
    twin = _engine(name="adam")
    twin.load_state_dict(saved)
    assert twin.train_batch(*data[0]) == engine.train_batch(*data[0])


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(one_thread):
    terminal, pipe = FakeTerminal(), io.StringIO()
    bar, lines = progress_callback(terminal), progress_callback(pipe)
    assert isinstance(bar, TqdmProgress) and isinstance(lines, EpochLines)
    fit(_engine(), _batches(), _batches(seed=1), epochs=2, callbacks=[bar, lines])
    assert "batch" in terminal.getvalue() and "epoch 2/2" in terminal.getvalue()
    assert pipe.getvalue().count("\n") == 2 and pipe.getvalue().startswith("epoch 1/2  train_loss")


def test_timer_summary_reports_the_training_pass_time_as_train_s():
    timer = Timer()
    for epoch, (epoch_s, train_s) in enumerate([(3.0, 2.0), (5.0, 4.0)], start=1):
        timer.on_epoch_end(epoch, {"epoch_s": epoch_s, "train_s": train_s, "samples": 600})
    summary = timer.summary()
    assert summary["train_s"] == 6.0  # training passes only, not the epochs with evaluation
    assert summary["s_per_epoch"] == 4.0 and summary["img_per_s"] == 1200 / 6.0
