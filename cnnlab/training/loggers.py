"""Experiment trackers as fit-loop callbacks: TensorBoard and MLflow, opt-in by config.

`train.loggers: [tensorboard, mlflow]` (or `cnnlab train --logger tensorboard`, repeatable)
adds one callback per tracker. Each feeds its tracker per epoch and, when the run ends,
`finish(result)` records the final metrics and status; `log_figures(run_dir, result)` adds the
run's figures once they are drawn (`cnnlab.train` calls it after its plots).

The run folder stays the record: a tracker that fails (server down, disk full, package
missing) writes one warning to log.txt and as a Python warning, once, then switches itself
off; training never stops for it. Where each tracker logged is kept in result.json under
`loggers`, so a resumed run continues the same TensorBoard folder and MLflow run.

- TensorBoard (`torch.utils.tensorboard.SummaryWriter`, needs `pip install 'cnnlab[tensorboard]'`):
  scalars `loss/train`, `loss/val`, `acc/train`, `acc/val`, `lr`, `epoch_s` per epoch; hparams
  (flattened config) with `hparam/test_acc`, `hparam/test_loss`, `hparam/best_val_acc`; the
  run's figures as images. Log directory: `train.tensorboard_dir`, else `<run>/tensorboard`,
  so `tensorboard --logdir runs` (or `--logdir studies/<name>`, whose runs live under it)
  compares runs.
- MLflow (`MlflowClient`, needs `pip install 'cnnlab[mlflow]'`): params = the flattened config,
  metrics per epoch (step = epoch), tags `model`, `dataset`, `engine`, `status`, the run folder
  as artifacts. Tracking URI: `train.mlflow_uri`, else `$MLFLOW_TRACKING_URI`, else a file
  store `<train.out>/mlruns`. Experiment `cnnlab`. A study run (a run folder
  `<study>/runs/<variant>/<name>/v<N>` beside `<study>/study.json`) defaults to the store
  `<study>/mlruns` and is a child (`mlflow.parentRunId`) of one parent run per study and URI,
  recorded in `<study>/mlflow_parent.json`. Unless set, requests fail fast
  (`MLFLOW_HTTP_REQUEST_MAX_RETRIES=1`, `MLFLOW_HTTP_REQUEST_TIMEOUT=10`) so a dead server
  costs seconds, not minutes.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

from cnnlab.config import LOGGERS
from cnnlab.training.callbacks import Callback

EXPERIMENT = "cnnlab"
SCALARS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "acc/train",
           "val_acc": "acc/val", "lr": "lr", "epoch_s": "epoch_s"}
FINAL_METRICS = ("test_acc", "test_loss", "best_val_acc")
FIGURES = ("curves", "confusion", "predictions", "mistakes")
STUDY_STATE = "study.json"  # what marks a study folder (cnnlab.study.runner writes it)
PARENT_FILE = "mlflow_parent.json"


def flatten(config: dict) -> dict:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": "0.1"}: strings, as trackers store params."""
    flat = {}
    for section, values in config.items():
        for key, value in (values or {}).items():
            flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TrackerLogger(Callback):
    """Base: every tracker call goes through `_safe`, so a failure warns once and stops the logger."""

    name = "tracker"

    def __init__(self, run_dir, config: dict, warn=None):
        self.run_dir, self.config = Path(run_dir), config
        self.warn_line = warn or (lambda line: None)
        self.failed: str | None = None

    def _safe(self, what: str, fn, *args):
        if self.failed is not None:
            return None
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - a tracker must never stop training
            self.failed = f"{type(err).__name__}: {err}"
            message = (f"{self.name} logger failed while {what} ({self.failed}); it is off for the "
                       f"rest of this run, which continues. The run folder {self.run_dir} has "
                       "everything.")
            self.warn_line(f"warning: {message}")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self._close_quietly()
            return None

    def _close_quietly(self) -> None: ...

    # the record kept in result.json["loggers"][name]
    def record(self) -> dict:
        return {}

    def finish(self, result: dict) -> None: ...


