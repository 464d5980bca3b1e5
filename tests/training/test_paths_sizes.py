"""Run names cannot leave --out, and non-positive sizes are refused (issue 12, E)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.config import load_config
from cnnlab.errors import ConfigError, ModelError
from cnnlab.inspect import summary
from cnnlab.training import train

ROOT = Path(__file__).resolve().parents[2]
# `python -m cnnlab` must run this checkout, wherever pytest is started
IN_WORKTREE = {"cwd": ROOT, "env": {**os.environ, "PYTHONPATH": str(ROOT)}}


@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/b", "/abs", "a\\b", "", " pad"])
def test_a_run_name_must_be_one_folder_inside_out(name):
    with pytest.raises(ConfigError, match=r"train.name \(--name\) must be a single folder name inside train.out"):
        load_config({"train": {"name": name}})


def test_the_api_name_argument_is_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="single folder name"):
        train({"data": {"dataset": "digits"}, "train": {"epochs": 1}}, out=str(tmp_path / "runs"), name="../escape")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()


def test_cli_name_escaping_out_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "a" / "b"
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--dataset", "digits", "--epochs", "1",
                           "--out", str(out), "--name", "../../x", "--quiet", "--no-plots"],
                          capture_output=True, text=True, timeout=120, **IN_WORKTREE)
    assert proc.returncode == 2, proc.stderr
    assert "must be a single folder name" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists() and not out.exists()


def test_good_names_still_work():
    assert load_config({"train": {"name": "lab1-baseline_v2.0"}}).train.name == "lab1-baseline_v2.0"


@pytest.mark.parametrize("classes", [0, -1])
def test_summary_refuses_non_positive_class_counts(classes):
    with pytest.raises(ModelError, match=r"num_classes must be a positive integer .*--classes"):
        summary("mlp", num_classes=classes)


@pytest.mark.parametrize("depth", [0, -1])
def test_summary_refuses_non_positive_depth(depth):
    with pytest.raises(ModelError, match=r"summary depth must be an integer >= 1"):
        summary("mlp", depth=depth)


def test_cli_summary_classes_0_exits_2():
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "summary", "mlp", "--classes", "0"],
                          capture_output=True, text=True, timeout=120, **IN_WORKTREE)
    assert proc.returncode == 2 and "num_classes must be a positive integer" in proc.stderr
