"""Tiny data: a clear error before training, or a run with a best checkpoint and a test accuracy."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.errors import ConfigError
from cnnlab.training import train

ROOT = Path(__file__).resolve().parents[2]
# `python -m cnnlab` must run this checkout, wherever pytest is started
IN_WORKTREE = {"cwd": ROOT, "env": {**os.environ, "PYTHONPATH": str(ROOT)}}


def test_train_limit_5_is_an_error_not_a_run_without_test_accuracy(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--dataset", "digits", "--epochs", "1", "--quiet",
         "--no-plots", "--out", str(tmp_path / "runs"), "--set", "data.train_limit=5"],
        capture_output=True, text=True, timeout=120, **IN_WORKTREE)
    assert proc.returncode == 2, proc.stderr
    assert "data.train_limit=5" in proc.stderr and "have no training sample" in proc.stderr
    assert not (tmp_path / "runs").exists()  # refused before a run folder is made


def test_one_training_sample_is_an_error(tiny_config):
    with pytest.raises(ConfigError, match=r"leaves 1 training sample\(s\); training needs at least 2"):
        train(tiny_config(**{"data.train_limit": 1}), quiet=True)


def test_batch_size_1_with_batchnorm_is_an_error_not_a_crash(tiny_config):
    with pytest.raises(ConfigError, match=r"train.batch_size=1 .*BatchNorm layers \('bn1', 'bn2', 'bn_fc1'\)"):
        train(tiny_config(**{"train.batch_size": 1}), quiet=True)


def test_batch_size_1_without_batchnorm_trains(tiny_config):
    run = train(tiny_config(**{"train.batch_size": 1, "train.epochs": 1, "data.train_limit": 20,
                               "model.name": "tiny", "model.spec": ["flatten", {"linear": "classes"}]}), quiet=True)
    assert run.result["status"] == "completed" and run.result["test_acc"] is not None


def test_smallest_sets_still_give_a_best_checkpoint_and_a_test_accuracy(tiny_config):
    # 11 training samples (one per class, one spare) and 1 validation sample
    run = train(tiny_config(**{"data.train_limit": 12, "data.val_fraction": 0.1, "train.epochs": 2}),
                quiet=True)
    assert run.result["train_samples"] == 11 and run.result["val_samples"] == 1
    assert (run.path / "best.pt").is_file() and run.result["test_acc"] is not None
    # no validation set by choice: the best epoch is picked on the training loss
    run = train(tiny_config(**{"data.train_limit": 10, "data.val_fraction": 0, "train.monitor": "train_loss",
                               "train.epochs": 2}), quiet=True)
    assert run.result["val_samples"] == 0 and run.result["best_epoch"] is not None
    assert (run.path / "best.pt").is_file() and run.result["test_acc"] is not None
