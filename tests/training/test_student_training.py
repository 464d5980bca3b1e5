"""`cnnlab train --layers`: the student's classes in the scratch engine, through the same loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab import cli
from cnnlab.errors import ConfigError, TrainingInterrupted
from cnnlab.training import train
from cnnlab.training.callbacks import Callback

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "student_layers.py"
SPEC = [{"conv": {"out": 6, "k": 3, "pad": 1}}, {"bn": {}}, "relu", {"maxpool": 2}, "flatten",
        {"linear": "classes"}]


class _StopAtEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture
def config(tiny_config):
    return tiny_config(**{"train.engine": "scratch", "model.spec": SPEC, "train.epochs": 2,
                          "data.train_limit": 160, "schedule.name": "constant"})


def test_student_layers_train_like_cnnlabs_own(config):
    config = config.replace(**{"train.epochs": 1})
    own = train(config.replace(**{"train.name": "own"}), quiet=True)
    student = train(config.replace(**{"train.name": "student"}), quiet=True, layers=EXAMPLE)
    assert student.result["status"] == "completed"
    assert student.result["student_layers"]["file"] == str(EXAMPLE)
    assert student.result["student_layers"]["ops"] == [
        "BatchNorm2d", "Conv2d", "Flatten", "Linear", "MaxPool2d", "ReLU", "CrossEntropyLoss"]
    assert "student_layers" not in own.result
    assert student.config.model.layers == str(EXAMPLE)
    # the same seed, the same initial weights, correct ops: the same curves (float32)
    for a, b in zip(own.metrics, student.metrics):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_acc"] == pytest.approx(a["val_acc"], abs=1e-9)
    assert student.result["test_loss"] == pytest.approx(own.result["test_loss"], rel=1e-4)
    assert (student.path / "best.npz").is_file()
    # the state dict has cnnlab's keys: the run reloads into cnnlab's own layers
    model = student.model()
    assert set(model.state_dict()) == set(own.model().state_dict())


def test_resume_needs_the_same_layers_file(config, tmp_path, capsys):
    with pytest.raises(TrainingInterrupted):
        train(config, quiet=True, layers=EXAMPLE, callbacks=[_StopAtEpoch(1)])
    run_dir = Path(config.train.out) / config.train.name / "v1"
    assert cli.main(["train", "--resume", str(run_dir), "--quiet", "--no-plots"]) == 2
    assert "resume it with the same file" in capsys.readouterr().err
    changed = tmp_path / "changed.py"
    changed.write_text(EXAMPLE.read_text() + "\n# edited\n")
    with pytest.raises(ConfigError, match="contents differ"):
        train(resume=run_dir, quiet=True, layers=changed)
    resumed = train(resume=run_dir, quiet=True, layers=EXAMPLE)
    assert resumed.result["status"] == "completed" and resumed.result["epochs_run"] == 2
    assert resumed.result["student_layers"]["ops"][0] == "BatchNorm2d"


def test_layers_need_the_scratch_engine(config):
    with pytest.raises(ConfigError, match="Add --engine scratch"):
        train(config.replace(**{"train.engine": "torch"}), quiet=True, layers=EXAMPLE)
