"""TensorBoard and MLflow loggers, for real: event files read back, a file store and a live
`mlflow server`, and a tracker that cannot be reached never stops training."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import cnnlab
from cnnlab import runs


def _tiny(tmp_path, **train):
    return {"data": {"dataset": "digits", "train_limit": 200},
            "model": {"name": "mlp"}, "optim": {"lr": 0.05},
            "train": {"epochs": 2, "batch_size": 32, "out": str(tmp_path / "runs"), "name": "tiny",
                      "threads": 1, **train}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_readback(uri, run_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client, client.get_run(run_id)


def test_tensorboard_and_mlflow_file_store_get_epochs_hparams_figures(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = cnnlab.train(_tiny(tmp_path, loggers=["tensorboard", "mlflow"]), quiet=True)
    assert run.result["status"] == "completed"
    record = run.result["loggers"]
    assert record["tensorboard"]["logdir"] == str(run.path / "tensorboard")  # inside the run folder

    events = EventAccumulator(record["tensorboard"]["logdir"], size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    train_loss = events.Scalars("loss/train")
    assert [e.step for e in train_loss] == [1, 2]
    assert [e.value for e in train_loss] == pytest.approx([m["train_loss"] for m in run.metrics])
    assert [e.value for e in events.Scalars("acc/val")] == pytest.approx([100 * m["val_acc"] for m in run.metrics])
    assert {"lr", "epoch_s", "loss/val", "acc/train", "hparam/test_acc"} <= set(tags["scalars"])
    assert events.Scalars("hparam/test_acc")[0].value == pytest.approx(run.result["test_acc"])
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.05)
    assert start.hparams["model.name"].string_value == "mlp"
    assert {"figures/curves", "figures/confusion", "figures/predictions"} <= set(tags["images"])

    mlflow = record["mlflow"]
    assert mlflow["uri"] == (tmp_path / "runs" / "mlruns").as_uri()  # the default: beside the runs
    client, found = _mlflow_readback(mlflow["uri"], mlflow["run_id"])
    assert found.data.params["optim.lr"] == "0.05" and found.data.params["model.name"] == "mlp"
    assert found.data.tags["status"] == "completed" and found.data.tags["engine"] == "torch"
    assert found.data.tags["model"] == "mlp" and found.data.tags["dataset"] == "digits"
    history = client.get_metric_history(mlflow["run_id"], "val_acc")
    assert [(m.step, m.value) for m in history] == [(m["epoch"], pytest.approx(m["val_acc"])) for m in run.metrics]
    assert found.data.metrics["test_acc"] == pytest.approx(run.result["test_acc"])
    artifacts = {a.path for a in client.list_artifacts(mlflow["run_id"], "run")}
    assert {"run/config.yaml", "run/metrics.csv", "run/result.json", "run/best.pt"} <= artifacts
    assert "figures/curves.png" in {a.path for a in client.list_artifacts(mlflow["run_id"], "figures")}
    assert found.info.status == "FINISHED"


def test_an_unreachable_tracker_warns_once_and_training_completes(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.warns(RuntimeWarning, match="mlflow logger failed") as caught:
        run = cnnlab.train(_tiny(tmp_path, loggers=["mlflow"], mlflow_uri=uri, epochs=3), quiet=True,
                           plots=False)
    assert len([w for w in caught if "logger failed" in str(w.message)]) == 1
    assert run.result["status"] == "completed" and len(run.metrics) == 3
    log = (run.path / runs.LOG_FILE).read_text()
    assert log.count("mlflow logger failed") == 1 and "continues" in log
    assert run.result["loggers"]["mlflow"]["run_id"] is None


@pytest.mark.slow
def test_mlflow_server_receives_params_metrics_and_artifacts(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", (tmp_path / "store").as_uri(),
         "--artifacts-destination", (tmp_path / "artifacts").as_uri(), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
        start_new_session=True)  # its own process group: `mlflow server` starts a uvicorn child
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # bounded wait for readiness
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        run = cnnlab.train(_tiny(tmp_path, loggers=["mlflow"], mlflow_uri=uri), quiet=True, plots=False)
        record = run.result["loggers"]["mlflow"]
        client, found = _mlflow_readback(uri, record["run_id"])
        assert found.data.params["train.epochs"] == "2" and found.data.tags["status"] == "completed"
        history = client.get_metric_history(record["run_id"], "train_loss")
        assert [m.value for m in history] == pytest.approx([m["train_loss"] for m in run.metrics])
        assert "run/metrics.csv" in {a.path for a in client.list_artifacts(record["run_id"], "run")}
        assert any((tmp_path / "artifacts").rglob("metrics.csv"))  # stored by the server
    finally:  # the whole group, so no uvicorn worker outlives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def test_logger_flag_of_the_train_command(tmp_path, capsys):
    import yaml

    from cnnlab.cli import main

    code = main(["train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path), "--name", "cli",
                 "--set", "data.train_limit=200", "--set", "train.threads=1", "--quiet", "--no-plots",
                 "--logger", "tensorboard", "--logger", "tensorboard"])
    assert code == 0
    run_dir = tmp_path / "cli" / "v1"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["loggers"] == ["tensorboard"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert main(["train", "--logger", "tensorbord"]) == 2
    assert "Did you mean 'tensorboard'?" in capsys.readouterr().err.replace("\n", " ")


def test_study_runs_are_mlflow_children_of_one_parent_run(tmp_path, monkeypatch):
    """Runs in a study's layout (<study>/runs/<variant>/<name>/v<N>, beside study.json, as
    cnnlab.study.runner writes them) share the study's store and one parent run."""
    import yaml
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    study_dir = tmp_path / "studies" / "s"
    study_dir.mkdir(parents=True)
    (study_dir / "study.json").write_text("{}")
    for seed in (0, 1):
        config = _tiny(tmp_path, loggers=["mlflow", "tensorboard"], epochs=1, seed=seed)
        cnnlab.train(config, out=study_dir / "runs" / "lr=0.05", name=f"seed{seed}", quiet=True, plots=False)
    uri = (study_dir / "mlruns").as_uri()  # one store for the whole study
    parent_id = yaml.safe_load((study_dir / "mlflow_parent.json").read_text())[uri]
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 2 and {c.data.tags["status"] for c in children} == {"completed"}
    assert {c.data.params["train.seed"] for c in children} == {"0", "1"}
    assert parent.data.tags["study"] == "s" and parent.info.status == "FINISHED"
    assert not (study_dir / ".mlflow_parent.json.lock").exists()
    # TensorBoard logs of every run live under the study folder: tensorboard --logdir studies/s
    assert len({p.parent for p in (study_dir / "runs").rglob("events.out.tfevents.*")}) == 2


