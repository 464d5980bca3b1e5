"""Spec values are checked before any shape arithmetic or building (issue 12, A)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnlab import models
from cnnlab.errors import ModelError

CONV = {"out": 4, "k": 3}

ROOT = Path(__file__).resolve().parents[2]
# `python -m cnnlab` must run this checkout, wherever pytest is started
IN_WORKTREE = {"cwd": ROOT, "env": {**os.environ, "PYTHONPATH": str(ROOT)}}


def conv(**changes):
    return [{"conv": {**CONV, **changes}, "name": "c1"}, "flatten", {"linear": "classes", "name": "fc"}]


@pytest.mark.parametrize("spec, message", [
    (conv(stride=0), r"Conv2d at layer 'c1': 'stride' must be an integer >= 1 .*got 0"),
    (conv(k=-3), r"Conv2d at layer 'c1': 'k' must be an integer >= 1 .*got -3"),
    (conv(k=0), r"'k' must be an integer >= 1 .*got 0"),
    (conv(out=0), r"Conv2d at layer 'c1': 'out' must be an integer >= 1 .*got 0"),
    (conv(out=-2), r"'out' must be .*got -2"),
    (conv(pad=-1), r"Conv2d at layer 'c1': 'pad' must be an integer >= 0 .*got -1"),
    (conv(dilation=0), r"'dilation' must be an integer >= 1 .*got 0"),
    (conv(stride=[1, 0]), r"'stride' must be .*got \[1, 0\]"),
    (conv(k=2.5), r"'k' must be an integer .*got 2.5"),
    (conv(groups=0), r"'groups' must be an integer >= 1 .*got 0"),
    (conv(groups=3), r"Conv2d at layer 'c1': groups=3 must divide in_channels=1 and out_channels=4"),
    ([{"conv": {"out": 6, "k": 1}}, {"conv": {"out": 4, "k": 1, "groups": 4}, "name": "g"}],
     r"Conv2d at layer 'g': groups=4 must divide in_channels=6"),
    ([{"conv_transpose": {"out": 3, "k": 2, "stride": 0}}], r"ConvTranspose2d at layer '0': 'stride'"),
    ([{"conv": {"out": 4, "k": 1}}, {"conv_transpose": {"out": 6, "k": 2, "groups": 3}, "name": "t"}],
     r"ConvTranspose2d at layer 't': groups=3 must divide in_channels=4"),
    ([{"conv_transpose": {"out": 2, "k": 2, "stride": 2, "output_pad": 2}}], r"'output_pad' must be smaller"),
    (["flatten", {"linear": 0, "name": "fc1"}], r"Linear at layer 'fc1': 'out' must be an integer >= 1 .*got 0"),
    (["flatten", {"dropout": 1.0, "name": "d"}], r"Dropout at layer 'd': 'p' must be a number in \[0, 1\).*got 1.0"),
    (["flatten", {"dropout": -0.1}], r"Dropout at layer '1': 'p' must be .*got -0.1"),
    (["flatten", {"dropout": "half"}], r"Dropout at layer '1': 'p' must be .*got 'half'"),
    ([{"maxpool": 0, "name": "pool"}], r"MaxPool2d at layer 'pool': 'k' must be an integer >= 1 .*got 0"),
    ([{"maxpool": {"k": 2, "stride": 0}}], r"MaxPool2d at layer '0': 'stride' must be .*got 0"),
    ([{"avgpool": {"k": 2, "pad": 2}}], r"AvgPool2d at layer '0': 'pad' must be at most half"),
    ([{"adaptive_avgpool": 0}], r"AdaptiveAvgPool2d at layer '0': 'size' must be .*got 0"),
    ([{"bn": {"eps": 0}}], r"BatchNorm at layer '0': 'eps' must be a number > 0"),
    ([{"block": {"out": 4, "stride": 0}, "name": "b"}], r"BasicBlock at layer 'b': 'stride' must be .*got 0"),
    ([{"seq": [{"conv": {"out": 4, "k": 3, "stride": 0}}], "name": "layer1"}], r"Conv2d at layer 'layer1.0'"),
])
def test_bad_layer_values_name_the_layer_and_the_value(spec, message):
    with pytest.raises(ModelError, match=message):
        models.resolve(spec, (1, 8, 8), num_classes=10)


def test_good_values_still_resolve():
    spec = [{"conv": {"out": 4, "k": [3, 1], "stride": [2, 1], "pad": [1, 0], "groups": 1}},
            {"maxpool": {"k": 2, "pad": 1}}, {"dropout": 0}, "flatten", {"linear": "classes"}]
    assert models.resolve(spec, (1, 8, 8), num_classes=3).out_shape == (3,)


@pytest.mark.parametrize("classes", [0, -1])
def test_non_positive_class_counts_are_refused(classes):
    with pytest.raises(ModelError, match=rf"num_classes must be a positive integer .*got {classes}"):
        models.resolve("mlp", num_classes=classes)


@pytest.mark.parametrize("change, message", [
    ({"stride": 0}, "'stride' must be an integer >= 1"),
    ({"k": -3}, "'k' must be an integer >= 1"),
])
def test_cnnlab_train_exits_2_with_the_layer_and_value(tmp_path, change, message):
    config = {"data": {"dataset": "digits"},
              "model": {"name": "tiny", "spec": conv(**change)},
              "train": {"epochs": 1, "out": str(tmp_path / "runs")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(path), "--quiet", "--no-plots"],
                          capture_output=True, text=True, timeout=120, **IN_WORKTREE)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Conv2d at layer 'c1'" in proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
