"""The run-folder format (`cnnlab.runs`): a run rebuilds from its folder alone, old folders load."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab import runs
from cnnlab.errors import ConfigError
from cnnlab.training import Run, train


@pytest.fixture(scope="module")
def spec_run(tmp_path_factory):
    """A scratch-engine run of an inline spec (not a zoo model), on 200 digits, 2 epochs."""
    import torch

    torch.set_num_threads(1)
    config = {
        "data": {"dataset": "digits", "train_limit": 200},
        "model": {"name": "tiny_spec", "spec": [{"conv": 4}, "relu", {"maxpool": 2}, "flatten",
                                                {"linear": "classes"}]},
        "train": {"epochs": 2, "batch_size": 32, "engine": "scratch",
                  "out": str(tmp_path_factory.mktemp("runs")), "name": "spec"},
    }
    return train(config, quiet=True)


def test_model_json_holds_what_rebuilds_the_model(spec_run):
    args = runs.read_model_args(spec_run.path)
    assert args.ref == [{"conv": 4}, "relu", {"maxpool": 2}, "flatten", {"linear": "classes"}]
    assert (args.input_shape, args.num_classes, args.engine) == ((1, 8, 8), 10, "scratch")
    assert args.label == "tiny_spec"
    # the folder alone: no config object, no result.json needed
    (spec_run.path / "result.json").rename(spec_run.path / "result.json.away")
    try:
        assert runs.read_model_args(spec_run.path) == args
    finally:
        (spec_run.path / "result.json.away").rename(spec_run.path / "result.json")


def test_a_folder_written_before_model_json_still_loads(spec_run, tmp_path):
    import shutil

    old = tmp_path / "old" / "v1"
    shutil.copytree(spec_run.path, old)
    (old / runs.MODEL_FILE).unlink()  # as written by cnnlab before model.json existed
    args = runs.read_model_args(old)
    assert (args.ref, args.input_shape, args.num_classes, args.engine) == (
        runs.read_model_args(spec_run.path).ref, (1, 8, 8), 10, "scratch")
    images = spec_run.test_data().images[:16]
    np.testing.assert_allclose(Run.load(old).predict(images), spec_run.predict(images))


def test_one_rule_for_what_makes_a_folder_a_run(spec_run, tmp_path):
    assert runs.is_run_dir(spec_run.path)
    assert runs.find_run_dir(spec_run.path.parent) == spec_run.path  # <out>/<name> -> newest
    (tmp_path / "x" / "v1").mkdir(parents=True)
    (tmp_path / "x" / "v1" / "metrics.csv").write_text("epoch\n")  # no config.yaml: not a run
    with pytest.raises(ConfigError, match="not a run folder"):
        runs.find_run_dir(tmp_path / "x")


def test_metrics_round_trip_exactly(tmp_path):
    history = [{"epoch": 1, "train_loss": 0.1 + 0.2, "train_acc": 0.5, "val_loss": float("nan"),
                "val_acc": 1 / 3, "lr": 1e-3, "epoch_s": 2.5, "samples": 7}]
    runs.write_metrics(tmp_path / "metrics.csv", history)
    (row,) = runs.read_metrics(tmp_path / "metrics.csv")
    assert row["epoch"] == 1 and isinstance(row["epoch"], int)
    assert row["train_loss"] == 0.1 + 0.2 and row["val_acc"] == 1 / 3 and np.isnan(row["val_loss"])
    assert list(row) == list(runs.METRIC_COLUMNS)


def test_summary_of_a_run_uses_the_runs_own_engine(spec_run):
    from cnnlab.inspect import summary

    assert summary(spec_run.path).engine == "scratch"
    assert summary(spec_run.path, engine="torch").engine == "torch"


def test_test_limit_evaluates_a_stratified_subset_and_the_run_reloads_the_same(tmp_path):
    run = train({"data": {"dataset": "digits", "train_limit": 200, "test_limit": 50},
                 "model": {"name": "mlp"}, "train": {"epochs": 1, "out": str(tmp_path)}}, quiet=True)
    assert run.result["test_samples"] == 50
    test = run.test_data()
    assert len(test.labels) == 50 and len(set(test.labels.tolist())) == 10  # stratified
    again = train({"data": {"dataset": "digits", "train_limit": 200, "test_limit": 50},
                   "model": {"name": "mlp"}, "train": {"epochs": 1, "out": str(tmp_path)}}, quiet=True)
    np.testing.assert_array_equal(again.test_data().images, test.images)  # seeded