class TensorBoardLogger(TrackerLogger):
    name = "tensorboard"

    def __init__(self, run_dir, config: dict, logdir=None, warn=None):
        super().__init__(run_dir, config, warn)
        self.logdir = Path(logdir) if logdir else self.run_dir / "tensorboard"
        self.writer = None

    def record(self) -> dict:
        return {"logdir": str(self.logdir)}

    def _open(self):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.logdir))

    def on_train_begin(self, logs):
        self._safe("opening its log directory", self._open)

    def _epoch(self, epoch, logs):
        for key, tag in SCALARS.items():
            value = logs.get(key)
            if _finite(value):
                self.writer.add_scalar(tag, float(value) * (100 if key.endswith("acc") else 1), epoch)
        self.writer.flush()

    def on_epoch_end(self, epoch, logs):
        if self.writer is not None:
            self._safe(f"logging epoch {epoch}", self._epoch, epoch, logs)

    def _finish(self, result):
        hparams = {k: v for k, v in flatten(self.config).items() if isinstance(v, (int, float, str, bool))}
        metrics = {f"hparam/{k}": float(result[k]) for k in FINAL_METRICS if _finite(result.get(k))}
        # run_name "." keeps the hparams beside the scalars instead of a timestamped subfolder
        self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.add_text("status", f"{result.get('status')}: {result.get('stop_reason') or ''}")
        self.writer.close()

    def finish(self, result):
        if self.writer is not None:
            self._safe("writing the final metrics", self._finish, result)
        self.writer = None

    def _close_quietly(self):
        try:
            if self.writer is not None:
                self.writer.close()
        except Exception:  # noqa: BLE001
            pass
        self.writer = None


class MLflowLogger(TrackerLogger):
    name = "mlflow"

    def __init__(self, run_dir, config: dict, uri=None, run_id=None, warn=None):
        super().__init__(run_dir, config, warn)
        self.study_dir = study_dir_of(self.run_dir)
        out = self.study_dir or Path((config.get("train") or {}).get("out") or "runs")
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or (out.resolve() / "mlruns").as_uri()
        self.run_id = run_id
        self.parent_id = None
        self.client = None

    def record(self) -> dict:
        return {"uri": self.uri, "run_id": self.run_id, "parent_run_id": self.parent_id}

    def _start(self):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        if self.uri.startswith("file:"):  # MLflow 3 keeps its file store behind this switch
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is not None:  # a resumed run continues its MLflow run
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment_id = _experiment_id(self.client, EXPERIMENT)
        c = self.config
        tags = {"model": (c.get("model") or {}).get("name"), "dataset": (c.get("data") or {}).get("dataset"),
                "engine": (c.get("train") or {}).get("engine"), "status": "running",
                "run_folder": str(self.run_dir.resolve())}
        if self.study_dir is not None:  # a study run is a child of the study's parent run
            self.parent_id = study_parent_run(self.client, self.uri, self.study_dir, experiment_id)
            tags.update({"mlflow.parentRunId": self.parent_id, "study": self.study_dir.name})
        run = self.client.create_run(experiment_id, tags={k: str(v) for k, v in tags.items()},
                                     run_name=f"{self.run_dir.parent.name}/{self.run_dir.name}")
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:500]) for k, v in flatten(c).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def on_train_begin(self, logs):
        self._safe(f"starting a run at {self.uri}", self._start)

    def _epoch(self, epoch, logs):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in logs.items()
                   if k in SCALARS and _finite(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_epoch_end(self, epoch, logs):
        if self.client is not None:
            self._safe(f"logging epoch {epoch}", self._epoch, epoch, logs)

    def _finish(self, result):
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(result[k]), now, int(result.get("epochs_run") or 0))
                   for k in (*FINAL_METRICS, "s_per_epoch", "params") if _finite(result.get(k))]
        status = str(result.get("status"))
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag("status", status)])
        self.client.log_artifacts(self.run_id, str(self.run_dir), artifact_path="run")
        finished = {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, finished)
        if self.parent_id is not None:  # the parent ends with its latest child; reopened by the next
            self.client.set_terminated(self.parent_id, "FINISHED")

    def finish(self, result):
        if self.client is not None:
            self._safe("writing the final metrics and artifacts", self._finish, result)


