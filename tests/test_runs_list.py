"""`cnnlab runs` / `Run.list`: one row per run folder, sorted and filtered; torch-free listing."""

from __future__ import annotations

import json

import pytest
import yaml

from cnnlab import runs
from cnnlab.cli import main
from cnnlab.errors import ConfigError


def _fake_run(root, name, version, *, model="mlp", engine="torch", status="completed", test_acc=0.9,
              epochs=2):
    folder = root / name / version
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "data": {"dataset": "digits"}, "model": {"name": model}, "train": {"engine": engine}}))
    runs.write_metrics(folder / "metrics.csv", [
        {"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "lr": 0.1,
         "epoch_s": 1.0} for e in range(1, epochs + 1)])
    if status != "missing":
        runs.write_result(folder, {"status": status, "name": name, "model": model, "dataset": "digits",
                                   "engine": engine, "epochs_run": epochs, "best_val_acc": 0.5,
                                   "test_acc": test_acc, "s_per_epoch": 1.5})
    return folder


@pytest.fixture
def run_tree(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "a", "v1", test_acc=0.8)
    _fake_run(root, "a", "v2", test_acc=0.95, engine="scratch")
    _fake_run(root, "b", "v1", model="lenet", status="diverged", test_acc=None, epochs=1)
    _fake_run(tmp_path / "studies" / "s" / "runs" / "lr=0.1", "seed0", "v1", status="missing", epochs=3)
    return tmp_path


def test_list_runs_gives_one_row_per_folder_with_the_columns(run_tree):
    rows = runs.list_runs(run_tree / "runs")
    assert [(r["name"], r["version"]) for r in rows] == [("a", "v1"), ("a", "v2"), ("b", "v1")]
    assert set(rows[0]) == set(runs.LIST_COLUMNS)
    assert rows[1]["engine"] == "scratch" and rows[1]["test_acc"] == 0.95 and rows[1]["s_per_epoch"] == 1.5
    assert rows[2]["status"] == "diverged" and rows[2]["epochs"] == 1 and rows[2]["test_acc"] is None
    study = runs.list_runs(run_tree / "studies" / "s")  # study runs live under <study>/runs/...
    assert len(study) == 1 and study[0]["status"] == "missing" and study[0]["epochs"] == 3


def test_sort_and_filter(run_tree):
    by_acc = runs.list_runs(run_tree / "runs", sort="-test_acc")
    assert [r["test_acc"] for r in by_acc] == [0.95, 0.8, None]  # missing values last
    assert [r["version"] for r in runs.list_runs(run_tree / "runs", filters=["name=a", "engine=torch"])] == ["v1"]
    assert [r["name"] for r in runs.list_runs(run_tree / "runs", filters=["epochs=1"])] == ["b"]
    with pytest.raises(ConfigError, match="Did you mean 'status'"):
        runs.list_runs(run_tree / "runs", filters=["statu=completed"])
    with pytest.raises(ConfigError, match="not a directory"):
        runs.list_runs(run_tree / "nowhere")


def test_run_list_is_a_dataframe_with_pandas_else_a_list_of_dicts(run_tree, monkeypatch):
    import sys

    import pandas as pd  # in the test extra (mlflow needs it too)

    from cnnlab import Run

    frame = Run.list(run_tree / "runs", sort="test_acc")
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(runs.LIST_COLUMNS)
    assert frame["test_acc"].iloc[0] == 0.8 and len(frame) == 3
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    rows = Run.list(run_tree / "runs", sort="test_acc")
    assert isinstance(rows, list) and rows[0]["test_acc"] == 0.8 and len(rows) == 3


def test_runs_command_table_and_json(run_tree, capsys, monkeypatch):
    monkeypatch.chdir(run_tree)
    assert main(["runs", "--sort=-test_acc"]) == 0  # DIR defaults to runs
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["run", "model", "dataset", "engine", "status", "epochs"]
    assert lines[1].startswith("a/v2 ") and "95.00%" in lines[1] and "scratch" in lines[1]
    assert lines[3].startswith("b/v1 ") and "diverged" in lines[3]
    assert main(["runs", "runs", "--filter", "status=completed", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows] == ["v1", "v2"] and rows[0]["model"] == "mlp"
