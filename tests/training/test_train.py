"""train() end to end on tiny digits runs: run folder, reproducibility, resume, failures."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
import yaml

from cnnlab.errors import ConfigError, ModelError, TrainingInterrupted
from cnnlab.training import METRIC_COLUMNS, Callback, Run, train

RESULT_KEYS = {"status", "test_loss", "test_acc", "best_epoch", "best_val_acc", "epochs_run",
               "params", "macs", "model", "dataset", "engine", "device", "s_per_epoch",
               "img_per_s", "train_s", "input_shape", "num_classes", "classes", "mean", "std",
               "versions"}


def _metrics_without_time(run_dir):
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    return [",".join(line.split(",")[:-1]) for line in lines]  # epoch_s is the last column


class StopAt(Callback):
    """Simulates Ctrl-C (or SIGTERM) at the start of an epoch."""

    def __init__(self, epoch, use_signal=False):
        self.epoch, self.use_signal = epoch, use_signal

    def on_epoch_begin(self, epoch, logs):
        if epoch == self.epoch:
            if self.use_signal:
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt


def test_train_writes_a_complete_run_folder(tiny_config):
    run = train(tiny_config(), quiet=True)
    files = {p.name for p in run.path.iterdir()}
    assert {"config.yaml", "metrics.csv", "best.pt", "last.pt", "result.json", "log.txt"} <= files
    assert run.path.name == "v1" and run.path.parent.name == "tiny"
    assert not [f for f in files if f.endswith(".tmp")]

    result = json.loads((run.path / "result.json").read_text())
    assert RESULT_KEYS <= set(result) and result["status"] == "completed"
    assert result["epochs_run"] == 3 and result["engine"] == "torch" and result["device"] == "cpu"
    assert result["params"] == sum(p.numel() for p in run.model().parameters())
    assert result["input_shape"] == [1, 8, 8] and result["test_acc"] > 0.5

    assert (run.path / "metrics.csv").read_text().splitlines()[0] == ",".join(METRIC_COLUMNS)
    assert [row["epoch"] for row in run.metrics] == [1, 2, 3]
    assert all(isinstance(v, float) for k, v in run.metrics[0].items() if k != "epoch")
    assert yaml.safe_load((run.path / "config.yaml").read_text())["train"]["epochs"] == 3
    assert "epoch 3/3" in (run.path / "log.txt").read_text()

    for which in ("best", "last"):
        payload = torch.load(run.path / f"{which}.pt", weights_only=True)
        assert {"model", "optimizer", "scheduler", "epoch", "rng", "best"} <= set(payload)
    assert torch.load(run.path / "last.pt", weights_only=True)["epoch"] == 3
    assert result["best_epoch"] == torch.load(run.path / "best.pt", weights_only=True)["epoch"]


def test_test_accuracy_comes_from_the_best_checkpoint(tiny_config):
    run = train(tiny_config(), quiet=True)
    test = run.test_data()
    probs = run.predict(test.images)
    assert probs.shape == (len(test), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == test.labels).mean() == pytest.approx(run.result["test_acc"])
    assert Run.load(run.path.parent).path == run.path  # the latest version of a name


def test_second_run_gets_the_next_version_and_identical_metrics(tiny_config):
    first = train(tiny_config(), quiet=True)
    second = train(tiny_config(), quiet=True)
    assert second.path.name == "v2"
    assert _metrics_without_time(first.path) == _metrics_without_time(second.path)


@pytest.mark.parametrize("use_signal", [False, True], ids=["ctrl-c", "sigterm"])
def test_interrupt_then_resume_equals_an_uninterrupted_run(tiny_config, use_signal):
    config = tiny_config(**{"data.augment": ["crop", "flip"], "train.patience": 5})
    full = train(config, quiet=True)
    with pytest.raises(TrainingInterrupted, match="--resume") as err:
        train(config, quiet=True, callbacks=[StopAt(3, use_signal)])
    stopped = full.path.parent / "v2"
    assert str(stopped) in str(err.value)
    assert json.loads((stopped / "result.json").read_text())["status"] == "interrupted"
    assert torch.load(stopped / "last.pt", weights_only=True)["epoch"] == 2

    resumed = train(resume=stopped, quiet=True)
    assert resumed.path == stopped and resumed.result["status"] == "completed"
    assert _metrics_without_time(stopped) == _metrics_without_time(full.path)
    assert resumed.result["test_acc"] == full.result["test_acc"]
    assert "resumed from epoch 2" in (stopped / "log.txt").read_text()
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(resume=stopped, quiet=True)


def test_huge_learning_rate_ends_diverged_with_metrics_kept(tiny_config):
    run = train(tiny_config(**{"optim.lr": 1e12, "train.epochs": 4}), quiet=True)
    assert run.result["status"] == "diverged" and "non-finite" in run.result["stop_reason"]
    assert 1 <= len(run.metrics) < 4 and run.result["epochs_run"] == len(run.metrics)
    last = run.metrics[-1]
    assert not (np.isfinite(last["train_loss"]) and np.isfinite(last["val_loss"]))


def test_early_stopping_ends_a_stalled_run(tiny_config):
    run = train(tiny_config(**{"optim.lr": 1e-12, "train.epochs": 8, "train.patience": 2,
                               "optim.weight_decay": 0.0, "schedule.name": "constant"}),
                quiet=True)
    assert run.result["status"] == "completed" and "early stop" in run.result["stop_reason"]
    assert run.result["epochs_run"] == 3 and run.result["best_epoch"] == 1
    completion = (run.path / "log.txt").read_text().splitlines()[-1]
    assert completion.startswith("completed: 3 epoch(s)") and "early stop: no val_acc improvement" in completion


def test_per_class_test_accuracy_is_in_result_json(tiny_config):
    run = train(tiny_config(**{"train.epochs": 1}), quiet=True)
    per_class = json.loads((run.path / "result.json").read_text())["per_class_acc"]
    assert list(per_class) == [str(d) for d in range(10)]
    counts = np.bincount(run.test_data().labels, minlength=10)
    weighted = sum(per_class[str(d)] * counts[d] for d in range(10)) / counts.sum()
    assert weighted == pytest.approx(run.result["test_acc"], abs=1e-9)


def test_a_spec_model_without_a_name_is_labelled_spec(tiny_config, tmp_path):
    from cnnlab.config import load_config

    spec = ["flatten", {"linear": "classes"}]
    base = tiny_config().to_dict()
    base["model"] = {"spec": spec}
    base["train"].update(name=None, epochs=1)
    run = train(load_config(base), quiet=True)
    assert run.path.parent.name == "spec-digits" and run.result["model"] == "spec"
    assert run.model_args().label == "spec" and run.config.model.name == "spec"
    assert "run " in (run.path / "log.txt").read_text() and ": spec on digits" in (run.path / "log.txt").read_text()


def test_an_exception_marks_the_run_failed_and_is_reraised(tiny_config):
    class Broken(Callback):
        def on_epoch_end(self, epoch, logs):
            raise ValueError("callback bug")

    with pytest.raises(ValueError, match="callback bug"):
        train(tiny_config(), quiet=True, callbacks=[Broken()])
    run = Run.load(tiny_config().train.out + "/tiny/v1")
    assert run.result["status"] == "failed" and "callback bug" in run.result["error"]
    assert "Traceback" in (run.path / "log.txt").read_text()


def test_a_model_that_does_not_fit_the_input_raises_before_any_folder(tiny_config, tmp_path):
    with pytest.raises(ModelError, match="16x16"):
        train(tiny_config(**{"model.name": "deep_cnn"}), quiet=True)
    assert not (tmp_path / "runs").exists()


def test_run_load_rejects_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder"):
        Run.load(tmp_path)


def test_scratch_engine_runs_write_npz_and_predict_like_their_test_accuracy(tiny_config):
    # exact resume of scratch runs is covered in test_scratch_engine.py
    run = train(tiny_config(**{"train.engine": "scratch", "data.train_limit": 200}), quiet=True)
    assert {"best.npz", "last.npz"} <= {p.name for p in run.path.iterdir()}
    assert run.result["engine"] == "scratch" and run.checkpoint("last")["epoch"] == 3
    test = run.test_data()
    assert (run.predict(test.images).argmax(1) == test.labels).mean() == pytest.approx(
        run.result["test_acc"])