def study_dir_of(run_dir: Path) -> Path | None:
    """The study folder of a study run (`<study>/runs/<variant>/<name>/v<N>`, with study.json),
    else None."""
    parents = Path(run_dir).resolve().parents
    if len(parents) > 3 and parents[2].name == "runs" and (parents[3] / STUDY_STATE).is_file():
        return parents[3]
    return None


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - a parallel worker created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def study_parent_run(client, uri: str, study_dir: Path, experiment_id: str) -> str:
    """The study's parent run id for `uri`: made once, kept in `<study>/mlflow_parent.json`
    (keyed by URI), under a lock file so parallel workers agree on one parent."""
    from cnnlab.utils import read_json, write_json

    record, lock = study_dir / PARENT_FILE, study_dir / f".{PARENT_FILE}.lock"
    deadline = time.monotonic() + 60
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{lock} held for over 60 s; delete it if no study is running")
            time.sleep(0.1)
    try:
        parents = read_json(record) if record.is_file() else {}
        if uri not in parents:
            run = client.create_run(experiment_id, run_name=study_dir.name,
                                    tags={"study": study_dir.name, "study_folder": str(study_dir)})
            parents[uri] = run.info.run_id
            write_json(record, parents)
        else:
            client.update_run(parents[uri], status="RUNNING")
        return parents[uri]
    finally:
        os.close(fd)
        os.unlink(lock)


def make_loggers(config, run_dir, previous: dict | None = None, warn=None) -> list[TrackerLogger]:
    """The callbacks for `config.train.loggers`; `previous` is result.json's `loggers` record
    of a resumed run."""
    previous = previous or {}
    t = config.train
    plain = config.to_dict()
    made = []
    for name in t.loggers:
        if name == "tensorboard":
            logdir = (previous.get(name) or {}).get("logdir") or t.tensorboard_dir
            made.append(TensorBoardLogger(run_dir, plain, logdir, warn=warn))
        elif name == "mlflow":
            old = previous.get(name) or {}
            made.append(MLflowLogger(run_dir, plain, uri=old.get("uri") or t.mlflow_uri,
                                     run_id=old.get("run_id"), warn=warn))
        else:  # the config validates names against LOGGERS
            raise AssertionError(f"logger {name!r} not in {LOGGERS}")
    return made


def finish_loggers(callbacks, result: dict) -> None:
    """Final metrics and status to every tracker; their records into `result["loggers"]`."""
    trackers = [c for c in callbacks if isinstance(c, TrackerLogger)]
    for tracker in trackers:
        tracker.finish(result)
    if trackers:
        result["loggers"] = {t.name: t.record() for t in trackers}


def log_figures(run_dir, result: dict, warn=None) -> None:
    """Add the run's drawn figures (PNG) to the trackers recorded in result.json; a failure warns."""
    records = result.get("loggers") or {}
    run_dir = Path(run_dir)
    figures = [run_dir / f"{name}.png" for name in FIGURES if (run_dir / f"{name}.png").is_file()]
    if not figures:
        return
    if "tensorboard" in records:
        tb = TensorBoardLogger(run_dir, {}, records["tensorboard"].get("logdir"), warn=warn)
        tb._safe("adding the figures", _tensorboard_images, tb.logdir, figures, int(result.get("epochs_run") or 0))
    record = records.get("mlflow") or {}
    if record.get("run_id"):
        ml = MLflowLogger(run_dir, {}, uri=record.get("uri"), run_id=record["run_id"], warn=warn)
        ml._safe("adding the figures", _mlflow_figures, ml.uri, ml.run_id, figures)


def _tensorboard_images(logdir, figures, step) -> None:
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for path in figures:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(f"figures/{path.stem}", pixels, step, dataformats="HWC")
    finally:
        writer.close()


def _mlflow_figures(uri, run_id, figures) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for path in figures:
        client.log_artifact(run_id, str(path), artifact_path="figures")