def test_a_resumed_run_continues_its_tensorboard_folder_and_mlflow_run(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnlab.errors import TrainingInterrupted
    from cnnlab.training import Callback

    class StopAt2(Callback):
        def on_epoch_begin(self, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _tiny(tmp_path, loggers=["tensorboard", "mlflow"], epochs=3)
    with pytest.raises(TrainingInterrupted):
        cnnlab.train(config, quiet=True, plots=False, callbacks=[StopAt2()])
    run_dir = tmp_path / "runs" / "tiny" / "v1"
    first = runs.read_result(run_dir)["loggers"]
    run = cnnlab.train(resume=run_dir, quiet=True, plots=False)
    assert run.result["loggers"]["mlflow"]["run_id"] == first["mlflow"]["run_id"]
    client, found = _mlflow_readback(first["mlflow"]["uri"], first["mlflow"]["run_id"])
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train_loss")] == [1, 2, 3]
    assert found.info.status == "FINISHED" and found.data.tags["status"] == "completed"
    events = EventAccumulator(first["tensorboard"]["logdir"])
    events.Reload()
    # each epoch once; the order across event files opened in the same second of one process
    # follows their names, so it is not checked here
    assert sorted(e.step for e in events.Scalars("loss/train")) == [1, 2, 3]


def test_a_tensorboard_folder_that_cannot_be_written_warns_once(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the log directory should be")
    with pytest.warns(RuntimeWarning, match="tensorboard logger failed") as caught:
        run = cnnlab.train(_tiny(tmp_path, loggers=["tensorboard"], tensorboard_dir=str(blocker / "tb")),
                           quiet=True, plots=False)
    assert len([w for w in caught if "logger failed" in str(w.message)]) == 1
    assert run.result["status"] == "completed" and len(run.metrics) == 2
    assert (run.path / runs.LOG_FILE).read_text().count("tensorboard logger failed") == 1
